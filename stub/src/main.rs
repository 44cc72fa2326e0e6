//! The glick runtime: carried at the front of every bundle, it mounts the
//! bundle's own image and execs the app's `start` (DESIGN.md §4).
//!
//! Only `argv[1]` is looked at, and only for the reserved prefix
//! `--glick-`; everything else, `argv[0]` included, goes to the app
//! untouched. See [`HELP`] for the options and the environment, and
//! [`exit`] for the exit codes.

mod alloc;
mod exit;
mod note;
mod notify;
mod options;

use std::ffi::OsString;
use std::fs::File;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use glick_bundle::Bundle;
use glick_fuse::launch::{self, Image, Mode, Options, Root};

use crate::exit::Failure;
use crate::options::Action;

/// Keeps freed blocks of 256 B to 256 KiB for reuse (see [`alloc`]).
#[global_allocator]
static ALLOCATOR: alloc::Retaining = alloc::Retaining::new();

/// `--glick-help`.
const HELP: &str = "\
This is a glick bundle: an application and its files in one executable.
Run it to start the application; all arguments go to the application.

Options (only as the first argument):
  --glick-help               show this help
  --glick-version            show the runtime's version
  --glick-info               describe the bundle and its image
  --glick-extract [DIR]      copy the image's files into DIR (default: glick-root)
  --glick-mount              mount the image, print the mountpoint, stay until killed
  --glick-extract-and-run    run the application from an extracted copy
  --glick-verify             check the image against its recorded SHA-256
  --glick-offset             print the image's offset in this file, for
                             mount -o loop,ro,offset=N BUNDLE DIR

Environment:
  GLICK_MOUNT=auto|fuse|userns|extract   force a way of providing the files
  GLICK_DEBUG=1                          print the runtime's decisions

Exit codes: the application's own; or 64 bad option, 65 bad bundle,
66 corrupt image, 69 cannot mount, 71 system error, 73 cannot create
directory, 126 start not executable, 127 no start; 1 verify mismatch.
";

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    let name = args
        .first()
        .map(Path::new)
        .and_then(Path::file_name)
        .map_or_else(|| "glick".into(), |n| n.to_string_lossy().into_owned());
    match run(args) {
        Ok(code) => code,
        Err(failure) => {
            let message = format!("{name}: {failure}");
            eprintln!("{message}");
            exit::notify(&name, &failure);
            ExitCode::from(failure.code())
        }
    }
}

fn run(args: Vec<OsString>) -> Result<ExitCode, Failure> {
    let action = options::parse(&args)?;
    match action {
        Action::Help => return print(HELP),
        Action::Version => {
            return print(&format!("glick runtime {}\n", env!("CARGO_PKG_VERSION")));
        }
        _ => {}
    }
    let file = File::open("/proc/self/exe").map_err(Failure::SelfExe)?;
    let bundle = Bundle::open(&file).map_err(Failure::Bundle)?;
    let part = bundle.image();
    let image = Image {
        file,
        offset: part.offset,
        len: part.size,
    };
    match action {
        Action::Help | Action::Version => Ok(ExitCode::SUCCESS),
        Action::Offset => print(&format!("{}\n", part.offset)),
        Action::Info => info(&bundle, image),
        Action::Verify => verify(&bundle, &image.file),
        Action::Extract(dir) => {
            let dir = dir.unwrap_or_else(|| PathBuf::from("glick-root"));
            launch::extract_to(image, &dir).map_err(Failure::Launch)?;
            print(&format!("{}\n", dir.display()))
        }
        Action::Mount => {
            let options = Options::from_env().map_err(Failure::Launch)?;
            let root = launch::open_root(image, &options).map_err(Failure::Launch)?;
            print(&format!("{}\n", root.public_path().display()))?;
            root.wait_unmounted();
            Ok(ExitCode::SUCCESS)
        }
        Action::Run { extract } => {
            let mut options = Options::from_env().map_err(Failure::Launch)?;
            if extract {
                options.mode = Mode::Extract;
            }
            options.preload = Some("start");
            let root = launch::open_root(image, &options).map_err(Failure::Launch)?;
            let app_args: &[OsString] = if extract { &args[2..] } else { &args[1..] };
            Err(exec_start(root, args.first(), app_args))
        }
    }
}

fn print(text: &str) -> Result<ExitCode, Failure> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(Failure::Stdout)?;
    Ok(ExitCode::SUCCESS)
}

/// Exec `<root>/start` in this process: same PID, argv untouched. Returns
/// only on failure.
fn exec_start(root: Root, argv0: Option<&OsString>, args: &[OsString]) -> Failure {
    use rustix::fs::{AtFlags, FileType};
    let start = root.dir.join("start");
    match rustix::fs::statat(&root.fd, "start", AtFlags::empty()) {
        Err(rustix::io::Errno::NOENT) => return close(root, Failure::NoStart),
        Err(e) => return close(root, Failure::StartUnusable(e.into())),
        Ok(st) => {
            let kind = FileType::from_raw_mode(st.st_mode);
            if kind != FileType::RegularFile || st.st_mode & 0o111 == 0 {
                return close(root, Failure::NotExecutable);
            }
        }
    }
    let mut root = root;
    let env = match root.install() {
        Ok(env) => env,
        Err(e) => return close(root, Failure::Sys("dup2", e)),
    };
    let bundle = std::fs::read_link("/proc/self/exe").unwrap_or_default();
    let mut command = Command::new(&start);
    if let Some(argv0) = argv0 {
        command.arg0(argv0);
    }
    command.args(args).envs(env).env("GLICK", bundle);
    let error = command.exec();
    let failure = if error.kind() == std::io::ErrorKind::NotFound {
        Failure::NoStart
    } else {
        Failure::Exec(error)
    };
    close(root, failure)
}

/// Give up the root (its helper then unmounts) and wait until the helper is
/// gone, so nothing is left mounted when we exit with `failure`.
fn close(root: Root, failure: Failure) -> Failure {
    root.close_and_wait();
    failure
}

fn info(bundle: &Bundle, image: Image) -> Result<ExitCode, Failure> {
    let mut text = String::new();
    let path = std::fs::read_link("/proc/self/exe").unwrap_or_default();
    let part = bundle.image();
    text.push_str(&format!("bundle: {}\n", path.display()));
    text.push_str(&format!("size: {} bytes\n", bundle.file_len()));
    text.push_str(&format!(
        "image: offset {} size {}\n",
        part.offset, part.size
    ));
    for s in bundle.sections() {
        if s.name.starts_with(".glick") || s.name.starts_with(".xdg") {
            text.push_str(&format!(
                "section {}: offset {} size {}\n",
                s.name, s.offset, s.size
            ));
        }
    }
    let ext2 = launch::open_image(image).map_err(Failure::Image)?;
    let sb = ext2.superblock();
    text.push_str(&format!(
        "ext2: block size {}, {} blocks, {} inodes ({} free), label {:?}\n",
        ext2.block_size().get(),
        sb.blocks_count,
        sb.inodes_count,
        sb.free_inodes_count,
        String::from_utf8_lossy(sb.volume_name.split(|&b| b == 0).next().unwrap_or(&[]))
    ));
    print(&text)
}

fn verify(bundle: &Bundle, file: &File) -> Result<ExitCode, Failure> {
    let result = bundle.verify(file).map_err(Failure::Bundle)?;
    let actual = glick_bundle::hex(&result.actual);
    match result.recorded {
        None => Err(Failure::NoDigest),
        Some(_) if result.ok() => print(&format!("OK sha256:{actual}\n")),
        Some(recorded) => Err(Failure::DigestMismatch {
            recorded: glick_bundle::hex(&recorded),
            actual,
        }),
    }
}
