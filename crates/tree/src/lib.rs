//! Recreating an image's file tree in a directory, without ever writing outside it: what
//! `glick-extract --tree` does, and the runtime's last rung (extract and run).
//!
//! Everything is created relative to directory file descriptors that this module opened
//! itself, one path component at a time with `O_NOFOLLOW | O_DIRECTORY`, and every entry is
//! created fresh (`O_EXCL`, `mkdirat`, `symlinkat`, `mknodat`, `linkat`: all fail on an
//! existing name). So a symlink in the image is only ever created, never followed; a second
//! entry with the same name (a symlink, then a file "through" it) is an error, not a write
//! elsewhere. Names with `/` or NUL, empty names and extra `.`/`..` entries are refused; a
//! directory reached twice (a loop, or a hard-linked directory) is an error, not a hang.
//!
//! The empty `lost+found` at the root is left out: it is ext2's bookkeeping (`e2fsck`
//! wants it), not part of the tree the image was made from.
//!
//! Fidelity: file types, permission bits (setuid/setgid/sticky included), mtimes and atimes
//! (with nanoseconds when the image has them), hard links, symlinks, holes (only blocks with
//! data are written), fifos and sockets; device nodes and owners when running as root.
//! Directories are made `0700` while they are filled and get their own mode and times last,
//! deepest first, so a read-only directory in the image can still be filled and a failed
//! extraction can still be removed.

#![forbid(unsafe_code)]

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileExt as _;

use glick_ext2::{Ext2, FileType, Inode, InodeNo, ReadAt};
use rustix::fs::{AtFlags, Mode, OFlags, Timespec, Timestamps};
use rustix::io::Errno;

/// What to restore beyond what any user can.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Give entries the image's owners (needs root).
    pub owners: bool,
    /// Create block and character devices (needs root); skipped otherwise.
    pub devices: bool,
}

/// What was extracted.
#[derive(Debug, Default)]
pub struct Stats {
    /// Regular files written.
    pub files: u64,
    /// Directories created (the target included).
    pub directories: u64,
    /// Symlinks created.
    pub symlinks: u64,
    /// Extra names of hard-linked entries.
    pub hard_links: u64,
    /// Fifos, sockets and devices created.
    pub special: u64,
    /// Paths of device nodes skipped (not root).
    pub skipped_devices: Vec<String>,
    /// Bytes of file data read from the image.
    pub bytes: u64,
}

/// Why an extraction stopped.
#[derive(Debug)]
pub enum Error {
    /// The image could not be read there.
    Image {
        /// Path in the image.
        path: String,
        /// The reader's error.
        source: glick_ext2::Error,
    },
    /// The image holds something that must not be extracted.
    Hostile {
        /// Path in the image.
        path: String,
        /// What.
        why: &'static str,
    },
    /// Creating something in the target failed.
    Io {
        /// Path in the image.
        path: String,
        /// The error.
        source: io::Error,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Image { path, source } => write!(f, "{path}: {source}"),
            Error::Hostile { path, why } => write!(f, "{path}: {why}; refusing to extract"),
            Error::Io { path, source } => {
                let text = source.to_string();
                let cause = text.split(" (os error").next().unwrap_or(&text);
                write!(f, "{path}: {cause}")
            }
        }
    }
}

impl std::error::Error for Error {}

/// Depth beyond which a tree is taken for hostile (a chain of directories this deep is
/// unusable anyway: most tools stop at `PATH_MAX`).
pub const MAX_DEPTH: usize = 2048;

/// A path in the image, as components, for creating things and for messages.
#[derive(Debug, Clone, Default)]
struct ImagePath(Vec<Vec<u8>>);

impl ImagePath {
    fn child(&self, name: &[u8]) -> Self {
        let mut c = self.0.clone();
        c.push(name.to_vec());
        Self(c)
    }

    fn relative(&self) -> Vec<u8> {
        if self.0.is_empty() {
            return b".".to_vec();
        }
        self.0.join(&b'/')
    }
}

impl fmt::Display for ImagePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("/");
        }
        for c in &self.0 {
            write!(f, "/{}", String::from_utf8_lossy(c))?;
        }
        Ok(())
    }
}

struct Extractor<'a, R: ReadAt> {
    fs: &'a Ext2<R>,
    root: &'a OwnedFd,
    options: Options,
    stats: Stats,
    /// Non-directory inodes with several links: the path of the first one made.
    links: HashMap<u32, ImagePath>,
    buf: Vec<u8>,
    progress: &'a mut dyn FnMut(u64),
}

/// Extracts the whole tree of `fs` into the directory open as `root` (which should be empty
/// and private to the caller until this returns).
///
/// `progress` gets the number of file bytes read so far.
///
/// # Errors
/// The first entry that cannot be read, is hostile, or cannot be created.
pub fn extract<R: ReadAt>(
    fs: &Ext2<R>,
    root: &OwnedFd,
    options: Options,
    progress: &mut dyn FnMut(u64),
) -> Result<Stats, Error> {
    let mut x = Extractor {
        fs,
        root,
        options,
        stats: Stats::default(),
        links: HashMap::new(),
        buf: vec![0; 1 << 20],
        progress,
    };
    let root_path = ImagePath::default();
    let root_inode = x.inode(InodeNo::ROOT, &root_path)?;
    if root_inode.file_type() != Some(FileType::Directory) {
        return Err(Error::Hostile {
            path: "/".to_owned(),
            why: "the root inode is not a directory",
        });
    }
    let mut visited = HashSet::from([InodeNo::ROOT.0]);
    let mut dirs = vec![(root_path.clone(), root_inode)];
    let mut stack = vec![(InodeNo::ROOT, root_path)];
    x.stats.directories = 1;
    while let Some((ino, path)) = stack.pop() {
        if path.0.len() > MAX_DEPTH {
            return Err(Error::Hostile {
                path: path.to_string(),
                why: "directories nested deeper than 2048 levels",
            });
        }
        let dir = x.open_dir(&path)?;
        let entries = x.fs.read_dir(ino, 0).map_err(|source| Error::Image {
            path: path.to_string(),
            source,
        })?;
        let (mut dot, mut dotdot) = (false, false);
        for entry in entries {
            let entry = entry.map_err(|source| Error::Image {
                path: path.to_string(),
                source,
            })?;
            let name = &entry.name[..];
            if name == b"." && !dot {
                dot = true;
                continue;
            }
            if name == b".." && !dotdot {
                dotdot = true;
                continue;
            }
            let child = path.child(name);
            let hostile = |why| Error::Hostile {
                path: child.to_string(),
                why,
            };
            if name.is_empty() {
                return Err(hostile("an empty name"));
            }
            if name == b"." || name == b".." {
                return Err(hostile("a second . or .. entry"));
            }
            if name.contains(&b'/') {
                return Err(hostile("a name containing '/'"));
            }
            if name.contains(&0) {
                return Err(hostile("a name containing a NUL byte"));
            }
            let inode = x.inode(entry.ino, &child)?;
            if path.0.is_empty() && name == b"lost+found" && x.is_empty_dir(entry.ino, &child)? {
                // ext2 bookkeeping (e2fsck wants it), not part of the app's tree.
                continue;
            }
            if inode.file_type() == Some(FileType::Directory) {
                if !visited.insert(entry.ino.0) {
                    return Err(hostile(
                        "a directory reached twice (a directory loop or hard-linked directory)",
                    ));
                }
                x.create(&child, || rustix::fs::mkdirat(&dir, name, Mode::RWXU))?;
                x.stats.directories += 1;
                dirs.push((child.clone(), inode));
                stack.push((entry.ino, child));
            } else {
                x.non_directory(&dir, name, entry.ino, &inode, child)?;
            }
        }
    }
    // Modes and times of directories last, deepest (latest made) first.
    for (path, inode) in dirs.iter().rev() {
        let fd = x.open_dir(path)?;
        let io = |source: Errno| Error::Io {
            path: path.to_string(),
            source: source.into(),
        };
        if x.options.owners {
            rustix::fs::fchown(&fd, uid(inode), gid(inode)).map_err(io)?;
        }
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(inode.permissions().into())).map_err(io)?;
        rustix::fs::futimens(&fd, &timestamps(inode)).map_err(io)?;
    }
    Ok(x.stats)
}

fn uid(inode: &Inode) -> Option<rustix::fs::Uid> {
    (inode.uid != u32::MAX).then(|| rustix::fs::Uid::from_raw(inode.uid))
}

fn gid(inode: &Inode) -> Option<rustix::fs::Gid> {
    (inode.gid != u32::MAX).then(|| rustix::fs::Gid::from_raw(inode.gid))
}

/// A timestamp from its 32-bit field and the `_extra` field (epoch bits, nanoseconds).
fn timespec(seconds: u32, extra: u32) -> Timespec {
    Timespec {
        tv_sec: i64::from(seconds as i32) + (i64::from(extra & 3) << 32),
        tv_nsec: i64::from(extra >> 2).min(999_999_999),
    }
}

fn timestamps(inode: &Inode) -> Timestamps {
    Timestamps {
        last_access: timespec(inode.atime, inode.atime_extra),
        last_modification: timespec(inode.mtime, inode.mtime_extra),
    }
}

impl<R: ReadAt> Extractor<'_, R> {
    fn inode(&self, ino: InodeNo, path: &ImagePath) -> Result<Inode, Error> {
        self.fs.inode(ino).map_err(|source| Error::Image {
            path: path.to_string(),
            source,
        })
    }

    /// Whether `ino` is a directory holding only `.` and `..`.
    fn is_empty_dir(&self, ino: InodeNo, path: &ImagePath) -> Result<bool, Error> {
        let inode = self.inode(ino, path)?;
        if inode.file_type() != Some(FileType::Directory) {
            return Ok(false);
        }
        let entries = self.fs.read_dir(ino, 0).map_err(|source| Error::Image {
            path: path.to_string(),
            source,
        })?;
        for entry in entries {
            let entry = entry.map_err(|source| Error::Image {
                path: path.to_string(),
                source,
            })?;
            if entry.name != b"." && entry.name != b".." {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Opens a directory this extraction made, one component at a time, never following a
    /// symlink.
    fn open_dir(&self, path: &ImagePath) -> Result<OwnedFd, Error> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let io = |source: Errno| Error::Io {
            path: path.to_string(),
            source: source.into(),
        };
        let mut fd = rustix::fs::openat(self.root, ".", flags, Mode::empty()).map_err(io)?;
        for name in &path.0 {
            fd = rustix::fs::openat(&fd, &name[..], flags, Mode::empty()).map_err(io)?;
        }
        Ok(fd)
    }

    /// Runs a creating call; an existing name means the image lists a name twice.
    fn create<T>(
        &self,
        path: &ImagePath,
        f: impl FnOnce() -> Result<T, Errno>,
    ) -> Result<T, Error> {
        f().map_err(|e| match e {
            Errno::EXIST => Error::Hostile {
                path: path.to_string(),
                why: "a name listed twice in its directory",
            },
            e => Error::Io {
                path: path.to_string(),
                source: e.into(),
            },
        })
    }

    fn non_directory(
        &mut self,
        dir: &OwnedFd,
        name: &[u8],
        ino: InodeNo,
        inode: &Inode,
        path: ImagePath,
    ) -> Result<(), Error> {
        if let Some(first) = self.links.get(&ino.0) {
            let first = first.relative();
            self.create(&path, || {
                rustix::fs::linkat(self.root, &first[..], dir, name, AtFlags::empty())
            })?;
            self.stats.hard_links += 1;
            return Ok(());
        }
        let io = |source: Errno| Error::Io {
            path: path.to_string(),
            source: source.into(),
        };
        let perm = Mode::from_raw_mode(inode.permissions().into());
        let at_flags = AtFlags::SYMLINK_NOFOLLOW;
        match inode.file_type() {
            Some(FileType::Regular) => {
                let fd = self.create(&path, || {
                    rustix::fs::openat(
                        dir,
                        name,
                        OFlags::WRONLY
                            | OFlags::CREATE
                            | OFlags::EXCL
                            | OFlags::NOFOLLOW
                            | OFlags::CLOEXEC,
                        Mode::RUSR | Mode::WUSR,
                    )
                })?;
                let file = std::fs::File::from(fd);
                self.copy_data(&file, ino, inode, &path)?;
                if self.options.owners {
                    rustix::fs::fchown(&file, uid(inode), gid(inode)).map_err(io)?;
                }
                // After chown, which clears setuid/setgid.
                rustix::fs::fchmod(&file, perm).map_err(io)?;
                rustix::fs::futimens(&file, &timestamps(inode)).map_err(io)?;
                self.stats.files += 1;
            }
            Some(FileType::Symlink) => {
                let target = self
                    .fs
                    .read_link(ino, inode)
                    .map_err(|source| Error::Image {
                        path: path.to_string(),
                        source,
                    })?;
                if target.contains(&0) {
                    return Err(Error::Hostile {
                        path: path.to_string(),
                        why: "a symlink target containing a NUL byte",
                    });
                }
                self.create(&path, || rustix::fs::symlinkat(&target[..], dir, name))?;
                if self.options.owners {
                    rustix::fs::chownat(dir, name, uid(inode), gid(inode), at_flags).map_err(io)?;
                }
                rustix::fs::utimensat(dir, name, &timestamps(inode), at_flags).map_err(io)?;
                self.stats.symlinks += 1;
            }
            Some(
                kind @ (FileType::Fifo
                | FileType::Socket
                | FileType::CharDevice
                | FileType::BlockDevice),
            ) => {
                let (file_type, dev) = match kind {
                    FileType::Fifo => (rustix::fs::FileType::Fifo, 0),
                    FileType::Socket => (rustix::fs::FileType::Socket, 0),
                    _ if !self.options.devices => {
                        self.stats.skipped_devices.push(path.to_string());
                        return Ok(());
                    }
                    FileType::CharDevice => {
                        let (major, minor) = inode.rdev();
                        (
                            rustix::fs::FileType::CharacterDevice,
                            rustix::fs::makedev(major, minor),
                        )
                    }
                    _ => {
                        let (major, minor) = inode.rdev();
                        (
                            rustix::fs::FileType::BlockDevice,
                            rustix::fs::makedev(major, minor),
                        )
                    }
                };
                self.create(&path, || {
                    rustix::fs::mknodat(dir, name, file_type, Mode::RUSR | Mode::WUSR, dev)
                })?;
                if self.options.owners {
                    rustix::fs::chownat(dir, name, uid(inode), gid(inode), at_flags).map_err(io)?;
                }
                // Just made by us in a directory only we can write: not a symlink.
                rustix::fs::chmodat(dir, name, perm, AtFlags::empty()).map_err(io)?;
                rustix::fs::utimensat(dir, name, &timestamps(inode), at_flags).map_err(io)?;
                self.stats.special += 1;
            }
            Some(FileType::Directory) | None => {
                return Err(Error::Hostile {
                    path: path.to_string(),
                    why: "an inode of unknown type",
                });
            }
        }
        if inode.links_count > 1 {
            self.links.insert(ino.0, path);
        }
        Ok(())
    }

    /// Copies a regular file's bytes, writing only blocks that hold something other than
    /// zeros so that holes stay holes.
    fn copy_data(
        &mut self,
        file: &std::fs::File,
        ino: InodeNo,
        inode: &Inode,
        path: &ImagePath,
    ) -> Result<(), Error> {
        let block = self.fs.block_size().get() as usize;
        let mut offset = 0u64;
        while offset < inode.size {
            let n = self
                .fs
                .read(ino, inode, offset, &mut self.buf)
                .map_err(|source| Error::Image {
                    path: path.to_string(),
                    source,
                })?;
            if n == 0 {
                break;
            }
            for (i, chunk) in self.buf[..n].chunks(block).enumerate() {
                if chunk.iter().any(|&b| b != 0) {
                    file.write_all_at(chunk, offset + (i * block) as u64)
                        .map_err(|source| Error::Io {
                            path: path.to_string(),
                            source,
                        })?;
                }
            }
            offset += n as u64;
            self.stats.bytes += n as u64;
            (self.progress)(self.stats.bytes);
        }
        file.set_len(inode.size).map_err(|source| Error::Io {
            path: path.to_string(),
            source,
        })
    }
}

/// Removes an extracted tree, making its directories writable first (an image may hold
/// read-only ones). Best effort: used on the way out, when nothing better can be done.
pub fn remove(dir: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt as _;
    fn unlock(dir: &std::path::Path) {
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    unlock(&entry.path());
                }
            }
        }
    }
    unlock(dir);
    let _ = std::fs::remove_dir_all(dir);
}
