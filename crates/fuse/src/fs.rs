//! [`ImageFs`]: an ext2 image served read-only through `fuser`.
//!
//! FUSE node ids and `st_ino` are the image's own inode numbers; only FUSE's
//! root node id (1) stands for ext2's root (2), whose `st_ino` stays 2. The image never changes
//! while it is served, so every reply is cached by the kernel for a day and
//! page cache survives across opens.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, Generation, INodeNo, InitFlags,
    KernelConfig, LockOwner, OpenFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr,
    Request, TimeOrNow,
};

use glick_ext2::{Ext2, Inode, InodeNo, ReadAt};

use crate::sys;

/// How long the kernel may cache entries and attributes: the image is
/// immutable, so as long as it likes; a day keeps the number finite.
const TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// Largest read the kernel is allowed to send (and the page count we ask
/// for): 1 MiB.
const MAX_READ: u32 = 1 << 20;

thread_local! {
    /// Each server thread's read buffer, kept between requests: a fresh
    /// 1 MiB allocation per read costs a `mmap`, 256 page faults and the
    /// zeroing of every page — more than the copy itself. It grows with its pages
    /// populated in one call ([`sys::grow_populated`]), not one fault at a time.
    static READ_BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A read-only ext2 image served over FUSE.
#[derive(Debug)]
pub struct ImageFs<R: ReadAt> {
    ext2: Arc<Ext2<R>>,
    uid: u32,
    gid: u32,
}

impl<R: ReadAt> ImageFs<R> {
    /// Open the image; files will be presented as owned by `uid`:`gid`.
    ///
    /// # Errors
    /// The image's superblock or group descriptors are unreadable or corrupt.
    pub fn new(reader: R, uid: u32, gid: u32) -> Result<Self, glick_ext2::Error> {
        Ok(Self {
            ext2: Arc::new(Ext2::open(reader)?),
            uid,
            gid,
        })
    }

    /// The reader underneath.
    pub fn ext2(&self) -> &Ext2<R> {
        &self.ext2
    }

    /// The image, to read beside the server (see [`crate::preload`]).
    pub(crate) fn shared_ext2(&self) -> Arc<Ext2<R>> {
        Arc::clone(&self.ext2)
    }
}

/// The bytes `[offset, offset + len)` of file `ino`, clipped to its size. From a mapped image
/// one contiguous run comes straight from the mapping; anything else (runs broken by holes or
/// fragments, a reader without a mapping) is copied into `buf`, grown with its pages
/// populated at once ([`sys::grow_populated`]) and kept by the caller for the next time.
pub(crate) fn file_bytes<'a, R: ReadAt>(
    ext2: &'a Ext2<R>,
    ino: InodeNo,
    inode: &Inode,
    offset: u64,
    len: usize,
    buf: &'a mut Vec<u8>,
) -> Result<&'a [u8], glick_ext2::Error> {
    if let Some(bytes) = ext2.bytes_in_place(ino, inode, offset, len)? {
        return Ok(bytes);
    }
    sys::grow_populated(buf, len);
    let n = ext2.read(ino, inode, offset, &mut buf[..len])?;
    Ok(&buf[..n])
}

/// FUSE node id → ext2 inode number: FUSE's root (1) is ext2's root (2);
/// every other node id is the ext2 inode number itself.
fn to_ext2(ino: INodeNo) -> Result<InodeNo, Errno> {
    match ino.0 {
        1 => Ok(InodeNo::ROOT),
        0 => Err(Errno::ENOENT),
        n => u32::try_from(n).map(InodeNo).map_err(|_| Errno::ENOENT),
    }
}

/// ext2 inode number → FUSE node id (and `st_ino`): the number itself.
/// Inode 1 (bad blocks) is never linked from a directory; an image that
/// does so is corrupt, and it would collide with FUSE's root.
fn to_fuse(ino: InodeNo) -> Result<INodeNo, Errno> {
    if ino.0 < 2 {
        Err(Errno::EIO)
    } else {
        Ok(INodeNo(u64::from(ino.0)))
    }
}

fn errno(e: &glick_ext2::Error) -> Errno {
    Errno::from_i32(e.errno())
}

fn kind(t: glick_ext2::FileType) -> FileType {
    use glick_ext2::FileType as T;
    match t {
        T::Regular => FileType::RegularFile,
        T::Directory => FileType::Directory,
        T::Symlink => FileType::Symlink,
        T::CharDevice => FileType::CharDevice,
        T::BlockDevice => FileType::BlockDevice,
        T::Fifo => FileType::NamedPipe,
        T::Socket => FileType::Socket,
    }
}

/// An ext2 timestamp: 32 signed seconds, plus (in large inodes) two epoch
/// bits and nanoseconds in the `_extra` field.
fn time(secs: u32, extra: u32) -> SystemTime {
    let secs = i64::from(i32::from_ne_bytes(secs.to_ne_bytes())) + (i64::from(extra & 3) << 32);
    let nanos = (extra >> 2).min(999_999_999);
    if secs >= 0 {
        UNIX_EPOCH + Duration::new(secs.unsigned_abs(), nanos)
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs()) + Duration::from_nanos(nanos.into())
    }
}

/// Linux's `new_encode_dev`.
fn encode_dev(major: u32, minor: u32) -> u32 {
    (minor & 0xff) | ((major & 0xfff) << 8) | ((minor & !0xff) << 12)
}

impl<R: ReadAt> ImageFs<R> {
    fn attr(&self, ino: InodeNo, inode: &Inode) -> Result<FileAttr, Errno> {
        let file_type = inode.file_type().ok_or(Errno::EIO)?;
        let rdev = match file_type {
            glick_ext2::FileType::CharDevice | glick_ext2::FileType::BlockDevice => {
                let (major, minor) = inode.rdev();
                encode_dev(major, minor)
            }
            _ => 0,
        };
        Ok(FileAttr {
            ino: to_fuse(ino)?,
            size: inode.size,
            blocks: u64::from(inode.blocks),
            atime: time(inode.atime, inode.atime_extra),
            mtime: time(inode.mtime, inode.mtime_extra),
            ctime: time(inode.ctime, inode.ctime_extra),
            crtime: time(inode.crtime, inode.crtime_extra),
            kind: kind(file_type),
            perm: inode.permissions(),
            nlink: u32::from(inode.links_count),
            uid: self.uid,
            gid: self.gid,
            rdev,
            blksize: self.ext2.block_size().get(),
            flags: 0,
        })
    }

    fn lookup_attr(&self, ino: InodeNo) -> Result<(FileAttr, Inode), Errno> {
        let inode = self.ext2.inode(ino).map_err(|e| errno(&e))?;
        Ok((self.attr(ino, &inode)?, inode))
    }

    /// A negative entry (node id 0): the kernel caches the absence for TTL,
    /// which spares a round trip for every miss of a search path.
    fn negative_entry() -> FileAttr {
        FileAttr {
            ino: INodeNo(0),
            size: 0,
            blocks: 0,
            atime: UNIX_EPOCH,
            mtime: UNIX_EPOCH,
            ctime: UNIX_EPOCH,
            crtime: UNIX_EPOCH,
            kind: FileType::RegularFile,
            perm: 0,
            nlink: 0,
            uid: 0,
            gid: 0,
            rdev: 0,
            blksize: 0,
            flags: 0,
        }
    }
}

impl<R: ReadAt + 'static> Filesystem for ImageFs<R> {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        for flag in [
            InitFlags::FUSE_DO_READDIRPLUS,
            InitFlags::FUSE_READDIRPLUS_AUTO,
            InitFlags::FUSE_CACHE_SYMLINKS,
            InitFlags::FUSE_PARALLEL_DIROPS,
            InitFlags::FUSE_MAX_PAGES,
        ] {
            // A kernel without a capability simply does without it.
            let _ = config.add_capabilities(flag);
        }
        if let Err(max) = config.set_max_readahead(MAX_READ) {
            let _ = config.set_max_readahead(max);
        }
        let _ = config.set_max_write(MAX_READ);
        let _ = config.set_max_background(64);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let result = to_ext2(parent).and_then(|parent| {
            self.ext2
                .lookup(parent, name.as_bytes())
                .map_err(|e| errno(&e))
        });
        match result {
            Ok(Some(ino)) => match self.lookup_attr(ino) {
                Ok((attr, inode)) => {
                    reply.entry(&TTL, &attr, Generation(u64::from(inode.generation)));
                }
                Err(e) => reply.error(e),
            },
            Ok(None) => reply.entry(&TTL, &Self::negative_entry(), Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match to_ext2(ino).and_then(|ino| self.lookup_attr(ino)) {
            Ok((attr, _)) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let result = to_ext2(ino).and_then(|ino| {
            let inode = self.ext2.inode(ino).map_err(|e| errno(&e))?;
            self.ext2.read_link(ino, &inode).map_err(|e| errno(&e))
        });
        match result {
            Ok(target) => reply.data(&target),
            Err(e) => reply.error(e),
        }
    }

    // Open and opendir answer ENOSYS: the kernel then stops sending them
    // (and their releases) for the life of the mount and opens with
    // FOPEN_KEEP_CACHE, plus FOPEN_CACHE_DIR for directories — the flags
    // an immutable image wants, without a round trip per open.
    fn open(&self, _req: &Request, _ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if flags.0 & libc::O_ACCMODE != libc::O_RDONLY {
            reply.error(Errno::EROFS);
            return;
        }
        reply.error(Errno::ENOSYS);
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let found = to_ext2(ino).and_then(|ino| {
            let inode = self.ext2.inode(ino).map_err(|e| errno(&e))?;
            let len = usize::try_from(size)
                .unwrap_or(usize::MAX)
                .min(usize::try_from(inode.size.saturating_sub(offset)).unwrap_or(usize::MAX));
            Ok((ino, inode, len))
        });
        let (ino, inode, len) = match found {
            Ok(found) => found,
            Err(e) => return reply.error(e),
        };
        READ_BUF.with_borrow_mut(|buf| {
            match file_bytes(&self.ext2, ino, &inode, offset, len, buf) {
                Ok(bytes) => reply.data(bytes),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn opendir(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        reply.error(Errno::ENOSYS);
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let dir = match to_ext2(ino) {
            Ok(dir) => dir,
            Err(e) => return reply.error(e),
        };
        let mut entries = match self.ext2.read_dir(dir, offset) {
            Ok(entries) => entries,
            Err(e) => return reply.error(errno(&e)),
        };
        loop {
            let entry = match entries.next_borrowed() {
                Ok(Some(entry)) => entry,
                Ok(None) => break,
                Err(e) => return reply.error(errno(&e)),
            };
            let file_type = match entry.file_type {
                Some(t) => t,
                None => match self.ext2.inode(entry.ino).map(|i| i.file_type()) {
                    Ok(Some(t)) => t,
                    Ok(None) => return reply.error(Errno::EIO),
                    Err(e) => return reply.error(errno(&e)),
                },
            };
            let name = OsStr::from_bytes(entry.name);
            let node = match to_fuse(entry.ino) {
                Ok(node) => node,
                Err(e) => return reply.error(e),
            };
            if reply.add(node, entry.next_offset, kind(file_type), name) {
                break;
            }
        }
        reply.ok();
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let dir = match to_ext2(ino) {
            Ok(dir) => dir,
            Err(e) => return reply.error(e),
        };
        let mut entries = match self.ext2.read_dir(dir, offset) {
            Ok(entries) => entries,
            Err(e) => return reply.error(errno(&e)),
        };
        loop {
            let entry = match entries.next_borrowed() {
                Ok(Some(entry)) => entry,
                Ok(None) => break,
                Err(e) => return reply.error(errno(&e)),
            };
            let (attr, inode) = match self.lookup_attr(entry.ino) {
                Ok(found) => found,
                Err(e) => return reply.error(e),
            };
            let name = OsStr::from_bytes(entry.name);
            let generation = Generation(u64::from(inode.generation));
            if reply.add(attr.ino, entry.next_offset, name, &TTL, &attr, generation) {
                break;
            }
        }
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let sb = self.ext2.superblock();
        let bsize = self.ext2.block_size().get();
        reply.statfs(
            u64::from(sb.blocks_count),
            0,
            0,
            u64::from(sb.inodes_count),
            0,
            bsize,
            255,
            bsize,
        );
    }

    // Extended attributes: the image holds none. ENOSYS makes the kernel
    // stop asking for the life of the mount.
    fn getxattr(&self, _req: &Request, _ino: INodeNo, _n: &OsStr, _s: u32, reply: ReplyXattr) {
        reply.error(Errno::ENOSYS);
    }

    fn listxattr(&self, _req: &Request, _ino: INodeNo, _size: u32, reply: ReplyXattr) {
        reply.error(Errno::ENOSYS);
    }

    // Everything that would change the image: EROFS (the kernel already
    // refuses most of it on a read-only mount).
    fn setattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        _size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        reply.error(Errno::EROFS);
    }

    fn mknod(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EROFS);
    }

    fn mkdir(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EROFS);
    }

    fn unlink(&self, _req: &Request, _parent: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS);
    }

    fn rmdir(&self, _req: &Request, _parent: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS);
    }

    fn symlink(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _link_name: &OsStr,
        _target: &Path,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EROFS);
    }

    fn rename(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _newparent: INodeNo,
        _newname: &OsStr,
        _flags: fuser::RenameFlags,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EROFS);
    }

    fn link(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _newparent: INodeNo,
        _newname: &OsStr,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EROFS);
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        _data: &[u8],
        _write_flags: fuser::WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        reply.error(Errno::EROFS);
    }

    fn create(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        reply.error(Errno::EROFS);
    }

    fn setxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EROFS);
    }

    fn removexattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EROFS);
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        _length: u64,
        _mode: i32,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EROFS);
    }
}
