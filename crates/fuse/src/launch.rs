//! From an image inside an open file to a directory an app can run from:
//! the mount chain of DESIGN.md §4.3–4.7, shared by the stub and
//! `glick-shell`.
//!
//! [`open_root`] validates the image, makes a private mountpoint, climbs the
//! chain (direct `mount(2)` → setuid `fusermount3` → user namespace →
//! extraction), starts the helper process (double fork) and returns a
//! [`Root`]. [`Root::install`] then puts the root on fd 1023 and the
//! keepalive on fd 1022, both inheritable, ready for `exec`.
//!
//! Call it while the process is single-threaded (it forks).

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rustix::fs::{Mode as FsMode, OFlags};
use rustix::pipe::PipeFlags;

use crate::fs::ImageFs;
use crate::mount::{self, Rung};
use crate::preload::Preload;
use crate::server::{self, ServerParts};
use crate::source::ImageSource;
use crate::sys;

/// The descriptor the app finds its root on (`GLICKROOT=/proc/self/fd/1023`).
pub const ROOT_FD: RawFd = 1023;
/// The descriptor holding the keepalive pipe's write end in the app.
pub const KEEPALIVE_FD: RawFd = 1022;

/// An ext2 image inside an open file (a bundle's `.glick.image`).
#[derive(Debug)]
pub struct Image {
    /// The file holding the image; served from, never reopened by path.
    pub file: File,
    /// Offset of the image in the file.
    pub offset: u64,
    /// Length of the image.
    pub len: u64,
}

/// Which rungs of the chain to try (`GLICK_MOUNT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Every rung in order (the default).
    Auto,
    /// FUSE only: direct `mount(2)`, then `fusermount3`.
    Fuse,
    /// FUSE in a user namespace only.
    Userns,
    /// Extraction to a private temporary directory only.
    Extract,
}

impl Mode {
    /// Parse a `GLICK_MOUNT` value.
    pub fn parse(value: &OsStr) -> Option<Self> {
        match value.as_encoded_bytes() {
            b"" | b"auto" => Some(Self::Auto),
            b"fuse" => Some(Self::Fuse),
            b"userns" => Some(Self::Userns),
            b"extract" => Some(Self::Extract),
            _ => None,
        }
    }
}

/// How [`open_root`] behaves.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// The rungs to try.
    pub mode: Mode,
    /// Print each decision to stderr (`GLICK_DEBUG=1`).
    pub debug: bool,
    /// A file at the image root that the caller will run first: once mounted, the helper
    /// loads it into the page cache while the launch finishes (the stub: `start`).
    pub preload: Option<&'static str>,
}

impl Options {
    /// Read `GLICK_MOUNT` and `GLICK_DEBUG`.
    ///
    /// # Errors
    /// [`Error::BadMode`] for an unknown `GLICK_MOUNT`.
    pub fn from_env() -> Result<Self, Error> {
        let mode = match std::env::var_os("GLICK_MOUNT") {
            None => Mode::Auto,
            Some(value) => Mode::parse(&value).ok_or(Error::BadMode(value))?,
        };
        let debug = std::env::var_os("GLICK_DEBUG").is_some_and(|v| !v.is_empty() && v != "0");
        Ok(Self {
            mode,
            debug,
            preload: None,
        })
    }

    fn note(&self, what: fmt::Arguments<'_>) {
        if self.debug {
            eprintln!("glick: {what}");
        }
    }
}

/// How the root was provided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum How {
    /// A FUSE mount made by this rung.
    Mounted(Rung),
    /// A private copy of the tree.
    Extracted,
}

impl fmt::Display for How {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            How::Mounted(rung) => write!(f, "FUSE via {rung}"),
            How::Extracted => f.write_str("extracted copy"),
        }
    }
}

/// Everything that can stop [`open_root`].
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The image is corrupt or unsupported.
    Image(glick_ext2::Error),
    /// `GLICK_MOUNT` holds an unknown value.
    BadMode(OsString),
    /// The mountpoint or extraction directory could not be made.
    Dir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// Every allowed rung failed: each with its reason.
    NoMount(Vec<(&'static str, String)>),
    /// The mount was made but its root could not be opened (the server
    /// failed).
    Serve(io::Error),
    /// Extraction failed.
    Extract(glick_tree::Error),
    /// A process-level system call (pipe, fork) failed.
    Sys {
        /// The call.
        what: &'static str,
        /// Why.
        source: io::Error,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Image(e) => write!(f, "image: {e}"),
            Error::BadMode(v) => write!(
                f,
                "GLICK_MOUNT={}: expected auto, fuse, userns or extract",
                v.to_string_lossy()
            ),
            Error::Dir { path, source } => write!(f, "{}: {source}", path.display()),
            Error::NoMount(failures) => {
                f.write_str("cannot mount or extract the image")?;
                for (rung, why) in failures {
                    write!(f, "; {rung}: {why}")?;
                }
                f.write_str(
                    " (install fuse3 with a setuid fusermount3, \
                     or set GLICK_MOUNT=extract)",
                )
            }
            Error::Serve(e) => write!(f, "the FUSE server did not start: {e}"),
            Error::Extract(e) => write!(f, "extracting the image: {e}"),
            Error::Sys { what, source } => write!(f, "{what}: {source}"),
        }
    }
}

impl std::error::Error for Error {}

fn sys_err(what: &'static str) -> impl FnOnce(io::Error) -> Error {
    move |source| Error::Sys { what, source }
}

/// A root ready for the app: a directory (mount or extracted copy), an open
/// descriptor on it, and the keepalive pipe's write end.
#[derive(Debug)]
pub struct Root {
    /// The real path of the root (`GLICK_DIR`).
    pub dir: PathBuf,
    /// The root directory, open (close-on-exec until [`Root::install`]).
    pub fd: OwnedFd,
    /// Write end of the keepalive pipe (close-on-exec until installed).
    pub keepalive: OwnedFd,
    /// The rung that provided the root.
    pub how: How,
    /// Read end of a pipe only the helper holds open: hang-up = helper gone.
    helper: OwnedFd,
    /// Whether [`Root::install`] put copies on the fixed descriptors.
    installed: bool,
}

impl Root {
    /// Put the root on fd [`ROOT_FD`] and the keepalive on fd
    /// [`KEEPALIVE_FD`], both inheritable, and return the variables the app
    /// must see (`GLICKROOT`, `GLICK_DIR`).
    ///
    /// # Errors
    /// `dup2` failed.
    pub fn install(&mut self) -> io::Result<Vec<(&'static str, OsString)>> {
        self.installed = true;
        sys::dup_to(self.fd.as_fd(), ROOT_FD)?;
        sys::dup_to(self.keepalive.as_fd(), KEEPALIVE_FD)?;
        Ok(vec![
            (
                "GLICKROOT",
                OsString::from(format!("/proc/self/fd/{ROOT_FD}")),
            ),
            ("GLICK_DIR", self.dir.clone().into_os_string()),
        ])
    }

    /// A path other processes can use to reach the root: the directory
    /// itself, or for a mount in a private namespace, the same directory
    /// seen through this process's `/proc/PID/root`.
    pub fn public_path(&self) -> PathBuf {
        if self.how == How::Mounted(Rung::Userns) {
            let mut p = PathBuf::from(format!("/proc/{}/root", std::process::id()));
            p.push(self.dir.strip_prefix("/").unwrap_or(&self.dir));
            p
        } else {
            self.dir.clone()
        }
    }

    /// Keep the root alive (holding the keepalive) without pinning it, and
    /// block until the helper has exited: the mount was taken down from
    /// outside (`fusermount3 -u`, `umount -l`) and its last user is gone.
    /// For `--glick-mount`.
    pub fn wait_unmounted(self) {
        let Root {
            dir,
            fd,
            keepalive,
            how,
            helper,
            ..
        } = self;
        drop(fd);
        server::wait_for_hangup(&helper, None);
        drop(keepalive);
        take_away_leftover(&dir, how);
    }

    /// Give the root up (closing every descriptor on it and the keepalive,
    /// installed copies included) and wait until the helper has unmounted
    /// or removed it and exited. For failures before the app runs.
    ///
    /// A helper that died instead left the mount or the copy behind: it is taken away
    /// here, so that a failure leaves nothing either way.
    pub fn close_and_wait(self) {
        let Root {
            dir,
            fd,
            keepalive,
            how,
            helper,
            installed,
        } = self;
        if installed {
            sys::close_fixed(&[ROOT_FD, KEEPALIVE_FD]);
        }
        drop(fd);
        drop(keepalive);
        server::wait_for_hangup(&helper, None);
        take_away_leftover(&dir, how);
    }
}

/// After the helper has exited: if it died instead of taking the mount (or the copy) away,
/// with its connection aborted, do that here. The helper removes the directory last, so a
/// directory still there means it did not finish; on a dead mount `lstat` gives `ENOTCONN`.
fn take_away_leftover(dir: &Path, how: How) {
    if matches!(std::fs::symlink_metadata(dir), Err(e) if e.kind() == io::ErrorKind::NotFound) {
        return;
    }
    match how {
        How::Mounted(rung) => mount::take_down(dir, &rung),
        How::Extracted => glick_tree::remove(dir),
    }
}

/// Put an already-open directory on fd [`ROOT_FD`], inheritable (for
/// `glick-shell DIRECTORY`).
///
/// # Errors
/// `dup2` failed.
pub fn install_dir(dir: &File) -> io::Result<()> {
    sys::dup_to(dir.as_fd(), ROOT_FD)
}

/// Where private directories go: `$XDG_RUNTIME_DIR/glick/`, else `$TMPDIR`,
/// else `/tmp`.
fn runtime_base() -> PathBuf {
    if let Some(xdg) = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from) {
        if xdg.is_absolute() {
            let base = xdg.join("glick");
            let made = std::fs::DirBuilder::new().mode(0o700).create(&base);
            let usable = match made {
                Ok(()) => true,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    std::fs::symlink_metadata(&base)
                        .is_ok_and(|m| m.is_dir() && m.uid() == rustix::process::geteuid().as_raw())
                }
                Err(_) => false,
            };
            if usable {
                return base;
            }
        }
    }
    if let Some(tmp) = std::env::var_os("TMPDIR").map(PathBuf::from) {
        if tmp.is_absolute() && tmp.is_dir() {
            return tmp;
        }
    }
    PathBuf::from("/tmp")
}

/// A fresh 0700 directory named `KIND-PID-TAG` (TAG six digits) under the runtime base.
fn private_dir(kind: &str) -> Result<PathBuf, Error> {
    let base = runtime_base();
    let base = base.canonicalize().unwrap_or(base);
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let pid = std::process::id();
    let mut last = None;
    for attempt in 0u32..64 {
        let tag = seed.wrapping_add(attempt.wrapping_mul(0x9e37_79b9)) % 1_000_000;
        let path = base.join(format!("{kind}-{pid}-{tag:06}"));
        match std::fs::DirBuilder::new().mode(0o700).create(&path) {
            Ok(()) => return Ok(path),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
            Err(source) => return Err(Error::Dir { path, source }),
        }
    }
    Err(Error::Dir {
        path: base,
        source: last.unwrap_or_else(|| io::Error::other("no free name")),
    })
}

/// Validate the image, mount it (or extract it) and start its helper.
///
/// # Errors
/// See [`Error`]. On failure nothing is left mounted and no directory is
/// left behind.
pub fn open_root(image: Image, options: &Options) -> Result<Root, Error> {
    let image_fd = image.file.as_raw_fd();
    let uid = rustix::process::geteuid().as_raw();
    let gid = rustix::process::getegid().as_raw();
    let source = ImageSource::new(image.file, image.offset, image.len);
    options.note(format_args!(
        "serving the image by {}",
        if source.is_mapped() {
            "mapping"
        } else {
            "pread"
        }
    ));
    let fs = ImageFs::new(source, uid, gid).map_err(Error::Image)?;

    let fuse_rungs: &[&'static str] = match options.mode {
        Mode::Auto => &["direct", "fusermount", "userns"],
        Mode::Fuse => &["direct", "fusermount"],
        Mode::Userns => &["userns"],
        Mode::Extract => &[],
    };
    let mut failures = Vec::new();
    if !fuse_rungs.is_empty() {
        let mountpoint = private_dir("mnt")?;
        // Locked before it is mounted on (the lock is on the directory underneath, which
        // a user namespace's mount leaves alone) and held by the helper until it has
        // removed the directory: see server::sweep_leftovers.
        let lock = match sys::lock_dir(&mountpoint, true) {
            Ok(lock) => lock,
            Err(source) => {
                let _ = std::fs::remove_dir(&mountpoint);
                return Err(Error::Dir {
                    path: mountpoint,
                    source,
                });
            }
        };
        for &name in fuse_rungs {
            let attempt = match name {
                "direct" => mount::mount_direct(&mountpoint).map(|fd| (fd, Rung::Direct, None)),
                "fusermount" => mount::mount_fusermount(&mountpoint)
                    .map(|(fd, helper, exiting)| (fd, Rung::Fusermount(helper), Some(exiting))),
                _ => mount::mount_userns(&mountpoint).map(|fd| (fd, Rung::Userns, None)),
            };
            match attempt {
                Ok((fuse, rung, exiting)) => {
                    options.note(format_args!(
                        "mounted on {} by {rung}",
                        mountpoint.display()
                    ));
                    let preload = options
                        .preload
                        .and_then(|name| Preload::new(fs.shared_ext2(), name));
                    if let Some(preload) = &preload {
                        options.note(format_args!(
                            "the helper loads {} into the page cache",
                            preload.what()
                        ));
                    }
                    let mounted = Mounted {
                        fuse,
                        rung,
                        mountpoint,
                        lock,
                        exiting,
                    };
                    return start_server(fs, mounted, image_fd, preload);
                }
                Err(e) => {
                    options.note(format_args!("{name}: {e}"));
                    failures.push((name, e.to_string()));
                }
            }
        }
        let _ = std::fs::remove_dir(&mountpoint);
    }
    if matches!(options.mode, Mode::Auto | Mode::Extract) {
        let dir = private_dir("tree")?;
        options.note(format_args!("extracting to {}", dir.display()));
        return extracted_root(&fs, dir);
    }
    Err(Error::NoMount(failures))
}

/// A FUSE rung's result: the connection, how it was mounted and where, the mountpoint's
/// lock, and the `fusermount3` still exiting (if that rung did it), reaped once the helper
/// is forked.
struct Mounted {
    fuse: OwnedFd,
    rung: Rung,
    mountpoint: PathBuf,
    lock: OwnedFd,
    exiting: Option<mount::Exiting>,
}

fn start_server(
    fs: ImageFs<ImageSource>,
    mounted: Mounted,
    image_fd: RawFd,
    preload: Option<Preload<ImageSource>>,
) -> Result<Root, Error> {
    let Mounted {
        fuse,
        rung,
        mountpoint,
        lock,
        exiting,
    } = mounted;
    let abandon = |error: Error| {
        mount::take_down(&mountpoint, &rung);
        error
    };
    let (keep_r, keep_w) = match rustix::pipe::pipe_with(PipeFlags::CLOEXEC) {
        Ok(p) => p,
        Err(e) => return Err(abandon(sys_err("pipe")(e.into()))),
    };
    let (alive_r, alive_w) = match rustix::pipe::pipe_with(PipeFlags::CLOEXEC) {
        Ok(p) => p,
        Err(e) => return Err(abandon(sys_err("pipe")(e.into()))),
    };
    let fuse_fd = fuse.as_raw_fd();
    let session = match server::handshake(fs, fuse) {
        Ok(session) => session,
        Err(e) => return Err(abandon(Error::Serve(e))),
    };
    let parts = ServerParts {
        session,
        fuse_fd,
        keepalive: keep_r,
        alive: alive_w,
        mountpoint: mountpoint.clone(),
        rung: rung.clone(),
        image_fd,
        lock,
        preload,
    };
    // The helper closes every descriptor it does not serve with, our ends of the pipes
    // included. Ours of what it serves with (the device, its pipe ends) go when the
    // closure is dropped here: if the helper dies, the connection aborts and the open
    // below fails instead of hanging.
    if let Err(e) = sys::spawn_helper(move || server::serve(parts)) {
        return Err(abandon(sys_err("fork")(e)));
    }
    // The mount helper has exited meanwhile; reap it before the app can inherit it.
    drop(exiting);
    let fd = rustix::fs::open(
        &mountpoint,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        FsMode::empty(),
    );
    match fd {
        Ok(fd) => Ok(Root {
            dir: mountpoint,
            fd,
            keepalive: keep_w,
            how: How::Mounted(rung),
            helper: alive_r,
            installed: false,
        }),
        Err(e) => {
            drop(keep_w);
            Err(abandon(Error::Serve(e.into())))
        }
    }
}

fn extracted_root(fs: &ImageFs<ImageSource>, dir: PathBuf) -> Result<Root, Error> {
    // Locked before anything is written into it, and held by the helper until it has
    // removed the tree: another helper's sweep then leaves it alone (server::sweep_leftovers).
    let lock = match sys::lock_dir(&dir, true) {
        Ok(lock) => lock,
        Err(source) => {
            glick_tree::remove(&dir);
            return Err(Error::Dir { path: dir, source });
        }
    };
    if let Err(e) = extract_tree(fs.ext2(), &dir) {
        glick_tree::remove(&dir);
        return Err(e);
    }
    let cleanup = |error: Error| {
        glick_tree::remove(&dir);
        error
    };
    let (keep_r, keep_w) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC)
        .map_err(|e| cleanup(sys_err("pipe")(e.into())))?;
    let (alive_r, alive_w) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC)
        .map_err(|e| cleanup(sys_err("pipe")(e.into())))?;
    let fd = rustix::fs::open(
        &dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        FsMode::empty(),
    )
    .map_err(|e| {
        cleanup(Error::Dir {
            path: dir.clone(),
            source: e.into(),
        })
    })?;
    let watched = dir.clone();
    let helper = move || server::remove_when_done(keep_r, alive_w, lock, &watched);
    if let Err(e) = sys::spawn_helper(helper) {
        drop(fd);
        return Err(cleanup(sys_err("fork")(e)));
    }
    Ok(Root {
        dir,
        fd,
        keepalive: keep_w,
        how: How::Extracted,
        helper: alive_r,
        installed: false,
    })
}

/// The inode-number and owner facts a caller may want to print: the image
/// opened from `file` as [`ImageFs`] would see it.
///
/// # Errors
/// The image is corrupt.
pub fn open_image(image: Image) -> Result<glick_ext2::Ext2<ImageSource>, glick_ext2::Error> {
    glick_ext2::Ext2::open(ImageSource::new(image.file, image.offset, image.len))
}

/// Copy an image's tree into `target` (created, must not exist or be an
/// empty directory).
///
/// # Errors
/// The target exists and is not empty, or extraction failed.
pub fn extract_to(image: Image, target: &Path) -> Result<(), Error> {
    let ext2 = open_image(image).map_err(Error::Image)?;
    match std::fs::create_dir(target) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let empty = std::fs::read_dir(target)
                .map(|mut d| d.next().is_none())
                .unwrap_or(false);
            if !empty {
                return Err(Error::Dir {
                    path: target.to_owned(),
                    source: io::Error::new(e.kind(), "exists and is not an empty directory"),
                });
            }
        }
        Err(source) => {
            return Err(Error::Dir {
                path: target.to_owned(),
                source,
            });
        }
    }
    extract_tree(&ext2, target)
}

/// Extracts the tree of `ext2` into the directory `dir` (existing, empty, ours), opened
/// without following a symlink. Owners and device nodes are not restored: an app runs as
/// the user, and has no use for copies of devices.
fn extract_tree<R: glick_ext2::ReadAt>(
    ext2: &glick_ext2::Ext2<R>,
    dir: &Path,
) -> Result<(), Error> {
    let root = rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        FsMode::empty(),
    )
    .map_err(|e| Error::Dir {
        path: dir.to_owned(),
        source: e.into(),
    })?;
    glick_tree::extract(ext2, &root, glick_tree::Options::default(), &mut |_| {})
        .map(drop)
        .map_err(Error::Extract)
}
