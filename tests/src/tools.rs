//! Running the external tools the tests use as oracles (e2fsprogs, mount, ...).
//!
//! A test that needs a tool or root does not skip when it is missing: [`require_tool`] and
//! [`require_root`] return an error that says what is missing and how to get it, and the test
//! fails with that message.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{Context as _, Result, bail};

/// Where a tool is searched for besides `$PATH` (root's sbin directories are often not on the
/// `$PATH` of a test runner).
const EXTRA_DIRS: &[&str] = &["/usr/sbin", "/sbin", "/usr/bin", "/bin"];

/// The path of the executable `name`, or an error naming the package that provides it.
pub fn require_tool(name: &str) -> Result<PathBuf> {
    let path_var = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path_var).chain(EXTRA_DIRS.iter().map(PathBuf::from));
    for dir in dirs {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    let package = match name {
        "e2fsck" | "debugfs" | "mke2fs" => "e2fsprogs",
        "mount" | "umount" | "losetup" => "mount (util-linux)",
        "genext2fs" => "genext2fs",
        _ => "the package that provides it",
    };
    bail!(
        "required tool `{name}` not found on PATH or in /usr/sbin: install {package} \
         (apt-get install {}); this test does not skip when its oracle is missing",
        package.split(' ').next().unwrap_or(package)
    )
}

/// Fails unless the tests run as root (loop mounts and `mknod` need it).
pub fn require_root(why: &str) -> Result<()> {
    if rustix::process::geteuid().is_root() {
        Ok(())
    } else {
        bail!("this test must run as root ({why}); CI runs the suite as root")
    }
}

/// Runs a tool to completion and returns its output, failing if it could not be started.
pub fn run(tool: &str, args: &[&OsStr]) -> Result<Output> {
    let exe = require_tool(tool)?;
    Command::new(&exe)
        .args(args)
        .env("LC_ALL", "C")
        .env("PAGER", "cat")
        .env("DEBUGFS_PAGER", "__none__")
        .output()
        .with_context(|| format!("could not run {}", exe.display()))
}

/// Runs a tool and fails (with its full output in the message) unless it exits 0.
pub fn run_ok(tool: &str, args: &[&OsStr]) -> Result<Output> {
    let out = run(tool, args)?;
    if !out.status.success() {
        bail!(
            "`{}` failed ({}):\n{}",
            command_line(tool, args),
            out.status,
            output_text(&out)
        );
    }
    Ok(out)
}

/// `tool arg arg ...` for messages.
pub fn command_line(tool: &str, args: &[&OsStr]) -> String {
    let mut line = tool.to_owned();
    for arg in args {
        line.push(' ');
        line.push_str(&arg.to_string_lossy());
    }
    line
}

/// Stdout and stderr of a finished command as one text for failure messages.
pub fn output_text(out: &Output) -> String {
    format!(
        "--- stdout ---\n{}--- stderr ---\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A path as an argument.
pub fn arg(path: &Path) -> &OsStr {
    path.as_os_str()
}
