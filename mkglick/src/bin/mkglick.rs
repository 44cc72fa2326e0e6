//! `mkglick GLICK IMAGE|DIRECTORY [--icon PNG] [--desktop-file FILE]`: make a bundle — the
//! glick runtime, which this binary carries, plus an ext2 image and optional icon and
//! desktop entry — in Glick 1's argument order.

use std::fs::{self, File};
use std::io::{self, IsTerminal as _};
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, anyhow, bail};
use clap::{CommandFactory as _, Parser};
use glick_bundle::Writer;
use glick_bundle::desktop_entry::DesktopEntry;
use glick_ext2::write::Image;
use glick_ext2::{Ext2, FileRegion, FileType, InodeNo};
use mkglick::{AtomicFile, ImageArgs, image_error, path_error};

/// The runtime, built by `build.rs` (`cargo build -p glick-stub --profile stub`, static).
const RUNTIME: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/glick-stub"));

/// Image sizes above which a progress bar is worth showing on a terminal.
const PROGRESS_MIN_BYTES: u64 = 64 << 20;

/// Make a glick bundle: one executable file that mounts its own image and runs its `start`
#[derive(Debug, Parser)]
#[command(
    name = "mkglick",
    version,
    long_about = "Make a glick bundle: one executable file that mounts its own image and runs its \
                  `start`.\n\nThe bundle is the glick runtime (carried inside mkglick) with the \
                  ext2 image, the icon and the desktop entry added as ELF sections. A DIRECTORY \
                  is made into an image in memory first (with the image options below, as \
                  glick-mkext2 does); an IMAGE must be an ext2 image. Either must hold an \
                  executable `start` at its root.",
    after_help = "Arguments are in Glick 1's order: the bundle to write first, then what goes in it.\n\n\
                  Example:\n  mkglick hello.glick ./hello --icon hello/icon.png --desktop-file hello/hello.desktop\n  ./hello.glick"
)]
struct Cli {
    /// The bundle to write (replaced atomically, mode 0755)
    glick: PathBuf,
    /// An ext2 image, or a directory to make one of
    #[arg(value_name = "IMAGE|DIRECTORY")]
    input: PathBuf,
    /// A 48×48 PNG icon for file managers and menus
    #[arg(long, value_name = "PNG")]
    icon: Option<PathBuf>,
    /// A desktop entry (Type=Application) describing the app
    #[arg(long, value_name = "FILE")]
    desktop_file: Option<PathBuf>,
    /// Use this runtime instead of the one built into mkglick
    #[arg(long, value_name = "FILE")]
    runtime: Option<PathBuf>,
    /// Do not record the image's SHA-256 in the bundle
    #[arg(long)]
    no_digest: bool,
    #[command(flatten)]
    image: ImageArgs,
}

fn main() -> ExitCode {
    let args: Vec<_> = std::env::args_os().collect();
    if let Some(code) = glick_cli::handle(&args, Cli::command) {
        return code;
    }
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mkglick: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Vec<std::ffi::OsString>) -> anyhow::Result<()> {
    let cli = Cli::parse_from(args);
    let input_meta = fs::metadata(&cli.input).map_err(|e| path_error(&cli.input, &e))?;
    refuse_overwriting_inputs(&cli)?;

    let runtime_bytes;
    let (runtime, runtime_name) = match &cli.runtime {
        Some(path) => {
            runtime_bytes = fs::read(path).map_err(|e| path_error(path, &e))?;
            (&runtime_bytes[..], path.display().to_string())
        }
        None => (RUNTIME, "the built-in runtime".to_owned()),
    };
    let writer = Writer::new(runtime).map_err(|e| anyhow!("{runtime_name}: {e}"))?;

    let icon = cli.icon.as_deref().map(read_icon).transpose()?;
    let desktop = cli
        .desktop_file
        .as_deref()
        .map(read_desktop_entry)
        .transpose()?;
    let mut writer = writer.digest(!cli.no_digest);
    if let Some(icon) = &icon {
        writer = writer.icon(icon);
    }
    if let Some(desktop) = &desktop {
        writer = writer.desktop_entry(desktop);
    }

    let image = if input_meta.is_dir() {
        image_directory(&cli)?
    } else {
        if has_image_options(&cli.image) {
            bail!(
                "{}: an image file; the image options (--block-size, --label, --keep-owner, \
                 --extra-space, --extra-inodes) apply only to a directory",
                cli.input.display()
            );
        }
        let file = File::open(&cli.input).map_err(|e| path_error(&cli.input, &e))?;
        check_image(&cli.input, file)?
    };

    let out = AtomicFile::create(&cli.glick)?;
    let size = image
        .metadata()
        .map_err(|e| path_error(&cli.input, &e))?
        .len();
    let bar = progress_bar(size, "bundling");
    writer
        .write(&image, out.file(), &mut |done, total| {
            if let Some(bar) = &bar {
                bar.set_length(total);
                bar.set_position(done);
            }
        })
        .map_err(|e| anyhow!("{}: {e}", cli.glick.display()))?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    out.commit(0o755)
}

/// The output must not be one of the inputs (same file, or inside the input directory).
fn refuse_overwriting_inputs(cli: &Cli) -> anyhow::Result<()> {
    let Ok(out) = fs::metadata(&cli.glick) else {
        // A new file: only a directory input can contain it.
        return check_not_inside(cli);
    };
    let inputs = [
        Some(&cli.input),
        cli.icon.as_ref(),
        cli.desktop_file.as_ref(),
        cli.runtime.as_ref(),
    ];
    for input in inputs.into_iter().flatten() {
        if let Ok(m) = fs::metadata(input) {
            if m.dev() == out.dev() && m.ino() == out.ino() {
                bail!(
                    "{}: is the input {}; refusing to overwrite an input",
                    cli.glick.display(),
                    input.display()
                );
            }
        }
    }
    check_not_inside(cli)
}

fn check_not_inside(cli: &Cli) -> anyhow::Result<()> {
    if cli.input.is_dir() {
        mkglick::check_input_and_output(&cli.input, &cli.glick)?;
    }
    Ok(())
}

/// Reads and fully decodes the icon, which must be a 48×48 PNG.
fn read_icon(path: &Path) -> anyhow::Result<Vec<u8>> {
    let bytes = fs::read(path).map_err(|e| path_error(path, &e))?;
    if !bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        bail!("{}: not a PNG image", path.display());
    }
    let mut decoder = png::Decoder::new(io::Cursor::new(&bytes[..]));
    decoder.set_limits(png::Limits { bytes: 1 << 20 });
    let bad = |e: png::DecodingError| {
        // The decoder's messages end in a debug dump of the chunk type: keep the cause.
        let text = e.to_string();
        let cause = text.split(" while decoding").next().unwrap_or(&text);
        anyhow!("{}: not a valid PNG image: {cause}", path.display())
    };
    let mut reader = decoder.read_info().map_err(bad)?;
    let (width, height) = (reader.info().width, reader.info().height);
    if (width, height) != (48, 48) {
        bail!(
            "{}: {width}×{height}, a bundle icon must be 48×48",
            path.display()
        );
    }
    let size = reader
        .output_buffer_size()
        .ok_or_else(|| anyhow!("{}: not a valid PNG image: too large", path.display()))?;
    let mut pixels = vec![0; size];
    reader.next_frame(&mut pixels).map_err(bad)?;
    reader.finish().map_err(bad)?;
    Ok(bytes)
}

/// Reads a desktop entry and checks it against the Desktop Entry Specification.
fn read_desktop_entry(path: &Path) -> anyhow::Result<Vec<u8>> {
    let bytes = fs::read(path).map_err(|e| path_error(path, &e))?;
    let shown = path.display().to_string();
    let entry = DesktopEntry::parse(&bytes).map_err(|e| anyhow!(e.with_path(&shown)))?;
    entry
        .check_application()
        .map_err(|e| anyhow!(e.with_path(&shown)))?;
    Ok(bytes)
}

/// Makes the directory's image in a sealed memfd: no temporary file, nothing left behind.
fn image_directory(cli: &Cli) -> anyhow::Result<File> {
    let dir = &cli.input;
    let start = dir.join("start");
    match fs::metadata(&start) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => bail!(
            "{}: no `start` at its root; a bundle runs its image's /start",
            dir.display()
        ),
        Err(e) => return Err(path_error(&start, &e)),
        Ok(m) if !m.is_file() => bail!("{}: not a regular file", start.display()),
        Ok(m) if m.permissions().mode() & 0o111 == 0 => {
            bail!("{}: not executable (chmod +x it)", start.display())
        }
        Ok(_) => {}
    }
    let options = cli.image.options()?;
    let image = Image::scan(dir, &options).map_err(|e| image_error(dir, e))?;
    let memfd = memfd::MemfdOptions::default()
        .allow_sealing(true)
        .close_on_exec(true)
        .create("glick-image")
        .context("creating the in-memory image")?;
    memfd
        .as_file()
        .set_len(image.size())
        .context("sizing the in-memory image")?;
    let bar = progress_bar(image.data_bytes(), "imaging");
    image
        .write_to(memfd.as_file(), &mut |done, total| {
            if let Some(bar) = &bar {
                bar.set_length(total);
                bar.set_position(done);
            }
        })
        .map_err(|e| image_error(dir, e))?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    memfd
        .add_seals(&[
            memfd::FileSeal::SealShrink,
            memfd::FileSeal::SealGrow,
            memfd::FileSeal::SealWrite,
            memfd::FileSeal::SealSeal,
        ])
        .context("sealing the in-memory image")?;
    Ok(memfd.into_file())
}

/// Checks that an image file is ext2 with an executable /start.
fn check_image(path: &Path, file: File) -> anyhow::Result<File> {
    let mut magic = [0u8; 2];
    let has_magic = std::os::unix::fs::FileExt::read_exact_at(&file, &mut magic, 1024 + 56).is_ok()
        && u16::from_le_bytes(magic) == glick_ext2::Superblock::MAGIC;
    if !has_magic {
        bail!("{}: neither a directory nor an ext2 image", path.display());
    }
    let file = Arc::new(file);
    let region = FileRegion::whole(Arc::clone(&file)).map_err(|e| path_error(path, &e))?;
    let fs = Ext2::open(region).map_err(|e| anyhow!("{}: bad ext2 image: {e}", path.display()))?;
    let corrupt = |e: glick_ext2::Error| anyhow!("{}: {e}", path.display());
    let start = fs
        .lookup(InodeNo::ROOT, b"start")
        .map_err(corrupt)?
        .ok_or_else(|| {
            anyhow!(
                "{}: no /start in the image; a bundle runs its image's /start",
                path.display()
            )
        })?;
    let inode = fs.inode(start).map_err(corrupt)?;
    match inode.file_type() {
        Some(FileType::Symlink) => {}
        Some(FileType::Regular) if inode.permissions() & 0o111 != 0 => {}
        Some(FileType::Regular) => {
            bail!("{}: /start in the image is not executable", path.display())
        }
        _ => bail!(
            "{}: /start in the image is not a regular file",
            path.display()
        ),
    }
    drop(fs);
    Arc::try_unwrap(file).map_err(|_| anyhow!("{}: image still in use", path.display()))
}

/// A bar on stderr for work of `total` bytes, when stderr is a terminal and it is large.
fn progress_bar(total: u64, message: &'static str) -> Option<indicatif::ProgressBar> {
    if total < PROGRESS_MIN_BYTES || !io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(total),
        indicatif::ProgressDrawTarget::stderr(),
    );
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{msg} [{bar:40}] {bytes}/{total_bytes} ({eta})")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(message);
    Some(bar)
}

/// Whether any image option was given (they shape a new image, so need a directory).
fn has_image_options(args: &ImageArgs) -> bool {
    args.block_size.0.is_some()
        || args.label.is_some()
        || args.keep_owner
        || args.extra_space != 0
        || args.extra_inodes != 0
}
