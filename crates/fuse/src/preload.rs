//! Loading the file the app will run first into the page cache while the launch finishes.
//!
//! A bundle's first file is known: the stub execs `start`. On a fresh mount every page of it
//! would arrive in a `READ` round trip, one fault window at a time, with the app stopped on
//! each. The helper instead looks the file up through its own mount (which gives the kernel
//! the inode) and pushes the bytes into that inode's page cache with `FUSE_NOTIFY_STORE`
//! (one `writev` per 32 KiB), on the helper's CPU, while the launcher is still waiting for
//! the double fork, opening the root and starting the exec. Pages stored before the app
//! touches them cost it no round trip; the copying itself is the same work a `READ` reply
//! does, moved off the app's path.
//!
//! Only a regular file at the image root, and only its first [`PRELOAD_MAX`] bytes: the pages
//! are ordinary page cache, reclaimable like any other. Nothing depends on it: every
//! failure (a kernel without the notification, a lookup that fails) just leaves the reads to
//! the usual path. The store never waits on the FUSE workers' progress except for pages
//! that an in-flight `READ` holds locked, which those workers answer; it runs on the
//! keepalive thread, not on a worker, so it cannot stall them. The lookup is made from a
//! child process holding no descriptor ([`sys::lstat_without_descriptors`]), so that a
//! worker dying with it in hand ends the helper (and aborts the connection) instead of
//! leaving it waiting on itself for good.

use std::ffi::{CString, OsStr};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;
use std::sync::Arc;

use fuser::{INodeNo, Notifier};
use glick_ext2::{Ext2, FileType, Inode, InodeNo, ReadAt};

use crate::fs::file_bytes;
use crate::sys;

/// The most bytes of the file pushed into the page cache.
pub(crate) const PRELOAD_MAX: u64 = 16 << 20;

/// One notification's worth. Small: the app starts faulting while the store is still
/// going, and the sooner each piece lands the less it waits (on the launch benchmark,
/// interleaved: 16–32 KiB best, 64 KiB +0.02 ms, 128 KiB +0.1, 256 KiB +0.2, 1 MiB +0.9).
const CHUNK: usize = 32 << 10;

/// The file to preload and the image view to read it from.
pub(crate) struct Preload<R: ReadAt> {
    ext2: Arc<Ext2<R>>,
    name: &'static str,
    ino: InodeNo,
    inode: Inode,
}

impl<R: ReadAt> Preload<R> {
    /// `name` at the image root, when it is a regular file.
    pub(crate) fn new(ext2: Arc<Ext2<R>>, name: &'static str) -> Option<Self> {
        let ino = ext2.lookup(InodeNo::ROOT, name.as_bytes()).ok()??;
        let inode = ext2.inode(ino).ok()?;
        if inode.file_type() != Some(FileType::Regular) || inode.size == 0 {
            return None;
        }
        Some(Self {
            ext2,
            name,
            ino,
            inode,
        })
    }

    /// What will be loaded, for `GLICK_DEBUG`: the name and the byte count.
    pub(crate) fn what(&self) -> String {
        format!("{} ({} bytes)", self.name, self.inode.size.min(PRELOAD_MAX))
    }

    /// Look the file up through the mount at `mountpoint` (served by this process's own
    /// workers), then store its bytes; stop at the first failure.
    pub(crate) fn run(&self, notifier: &Notifier, mountpoint: &Path) {
        let path = mountpoint.join(OsStr::from_bytes(self.name.as_bytes()));
        let Ok(path) = CString::new(path.into_os_string().into_vec()) else {
            return;
        };
        // A request to our own workers: made from a child that holds no descriptor, so
        // that a worker dying meanwhile ends the helper instead of hanging it.
        if !sys::lstat_without_descriptors(&path) {
            return;
        }
        let node = INodeNo(u64::from(self.ino.0));
        let end = self.inode.size.min(PRELOAD_MAX);
        let mut copy = Vec::new();
        let mut at = 0u64;
        while at < end {
            let len = usize::try_from(end - at).map_or(CHUNK, |left| left.min(CHUNK));
            let bytes = match file_bytes(&self.ext2, self.ino, &self.inode, at, len, &mut copy) {
                Ok(bytes) if bytes.len() == len => bytes,
                _ => break,
            };
            if notifier.store(node, at, bytes).is_err() {
                break;
            }
            at += len as u64;
        }
    }
}
