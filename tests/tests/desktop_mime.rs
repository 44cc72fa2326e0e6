//! The shipped shared-mime-info type (`data/glick-mime.xml`), checked with the real tools:
//! installed into a private XDG data directory, compiled by `update-mime-database`, then
//! asked about files by `gio info` and by `xdg-mime query filetype` (through gio, as in an
//! Xfce, GNOME or LXDE session, and through File::MimeInfo's `mimetype`, its generic path).
//!
//! - A real bundle made by `mkglick` is `application/x-glick`, with and without the `.glick`
//!   extension (so the magic is what matches, not the glob).
//! - An ordinary executable (`/usr/bin/true`) gets exactly the type it gets without our
//!   package: the rule takes nothing from other ELF files.
//! - The runtime alone is `application/x-glick` too: it carries the same note (in the first
//!   4 KiB, where the magic looks) and the section table at its end is out of the magic's
//!   reach. It is the part every bundle starts with, and run alone it says it has no image.
//! - A file that is not ELF but holds the note's bytes is not a glick.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, ensure};
use glick_tests::image::workspace_binary;
use glick_tests::runtime;
use glick_tests::tools::{output_text, require_tool};

const GLICK: &str = "application/x-glick";

/// A private XDG data setup: `share/` (XDG_DATA_DIRS first entry) and an empty data home.
struct Xdg {
    _t: tempfile::TempDir,
    root: PathBuf,
    share: PathBuf,
}

impl Xdg {
    /// With `data/glick-mime.xml` installed and compiled when `with_glick`.
    fn new(with_glick: bool) -> Result<Self> {
        let t = tempfile::tempdir()?;
        let root = t.path().to_path_buf();
        let share = root.join("share");
        fs::create_dir_all(share.join("mime/packages"))?;
        fs::create_dir_all(root.join("home/data"))?;
        let xdg = Self { _t: t, root, share };
        if with_glick {
            fs::copy(
                runtime::workspace().join("data/glick-mime.xml"),
                xdg.share.join("mime/packages/glick-mime.xml"),
            )?;
            let mut cmd = Command::new(require_tool("update-mime-database")?);
            cmd.arg(xdg.share.join("mime"));
            let out = xdg.env(&mut cmd).output()?;
            ensure!(
                out.status.success() && out.stderr.is_empty(),
                "update-mime-database: {}",
                output_text(&out)
            );
        }
        Ok(xdg)
    }

    fn env<'a>(&self, cmd: &'a mut Command) -> &'a mut Command {
        let dirs = format!("{}:/usr/local/share:/usr/share", self.share.display());
        cmd.env("HOME", self.root.join("home"))
            .env("XDG_DATA_HOME", self.root.join("home/data"))
            .env("XDG_DATA_DIRS", dirs)
            .env_remove("XDG_CURRENT_DESKTOP")
            .env_remove("DESKTOP_SESSION")
            .env_remove("KDE_FULL_SESSION")
            .env_remove("GNOME_DESKTOP_SESSION_ID")
            .env_remove("DISPLAY")
            .env("LC_ALL", "C")
    }

    /// Runs `tool ARGS FILE` (in an Xfce session when `session`) and returns what it says
    /// the type is.
    fn ask(&self, tool: &str, args: &[&str], file: &Path, session: bool) -> Result<String> {
        let mut cmd = Command::new(require_tool(tool)?);
        self.env(&mut cmd).args(args).arg(file);
        if session {
            cmd.env("XDG_CURRENT_DESKTOP", "XFCE");
        }
        let out = cmd.output().with_context(|| format!("running {tool}"))?;
        ensure!(out.status.success(), "{tool}: {}", output_text(&out));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        Ok(match text.rsplit_once("standard::content-type: ") {
            Some((_, t)) => t.trim().to_owned(),
            None => text.trim().to_owned(),
        })
    }

    /// The type of `file` according to gio, xdg-mime in an Xfce session (which asks gio),
    /// and xdg-mime outside a session (which asks File::MimeInfo's `mimetype`).
    fn query(&self, file: &Path) -> Result<[String; 3]> {
        // Without `mimetype`, xdg-mime falls back on libmagic's `file`, which knows nothing
        // of shared-mime-info: insist on it.
        require_tool("mimetype").context(
            "xdg-mime outside a desktop session needs `mimetype`: apt-get install \
             libfile-mimeinfo-perl",
        )?;
        let filetype = ["query", "filetype"];
        Ok([
            self.ask(
                "gio",
                &["info", "-a", "standard::content-type"],
                file,
                false,
            )?,
            self.ask("xdg-mime", &filetype, file, true)?,
            self.ask("xdg-mime", &filetype, file, false)?,
        ])
    }
}

#[test]
fn bundles_are_glicks_and_executables_are_not() -> Result<()> {
    let xdg = Xdg::new(true)?;
    let plain = Xdg::new(false)?;
    let dir = tempfile::tempdir()?;
    let d = dir.path();

    // A real bundle of the example app, made by mkglick.
    let mkglick = workspace_binary("mkglick", "mkglick")?;
    let hello = runtime::workspace().join("examples/hello");
    let bundle = d.join("hello.glick");
    let out = Command::new(&mkglick)
        .arg(&bundle)
        .arg(hello.join("app"))
        .arg("--icon")
        .arg(hello.join("icon.png"))
        .arg("--desktop-file")
        .arg(hello.join("hello.desktop"))
        .output()?;
    ensure!(out.status.success(), "mkglick: {}", output_text(&out));
    let renamed = d.join("hello-app");
    fs::copy(&bundle, &renamed)?;
    for file in [&bundle, &renamed] {
        let types = xdg.query(file)?;
        ensure!(
            types.iter().all(|t| t == GLICK),
            "{}: {types:?}, expected {GLICK} from gio, xdg-mime via gio, xdg-mime via mimetype",
            file.display()
        );
    }

    // An ordinary executable: the type it has without the glick package.
    let truth = d.join("true");
    fs::copy("/usr/bin/true", &truth)?;
    let with = xdg.query(&truth)?;
    let without = plain.query(&truth)?;
    ensure!(
        with == without,
        "/usr/bin/true: {with:?} with glick, {without:?} without"
    );
    ensure!(
        with.iter().all(|t| [
            "application/x-executable",
            "application/x-pie-executable",
            "application/x-sharedlib"
        ]
        .contains(&t.as_str())),
        "/usr/bin/true: {with:?} is not an ELF type"
    );
    // Without the package, a bundle is just an executable.
    let bundle_without = plain.query(&renamed)?;
    ensure!(
        !bundle_without.iter().any(|t| t == GLICK),
        "{bundle_without:?}"
    );

    // The runtime alone carries the note: a glick (see the module documentation).
    let stub = d.join("glick-runtime");
    fs::copy(runtime::stub()?, &stub)?;
    let types = xdg.query(&stub)?;
    ensure!(types.iter().all(|t| t == GLICK), "runtime: {types:?}");

    // Not ELF, but the note's 20 bytes at an aligned offset: not a glick.
    let mut fake = vec![0u8; 8192];
    fake[..4].copy_from_slice(b"\x7fXLF");
    fake[0x294..0x294 + 20].copy_from_slice(&glick_bundle::note::MARKER);
    let fake_path = d.join("fake");
    fs::write(&fake_path, &fake)?;
    let types = xdg.query(&fake_path)?;
    ensure!(!types.iter().any(|t| t == GLICK), "not ELF: {types:?}");

    // The hierarchy update-mime-database compiled: a sub-class of application/x-executable.
    let subclasses = fs::read_to_string(xdg.share.join("mime/subclasses"))?;
    ensure!(
        subclasses
            .lines()
            .any(|l| l == "application/x-glick application/x-executable"),
        "{subclasses}"
    );
    Ok(())
}
