//! The few system calls rustix has no safe wrapper for: `clone` and `fork`, `unshare`,
//! signal dispositions and closing inherited descriptors.
//!
//! Every `unsafe` block of the crate lives here, each with its reason.

#![expect(
    unsafe_code,
    reason = "clone, fork, unshare, signal and close have no safe wrappers"
)]

use std::io;
use std::os::fd::RawFd;
use std::ptr;

/// The helper's main stack: what a main thread gets by default. Anonymous memory,
/// touched only as deep as the helper goes.
const HELPER_STACK: usize = 8 << 20;

/// Run `helper` in a new process that is not a child of the caller (nor of the app it
/// execs into), lives in its own session away from the caller's terminal and process
/// group, and is reparented to init. Returns in the caller once the helper exists;
/// `helper` runs only in the helper and is meant never to return (if it does, the
/// helper exits with status 1).
///
/// The intermediate child is a `clone(CLONE_VM | CLONE_VFORK)` on a stack of its own, as in
/// `posix_spawn`: it shares the caller's memory while the caller waits, so the address
/// space is neither copied for it nor torn down after it. It makes two system calls,
/// `setsid` and `fork`, and leaves. The helper is that `fork`'s child: a private copy of
/// the caller's memory, running on the borrowed stack, which it keeps; the caller's own
/// frames stay frozen in its copy, never returned to.
///
/// Must be called while the process has a single thread: after `fork` only
/// the calling thread exists in the child, so any lock held by another thread
/// (the allocator's included) would stay locked forever.
pub(crate) fn spawn_helper<F: FnOnce()>(helper: F) -> io::Result<()> {
    struct Start<F> {
        helper: Option<F>,
        mask: libc::sigset_t,
    }

    extern "C" fn intermediate<F: FnOnce()>(arg: *mut libc::c_void) -> libc::c_int {
        let start = arg.cast::<Start<F>>();
        // SAFETY: this runs in the caller's memory while the caller is suspended, with
        // every signal blocked: it only makes system calls. `fork` is musl's, which in
        // the parent branch only takes and drops locks the suspended, single-threaded
        // caller does not hold. Its child owns a copy of the memory, in which `start`
        // (a live local of the caller's frame, frozen there) is valid and used once.
        unsafe {
            if libc::setsid() < 0 {
                return 1;
            }
            match libc::fork() {
                0 => {}
                n if n > 0 => return 0,
                _ => return 1,
            }
            libc::pthread_sigmask(libc::SIG_SETMASK, &raw const (*start).mask, ptr::null_mut());
            if let Some(helper) = (*start).helper.take() {
                helper();
            }
            libc::_exit(1)
        }
    }

    let stack = Stack::new(HELPER_STACK)?;
    let mut start = Start {
        helper: Some(helper),
        // SAFETY: a sigset_t is plain data; vfork_call overwrites it before the child runs.
        mask: unsafe { std::mem::zeroed() },
    };
    let arg = &raw mut start;
    // SAFETY: `intermediate` only makes system calls on the shared memory (see there);
    // the stack is the top of a mapping nothing else uses; `start` outlives the child.
    let status = unsafe {
        vfork_call(
            intermediate::<F>,
            arg.cast(),
            stack.top(),
            &raw mut (*arg).mask,
        )?
    };
    if status != Some(0) {
        return Err(io::Error::other("helper process failed to start"));
    }
    Ok(())
}

/// Run `child(arg)` in a `clone(CLONE_VM | CLONE_VFORK)` child, as `posix_spawn` does, and
/// return its exit status once it has exited and been reaped (`None`: killed by a signal).
/// Only the calling thread waits meanwhile. Every signal is blocked around the `clone`
/// (the mask before it is written to `saved_mask` first, for the child to restore where
/// it needs to), so that no handler runs in the child on the shared memory.
///
/// # Safety
///
/// `child` runs in this process's memory, on `stack_top`, while other threads may run:
/// it may only make system calls (and fork), and must not return into or unwind through
/// anything but its own frame. `stack_top` is the top of memory nothing else uses until
/// this returns; `arg` and `saved_mask` stay valid as long.
unsafe fn vfork_call(
    child: extern "C" fn(*mut libc::c_void) -> libc::c_int,
    arg: *mut libc::c_void,
    stack_top: *mut libc::c_void,
    saved_mask: *mut libc::sigset_t,
) -> io::Result<Option<i32>> {
    // SAFETY: `all` is initialised by sigfillset; `saved_mask` is valid (caller). The
    // caller vouches for `child`, its stack and its argument.
    let pid = unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, saved_mask);
        let pid = libc::clone(
            child,
            stack_top,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            arg,
        );
        let error = io::Error::last_os_error();
        libc::pthread_sigmask(libc::SIG_SETMASK, saved_mask, ptr::null_mut());
        if pid < 0 {
            return Err(error);
        }
        pid
    };
    let pid = rustix::process::Pid::from_raw(pid)
        .ok_or_else(|| io::Error::other("clone returned no process id"))?;
    loop {
        match rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty()) {
            Err(rustix::io::Errno::INTR) => continue,
            Ok(Some((_, status))) => return Ok(status.exit_status()),
            Ok(None) => return Err(io::Error::other("child vanished")),
            Err(e) => return Err(e.into()),
        }
    }
}

/// `lstat(path)` from a child process that first closes every descriptor it inherited;
/// true if it succeeded.
///
/// For a lookup the helper makes through its own mount: once a worker has read such a
/// request, whoever waits for it cannot be interrupted until it is answered or the
/// connection ends, and the connection ends when the last reference to the FUSE device
/// goes. Waiting in a thread of the helper, it would keep the helper's own references, so
/// a worker dying with the request would leave the helper stuck for good. The child holds
/// none: if the helper dies meanwhile, the connection aborts and the child's `lstat` fails.
/// It shares our memory while the calling thread waits (nothing is copied), and only makes
/// system calls.
pub(crate) fn lstat_without_descriptors(path: &std::ffi::CStr) -> bool {
    extern "C" fn look(arg: *mut libc::c_void) -> libc::c_int {
        // SAFETY: `arg` is the caller's C string, alive until we exit; the stat buffer is on
        // this child's stack. Only system calls, no allocation.
        unsafe {
            if libc::syscall(libc::SYS_close_range, 0u32, u32::MAX, 0u32) != 0 {
                return 1;
            }
            let mut st: libc::stat = std::mem::zeroed();
            if libc::lstat(arg.cast::<libc::c_char>(), &mut st) == 0 {
                0
            } else {
                1
            }
        }
    }
    #[repr(align(16))]
    struct ChildStack([u8; 16 << 10]);
    let mut stack = ChildStack([0; 16 << 10]);
    let top = stack.0.as_mut_ptr_range().end.cast::<libc::c_void>();
    // SAFETY: a sigset_t is plain data, written by vfork_call before use.
    let mut mask: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `look` only makes system calls; its stack is this frame's buffer, unused
    // by anything else until the child has exited; `path` and `mask` outlive the call.
    let status = unsafe { vfork_call(look, path.as_ptr().cast_mut().cast(), top, &raw mut mask) };
    matches!(status, Ok(Some(0)))
}

/// A stack for [`spawn_helper`]'s children, with an inaccessible guard page below it.
/// Unmapped here on drop; the helper keeps its own copy.
struct Stack {
    base: *mut libc::c_void,
    len: usize,
}

impl Stack {
    fn new(size: usize) -> io::Result<Self> {
        let guard = 4096;
        let len = size + guard;
        // SAFETY: a fresh private anonymous mapping at an address of the kernel's choice;
        // nothing else refers to it.
        let base = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let stack = Self { base, len };
        // SAFETY: the first page of the mapping just made.
        if unsafe { libc::mprotect(base, guard, libc::PROT_NONE) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(stack)
    }

    /// The initial stack pointer: the mapping's end (stacks grow down).
    fn top(&self) -> *mut libc::c_void {
        self.base.wrapping_byte_add(self.len)
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, used by no one in this process any more.
        unsafe {
            libc::munmap(self.base, self.len);
        }
    }
}

/// Makes `buf` at least `len` bytes long (zeros), growing its allocation to a power of two
/// and populating the new pages with one `madvise(MADV_POPULATE_WRITE)` instead of a page
/// fault each (a fresh helper's first 128 KiB copy took 30 faults, ~100 µs, on the test
/// machine). Without the advice (Linux < 5.14) the pages fault in as usual.
pub(crate) fn grow_populated(buf: &mut Vec<u8>, len: usize) {
    if buf.len() >= len {
        return;
    }
    if buf.capacity() < len {
        buf.reserve_exact(len.next_power_of_two() - buf.len());
        let spare = buf.spare_capacity_mut();
        let page = rustix::param::page_size();
        let start = spare.as_mut_ptr() as usize;
        let first = start.next_multiple_of(page);
        let end = (start + spare.len()) / page * page;
        if end > first {
            // SAFETY: whole pages inside this vector's own allocation, not yet holding any
            // value; populating them only maps zeroed memory the allocation already owns.
            let _ = unsafe {
                rustix::mm::madvise(
                    first as *mut std::ffi::c_void,
                    end - first,
                    rustix::mm::Advice::LinuxPopulateWrite,
                )
            };
        }
    }
    buf.resize(len, 0);
}

/// The directory `dir` (not a symlink) opened and locked with an exclusive `flock`: the mark
/// of a private directory in use, held by whoever keeps the descriptor (and its copies).
/// `wait`: block until the lock is free (a launcher, whose directory a sweep may be looking
/// at for a moment); otherwise fail at once with `EWOULDBLOCK` if someone holds it.
pub(crate) fn lock_dir(dir: &std::path::Path, wait: bool) -> io::Result<std::os::fd::OwnedFd> {
    use rustix::fs::{FlockOperation, Mode, OFlags};
    let fd = rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let how = if wait {
        FlockOperation::LockExclusive
    } else {
        FlockOperation::NonBlockingLockExclusive
    };
    rustix::fs::flock(&fd, how)?;
    Ok(fd)
}

/// Leave the process at once, without running destructors or atexit
/// handlers that belong to the parent's copy of the state.
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: `_exit` is async-signal-safe and always sound to call.
    unsafe { libc::_exit(code) }
}

/// Block `SIGTERM` in this thread (and every thread it starts later) and return a
/// `signalfd` that becomes readable when one arrives: a `kill` of the helper then ends in
/// the same orderly detach as the app's exit, never in a stale mount.
pub(crate) fn sigterm_fd() -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd as _;
    // SAFETY: `set` is a local, initialised by sigemptyset before use; sigaddset and
    // pthread_sigmask only read and write it and the calling thread's mask.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    };
    // SAFETY: `set` is a valid signal set; -1 asks for a new descriptor.
    let fd = unsafe { libc::signalfd(-1, &set, libc::SFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: signalfd returned a new descriptor that nothing else owns.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// Ignore the signals a terminal sends to its foreground process group, so
/// Ctrl-C, Ctrl-\, Ctrl-Z and hangup aimed at the app never reach the server.
pub(crate) fn ignore_terminal_signals() {
    for sig in [
        libc::SIGINT,
        libc::SIGQUIT,
        libc::SIGTSTP,
        libc::SIGHUP,
        libc::SIGTTIN,
        libc::SIGTTOU,
        libc::SIGPIPE,
    ] {
        // SAFETY: SIG_IGN is a valid disposition for each of these catchable
        // signals and installs no handler code.
        unsafe {
            libc::signal(sig, libc::SIG_IGN);
        }
    }
}

/// Close every descriptor of the process except stdio and `keep`, so the
/// helper holds none of the app's pipes or sockets (a `$(bundle)` must end
/// when the app ends).
pub(crate) fn close_other_fds(keep: &[RawFd]) {
    if close_ranges_around(keep) {
        return;
    }
    // Kernels before 5.9 have no close_range: walk /proc/self/fd.
    let mut open = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        for entry in dir.flatten() {
            if let Some(fd) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<RawFd>().ok())
            {
                open.push(fd);
            }
        }
    }
    for fd in open {
        if fd > 2 && !keep.contains(&fd) {
            // SAFETY: the descriptor is not owned by any live Rust object of
            // this process (every owned one is listed in `keep`); the one
            // read_dir used is already closed, so closing is harmless (EBADF).
            unsafe {
                libc::close(fd);
            }
        }
    }
}

/// `close_range(2)` over every gap between stdio and the sorted `keep` descriptors, and
/// from the last of them on: one system call per gap instead of listing `/proc/self/fd`.
/// `false` when a call fails (a kernel before 5.9 has no `close_range`): the caller then
/// walks `/proc/self/fd`, for which descriptors closed here already make no difference.
fn close_ranges_around(keep: &[RawFd]) -> bool {
    let mut kept: Vec<u32> = keep
        .iter()
        .filter_map(|&fd| u32::try_from(fd).ok())
        .filter(|&fd| fd > 2)
        .collect();
    kept.sort_unstable();
    kept.dedup();
    let mut first = 3u32;
    for end in kept.into_iter().map(Some).chain([None]) {
        let last = end.map_or(u32::MAX, |fd| fd.saturating_sub(1));
        if first <= last {
            // SAFETY: as for `close` below: every descriptor a live Rust object of this
            // process owns is in `keep`, and no other thread exists yet to open one.
            let rc = unsafe { libc::syscall(libc::SYS_close_range, first, last, 0u32) };
            if rc != 0 {
                return false;
            }
        }
        match end {
            Some(fd) => first = fd + 1,
            None => break,
        }
    }
    true
}

/// `unshare(CLONE_NEWUSER | CLONE_NEWNS)`.
pub(crate) fn unshare_user_and_mount() -> io::Result<()> {
    use rustix::thread::UnshareFlags;
    // SAFETY: CLONE_FILES is not among the flags, so no descriptor table is
    // split between threads; the other flags only change namespaces.
    unsafe { rustix::thread::unshare_unsafe(UnshareFlags::NEWUSER | UnshareFlags::NEWNS) }
        .map_err(io::Error::from)
}

/// `dup2(fd, target)`: put a copy of `fd` at exactly `target`, inheritable
/// (without `FD_CLOEXEC`), replacing whatever `target` was.
pub(crate) fn dup_to(fd: std::os::fd::BorrowedFd<'_>, target: RawFd) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    if fd.as_raw_fd() == target {
        return rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty()).map_err(io::Error::from);
    }
    // SAFETY: dup2 takes plain integers; `fd` is a live descriptor and any
    // descriptor previously at `target` is not owned by a Rust object of
    // this process (the caller reserves `target` for this use).
    let r = unsafe { libc::dup2(fd.as_raw_fd(), target) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Close descriptors put in place by [`dup_to`] (they belong to no Rust
/// object).
pub(crate) fn close_fixed(fds: &[RawFd]) {
    for &fd in fds {
        // SAFETY: these descriptors were created by `dup_to` for the app and
        // are owned by no Rust object; closing them twice is harmless.
        unsafe {
            libc::close(fd);
        }
    }
}

/// A read-only shared mapping of part of a file, unmapped on drop.
#[derive(Debug)]
pub(crate) struct Mapping {
    ptr: std::ptr::NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is read-only and owned by this value alone; sharing `&[u8]` views of
// it between threads is as sound as sharing any immutable byte slice.
unsafe impl Send for Mapping {}
// SAFETY: as above: nothing ever writes through the mapping.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Map `len` bytes of `file` from `offset` (a multiple of the page size), read-only.
    ///
    /// The caller promises that the file's bytes there do not change and the file does not
    /// shrink while the mapping lives: reading a truncated page raises `SIGBUS`. For the
    /// executable the process is running, the kernel keeps that promise: it refuses to open
    /// the file for writing (`ETXTBSY`) while any process executes it.
    ///
    /// # Errors
    /// `mmap` failed (or `len` is zero).
    pub(crate) fn file(
        file: std::os::fd::BorrowedFd<'_>,
        offset: u64,
        len: usize,
    ) -> io::Result<Self> {
        use rustix::mm::{MapFlags, ProtFlags};
        if len == 0 {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        // SAFETY: a new mapping at an address the kernel chooses aliases no Rust object; it
        // is read-only, and the caller guarantees the file region stays as it is (above).
        let ptr = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ,
                MapFlags::SHARED,
                file,
                offset,
            )
        }?;
        let ptr = std::ptr::NonNull::new(ptr.cast::<u8>())
            .ok_or_else(|| io::Error::other("mmap returned a null pointer"))?;
        Ok(Self { ptr, len })
    }

    /// The mapped bytes.
    pub(crate) fn bytes(&self) -> &[u8] {
        // SAFETY: `ptr` points to `len` readable bytes that stay mapped, and unchanged (see
        // `Mapping::file`), as long as `self` lives.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the region was mapped by `Mapping::file` and no `&[u8]` borrowed from
        // `bytes` can outlive `self`.
        let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn grow_populated_gives_zeros_and_keeps_what_was_there() {
        let mut buf = Vec::new();
        super::grow_populated(&mut buf, 100_000);
        assert_eq!(buf.len(), 100_000);
        assert_eq!(buf.capacity(), 131_072);
        assert!(buf.iter().all(|&b| b == 0));
        buf[..4].copy_from_slice(b"kept");
        super::grow_populated(&mut buf, 50);
        assert_eq!(buf.len(), 100_000, "never shrinks");
        super::grow_populated(&mut buf, 300_000);
        assert_eq!((buf.len(), &buf[..4]), (300_000, &b"kept"[..]));
        assert!(buf[4..].iter().all(|&b| b == 0));
    }
}
