//! The runtime's failures, each with a one-line message and a documented
//! exit code. Codes follow `sysexits.h` where one fits, and the shell's own
//! 126/127 for a `start` that cannot be run:
//!
//! | code | meaning |
//! |---|---|
//! | 1 | `--glick-verify`: no digest recorded, or it does not match |
//! | 64 | unknown `--glick-*` option or bad `GLICK_MOUNT` |
//! | 65 | not a readable bundle (section table, truncated file) |
//! | 66 | corrupt or unsupported ext2 image |
//! | 69 | no way to mount or extract the image; the FUSE server failed |
//! | 71 | a system call failed (`/proc/self/exe`, fork, pipe, dup2, stdout) |
//! | 73 | cannot create the mountpoint, extraction or target directory |
//! | 126 | `start` is not an executable file, or exec failed |
//! | 127 | the image has no `start` |
//!
//! Anything else is the app's own exit status.
//!
//! A failure that keeps the app from starting is also shown as a desktop
//! notification when no terminal is attached ([`notify`], [`crate::notify`]).

use std::fmt;
use std::io;

use glick_fuse::launch;

/// Why the runtime stopped.
#[derive(Debug)]
pub(crate) enum Failure {
    Usage(String),
    SelfExe(io::Error),
    Bundle(glick_bundle::Error),
    Image(glick_ext2::Error),
    Launch(launch::Error),
    NoStart,
    NotExecutable,
    StartUnusable(io::Error),
    Exec(io::Error),
    Sys(&'static str, io::Error),
    Stdout(io::Error),
    NoDigest,
    DigestMismatch { recorded: String, actual: String },
}

impl Failure {
    pub(crate) fn code(&self) -> u8 {
        match self {
            Failure::NoDigest | Failure::DigestMismatch { .. } => 1,
            Failure::Usage(_) => 64,
            Failure::Bundle(_) => 65,
            Failure::Image(_) => 66,
            Failure::Launch(e) => match e {
                launch::Error::BadMode(_) => 64,
                launch::Error::Image(_) => 66,
                launch::Error::NoMount(_) | launch::Error::Serve(_) => 69,
                launch::Error::Dir { .. } | launch::Error::Extract(_) => 73,
                _ => 71,
            },
            Failure::SelfExe(_) | Failure::Sys(..) | Failure::Stdout(_) => 71,
            Failure::NotExecutable | Failure::StartUnusable(_) | Failure::Exec(_) => 126,
            Failure::NoStart => 127,
        }
    }

    /// Failures worth a desktop notification: those that stop the app from
    /// starting at all.
    fn starts_nothing(&self) -> bool {
        !matches!(
            self,
            Failure::Usage(_)
                | Failure::Stdout(_)
                | Failure::NoDigest
                | Failure::DigestMismatch { .. }
        )
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Usage(m) => f.write_str(m),
            Failure::SelfExe(e) => write!(f, "/proc/self/exe: {e}"),
            Failure::Bundle(e) => write!(f, "not a usable glick bundle: {e}"),
            Failure::Image(e) => write!(f, "image: {e}"),
            Failure::Launch(e) => write!(f, "{e}"),
            Failure::NoStart => f.write_str("the bundle has no `start` at the root of its image"),
            Failure::NotExecutable => {
                f.write_str("`start` in the bundle is not an executable file")
            }
            Failure::StartUnusable(e) => write!(f, "start: {e}"),
            Failure::Exec(e) => write!(f, "cannot run start: {e}"),
            Failure::Sys(what, e) => write!(f, "{what}: {e}"),
            Failure::Stdout(e) => write!(f, "writing to stdout: {e}"),
            Failure::NoDigest => f.write_str("no digest recorded (.glick.digest missing)"),
            Failure::DigestMismatch { recorded, actual } => write!(
                f,
                "image digest mismatch: recorded sha256:{recorded}, actual sha256:{actual}"
            ),
        }
    }
}

/// With no terminal to print on (a double-click), also show the error as a
/// desktop notification (see [`crate::notify`] for when and how): the
/// summary names the file the user clicked, the body is the same cause as
/// the stderr line `{name}: {failure}`.
pub(crate) fn notify(name: &str, failure: &Failure) {
    if failure.starts_nothing() {
        crate::notify::failure(&format!("{name} cannot start"), &failure.to_string());
    }
}
