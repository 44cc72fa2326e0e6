//! Getting a `/dev/fuse` connection mounted without libfuse: the three FUSE
//! rungs of the mount chain (DESIGN.md §4.3) and the lazy detach that ends a
//! mount.
//!
//! Every rung mounts read-only, `nosuid,nodev`, with fsname `glick`, type
//! `fuse.glick` and `default_permissions` (the kernel checks modes against
//! the cached attributes), never `allow_other`.

use std::ffi::OsStr;
use std::fmt;
use std::io;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use rustix::fs::{Mode, OFlags};
use rustix::mount::{MountFlags, UnmountFlags};

/// A mount helper that has handed over its descriptor and is exiting: it is reaped when
/// this is dropped, so that no zombie is left for the app to inherit. Holding it a while
/// lets the launch go on while the helper exits (it takes ~80 µs after the hand-over here).
#[derive(Debug)]
pub struct Exiting(std::process::Child);

impl Drop for Exiting {
    fn drop(&mut self) {
        let _ = self.0.wait();
    }
}

/// The way a FUSE mount was made; it decides how it is taken down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rung {
    /// `mount(2)` by a process with `CAP_SYS_ADMIN`.
    Direct,
    /// The setuid helper (`fusermount3` or `fusermount`) at this path.
    Fusermount(PathBuf),
    /// `mount(2)` inside a private user and mount namespace.
    Userns,
}

impl fmt::Display for Rung {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rung::Direct => f.write_str("direct mount(2)"),
            Rung::Fusermount(path) => write!(f, "{}", path.display()),
            Rung::Userns => f.write_str("user namespace"),
        }
    }
}

/// Mount options shared by every rung, as `fusermount3 -o` takes them.
const FUSERMOUNT_OPTIONS: &str = "ro,nosuid,nodev,fsname=glick,subtype=glick,default_permissions";

fn open_dev_fuse() -> io::Result<OwnedFd> {
    rustix::fs::open("/dev/fuse", OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| io::Error::new(e.kind(), format!("/dev/fuse: {}", io::Error::from(e))))
}

fn mount_syscall(fuse: &OwnedFd, mountpoint: &Path) -> io::Result<()> {
    let uid = rustix::process::geteuid().as_raw();
    let gid = rustix::process::getegid().as_raw();
    let data = format!(
        "fd={},rootmode=40000,user_id={uid},group_id={gid},default_permissions",
        fuse.as_raw_fd()
    );
    let data = std::ffi::CString::new(data).map_err(io::Error::other)?;
    rustix::mount::mount(
        "glick",
        mountpoint,
        "fuse.glick",
        MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NODEV,
        data.as_c_str(),
    )
    .map_err(|e| io::Error::new(e.kind(), format!("mount(2): {}", io::Error::from(e))))
}

/// Rung 1: open `/dev/fuse` and call `mount(2)` ourselves (root or
/// `CAP_SYS_ADMIN`).
///
/// # Errors
/// `/dev/fuse` cannot be opened, or `mount(2)` is refused (`EPERM` for an
/// ordinary user).
pub fn mount_direct(mountpoint: &Path) -> io::Result<OwnedFd> {
    let fuse = open_dev_fuse()?;
    mount_syscall(&fuse, mountpoint)?;
    Ok(fuse)
}

/// The setuid mount helpers, in order of preference, looked up in `PATH`
/// and then in the usual system directories.
pub fn find_fusermount() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    for d in ["/usr/bin", "/bin", "/usr/local/bin", "/usr/sbin", "/sbin"] {
        dirs.push(PathBuf::from(d));
    }
    for name in ["fusermount3", "fusermount"] {
        for dir in &dirs {
            let candidate = dir.join(name);
            if rustix::fs::access(&candidate, rustix::fs::Access::EXEC_OK).is_ok() {
                return Some(candidate);
            }
        }
    }
    None
}

/// Rung 2: ask the setuid `fusermount3` (or `fusermount`) to mount and pass
/// the `/dev/fuse` descriptor back over a socket (`_FUSE_COMMFD`). Returns the
/// descriptor, the helper's path and the helper itself, still exiting: drop
/// it (which reaps it) before the app runs.
///
/// # Errors
/// No helper is installed, it cannot be run, or it refuses (its own message
/// is returned).
pub fn mount_fusermount(mountpoint: &Path) -> io::Result<(OwnedFd, PathBuf, Exiting)> {
    use rustix::net::{AddressFamily, SocketFlags, SocketType};
    let helper = find_fusermount().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            "fusermount3/fusermount not found (install fuse3)",
        )
    })?;
    let (ours, theirs) = rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )?;
    // The helper must inherit its end. We are single-threaded here, so no
    // other fork can see the descriptor without CLOEXEC.
    rustix::io::fcntl_setfd(&theirs, rustix::io::FdFlags::empty())?;
    let child = Command::new(&helper)
        .arg("-o")
        .arg(FUSERMOUNT_OPTIONS)
        .arg("--")
        .arg(mountpoint)
        .env("_FUSE_COMMFD", theirs.as_raw_fd().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", helper.display())))?;
    drop(theirs);
    let received = receive_fd(&ours);
    drop(ours);
    let mut child = child;
    if let Ok(Some(fd)) = received {
        // Its stderr is only read on failure; it closes with the reaping.
        let exiting = Exiting(child);
        rustix::io::fcntl_setfd(&fd, rustix::io::FdFlags::CLOEXEC)?;
        return Ok((fd, helper, exiting));
    }
    let mut message = String::new();
    if let Some(mut stderr) = child.stderr.take() {
        let _ = stderr.read_to_string(&mut message);
    }
    let status = child.wait()?;
    let message = message.trim();
    let prefix = format!("{}: ", helper.display());
    let message = match message.lines().last() {
        None => format!("{prefix}failed ({status})"),
        Some(line) if line.starts_with(&prefix) => line.to_owned(),
        Some(line) => format!("{prefix}{line}"),
    };
    Err(io::Error::other(message))
}

fn receive_fd(socket: &OwnedFd) -> io::Result<Option<OwnedFd>> {
    use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
    let mut byte = [0u8; 1];
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut iov = [io::IoSliceMut::new(&mut byte)];
    let msg = loop {
        match rustix::net::recvmsg(
            socket.as_fd(),
            &mut iov,
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        ) {
            Err(rustix::io::Errno::INTR) => continue,
            other => break other?,
        }
    };
    if msg.bytes == 0 {
        return Ok(None);
    }
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(mut fds) = message {
            if let Some(fd) = fds.next() {
                return Ok(Some(fd));
            }
        }
    }
    Ok(None)
}

/// Rung 3: enter a new user and mount namespace (mapping our own uid and gid
/// onto themselves) and mount there. The calling process stays in the new
/// namespaces, so the app it execs sees the mount; nobody else does.
///
/// `/dev/fuse` is opened inside the namespace: the kernel refuses a device
/// descriptor opened in another user namespace (`EINVAL`). So this rung
/// needs a device open to the user (mode 0666, as most distributions ship).
///
/// # Errors
/// `/dev/fuse` is not accessible, user namespaces are disabled, or the
/// kernel refuses the FUSE mount in a namespace.
pub fn mount_userns(mountpoint: &Path) -> io::Result<OwnedFd> {
    // Fail early (before leaving our namespaces) when the device is closed
    // to us anyway.
    rustix::fs::access(
        "/dev/fuse",
        rustix::fs::Access::READ_OK | rustix::fs::Access::WRITE_OK,
    )
    .map_err(|e| io::Error::new(e.kind(), format!("/dev/fuse: {}", io::Error::from(e))))?;
    let uid = rustix::process::geteuid().as_raw();
    let gid = rustix::process::getegid().as_raw();
    crate::sys::unshare_user_and_mount()
        .map_err(|e| io::Error::new(e.kind(), format!("unshare(CLONE_NEWUSER): {e}")))?;
    let write = |path: &str, text: String| {
        std::fs::write(path, text).map_err(|e| io::Error::new(e.kind(), format!("{path}: {e}")))
    };
    // Ignore setgroups failures on kernels without the file.
    let _ = std::fs::write("/proc/self/setgroups", "deny");
    write("/proc/self/uid_map", format!("{uid} {uid} 1\n"))?;
    write("/proc/self/gid_map", format!("{gid} {gid} 1\n"))?;
    let fuse = open_dev_fuse()?;
    mount_syscall(&fuse, mountpoint)?;
    Ok(fuse)
}

/// Take a mount down for good, as far as it can be: detach it lazily (`umount2(MNT_DETACH)`,
/// or `fusermount3 -u -z` where the rung needs it) and remove its mountpoint directory.
/// Either may already be gone; neither failure is fatal.
pub fn take_down(mountpoint: &Path, rung: &Rung) {
    let _ = detach(mountpoint, rung);
    let _ = std::fs::remove_dir(mountpoint);
}

/// Detach a mount lazily: it disappears from the tree at once, and the
/// kernel keeps the filesystem alive for files still open or mapped.
///
/// # Errors
/// `umount2` or the helper failed (the mount may already be gone).
fn detach(mountpoint: &Path, rung: &Rung) -> io::Result<()> {
    match rustix::mount::unmount(mountpoint, UnmountFlags::DETACH) {
        Ok(()) => return Ok(()),
        Err(e) if *rung != Rung::Direct && e == rustix::io::Errno::PERM => {}
        Err(e) if matches!(rung, Rung::Fusermount(_)) => {
            if e == rustix::io::Errno::INVAL {
                return Ok(()); // not mounted any more
            }
        }
        Err(e) => return Err(e.into()),
    }
    let helper = match rung {
        Rung::Fusermount(helper) => helper.clone(),
        _ => find_fusermount().unwrap_or_else(|| PathBuf::from("fusermount3")),
    };
    let status = Command::new(&helper)
        .args([
            OsStr::new("-u"),
            OsStr::new("-z"),
            OsStr::new("-q"),
            OsStr::new("--"),
        ])
        .arg(mountpoint)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "{} -u -z {}: {status}",
            helper.display(),
            String::from_utf8_lossy(mountpoint.as_os_str().as_bytes())
        )))
    }
}
