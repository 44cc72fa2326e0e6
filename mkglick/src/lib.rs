//! What `mkglick` and `glick-mkext2` share: the image options on the command line, writing an
//! output file atomically, and the progress bar.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, IsTerminal as _};
use std::os::fd::AsRawFd as _;
use std::path::{Path, PathBuf};

use anyhow::anyhow;
use glick_ext2::BlockSize;
use glick_ext2::write::{Image, Options};

/// The options that shape an ext2 image, as both CLIs take them.
#[derive(Debug, Clone, clap::Args)]
pub struct ImageArgs {
    /// Block size in bytes: auto (the one giving the smallest image), 1024, 2048 or 4096
    #[arg(long, value_name = "SIZE", default_value = "auto", value_parser = parse_block_size)]
    pub block_size: BlockSizeArg,

    /// Volume label (at most 16 bytes)
    #[arg(long, value_name = "LABEL", value_parser = parse_label)]
    pub label: Option<String>,

    /// Keep the owners (uid:gid) of the source files instead of making everything 0:0
    #[arg(long)]
    pub keep_owner: bool,

    /// Free space to leave in the image, in bytes, or with a K, M or G suffix (powers of 1024)
    #[arg(long, value_name = "SIZE", default_value = "0", value_parser = parse_size)]
    pub extra_space: u64,

    /// Free inodes to leave in the image
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub extra_inodes: u32,
}

/// `--block-size`: `auto` or a size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockSizeArg(pub Option<BlockSize>);

fn parse_block_size(s: &str) -> Result<BlockSizeArg, String> {
    match s {
        "auto" => Ok(BlockSizeArg(None)),
        "1024" | "2048" | "4096" => {
            let n: u32 = s.parse().map_err(|_| "not a number".to_owned())?;
            Ok(BlockSizeArg(BlockSize::new(n)))
        }
        _ => Err("expected auto, 1024, 2048 or 4096".to_owned()),
    }
}

fn parse_label(s: &str) -> Result<String, String> {
    if s.len() > 16 {
        return Err(format!("{} bytes long; a label holds at most 16", s.len()));
    }
    Ok(s.to_owned())
}

/// Parses a size: a number of bytes, optionally followed by K, M or G (powers of 1024).
///
/// # Errors
///
/// Not a number, an unknown suffix, or more than 2^64 bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let (digits, shift) = match s.as_bytes().last() {
        Some(b'K' | b'k') => (&s[..s.len() - 1], 10),
        Some(b'M' | b'm') => (&s[..s.len() - 1], 20),
        Some(b'G' | b'g') => (&s[..s.len() - 1], 30),
        _ => (s, 0),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| "expected a number of bytes with an optional K, M or G suffix".to_owned())?;
    n.checked_mul(1 << shift)
        .ok_or_else(|| "too large".to_owned())
}

impl ImageArgs {
    /// The writer's options, with `SOURCE_DATE_EPOCH` from the environment.
    ///
    /// # Errors
    ///
    /// `SOURCE_DATE_EPOCH` is set but not a whole number of seconds.
    pub fn options(&self) -> anyhow::Result<Options> {
        Ok(Options {
            block_size: self.block_size.0,
            label: self.label.clone(),
            keep_owner: self.keep_owner,
            source_date_epoch: source_date_epoch()?,
            extra_bytes: self.extra_space,
            extra_inodes: self.extra_inodes,
        })
    }
}

/// `SOURCE_DATE_EPOCH`, if set and not empty.
///
/// # Errors
///
/// It is set but not an integer.
pub fn source_date_epoch() -> anyhow::Result<Option<i64>> {
    match std::env::var_os("SOURCE_DATE_EPOCH") {
        None => Ok(None),
        Some(v) if v.is_empty() => Ok(None),
        Some(v) => {
            let s = v.to_string_lossy();
            s.trim().parse::<i64>().map(Some).map_err(|_| {
                anyhow!("SOURCE_DATE_EPOCH: invalid value '{s}' (expected seconds since 1970)")
            })
        }
    }
}

/// An `io::Error`'s message without the " (os error N)" suffix std adds.
#[must_use]
pub fn io_cause(e: &io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error ") {
        Some(at) => text[..at].to_owned(),
        None => text,
    }
}

/// `PATH: cause` for an I/O error.
pub fn path_error(path: &Path, e: &io::Error) -> anyhow::Error {
    anyhow!("{}: {}", path.display(), io_cause(e))
}

/// Checks that `input` is a directory and that `output` does not lie inside it (which would
/// make the image part of its own source).
///
/// # Errors
///
/// `input` is missing or not a directory, or `output` is inside it.
pub fn check_input_and_output(input: &Path, output: &Path) -> anyhow::Result<()> {
    let meta = std::fs::metadata(input).map_err(|e| path_error(input, &e))?;
    if !meta.is_dir() {
        return Err(anyhow!("{}: not a directory", input.display()));
    }
    let input_real = input.canonicalize().map_err(|e| path_error(input, &e))?;
    let output_real = resolve_output(output)?;
    if output_real.starts_with(&input_real) {
        return Err(anyhow!(
            "{}: the output is inside the input directory {}",
            output.display(),
            input.display()
        ));
    }
    Ok(())
}

/// The canonical path `output` will have: its directory resolved, its name appended.
fn resolve_output(output: &Path) -> anyhow::Result<PathBuf> {
    let dir = output_dir(output);
    let dir_real = dir.canonicalize().map_err(|e| path_error(dir, &e))?;
    match output.file_name() {
        Some(name) => Ok(dir_real.join(name)),
        None => Ok(dir_real),
    }
}

fn output_dir(output: &Path) -> &Path {
    match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// An output file that appears under its name only when complete: an anonymous file
/// (`O_TMPFILE`) in the target's directory, given a name and renamed onto the target by
/// [`AtomicFile::commit`]. If the process fails or is killed first, nothing is left behind.
/// Where the filesystem has no `O_TMPFILE`, a hidden named temporary file (removed on
/// failure) stands in.
#[derive(Debug)]
pub struct AtomicFile {
    temp: Temp,
    target: PathBuf,
}

#[derive(Debug)]
enum Temp {
    Anonymous(File),
    Named(tempfile::NamedTempFile),
}

impl AtomicFile {
    /// Creates the temporary file in `target`'s directory.
    ///
    /// # Errors
    ///
    /// The directory doesn't exist or isn't writable; `target` is a directory.
    pub fn create(target: &Path) -> anyhow::Result<Self> {
        use rustix::fs::{Mode, OFlags};
        if target.is_dir() {
            return Err(anyhow!("{}: is a directory", target.display()));
        }
        let dir = output_dir(target);
        let cannot = |e: &io::Error| {
            anyhow!(
                "{}: cannot create the output: {}: {}",
                target.display(),
                dir.display(),
                io_cause(e)
            )
        };
        let flags = OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC;
        let temp = match rustix::fs::open(dir, flags, Mode::from_raw_mode(0o600)) {
            Ok(fd) => Temp::Anonymous(File::from(fd)),
            Err(
                rustix::io::Errno::OPNOTSUPP | rustix::io::Errno::ISDIR | rustix::io::Errno::INVAL,
            ) => {
                let mut prefix = std::ffi::OsString::from(".");
                prefix.push(target.file_name().unwrap_or(OsStr::new("image")));
                prefix.push(".");
                let named = tempfile::Builder::new()
                    .prefix(&prefix)
                    .tempfile_in(dir)
                    .map_err(|e| cannot(&e))?;
                Temp::Named(named)
            }
            Err(e) => return Err(cannot(&e.into())),
        };
        Ok(AtomicFile {
            temp,
            target: target.to_path_buf(),
        })
    }

    /// The open file.
    #[must_use]
    pub fn file(&self) -> &File {
        match &self.temp {
            Temp::Anonymous(file) => file,
            Temp::Named(named) => named.as_file(),
        }
    }

    /// Gives the file `mode` and puts it in place of the target.
    ///
    /// # Errors
    ///
    /// Linking or renaming failed.
    pub fn commit(self, mode: u32) -> anyhow::Result<()> {
        use std::os::unix::fs::PermissionsExt as _;
        let target = &self.target;
        self.file()
            .set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(|e| path_error(target, &e))?;
        let file = match self.temp {
            Temp::Named(named) => {
                return named
                    .persist(target)
                    .map(drop)
                    .map_err(|e| path_error(target, &e.error));
            }
            Temp::Anonymous(file) => file,
        };
        let dir = output_dir(target);
        let name = target.file_name().unwrap_or(OsStr::new("image"));
        let proc_path = format!("/proc/self/fd/{}", file.as_raw_fd());
        let mut attempt = 0u32;
        let temp = loop {
            let mut temp_name = std::ffi::OsString::from(".");
            temp_name.push(name);
            temp_name.push(format!(".tmp{}-{attempt}", std::process::id()));
            let temp = dir.join(temp_name);
            match rustix::fs::linkat(
                rustix::fs::CWD,
                proc_path.as_str(),
                rustix::fs::CWD,
                &temp,
                rustix::fs::AtFlags::SYMLINK_FOLLOW,
            ) {
                Ok(()) => break temp,
                Err(rustix::io::Errno::EXIST) if attempt < 100 => attempt += 1,
                Err(e) => return Err(path_error(target, &io::Error::from(e))),
            }
        };
        std::fs::rename(&temp, target).map_err(|e| {
            let _ = std::fs::remove_file(&temp);
            path_error(target, &e)
        })
    }
}

/// A progress bar on stderr, shown only when stderr is a terminal and the work is large.
#[derive(Debug)]
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    /// Bytes of file data above which a bar is worth showing.
    pub const MIN_BYTES: u64 = 64 << 20;
    /// Entries above which a bar is worth showing.
    pub const MIN_ENTRIES: u64 = 10_000;

    /// A bar for writing `image`, or none.
    #[must_use]
    pub fn for_image(image: &Image, message: &str) -> Self {
        let large = image.data_bytes() > Self::MIN_BYTES || image.entry_count() > Self::MIN_ENTRIES;
        if !large || !io::stderr().is_terminal() {
            return Progress { bar: None };
        }
        let bar = indicatif::ProgressBar::with_draw_target(
            Some(image.data_bytes()),
            indicatif::ProgressDrawTarget::stderr(),
        );
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{msg} [{bar:40}] {bytes}/{total_bytes} ({eta})",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(message.to_owned());
        Progress { bar: Some(bar) }
    }

    /// Records progress.
    pub fn update(&self, done: u64, total: u64) {
        if let Some(bar) = &self.bar {
            bar.set_length(total);
            bar.set_position(done);
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Scans `input` and writes its image to `output` atomically (mode 0644).
///
/// # Errors
///
/// Any of the checks of [`check_input_and_output`], or the scan or write failed; the message
/// names the path.
pub fn make_image_file(input: &Path, output: &Path, options: &Options) -> anyhow::Result<()> {
    check_input_and_output(input, output)?;
    let out = AtomicFile::create(output)?;
    let image = Image::scan(input, options).map_err(|e| image_error(output, e))?;
    out.file()
        .set_len(image.size())
        .map_err(|e| path_error(output, &e))?;
    let progress = Progress::for_image(&image, "writing");
    image
        .write_to(out.file(), &mut |done, total| progress.update(done, total))
        .map_err(|e| image_error(output, e))?;
    progress.finish();
    out.commit(0o644)?;
    Ok(())
}

/// A writer error as one line: the path it names first, or the output's.
#[must_use]
pub fn image_error(output: &Path, e: glick_ext2::write::Error) -> anyhow::Error {
    match e.path() {
        Some(_) => anyhow!("{e}"),
        None => anyhow!("{}: {e}", output.display()),
    }
}
