//! Writing outputs: whole files that appear atomically, standard output, the extracted tree,
//! and the progress bar shown for long work on a terminal.

use std::fs::{self, File};
use std::io::{self, IsTerminal as _, Write as _};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::Path;

use anyhow::{anyhow, bail};
use glick_bundle::{Bundle, Part};
use glick_ext2::{Ext2, FileRegion};

use glick_tree as tree;

/// An `io::Error`'s message without the " (os error N)" suffix std adds.
pub fn io_cause(e: &io::Error) -> String {
    let text = e.to_string();
    text.split(" (os error").next().unwrap_or(&text).to_owned()
}

/// `PATH: cause` for an I/O error.
pub fn path_error(path: &Path, e: &io::Error) -> anyhow::Error {
    anyhow!("{}: {}", path.display(), io_cause(e))
}

fn is_stdout(target: &Path) -> bool {
    target.as_os_str() == "-"
}

/// The directory a target is created in (`.` for a bare name).
pub fn parent_dir(target: &Path) -> &Path {
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

/// A temporary file beside `target`, to be [`tempfile::NamedTempFile::persist`]ed onto it.
fn temp_beside(glick: &Path, target: &Path) -> anyhow::Result<tempfile::NamedTempFile> {
    check_not_bundle(glick, target)?;
    if target.is_dir() {
        bail!("{}: is a directory", target.display());
    }
    tempfile::Builder::new()
        .prefix(".glick-extract.")
        .tempfile_in(parent_dir(target))
        .map_err(|e| {
            anyhow!(
                "{}: cannot create the output: {}",
                target.display(),
                io_cause(&e)
            )
        })
}

/// Writes `bytes` to `target` with `mode`, atomically: a temporary file in the same
/// directory, renamed onto `target` when complete.
pub fn write_file(glick: &Path, target: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    let mut temp = temp_beside(glick, target)?;
    temp.write_all(bytes).map_err(|e| path_error(target, &e))?;
    temp.as_file()
        .set_permissions(fs::Permissions::from_mode(mode))
        .map_err(|e| path_error(target, &e))?;
    temp.persist(target)
        .map_err(|e| path_error(target, &e.error))?;
    Ok(())
}

/// Copies one part to `target` (or standard output for `-`), atomically.
pub fn write_part(glick: &Path, file: &File, part: Part, target: &Path) -> anyhow::Result<()> {
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
    let temp = temp_beside(glick, target)?;
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

/// Opens the bundle's image with glick's ext2 reader.
pub fn open_image(glick: &Path, file: File, bundle: &Bundle) -> anyhow::Result<Ext2<FileRegion>> {
    Ext2::open(bundle.image_region(file)).map_err(|e| anyhow!("{}: image: {e}", glick.display()))
}

/// Extracts the tree into a private temporary directory beside `target`, then renames it
/// into place (replacing `target` only if it is an empty directory).
pub fn extract_tree(
    glick: &Path,
    file: File,
    bundle: &Bundle,
    target: &Path,
) -> anyhow::Result<()> {
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
