//! `glick-extract`: take a glick bundle apart without running or mounting it.
//!
//! Every mode reads the bundle's ELF section table first (a few KiB, whatever the bundle's
//! size) and then only the part it needs. Outputs appear atomically: a temporary file or
//! directory next to the target, renamed into place when complete.

#![forbid(unsafe_code)]

mod tree;

use std::fs::{self, File};
use std::io::{self, IsTerminal as _, Write as _};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, anyhow, bail};
use clap::{ArgGroup, Parser};
use glick_bundle::desktop_entry::DesktopEntry;
use glick_bundle::{Bundle, Part};
use glick_ext2::{Ext2, FileRegion};

/// Take a glick bundle apart without running or mounting it
#[derive(Debug, Parser)]
#[command(
    name = "glick-extract",
    version,
    group(ArgGroup::new("mode").required(true).args(
        ["image", "icon", "desktop_file", "tree", "info", "verify", "thumbnail"])),
    long_about = "Take a glick bundle apart without running or mounting it: glick-extract \
                  reads the bundle's ELF section table and copies out the part asked for. \
                  TARGET - writes to standard output.",
    after_help = "Examples:\n  glick-extract --image app.glick app.ext2\n  glick-extract --icon app.glick icon.png\n  \
                  glick-extract --tree app.glick ./app\n  glick-extract --info app.glick\n  glick-extract --verify app.glick"
)]
struct Cli {
    /// Write the ext2 image: --image GLICK TARGET
    #[arg(long)]
    image: bool,
    /// Write the 48×48 PNG icon: --icon GLICK TARGET
    #[arg(long)]
    icon: bool,
    /// Write the desktop entry: --desktop-file GLICK TARGET
    #[arg(long)]
    desktop_file: bool,
    /// Recreate the image's file tree in DIR (new, or empty): --tree GLICK DIR
    #[arg(long)]
    tree: bool,
    /// Describe the bundle: sections, image, desktop entry, digest: --info GLICK
    #[arg(long)]
    info: bool,
    /// Check the image against the recorded SHA-256 (exit 1 on mismatch): --verify GLICK
    #[arg(long)]
    verify: bool,
    /// Thumbnailer entry point (freedesktop `%i %o %s`): --thumbnail GLICK OUTPUT SIZE
    #[arg(long)]
    thumbnail: bool,
    /// The bundle
    glick: PathBuf,
    /// Where to write (TARGET, DIR or OUTPUT; SIZE for --thumbnail)
    #[arg(value_name = "TARGET")]
    rest: Vec<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("glick-extract: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn usage(message: &str) -> ! {
    use clap::CommandFactory as _;
    Cli::command()
        .error(clap::error::ErrorKind::WrongNumberOfValues, message)
        .exit()
}

fn run(cli: &Cli) -> anyhow::Result<ExitCode> {
    let wants = |n: usize, what: &str| {
        if cli.rest.len() != n {
            usage(what);
        }
    };
    if cli.info || cli.verify {
        wants(0, "--info and --verify take only the bundle: GLICK");
    } else if cli.tree {
        wants(1, "--tree takes the bundle and a directory: GLICK DIR");
    } else if cli.thumbnail {
        if !(1..=2).contains(&cli.rest.len()) {
            usage("--thumbnail takes GLICK OUTPUT [SIZE]");
        }
    } else {
        wants(1, "the bundle and a target are needed: GLICK TARGET");
    }
    let glick = &cli.glick;
    let file = File::open(glick).map_err(|e| path_error(glick, &e))?;
    if file.metadata().map_err(|e| path_error(glick, &e))?.is_dir() {
        bail!("{}: is a directory, not a bundle", glick.display());
    }
    let bundle = Bundle::open(&file).map_err(|e| anyhow!("{}: {e}", glick.display()))?;
    let target = cli.rest.first();
    if cli.image {
        let target = target.context("no target")?;
        write_part(glick, &file, bundle.image(), target)?;
    } else if cli.icon || cli.thumbnail {
        let target = target.context("no target")?;
        let part = bundle
            .icon()
            .ok_or_else(|| anyhow!("{}: the bundle has no icon (.xdg.icon.48)", glick.display()))?;
        write_part(glick, &file, part, target)?;
    } else if cli.desktop_file {
        let target = target.context("no target")?;
        let part = bundle.desktop_entry().ok_or_else(|| {
            anyhow!(
                "{}: the bundle has no desktop entry (.xdg.desktop)",
                glick.display()
            )
        })?;
        write_part(glick, &file, part, target)?;
    } else if cli.tree {
        let target = target.context("no target")?;
        extract_tree(glick, file, &bundle, target)?;
    } else if cli.info {
        info(glick, file, &bundle)?;
    } else if cli.verify {
        return verify(glick, &file, &bundle);
    }
    Ok(ExitCode::SUCCESS)
}

fn io_cause(e: &io::Error) -> String {
    let text = e.to_string();
    text.split(" (os error").next().unwrap_or(&text).to_owned()
}

fn path_error(path: &Path, e: &io::Error) -> anyhow::Error {
    anyhow!("{}: {}", path.display(), io_cause(e))
}

fn is_stdout(target: &Path) -> bool {
    target.as_os_str() == "-"
}

fn parent_dir(target: &Path) -> &Path {
    match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Refuses a target that is the bundle itself.
fn check_not_bundle(glick: &Path, target: &Path) -> anyhow::Result<()> {
    if let (Ok(a), Ok(b)) = (fs::metadata(glick), fs::metadata(target)) {
        if a.dev() == b.dev() && a.ino() == b.ino() {
            bail!(
                "{}: is the bundle itself; refusing to overwrite it",
                target.display()
            );
        }
    }
    Ok(())
}

/// Copies one part to `target` (or standard output), atomically.
fn write_part(glick: &Path, file: &File, part: Part, target: &Path) -> anyhow::Result<()> {
    if is_stdout(target) {
        let mut buf = vec![0u8; 1 << 20];
        let mut out = io::stdout().lock();
        let mut done = 0;
        while done < part.size {
            let n = usize::try_from((part.size - done).min(buf.len() as u64)).unwrap_or(0);
            std::os::unix::fs::FileExt::read_exact_at(file, &mut buf[..n], part.offset + done)
                .map_err(|e| path_error(glick, &e))?;
            out.write_all(&buf[..n])
                .map_err(|e| anyhow!("standard output: {}", io_cause(&e)))?;
            done += n as u64;
        }
        return out
            .flush()
            .map_err(|e| anyhow!("standard output: {}", io_cause(&e)));
    }
    check_not_bundle(glick, target)?;
    if target.is_dir() {
        bail!("{}: is a directory", target.display());
    }
    let dir = parent_dir(target);
    let temp = tempfile::Builder::new()
        .prefix(".glick-extract.")
        .tempfile_in(dir)
        .map_err(|e| {
            anyhow!(
                "{}: cannot create the output: {}",
                target.display(),
                io_cause(&e)
            )
        })?;
    temp.as_file()
        .set_len(part.size)
        .map_err(|e| path_error(target, &e))?;
    let bar = progress_bar(part.size);
    glick_bundle::copy_range(
        file,
        part.offset,
        part.size,
        temp.as_file(),
        0,
        &mut |done, _| {
            if let Some(bar) = &bar {
                bar.set_position(done);
            }
        },
    )
    .map_err(|e| anyhow!("{}: {e}", target.display()))?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    temp.as_file()
        .set_permissions(fs::Permissions::from_mode(0o644))
        .map_err(|e| path_error(target, &e))?;
    temp.persist(target)
        .map_err(|e| path_error(target, &e.error))?;
    Ok(())
}

fn progress_bar(total: u64) -> Option<indicatif::ProgressBar> {
    if total < 64 << 20 || !io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(total),
        indicatif::ProgressDrawTarget::stderr(),
    );
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "extracting [{bar:40}] {bytes}/{total_bytes} ({eta})",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    Some(bar)
}

fn open_image(glick: &Path, file: File, bundle: &Bundle) -> anyhow::Result<Ext2<FileRegion>> {
    Ext2::open(bundle.image_region(file)).map_err(|e| anyhow!("{}: image: {e}", glick.display()))
}

/// Extracts the tree into a private temporary directory beside `target`, then renames it
/// into place (replacing `target` only if it is an empty directory).
fn extract_tree(glick: &Path, file: File, bundle: &Bundle, target: &Path) -> anyhow::Result<()> {
    match fs::symlink_metadata(target) {
        Ok(m) if m.is_dir() => {
            let mut entries = fs::read_dir(target).map_err(|e| path_error(target, &e))?;
            if entries.next().is_some() {
                bail!("{}: exists and is not empty", target.display());
            }
        }
        Ok(_) => bail!("{}: exists and is not a directory", target.display()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(path_error(target, &e)),
    }
    let fs = open_image(glick, file, bundle)?;
    let temp = tempfile::Builder::new()
        .prefix(".glick-extract.")
        .tempdir_in(parent_dir(target))
        .map_err(|e| {
            anyhow!(
                "{}: cannot create the output: {}",
                target.display(),
                io_cause(&e)
            )
        })?;
    let root: OwnedFd = File::open(temp.path())
        .map_err(|e| path_error(temp.path(), &e))?
        .into();
    let is_root = rustix::process::geteuid().is_root();
    let options = tree::Options {
        owners: is_root,
        devices: is_root,
    };
    let used = u64::from(fs.superblock().blocks_count - fs.superblock().free_blocks_count)
        * u64::from(fs.block_size().get());
    let bar = progress_bar(used);
    let stats = tree::extract(&fs, &root, options, &mut |done| {
        if let Some(bar) = &bar {
            bar.set_position(done);
        }
    })
    .map_err(|e| anyhow!("{}: {e}", glick.display()))?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    for skipped in &stats.skipped_devices {
        eprintln!("glick-extract: {skipped}: device node not created (needs root)");
    }
    let path = temp.keep();
    fs::rename(&path, target).map_err(|e| {
        let _ = fs::remove_dir_all(&path);
        path_error(target, &e)
    })?;
    Ok(())
}

fn machine_name(machine: u16) -> String {
    match machine {
        3 => "x86".to_owned(),
        62 => "x86-64".to_owned(),
        40 => "ARM".to_owned(),
        183 => "AArch64".to_owned(),
        243 => "RISC-V".to_owned(),
        other => format!("machine {other}"),
    }
}

fn info(glick: &Path, file: File, bundle: &Bundle) -> anyhow::Result<()> {
    let mut out = String::new();
    use std::fmt::Write as _;
    let _ = writeln!(
        out,
        "bundle: {} ({} bytes)",
        glick.display(),
        bundle.file_len()
    );
    let mut head = vec![0u8; glick_bundle::note::SEARCH_LIMIT];
    let n = std::os::unix::fs::FileExt::read_at(&file, &mut head, 0).unwrap_or(0);
    let runtime = match glick_bundle::note::find(&head[..n]) {
        Some((_, version)) => format!("glick runtime, bundle format {version}"),
        None => "not a glick runtime (no glick note)".to_owned(),
    };
    let layout = if bundle.is_glick1_layout() {
        "Glick 1 (image in an allocated section)"
    } else {
        "glick"
    };
    let _ = writeln!(
        out,
        "runtime: {runtime}, {}",
        machine_name(bundle.machine())
    );
    let _ = writeln!(out, "layout: {layout}");
    let _ = writeln!(out, "sections:");
    let parts = [
        (glick_bundle::IMAGE, Some(bundle.image())),
        (glick_bundle::ICON, bundle.icon()),
        (glick_bundle::DESKTOP, bundle.desktop_entry()),
        (glick_bundle::DIGEST, bundle.digest()),
    ];
    for (name, part) in parts {
        match part {
            Some(p) => {
                let _ = writeln!(
                    out,
                    "  {name:<14} offset {:>12}  size {:>12}",
                    p.offset, p.size
                );
            }
            None => {
                let _ = writeln!(out, "  {name:<14} (none)");
            }
        }
    }
    let desktop = match bundle.desktop_entry() {
        Some(p) => Some(
            Bundle::read_part(&file, glick_bundle::DESKTOP, p)
                .map_err(|e| anyhow!("{}: {e}", glick.display()))?,
        ),
        None => None,
    };
    let verification = bundle.verify(&file);
    let fs = open_image(glick, file, bundle)?;
    let sb = fs.superblock();
    let label =
        String::from_utf8_lossy(sb.volume_name.split(|&c| c == 0).next().unwrap_or_default())
            .into_owned();
    let _ = writeln!(out, "image: ext2 revision {}", sb.rev_level);
    let _ = writeln!(out, "  block size: {}", fs.block_size().get());
    let _ = writeln!(
        out,
        "  blocks: {} ({} used)",
        sb.blocks_count,
        sb.blocks_count - sb.free_blocks_count.min(sb.blocks_count)
    );
    let _ = writeln!(
        out,
        "  inodes: {} ({} used)",
        sb.inodes_count,
        sb.inodes_count - sb.free_inodes_count.min(sb.inodes_count)
    );
    let _ = writeln!(out, "  label: {label:?}");
    let _ = writeln!(out, "  uuid: {}", uuid(&sb.uuid));
    match desktop {
        Some(bytes) => {
            let _ = writeln!(out, "desktop entry:");
            match DesktopEntry::parse(&bytes) {
                Ok(entry) => {
                    for key in ["Name", "Comment", "Exec", "Icon", "Categories"] {
                        if let Some(v) = entry.get(key) {
                            let _ = writeln!(out, "  {key}={v}");
                        }
                    }
                }
                Err(e) => {
                    let _ = writeln!(out, "  invalid: {e}");
                }
            }
        }
        None => {
            let _ = writeln!(out, "desktop entry: none");
        }
    }
    let digest = match verification {
        Ok(v) if v.ok() => format!("ok (sha256:{})", glick_bundle::hex(&v.actual)),
        Ok(v) if v.recorded.is_none() => "none recorded".to_owned(),
        Ok(v) => format!(
            "MISMATCH (recorded sha256:{}, image sha256:{})",
            glick_bundle::hex(&v.recorded.unwrap_or_default()),
            glick_bundle::hex(&v.actual)
        ),
        Err(e) => format!("unreadable: {e}"),
    };
    let _ = writeln!(out, "digest: {digest}");
    io::stdout()
        .write_all(out.as_bytes())
        .map_err(|e| anyhow!("standard output: {}", io_cause(&e)))
}

fn uuid(u: &[u8; 16]) -> String {
    let h = glick_bundle::hex(u);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

fn verify(glick: &Path, file: &File, bundle: &Bundle) -> anyhow::Result<ExitCode> {
    let v = bundle
        .verify(file)
        .map_err(|e| anyhow!("{}: {e}", glick.display()))?;
    match v.recorded {
        None => bail!(
            "{}: no .glick.digest section to verify against",
            glick.display()
        ),
        Some(recorded) if recorded == v.actual => {
            println!(
                "{}: OK (sha256:{})",
                glick.display(),
                glick_bundle::hex(&v.actual)
            );
            Ok(ExitCode::SUCCESS)
        }
        Some(recorded) => {
            eprintln!(
                "glick-extract: {}: image digest mismatch: recorded sha256:{}, image has sha256:{}",
                glick.display(),
                glick_bundle::hex(&recorded),
                glick_bundle::hex(&v.actual)
            );
            Ok(ExitCode::FAILURE)
        }
    }
}
