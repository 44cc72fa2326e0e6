//! Building images with glick's writer (the library, or the `glick-mkext2` binary) and
//! comparing image files.

use std::ffi::OsString;
use std::fs::File;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, bail, ensure};
use glick_ext2::BlockSize;
use glick_ext2::write::{Image, Options};

/// The writer options the tests vary.
#[derive(Clone, Debug, Default)]
pub struct Build {
    /// `None` = auto.
    pub block_size: Option<u32>,
    /// Keep source owners.
    pub keep_owner: bool,
    /// `SOURCE_DATE_EPOCH`.
    pub source_date_epoch: Option<i64>,
    /// Volume label.
    pub label: Option<String>,
    /// Extra free bytes.
    pub extra_bytes: u64,
    /// Extra free inodes.
    pub extra_inodes: u32,
}

impl Build {
    /// These options for `glick_ext2::write`.
    pub fn options(&self) -> Result<Options> {
        let block_size = match self.block_size {
            None => None,
            Some(b) => Some(BlockSize::new(b).with_context(|| format!("bad block size {b}"))?),
        };
        Ok(Options {
            block_size,
            label: self.label.clone(),
            keep_owner: self.keep_owner,
            source_date_epoch: self.source_date_epoch,
            extra_bytes: self.extra_bytes,
            extra_inodes: self.extra_inodes,
        })
    }

    /// The same options as `glick-mkext2` arguments (after `IMAGE DIRECTORY`).
    #[must_use]
    pub fn cli_args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = Vec::new();
        if let Some(bs) = self.block_size {
            args.extend(["--block-size".into(), bs.to_string().into()]);
        }
        if let Some(label) = &self.label {
            args.extend(["--label".into(), label.into()]);
        }
        if self.keep_owner {
            args.push("--keep-owner".into());
        }
        if self.extra_bytes > 0 {
            args.extend(["--extra-space".into(), self.extra_bytes.to_string().into()]);
        }
        if self.extra_inodes > 0 {
            args.extend([
                "--extra-inodes".into(),
                self.extra_inodes.to_string().into(),
            ]);
        }
        args
    }
}

/// An image file made by glick's writer.
#[derive(Clone, Debug)]
pub struct Built {
    /// Where it is.
    pub path: PathBuf,
    /// `Image::size()`.
    pub size: u64,
    /// The block size the writer chose.
    pub block_size: u32,
}

/// Scans `source` and writes its image to `out` with the library API.
pub fn build(source: &Path, build: &Build, out: &Path) -> Result<Built> {
    let image = Image::scan(source, &build.options()?)
        .with_context(|| format!("glick_ext2::write::Image::scan({})", source.display()))?;
    let file = File::create(out).with_context(|| format!("create {}", out.display()))?;
    file.set_len(image.size())?;
    let mut last = (0, 0);
    image
        .write_to(&file, &mut |done, total| last = (done, total))
        .with_context(|| format!("glick_ext2::write::Image::write_to({})", out.display()))?;
    let len = file.metadata()?.len();
    ensure!(
        len == image.size(),
        "image file is {len} bytes, Image::size() says {}",
        image.size()
    );
    ensure!(
        last.0 == last.1,
        "progress ended at {} of {} bytes",
        last.0,
        last.1
    );
    Ok(Built {
        path: out.to_owned(),
        size: image.size(),
        block_size: image.block_size().get(),
    })
}

/// Fails unless the two files are byte-identical, naming the first differing byte.
pub fn assert_identical(a: &Path, b: &Path, block_size: u32) -> Result<()> {
    let (mut fa, mut fb) = (File::open(a)?, File::open(b)?);
    let (la, lb) = (fa.metadata()?.len(), fb.metadata()?.len());
    ensure!(
        la == lb,
        "{} is {la} bytes, {} is {lb} bytes",
        a.display(),
        b.display()
    );
    let mut ba = vec![0u8; 1 << 20];
    let mut bb = vec![0u8; 1 << 20];
    let mut off = 0u64;
    while off < la {
        let n = (ba.len() as u64).min(la - off) as usize;
        fa.read_exact(&mut ba[..n])?;
        fb.read_exact(&mut bb[..n])?;
        if ba[..n] != bb[..n] {
            let at = off
                + ba[..n]
                    .iter()
                    .zip(&bb[..n])
                    .position(|(x, y)| x != y)
                    .unwrap_or(0) as u64;
            bail!(
                "{} and {} differ first at byte {at} (block {} of {block_size} bytes, offset {} in it)",
                a.display(),
                b.display(),
                at / u64::from(block_size),
                at % u64::from(block_size)
            );
        }
        off += n as u64;
    }
    Ok(())
}

/// The path of a workspace binary built next to the running test executable
/// (`target/<profile>/NAME`; the test runs from `target/<profile>/deps/`).
pub fn workspace_binary(name: &str, package: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .with_context(|| format!("no grand-parent directory of {}", exe.display()))?;
    let bin = profile_dir.join(name);
    ensure!(
        bin.is_file(),
        "{} does not exist: build it first: cargo build -p {package}{}",
        bin.display(),
        if profile_dir.ends_with("release") {
            " --release"
        } else {
            ""
        }
    );
    Ok(bin)
}

/// Runs `glick-mkext2 OUT SOURCE ARGS...`; fails with its stderr unless it exits 0.
pub fn build_with_cli(source: &Path, build: &Build, out: &Path) -> Result<()> {
    let bin = workspace_binary("glick-mkext2", "mkglick")?;
    let mut cmd = Command::new(&bin);
    cmd.arg(out).arg(source).args(build.cli_args());
    match build.source_date_epoch {
        Some(t) => cmd.env("SOURCE_DATE_EPOCH", t.to_string()),
        None => cmd.env_remove("SOURCE_DATE_EPOCH"),
    };
    let output = cmd
        .output()
        .with_context(|| format!("run {}", bin.display()))?;
    ensure!(
        output.status.success(),
        "{cmd:?} failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}
