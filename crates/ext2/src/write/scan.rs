//! Walking the source tree: one [`Node`] per future inode, one [`Entry`] per directory record.
//!
//! The walk is breadth-first with an explicit queue (no recursion, so a tree 500 or 50,000
//! levels deep costs no stack), reads each directory once, sorts its names by bytes and
//! `statx`es each entry relative to its directory's descriptor; paths longer than the
//! kernel's `PATH_MAX` are opened piece by piece ([`open_path`]). Symlinks are never followed.
//!
//! Every non-empty regular file is read once here, because the layout must know before it
//! places the first block which blocks will be holes: the source's own holes (found with
//! `SEEK_DATA`/`SEEK_HOLE` when the block count says the file may be sparse, and not read)
//! and every all-zero block of its data, which the image stores as a hole too, as
//! `mke2fs -d` does. Zeros are found at the grain of the smallest block size
//! ([`ZERO_GRAIN`]), so one scan serves every block size the planner tries. The writer reads
//! the data again when it copies it (from the page cache, for trees that fit in memory).

use std::collections::{HashMap, VecDeque};
use std::ffi::OsStr;
use std::io;
use std::ops::Range;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, StatxFlags};

use super::{Error, Options};

/// The longest name an ext2 directory record can hold.
pub(crate) const MAX_NAME_LEN: usize = 255;

/// The most links an ext2 inode may have (the kernel's `EXT2_LINK_MAX`).
pub(crate) const LINK_MAX: u32 = 32_000;

/// The granularity at which all-zero data is found: the smallest block size the writer uses,
/// so that a block of any size is all zero exactly when each of its grains is.
pub(crate) const ZERO_GRAIN: u64 = 1024;

/// Bytes read at a time while looking for zeros (a multiple of [`ZERO_GRAIN`]).
const READ_CHUNK: usize = 256 << 10;

/// Node index of the root directory (inode 2).
pub(crate) const ROOT: u32 = 0;
/// Node index of `lost+found` (inode 11, the first non-reserved inode).
pub(crate) const LOST_FOUND: u32 = 1;

pub(crate) const LOST_FOUND_NAME: &[u8] = b"lost+found";

// File type bits of `st_mode`.
pub(crate) const S_IFDIR: u32 = 0o040_000;

/// What an inode holds.
#[derive(Debug)]
pub(crate) enum Kind {
    /// A regular file of `size` bytes whose non-zero bytes all lie in the sorted, disjoint,
    /// non-touching byte ranges `data`. Each range starts and ends on a [`ZERO_GRAIN`]
    /// boundary or at a boundary of the source's data (the end of the file included), and
    /// every grain it touches holds a non-zero byte; everything else (source holes, all-zero
    /// grains) reads as zeros. So at any block size the blocks `data` touches are exactly
    /// the blocks that are not all zero.
    File {
        size: u64,
        data: Vec<Range<u64>>,
    },
    /// A directory whose records are `entries` in [`Tree::entries`].
    Dir {
        entries: Range<u32>,
    },
    Symlink {
        target: Vec<u8>,
    },
    /// A character or block device (which one is in the mode).
    Device {
        major: u32,
        minor: u32,
    },
    /// A fifo or a socket: nothing but the inode.
    Special,
}

/// One future inode.
#[derive(Debug)]
pub(crate) struct Node {
    pub kind: Kind,
    /// `st_mode`: type and permission bits.
    pub mode: u16,
    pub uid: u32,
    pub gid: u32,
    /// Modification time, already clamped to `SOURCE_DATE_EPOCH`.
    pub mtime: i64,
    /// Directory records naming this node (for a directory: 2 + subdirectories).
    pub links: u32,
    /// Where it came from: read at write time and named in errors.
    pub path: PathBuf,
}

/// One directory record (other than `.` and `..`).
#[derive(Debug)]
pub(crate) struct Entry {
    pub name: Box<[u8]>,
    pub node: u32,
}

/// A scanned source tree. `nodes[0]` is the root, `nodes[1]` is `lost+found`; the rest are in
/// breadth-first order, each directory's children consecutive and in name order.
#[derive(Debug)]
pub(crate) struct Tree {
    pub nodes: Vec<Node>,
    pub entries: Vec<Entry>,
}

impl Tree {
    /// The inode number node `index` gets: the root is 2, `lost+found` 11, the rest follow.
    pub(crate) fn ino(index: u32) -> u32 {
        if index == ROOT { 2 } else { index + 10 }
    }

    /// Inodes in use: the ten reserved ones, `lost+found` and everything after it.
    pub(crate) fn used_inodes(&self) -> u64 {
        self.nodes.len() as u64 + 9
    }

    pub(crate) fn children(&self, entries: &Range<u32>) -> &[Entry] {
        &self.entries[entries.start as usize..entries.end as usize]
    }
}

/// What the walk needs of an entry's `statx`.
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
    size: u64,
    blocks: u64,
    nlink: u32,
    dev: (u32, u32),
    ino: u64,
    rdev: (u32, u32),
}

impl Meta {
    fn stat(dir: impl AsFd, name: impl rustix::path::Arg, flags: AtFlags) -> io::Result<Meta> {
        let st = rustix::fs::statx(dir, name, flags, StatxFlags::BASIC_STATS)?;
        Ok(Meta {
            mode: u32::from(st.stx_mode),
            uid: st.stx_uid,
            gid: st.stx_gid,
            mtime: st.stx_mtime.tv_sec,
            size: st.stx_size,
            blocks: st.stx_blocks,
            nlink: st.stx_nlink,
            dev: (st.stx_dev_major, st.stx_dev_minor),
            ino: st.stx_ino,
            rdev: (st.stx_rdev_major, st.stx_rdev_minor),
        })
    }

    fn file_type(&self) -> FileType {
        FileType::from_raw_mode(self.mode)
    }
}

/// Paths at least this long are opened in pieces (the kernel refuses `PATH_MAX`, 4096).
const LONG_PATH: usize = 3072;

/// Opens `path`, however long: a path the kernel would refuse as too long is opened one
/// shorter piece at a time, each relative to the directory before it.
pub(crate) fn open_path(path: &Path, flags: OFlags) -> io::Result<OwnedFd> {
    let flags = flags | OFlags::CLOEXEC;
    if path.as_os_str().len() < LONG_PATH {
        return Ok(rustix::fs::open(path, flags, Mode::empty())?);
    }
    let mut dir: Option<OwnedFd> = None;
    let mut piece = PathBuf::new();
    for component in path.components() {
        let len = component.as_os_str().len();
        if !piece.as_os_str().is_empty() && piece.as_os_str().len() + len + 1 >= LONG_PATH {
            let next = open_at(dir.as_ref(), &piece, OFlags::PATH | OFlags::DIRECTORY)?;
            dir = Some(next);
            piece.clear();
        }
        piece.push(component);
    }
    open_at(dir.as_ref(), &piece, flags)
}

fn open_at(dir: Option<&OwnedFd>, path: &Path, flags: OFlags) -> io::Result<OwnedFd> {
    let flags = flags | OFlags::CLOEXEC;
    Ok(match dir {
        Some(fd) => rustix::fs::openat(fd, path, flags, Mode::empty())?,
        None => rustix::fs::openat(rustix::fs::CWD, path, flags, Mode::empty())?,
    })
}

/// Walks `source` (following it if it is itself a symlink, never below).
pub(crate) fn scan(source: &Path, options: &Options) -> Result<Tree, Error> {
    let root_meta =
        Meta::stat(rustix::fs::CWD, source, AtFlags::empty()).map_err(|e| Error::io(source, e))?;
    if root_meta.file_type() != FileType::Directory {
        return Err(Error::NotADirectory {
            path: source.to_path_buf(),
        });
    }
    let mut walk = Walk {
        options,
        nodes: Vec::new(),
        entries: Vec::new(),
        hard_links: HashMap::new(),
        buf: Vec::new(),
    };
    let root = walk.node_from(
        &root_meta,
        source.to_path_buf(),
        Kind::Dir { entries: 0..0 },
    );
    walk.nodes.push(root);
    // lost+found: the source's own if the root has a directory of that name, else an empty
    // one that takes the root's time and owner.
    let mut lost_found = walk.node_from(
        &root_meta,
        source.join("lost+found"),
        Kind::Dir { entries: 0..0 },
    );
    lost_found.mode = (S_IFDIR | 0o700) as u16;
    lost_found.links = 2;
    walk.nodes.push(lost_found);

    let mut queue = VecDeque::from([ROOT]);
    while let Some(dir) = queue.pop_front() {
        walk.read_dir(dir, &mut queue)?;
    }
    Ok(Tree {
        nodes: walk.nodes,
        entries: walk.entries,
    })
}

struct Walk<'a> {
    options: &'a Options,
    nodes: Vec<Node>,
    entries: Vec<Entry>,
    /// (st_dev, st_ino) → node, for non-directories with more than one link.
    hard_links: HashMap<((u32, u32), u64), u32>,
    /// Scratch space for reading file data.
    buf: Vec<u8>,
}

impl Walk<'_> {
    fn node_from(&self, meta: &Meta, path: PathBuf, kind: Kind) -> Node {
        let (uid, gid) = if self.options.keep_owner {
            (meta.uid, meta.gid)
        } else {
            (0, 0)
        };
        let mtime = match self.options.source_date_epoch {
            Some(epoch) => meta.mtime.min(epoch),
            None => meta.mtime,
        };
        Node {
            kind,
            mode: meta.mode as u16,
            uid,
            gid,
            mtime,
            links: 1,
            path,
        }
    }

    /// Reads directory `dir`, appends its records to `entries` and its new nodes to `nodes`,
    /// and queues its subdirectories.
    fn read_dir(&mut self, dir: u32, queue: &mut VecDeque<u32>) -> Result<(), Error> {
        let dir_path = self.nodes[dir as usize].path.clone();
        let fd = open_path(&dir_path, OFlags::RDONLY | OFlags::DIRECTORY)
            .map_err(|e| Error::io(&dir_path, e))?;
        let mut names: Vec<Box<[u8]>> = Vec::new();
        let reader = rustix::fs::Dir::read_from(&fd).map_err(|e| Error::io(&dir_path, e.into()))?;
        for entry in reader {
            let entry = entry.map_err(|e| Error::io(&dir_path, e.into()))?;
            let name = entry.file_name().to_bytes();
            if name != b"." && name != b".." {
                names.push(name.into());
            }
        }
        names.sort_unstable();

        let first = self.entries.len() as u32;
        let mut has_lost_found = false;
        let mut subdirs = 0u32;
        for name in names {
            let os_name = OsStr::from_bytes(&name);
            let path = dir_path.join(os_name);
            if name.len() > MAX_NAME_LEN {
                return Err(Error::NameTooLong { path });
            }
            let meta = Meta::stat(&fd, os_name, AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|e| Error::io(&path, e))?;
            if dir == ROOT && &*name == LOST_FOUND_NAME {
                if meta.file_type() != FileType::Directory {
                    return Err(Error::LostFoundNotADirectory { path });
                }
                // The source's own lost+found becomes inode 11.
                let mut node = self.node_from(&meta, path, Kind::Dir { entries: 0..0 });
                node.links = 2;
                self.nodes[LOST_FOUND as usize] = node;
                self.entries.push(Entry {
                    name,
                    node: LOST_FOUND,
                });
                queue.push_back(LOST_FOUND);
                has_lost_found = true;
                subdirs += 1;
                continue;
            }
            let node = self.node_for(&fd, os_name, &meta, path)?;
            if matches!(self.nodes[node as usize].kind, Kind::Dir { .. }) {
                queue.push_back(node);
                subdirs += 1;
            }
            self.entries.push(Entry { name, node });
        }
        if dir == ROOT && !has_lost_found {
            let at = self.entries[first as usize..].partition_point(|e| &*e.name < LOST_FOUND_NAME);
            self.entries.insert(
                first as usize + at,
                Entry {
                    name: LOST_FOUND_NAME.into(),
                    node: LOST_FOUND,
                },
            );
            subdirs += 1;
        }
        let last = self.entries.len() as u32;
        let node = &mut self.nodes[dir as usize];
        node.kind = Kind::Dir {
            entries: first..last,
        };
        node.links = 2 + subdirs;
        if node.links > LINK_MAX {
            return Err(Error::TooManyLinks {
                path: node.path.clone(),
                links: node.links.into(),
            });
        }
        Ok(())
    }

    /// The node an entry names: a new one, or the existing one for a further hard link.
    fn node_for(
        &mut self,
        dir: &OwnedFd,
        name: &OsStr,
        meta: &Meta,
        path: PathBuf,
    ) -> Result<u32, Error> {
        let file_type = meta.file_type();
        let linked = file_type != FileType::Directory && meta.nlink > 1;
        if linked {
            if let Some(&node) = self.hard_links.get(&(meta.dev, meta.ino)) {
                let n = &mut self.nodes[node as usize];
                n.links += 1;
                if n.links > LINK_MAX {
                    return Err(Error::TooManyLinks {
                        path,
                        links: n.links.into(),
                    });
                }
                return Ok(node);
            }
        }
        let kind = match file_type {
            FileType::RegularFile => {
                let size = meta.size;
                let data = if size > 0 {
                    let file = rustix::fs::openat(
                        dir,
                        name,
                        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOATIME,
                        Mode::empty(),
                    )
                    .or_else(|e| match e {
                        // O_NOATIME is only for the file's owner (or root).
                        rustix::io::Errno::PERM => rustix::fs::openat(
                            dir,
                            name,
                            OFlags::RDONLY | OFlags::CLOEXEC,
                            Mode::empty(),
                        ),
                        e => Err(e),
                    })
                    .map_err(|e| Error::io(&path, e.into()))?;
                    let source = if meta.blocks.saturating_mul(512) < size {
                        data_ranges(&file, &path, size)?
                    } else {
                        vec![Range {
                            start: 0,
                            end: size,
                        }]
                    };
                    nonzero_ranges(&file, &path, &source, &mut self.buf)?
                } else {
                    Vec::new()
                };
                Kind::File { size, data }
            }
            FileType::Directory => Kind::Dir { entries: 0..0 },
            FileType::Symlink => {
                let target = rustix::fs::readlinkat(dir, name, Vec::new())
                    .map_err(|e| Error::io(&path, e.into()))?;
                Kind::Symlink {
                    target: target.into_bytes(),
                }
            }
            FileType::CharacterDevice | FileType::BlockDevice => Kind::Device {
                major: meta.rdev.0,
                minor: meta.rdev.1,
            },
            _ => Kind::Special,
        };
        let node = self.nodes.len() as u32;
        self.nodes.push(self.node_from(meta, path, kind));
        if linked {
            self.hard_links.insert((meta.dev, meta.ino), node);
        }
        Ok(node)
    }
}

/// The byte ranges of a possibly sparse file that hold data, by `SEEK_DATA`/`SEEK_HOLE`.
/// Where the filesystem can't say, the whole file is data.
fn data_ranges(file: &OwnedFd, path: &Path, size: u64) -> Result<Vec<Range<u64>>, Error> {
    use rustix::fs::{SeekFrom, seek};
    let mut ranges = Vec::new();
    let mut offset = 0;
    while offset < size {
        let start = match seek(file, SeekFrom::Data(offset)) {
            Ok(start) => start,
            Err(rustix::io::Errno::NXIO) => break,
            Err(rustix::io::Errno::INVAL | rustix::io::Errno::OPNOTSUPP) if offset == 0 => {
                return Ok(vec![Range {
                    start: 0,
                    end: size,
                }]);
            }
            Err(e) => return Err(Error::io(path, io::Error::from(e))),
        };
        if start >= size {
            break;
        }
        let end = seek(file, SeekFrom::Hole(start))
            .map_err(|e| Error::io(path, io::Error::from(e)))?
            .min(size);
        if end <= start {
            break;
        }
        ranges.push(start..end);
        offset = end;
    }
    Ok(ranges)
}

/// The parts of the source's data ranges that are not all zero, at [`ZERO_GRAIN`]
/// granularity (see [`Kind::File`]). Reads each range once, through `buf`.
fn nonzero_ranges(
    file: &OwnedFd,
    path: &Path,
    source: &[Range<u64>],
    buf: &mut Vec<u8>,
) -> Result<Vec<Range<u64>>, Error> {
    buf.resize(READ_CHUNK, 0);
    let mut out: Vec<Range<u64>> = Vec::new();
    for range in source {
        let mut offset = range.start;
        while offset < range.end {
            // Read up to a grain boundary, so the grains below are aligned to the file.
            let end = (offset - offset % ZERO_GRAIN + READ_CHUNK as u64).min(range.end);
            let len = (end - offset) as usize;
            read_exact_at(file, path, &mut buf[..len], offset)?;
            let mut at = offset;
            for grain in grains(&buf[..len], offset) {
                let next = at + grain.len() as u64;
                if !is_zero(grain) {
                    match out.last_mut() {
                        Some(last) if last.end == at => last.end = next,
                        _ => out.push(at..next),
                    }
                }
                at = next;
            }
            offset = end;
        }
    }
    Ok(out)
}

/// Splits `bytes`, which start at file offset `offset`, at the [`ZERO_GRAIN`] boundaries.
fn grains(bytes: &[u8], offset: u64) -> impl Iterator<Item = &[u8]> {
    let first = ((ZERO_GRAIN - offset % ZERO_GRAIN) as usize).min(bytes.len());
    let (head, rest) = bytes.split_at(first);
    (!head.is_empty())
        .then_some(head)
        .into_iter()
        .chain(rest.chunks(ZERO_GRAIN as usize))
}

/// Whether every byte is zero. Data nearly always has a non-zero byte in its first few, so
/// that is tried first; the rest is OR-ed in word-sized steps the compiler vectorises.
pub(crate) fn is_zero(bytes: &[u8]) -> bool {
    let (head, rest) = bytes.split_at(bytes.len().min(16));
    head.iter().all(|&b| b == 0)
        && rest
            .chunks(64)
            .all(|chunk| chunk.iter().fold(0u8, |acc, &b| acc | b) == 0)
}

/// Reads `buf.len()` bytes at `offset`; a file that ends sooner has changed since its `statx`.
fn read_exact_at(
    file: &OwnedFd,
    path: &Path,
    mut buf: &mut [u8],
    mut offset: u64,
) -> Result<(), Error> {
    while !buf.is_empty() {
        match rustix::io::pread(file, &mut *buf, offset) {
            Ok(0) => {
                return Err(Error::Changed {
                    path: path.to_path_buf(),
                });
            }
            Ok(n) => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(Error::io(path, e.into())),
        }
    }
    Ok(())
}
