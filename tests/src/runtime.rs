//! Runtime test helpers: the shipped stub (built once, static musl, profile `stub`),
//! `glick-shell`, bundles made from app directories, and the leak checks (mounts,
//! directories, helper processes) every runtime test ends with.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

/// The workspace root (this crate lives in `tests/`).
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from(".."), Path::to_path_buf)
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| workspace().join("target"), PathBuf::from)
}

fn cargo_build(args: &[&str]) -> Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .arg("build")
        .arg("--quiet")
        .args(args)
        .current_dir(workspace())
        .status()
        .context("running cargo build")?;
    ensure!(status.success(), "cargo build {} failed", args.join(" "));
    Ok(())
}

/// The stub as it ships: the very file `mkglick`'s build script builds (size flags, linker
/// and all) and embeds, at `<target>/glick-stub/x86_64-unknown-linux-musl/stub/glick-stub`.
/// Built once per test process by building `mkglick`.
pub fn stub() -> Result<PathBuf> {
    static BUILT: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            cargo_build(&["-p", "mkglick", "--bin", "mkglick"]).map_err(|e| format!("{e:#}"))?;
            let stub = target_dir().join("glick-stub/x86_64-unknown-linux-musl/stub/glick-stub");
            if stub.is_file() {
                Ok(stub)
            } else {
                Err(format!(
                    "{}: not built by mkglick's build script (is the musl target installed?)",
                    stub.display()
                ))
            }
        })
        .clone()
        .map_err(anyhow::Error::msg)
}

/// `glick-shell`, built once per test process (dev profile).
pub fn glick_shell() -> Result<PathBuf> {
    static BUILT: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            cargo_build(&["-p", "glick-shell"]).map_err(|e| format!("{e:#}"))?;
            Ok(target_dir().join("debug/glick-shell"))
        })
        .clone()
        .map_err(anyhow::Error::msg)
}

/// Write an executable file.
pub fn write_exec(path: &Path, text: &str) -> Result<()> {
    fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// An app directory whose `start` is the given shell script body.
pub fn app_dir(parent: &Path, start: &str) -> Result<PathBuf> {
    let dir = parent.join("app");
    fs::create_dir_all(&dir)?;
    write_exec(&dir.join("start"), &format!("#!/bin/sh\n{start}"))?;
    fs::write(dir.join("data.txt"), "hello from the image\n")?;
    fs::create_dir_all(dir.join("sub/deeper"))?;
    fs::write(dir.join("sub/deeper/file"), "deep\n")?;
    std::os::unix::fs::symlink("sub/deeper/file", dir.join("link"))?;
    Ok(dir)
}

/// Write the ext2 image of `dir` to `out`.
pub fn make_image(dir: &Path, out: &Path) -> Result<()> {
    let image = glick_ext2::write::Image::scan(dir, &glick_ext2::write::Options::default())
        .with_context(|| format!("imaging {}", dir.display()))?;
    let file = fs::File::create(out)?;
    file.set_len(image.size())?;
    image.write_to(&file, &mut |_, _| {})?;
    Ok(())
}

/// Make a bundle of `dir` at `out` (mode 0755) from the shipped stub.
pub fn make_bundle(dir: &Path, out: &Path) -> Result<()> {
    let image_path = out.with_extension("img");
    make_image(dir, &image_path)?;
    bundle_image(&image_path, out)?;
    fs::remove_file(&image_path)?;
    Ok(())
}

/// Wait until `program` can be executed: a thread of the test process that
/// forked while the file was open for writing holds a writable descriptor
/// until its child execs, and exec fails with ETXTBSY meanwhile.
pub fn settle(program: &Path) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match Command::new(program)
            .arg("--glick-version")
            .stdout(std::process::Stdio::null())
            .status()
        {
            Err(e) if e.raw_os_error() == Some(26) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(e).context(format!("running {}", program.display())),
            Ok(_) => return Ok(()),
        }
    }
}

/// Make a bundle at `out` around an existing image file.
pub fn bundle_image(image: &Path, out: &Path) -> Result<()> {
    let stub = fs::read(stub()?)?;
    let image = fs::File::open(image)?;
    let file = fs::File::create(out)?;
    glick_bundle::Writer::new(&stub)?.write(&image, &file, &mut |_, _| {})?;
    drop(file);
    fs::set_permissions(out, fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// `fuse.glick` mounts in this process's mount namespace whose mountpoint is
/// under `under`.
pub fn glick_mounts(under: &Path) -> Result<Vec<String>> {
    let text = fs::read_to_string("/proc/self/mountinfo")?;
    let under = under.to_string_lossy().into_owned();
    Ok(text
        .lines()
        .filter(|l| l.contains(" fuse.glick "))
        .filter(|l| {
            l.split(' ')
                .nth(4)
                .is_some_and(|mnt| mnt.starts_with(&under))
        })
        .map(str::to_owned)
        .collect())
}

/// Live processes whose executable is `bundle` (the app has exec'd away from
/// it, so these are helpers or stubs).
pub fn processes_of(bundle: &Path) -> Vec<u32> {
    let Ok(bundle) = bundle.canonicalize() else {
        return Vec::new();
    };
    let mut found = Vec::new();
    if let Ok(dir) = fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if fs::read_link(entry.path().join("exe")).is_ok_and(|exe| exe == bundle) {
                // Zombies have no exe link, so this is a live process.
                found.push(pid);
            }
        }
    }
    found
}

/// Entries left in a runtime directory.
pub fn leftovers(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

/// Wait (up to `timeout`) until no mount, helper process or runtime
/// directory is left; fail naming what is.
pub fn assert_clean(bundle: &Path, runtime: &Path, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let mounts = glick_mounts(runtime)?;
        let procs = processes_of(bundle);
        let dirs = leftovers(runtime);
        if mounts.is_empty() && procs.is_empty() && dirs.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("left behind: mounts {mounts:?}, processes {procs:?}, directories {dirs:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The unprivileged test user (created if missing): `(name, uid, gid)`.
pub fn test_user() -> Result<(String, u32, u32)> {
    let name = "glicktest";
    let lookup = || -> Option<(u32, u32)> {
        let out = Command::new("id").args(["-u", name]).output().ok()?;
        let uid = String::from_utf8_lossy(&out.stdout).trim().parse().ok()?;
        let out = Command::new("id").args(["-g", name]).output().ok()?;
        let gid = String::from_utf8_lossy(&out.stdout).trim().parse().ok()?;
        Some((uid, gid))
    };
    if let Some((uid, gid)) = lookup() {
        return Ok((name.into(), uid, gid));
    }
    crate::tools::require_root("creating the unprivileged test user")?;
    let status = Command::new("useradd")
        .args(["-M", "-s", "/bin/sh", name])
        .status()
        .context("running useradd")?;
    // Tests run in parallel: another one may have created the user meanwhile.
    let (uid, gid) = lookup().with_context(|| format!("useradd {name} failed ({status})"))?;
    Ok((name.into(), uid, gid))
}

/// A command that runs `program` as the test user (`setpriv`, keeping the
/// environment the test sets).
pub fn as_user(program: &Path) -> Result<Command> {
    let (_, uid, gid) = test_user()?;
    let mut cmd = Command::new("setpriv");
    cmd.arg(format!("--reuid={uid}"))
        .arg(format!("--regid={gid}"))
        .arg("--clear-groups")
        .arg("--")
        .arg(program);
    Ok(cmd)
}

/// A C program compiled static with gcc (the tests' app binaries).
pub fn static_program(source: &str, out: &Path) -> Result<()> {
    let gcc = crate::tools::require_tool("gcc")?;
    let src = out.with_extension("c");
    fs::write(&src, source)?;
    let status = Command::new(gcc)
        .args(["-O2", "-static", "-o"])
        .arg(out)
        .arg(&src)
        .status()
        .context("running gcc")?;
    ensure!(status.success(), "gcc failed on {}", src.display());
    Ok(())
}

/// Prints each argument (`argv[0]` included) as `[arg]` on a line.
pub const ARGV_PROGRAM: &str = r#"#include <stdio.h>
int main(int c, char **v) { for (int i = 0; i < c; i++) printf("[%s]\n", v[i]); return 0; }
"#;

/// One test's world: a world-readable temp dir, an app, its bundle, and a
/// private runtime directory (`XDG_RUNTIME_DIR`) to check for leftovers.
#[derive(Debug)]
pub struct Fixture {
    /// Keeps the directory alive.
    pub tmp: tempfile::TempDir,
    /// The app directory.
    pub app: PathBuf,
    /// The bundle.
    pub bundle: PathBuf,
    /// `XDG_RUNTIME_DIR` for runs.
    pub xdg: PathBuf,
}

impl Fixture {
    /// An app whose `start` is the shell script `start`, bundled.
    pub fn script(start: &str) -> Result<Self> {
        let tmp = tempfile::tempdir()?;
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755))?;
        let app = app_dir(tmp.path(), start)?;
        Self::finish(tmp, app)
    }

    /// An app whose `start` is a static C program.
    pub fn program(source: &str) -> Result<Self> {
        let tmp = tempfile::tempdir()?;
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755))?;
        let app = app_dir(tmp.path(), "")?;
        fs::remove_file(app.join("start"))?;
        static_program(source, &tmp.path().join("start-bin"))?;
        fs::copy(tmp.path().join("start-bin"), app.join("start"))?;
        Self::finish(tmp, app)
    }

    /// Bundle an app directory prepared by the caller.
    pub fn from_app(tmp: tempfile::TempDir, app: PathBuf) -> Result<Self> {
        Self::finish(tmp, app)
    }

    fn finish(tmp: tempfile::TempDir, app: PathBuf) -> Result<Self> {
        let bundle = tmp.path().join("app.glick");
        make_bundle(&app, &bundle)?;
        settle(&bundle)?;
        let xdg = tmp.path().join("xdg");
        fs::create_dir(&xdg)?;
        fs::set_permissions(&xdg, fs::Permissions::from_mode(0o777))?;
        Ok(Self {
            tmp,
            app,
            bundle,
            xdg,
        })
    }

    /// The bundle as a command, with this fixture's runtime directory.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.bundle);
        cmd.env("XDG_RUNTIME_DIR", &self.xdg)
            .env_remove("GLICK_MOUNT")
            .env_remove("GLICK_DEBUG");
        cmd
    }

    /// The bundle run (as [`Fixture::command`]) in a private mount namespace where
    /// `/dev/fuse` is `/dev/null`: FUSE unavailable, as on a machine without it. Needs root.
    pub fn command_without_fuse(&self) -> Command {
        let mut cmd = Command::new("unshare");
        cmd.args([
            "-m",
            "--propagation",
            "private",
            "sh",
            "-c",
            "mount --bind /dev/null /dev/fuse && exec \"$0\"",
        ])
        .arg(&self.bundle)
        .env("XDG_RUNTIME_DIR", &self.xdg)
        .env_remove("GLICK_MOUNT")
        .env_remove("GLICK_DEBUG");
        cmd
    }

    /// The bundle run as the test user in a private mount namespace where `/dev/fuse` is a
    /// 0666 node (as distributions ship it), so that it mounts through the setuid
    /// `fusermount3`. `after` is shell run in that namespace once the app is done, with its
    /// exit status in `$status`; it decides the command's own. Fails unless run as root
    /// with `fusermount3` and `unshare` installed.
    pub fn command_as_user_with_open_fuse(&self, after: &str) -> Result<Command> {
        crate::tools::require_root("creating the test namespace")?;
        crate::tools::require_tool("fusermount3")?;
        crate::tools::require_tool("unshare")?;
        let (_, uid, gid) = test_user()?;
        let node = self.tmp.path().join("fuse-node");
        let script = format!(
            "set -e\nmknod -m 666 {node} c 10 229\nmount --bind {node} /dev/fuse\n\
             set +e\nsetpriv --reuid={uid} --regid={gid} --clear-groups -- \"$0\"\n\
             status=$?\n{after}\n",
            node = node.display()
        );
        let mut cmd = Command::new("unshare");
        cmd.args(["-m", "--propagation", "private", "sh", "-c", &script])
            .arg(&self.bundle)
            .env("XDG_RUNTIME_DIR", &self.xdg)
            .env_remove("GLICK_MOUNT")
            .env_remove("GLICK_DEBUG");
        Ok(cmd)
    }

    /// `BUNDLE --glick-mount`: the running stub and the mountpoint it printed. The stub
    /// is killed when the handle is dropped, so a failing test cannot leave it running
    /// (it would hold the test's output open, and the test run would never end).
    pub fn glick_mount(&self) -> Result<(KillOnDrop, PathBuf)> {
        let mut child = self
            .command()
            .arg("--glick-mount")
            .stdout(std::process::Stdio::piped())
            .spawn()?;
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().context("stdout")?),
            &mut line,
        )?;
        Ok((KillOnDrop(child), PathBuf::from(line.trim())))
    }

    /// Where this fixture's mountpoints go.
    pub fn runtime(&self) -> PathBuf {
        self.xdg.join("glick")
    }

    /// No mount, helper or directory left (waits up to 5 s for helpers).
    pub fn assert_clean(&self) -> Result<()> {
        assert_clean(&self.bundle, &self.runtime(), Duration::from_secs(5))
    }
}

/// A child process that is killed and reaped when dropped, unless it was waited for.
#[derive(Debug)]
pub struct KillOnDrop(pub std::process::Child);

impl std::ops::Deref for KillOnDrop {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}
