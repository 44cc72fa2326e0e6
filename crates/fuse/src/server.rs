//! The helper process: the FUSE server (or, for an extracted tree, its
//! remover), detached from the app and living exactly as long as needed.
//!
//! Lifetime (DESIGN.md §4.7): the app and its children inherit the write end
//! of a keepalive pipe. When the last holder is gone, the read end reports
//! `POLLHUP`; the helper then detaches the mount lazily and removes the
//! mountpoint, but keeps serving until the kernel drops its last reference
//! (open files, mappings, fd 1023) and the FUSE device reports `ENODEV`.
//! A `SIGTERM` sent to the helper itself starts the same sequence.

use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use fuser::{Config, Session, SessionACL};
use glick_ext2::ReadAt;
use rustix::event::{PollFd, PollFlags};

use crate::fs::ImageFs;
use crate::mount::{Rung, take_down};
use crate::preload::Preload;
use crate::sys;

/// Threads reading `/dev/fuse`: enough to overlap a page fault with a
/// readahead on a 2-core machine without idling many stacks.
const SERVER_THREADS: usize = 2;

/// Block until every write end of the keepalive pipe is closed, or until `stop` (a
/// `signalfd` for `SIGTERM`) reports a signal.
pub(crate) fn wait_for_hangup(read_end: &OwnedFd, stop: Option<&OwnedFd>) {
    let mut buf = [0u8; 64];
    loop {
        let mut fds = vec![PollFd::new(read_end, PollFlags::IN)];
        if let Some(stop) = stop {
            fds.push(PollFd::new(stop, PollFlags::IN));
        }
        match rustix::event::poll(&mut fds, None) {
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return,
            Ok(_) => {}
        }
        if fds.get(1).is_some_and(|f| !f.revents().is_empty()) {
            return;
        }
        // Data (nobody should send any) is drained; EOF means hang-up.
        match rustix::io::read(read_end, &mut buf) {
            Ok(0) => return,
            Ok(_) | Err(rustix::io::Errno::INTR) | Err(rustix::io::Errno::AGAIN) => continue,
            Err(_) => return,
        }
    }
}

/// Cut the helper off from the app: own session (done by the double fork),
/// terminal signals ignored, stdio on `/dev/null`, no other inherited
/// descriptor, cwd `/` (so it pins no mount), and not dumpable.
///
/// Not dumpable, because a core dump first waits for every thread to stop, and a thread
/// blocked on a request to this very server (the preload's lookup) never does once the
/// worker that read it is gone: the crash would become a helper stuck for good and an
/// app hanging on its mount. Without the dump, the dying helper's descriptors close and
/// the kernel aborts the connection; the app's requests fail with `ENOTCONN`.
pub(crate) fn become_daemon(keep: &[RawFd]) {
    let _ = rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable);
    sys::ignore_terminal_signals();
    if let Ok(null) = rustix::fs::open(
        "/dev/null",
        rustix::fs::OFlags::RDWR | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    ) {
        let _ = rustix::stdio::dup2_stdin(&null);
        let _ = rustix::stdio::dup2_stdout(&null);
        let _ = rustix::stdio::dup2_stderr(&null);
    }
    sys::close_other_fds(keep);
    let _ = rustix::process::chdir("/");
}

/// The FUSE session for `fs` on the mounted `fuse` descriptor, its `INIT`
/// handshake done. The launcher calls this *before* forking the helper:
/// the kernel queued `INIT` at mount time, answering it takes a few
/// microseconds, and the helper then starts serving the app's first
/// lookups at once instead of first finishing its own setup.
pub(crate) fn handshake<R: ReadAt + 'static>(
    fs: ImageFs<R>,
    fuse: OwnedFd,
) -> std::io::Result<Session<ImageFs<R>>> {
    let mut config = Config::default();
    config.n_threads = Some(SERVER_THREADS);
    Session::from_fd(fs, fuse, SessionACL::Owner, config)
}

/// What the FUSE helper needs; everything else was closed.
pub(crate) struct ServerParts<R: ReadAt + 'static> {
    pub(crate) session: Session<ImageFs<R>>,
    pub(crate) fuse_fd: RawFd,
    pub(crate) keepalive: OwnedFd,
    pub(crate) alive: OwnedFd,
    pub(crate) mountpoint: PathBuf,
    pub(crate) rung: Rung,
    pub(crate) image_fd: RawFd,
    /// The mountpoint's lock ([`sweep_leftovers`]), held until the directory is gone.
    pub(crate) lock: OwnedFd,
    pub(crate) preload: Option<Preload<R>>,
}

/// The FUSE helper's whole life. Never returns.
pub(crate) fn serve<R: ReadAt + 'static>(parts: ServerParts<R>) -> ! {
    let ServerParts {
        session,
        fuse_fd,
        keepalive,
        alive,
        mountpoint,
        rung,
        image_fd,
        lock,
        preload,
    } = parts;
    become_daemon(&[
        fuse_fd,
        keepalive.as_raw_fd(),
        alive.as_raw_fd(),
        image_fd,
        lock.as_raw_fd(),
    ]);
    // Before any thread starts, so that all of them have SIGTERM blocked.
    let stop = sys::sigterm_fd().ok();
    let watched = mountpoint.clone();
    let notifier = session.notifier();
    let watcher = std::thread::Builder::new()
        .name("keepalive".into())
        .spawn(move || {
            // First, while the launcher is still finishing: its lookup is answered by the
            // workers below, and a hang-up meanwhile stays pending on the pipe.
            if let Some(preload) = preload {
                preload.run(&notifier, &watched);
            }
            wait_for_hangup(&keepalive, stop.as_ref());
            sweep_leftovers_for_a_while(&watched, &rung);
            take_down(&watched, &rung);
            drop(lock);
        });
    if watcher.is_err() {
        sys::exit_now(1);
    }
    let _ = session.run();
    // The kernel let go of the filesystem (or it never came up): make sure
    // the mountpoint does not outlive us.
    let _ = std::fs::remove_dir(&mountpoint);
    drop(alive);
    sys::exit_now(0)
}

/// How many entries of the private directories' directory [`sweep_leftovers`] looks at, at
/// most (it may be a shared `/tmp`).
const SWEEP_MAX: usize = 4096;

/// How long the helper waits for its sweep before it takes its own mount away.
const SWEEP_WAIT: std::time::Duration = std::time::Duration::from_millis(100);

/// [`sweep_leftovers`], once the app is gone (so never on its path), on a thread of its
/// own and waited for at most [`SWEEP_WAIT`]: a `statfs` of another helper's mount waits
/// for that helper, which must not hold up this one's detach for long.
fn sweep_leftovers_for_a_while(ours: &Path, rung: &Rung) {
    use std::sync::{Arc, Condvar, Mutex};
    let done = Arc::new((Mutex::new(false), Condvar::new()));
    let (ours, rung, finished) = (ours.to_path_buf(), rung.clone(), Arc::clone(&done));
    let sweep = std::thread::Builder::new()
        .name("sweep".into())
        .stack_size(256 << 10)
        .spawn(move || {
            sweep_leftovers(&ours, Some(&rung));
            let (flag, signal) = &*finished;
            *flag
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = true;
            signal.notify_one();
        });
    if sweep.is_ok() {
        let (flag, signal) = &*done;
        let flag = flag
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let _ = signal.wait_timeout_while(flag, SWEEP_WAIT, |done| !*done);
    }
}

/// Take away what crashed helpers left beside `ours` (their launchers can no longer do it;
/// [`crate::launch::Root::close_and_wait`] does it for failures before the app runs), so
/// that the next helper of this user to finish does:
/// - with `rung` (a FUSE helper, which knows how to unmount), each `mnt-PID-TAG` directory
///   whose file system answers `statfs` with `ENOTCONN`: its server is gone, and the app
///   that used it kept it mounted until it exited;
/// - each `mnt-PID-TAG` directory that is not a mountpoint here (a user namespace's mount
///   is only seen inside it, and goes with it) and each `tree-PID-TAG` copy, if it is
///   abandoned: nobody holds the lock its launcher took (the helper keeps it until it has
///   removed the directory) and that launcher, PID in the name, is not running (it creates
///   the directory before it locks it). An abandoned mountpoint is only ever `rmdir`ed; a
///   copy, which goes with all it holds, only in glick's own directory
///   (`$XDG_RUNTIME_DIR/glick`), never in a shared `/tmp` or `$TMPDIR`, where a directory
///   of the user's own could have a name of that shape.
fn sweep_leftovers(ours: &Path, rung: Option<&Rung>) {
    let Some(base) = ours.parent() else {
        return;
    };
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    let me = rustix::process::geteuid().as_raw();
    let Ok(base_metadata) = std::fs::symlink_metadata(base) else {
        return;
    };
    let here = base_metadata.dev();
    let own_base = base.file_name() == Some(std::ffi::OsStr::new("glick"))
        && base_metadata.uid() == me
        && base_metadata.mode() & 0o777 == 0o700;
    for entry in entries.take(SWEEP_MAX).flatten() {
        let path = entry.path();
        if path == ours {
            continue;
        }
        let Some((kind, pid)) = private_name(&entry.file_name()) else {
            continue;
        };
        // Ours only, as far as it can still tell (a dead mount may not answer at all).
        let metadata = entry.metadata();
        if metadata
            .as_ref()
            .is_ok_and(|m| !m.is_dir() || m.uid() != me)
        {
            continue;
        }
        let unmounted = metadata.as_ref().is_ok_and(|m| m.dev() == here);
        match (kind, rung) {
            (Private::Mount, Some(rung))
                if rustix::fs::statfs(&path).err() == Some(rustix::io::Errno::NOTCONN) =>
            {
                take_down(&path, rung);
            }
            (Private::Mount, _) if unmounted => remove_if_abandoned(&path, pid, kind),
            (Private::Tree, _) if own_base && metadata.is_ok() => {
                remove_if_abandoned(&path, pid, kind);
            }
            _ => {}
        }
    }
}

/// Remove the private directory at `path` if its helper is gone and its launcher `pid` is
/// not running: see [`sweep_leftovers`]. A copy goes with everything in it, a mountpoint
/// only if empty.
fn remove_if_abandoned(path: &Path, pid: i32, kind: Private) {
    let Ok(_lock) = sys::lock_dir(path, false) else {
        return;
    };
    // Held meanwhile: a launcher that has just made the directory waits for it, and is
    // running, so the directory stays.
    let running = rustix::process::Pid::from_raw(pid).is_none_or(|pid| {
        rustix::process::test_kill_process(pid).err() != Some(rustix::io::Errno::SRCH)
    });
    if running {
        return;
    }
    match kind {
        Private::Tree => glick_tree::remove(path),
        Private::Mount => {
            let _ = std::fs::remove_dir(path);
        }
    }
}

/// The kinds of private directory [`crate::launch`] makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Private {
    Mount,
    Tree,
}

/// `mnt-<pid>-<6 digits>` or `tree-<pid>-<6 digits>`, the names [`crate::launch`] gives
/// its private directories: the kind and the PID.
fn private_name(name: &std::ffi::OsStr) -> Option<(Private, i32)> {
    let name = name.to_str()?;
    let (kind, rest) = if let Some(rest) = name.strip_prefix("mnt-") {
        (Private::Mount, rest)
    } else {
        (Private::Tree, name.strip_prefix("tree-")?)
    };
    let (pid, tag) = rest.split_once('-')?;
    let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    if !digits(pid) || tag.len() != 6 || !digits(tag) {
        return None;
    }
    Some((kind, pid.parse().ok()?))
}

/// The extract rung's helper: wait for the app to be gone, then remove the
/// extracted tree. Never returns.
///
/// `lock` is the tree's lock ([`sweep_leftovers`]), released once the tree is gone; the
/// sweep of other helpers' leftovers comes after the launcher has been told.
pub(crate) fn remove_when_done(keepalive: OwnedFd, alive: OwnedFd, lock: OwnedFd, dir: &Path) -> ! {
    become_daemon(&[
        keepalive.as_fd().as_raw_fd(),
        alive.as_raw_fd(),
        lock.as_raw_fd(),
    ]);
    let stop = sys::sigterm_fd().ok();
    wait_for_hangup(&keepalive, stop.as_ref());
    glick_tree::remove(dir);
    drop(lock);
    drop(alive);
    sweep_leftovers(dir, None);
    sys::exit_now(0)
}

#[cfg(test)]
mod tests {
    use super::{Private, private_name};
    use std::ffi::OsStr;

    #[test]
    fn only_launch_directory_names_are_swept() {
        for (name, kind, pid) in [
            ("mnt-1-000000", Private::Mount, 1),
            ("mnt-4242-001234", Private::Mount, 4242),
            ("tree-77-000001", Private::Tree, 77),
        ] {
            assert_eq!(private_name(OsStr::new(name)), Some((kind, pid)), "{name}");
        }
        for name in [
            "mnt-",
            "mnt-1",
            "mnt-1-",
            "mnt--1",
            "mnt-1-2-3",
            "mnt-1-0",
            "mnt-1-1234567",
            "mnt-a-1",
            "tree-1",
            "tree-1-2-3",
            "tree-99999999999-1",
            "extract-1-2",
            "xmnt-1-2",
            "xtree-1-2",
        ] {
            assert_eq!(private_name(OsStr::new(name)), None, "{name}");
        }
    }
}
