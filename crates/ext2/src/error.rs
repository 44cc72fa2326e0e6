//! The reader's error type: I/O, corrupt input (saying what and where) and unsupported
//! features are kept apart, and every error maps to an errno for FUSE replies.

use std::fmt;
use std::io;

use crate::units::InodeNo;

// Linux errno values, spelled out so that this format crate needs no libc.
const ENOENT: i32 = 2;
const EIO: i32 = 5;
const ENOTDIR: i32 = 20;
const EINVAL: i32 = 22;
const EFBIG: i32 = 27;
const EOPNOTSUPP: i32 = 95;

/// Why reading an image failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// Reading the underlying bytes failed.
    Io(io::Error),
    /// The image is not a valid ext2 filesystem.
    Corrupt(Corrupt),
    /// The image uses something this reader does not implement.
    Unsupported(Unsupported),
    /// The caller asked for inode 0 or an inode number past `s_inodes_count`.
    NoSuchInode {
        /// The inode asked for.
        ino: InodeNo,
        /// How many inodes the image has.
        inodes_count: u32,
    },
    /// A directory operation on an inode that is not a directory.
    NotADirectory(InodeNo),
    /// `read_link` on an inode that is not a symbolic link.
    NotASymlink(InodeNo),
    /// `read` on an inode that is neither a regular file nor a directory.
    NotAFile(InodeNo),
    /// `file_blocks` on a file with more blocks than it is willing to list.
    TooManyBlocks {
        /// The file.
        ino: InodeNo,
        /// How many blocks its size covers.
        blocks: u64,
    },
}

impl Error {
    /// The errno to answer a FUSE request with.
    #[must_use]
    pub fn errno(&self) -> i32 {
        match self {
            Error::Io(e) => e.raw_os_error().unwrap_or(EIO),
            Error::Corrupt(_) => EIO,
            Error::Unsupported(_) => EOPNOTSUPP,
            Error::NoSuchInode { .. } => ENOENT,
            Error::NotADirectory(_) => ENOTDIR,
            Error::NotASymlink(_) | Error::NotAFile(_) => EINVAL,
            Error::TooManyBlocks { .. } => EFBIG,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => write!(f, "reading the image: {e}"),
            Error::Corrupt(c) => write!(f, "corrupt ext2 image: {c}"),
            Error::Unsupported(u) => write!(f, "unsupported ext2 image: {u}"),
            Error::NoSuchInode { ino, inodes_count } => {
                write!(
                    f,
                    "inode {ino}: no such inode (the image has {inodes_count})"
                )
            }
            Error::NotADirectory(ino) => write!(f, "inode {ino}: not a directory"),
            Error::NotASymlink(ino) => write!(f, "inode {ino}: not a symbolic link"),
            Error::NotAFile(ino) => write!(f, "inode {ino}: not a regular file or directory"),
            Error::TooManyBlocks { ino, blocks } => {
                write!(f, "inode {ino}: too many blocks to list ({blocks})")
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}

impl From<Corrupt> for Error {
    fn from(c: Corrupt) -> Self {
        Error::Corrupt(c)
    }
}

impl From<Unsupported> for Error {
    fn from(u: Unsupported) -> Self {
        Error::Unsupported(u)
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Io(e) => e,
            other => io::Error::from_raw_os_error(other.errno()),
        }
    }
}

/// What is wrong with a corrupt image, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Corrupt {
    /// A structure was cut short.
    Truncated {
        /// The structure.
        what: &'static str,
        /// The bytes there were.
        len: usize,
        /// The bytes needed.
        needed: usize,
    },
    /// The superblock magic is not `0xEF53`.
    Magic(u16),
    /// A superblock field has an impossible value.
    Superblock {
        /// The field, named as in `struct ext2_super_block` without `s_`.
        field: &'static str,
        /// Its value.
        value: u64,
    },
    /// The image is shorter than its superblock says.
    ImageTooSmall {
        /// Bytes the superblock describes.
        needed: u64,
        /// Bytes the image has.
        size: u64,
    },
    /// A group descriptor points outside the image or into other metadata.
    GroupDesc {
        /// The block group.
        group: u32,
        /// The field, named as in `struct ext2_group_desc` without `bg_`.
        field: &'static str,
        /// Its value.
        block: u32,
    },
    /// An inode is inconsistent.
    Inode {
        /// The inode.
        ino: InodeNo,
        /// What is wrong.
        reason: &'static str,
    },
    /// An inode's block pointer (direct or indirect) is invalid.
    BlockPointer {
        /// The inode.
        ino: InodeNo,
        /// The pointer.
        block: u32,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A directory record is invalid.
    DirEntry {
        /// The directory.
        dir: InodeNo,
        /// The record's byte offset in the directory.
        offset: u64,
        /// What is wrong.
        reason: &'static str,
    },
}

impl fmt::Display for Corrupt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Corrupt::Truncated { what, len, needed } => {
                write!(f, "{what}: truncated ({len} bytes, need {needed})")
            }
            Corrupt::Magic(m) => write!(f, "superblock: bad magic {m:#06x} (not ext2)"),
            Corrupt::Superblock { field, value } => {
                write!(f, "superblock: invalid {field} {value}")
            }
            Corrupt::ImageTooSmall { needed, size } => write!(
                f,
                "image truncated: the superblock describes {needed} bytes, the image has {size}"
            ),
            Corrupt::GroupDesc {
                group,
                field,
                block,
            } => write!(
                f,
                "group {group}: {field} block {block} outside the image or overlapping metadata"
            ),
            Corrupt::Inode { ino, reason } => write!(f, "inode {ino}: {reason}"),
            Corrupt::BlockPointer { ino, block, reason } => {
                write!(f, "inode {ino}: block pointer {block} {reason}")
            }
            Corrupt::DirEntry {
                dir,
                offset,
                reason,
            } => write!(
                f,
                "directory inode {dir}: entry at offset {offset}: {reason}"
            ),
        }
    }
}

/// A feature of the image this reader does not implement.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Unsupported {
    /// An incompatible feature, by its e2fsprogs name (`extents`, `64bit`, ...).
    Feature(&'static str),
    /// Incompatible feature bits this reader does not know.
    UnknownIncompat(u32),
    /// A superblock revision other than 0 or 1.
    Revision(u32),
    /// `s_log_block_size` beyond 64 KiB blocks.
    BlockSize {
        /// `s_log_block_size`.
        log: u32,
    },
    /// An inode flag that changes how its data is stored (`extents`, `inline_data`).
    InodeFlag {
        /// The inode.
        ino: InodeNo,
        /// The feature.
        feature: &'static str,
    },
}

impl fmt::Display for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unsupported::Feature(name) => {
                write!(f, "feature `{name}` is not supported (ext2/ext3 only)")
            }
            Unsupported::UnknownIncompat(bits) => {
                write!(f, "unknown incompatible feature bits {bits:#x}")
            }
            Unsupported::Revision(r) => write!(f, "revision {r} (only 0 and 1 exist)"),
            Unsupported::BlockSize { log } => {
                write!(f, "block size 1024 << {log} (at most 64 KiB supported)")
            }
            Unsupported::InodeFlag { ino, feature } => {
                write!(f, "inode {ino}: uses `{feature}` (ext2/ext3 only)")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_say_what_and_where() {
        let e = Error::Corrupt(Corrupt::BlockPointer {
            ino: InodeNo(12),
            block: 99999,
            reason: "past end of image",
        });
        assert_eq!(
            e.to_string(),
            "corrupt ext2 image: inode 12: block pointer 99999 past end of image"
        );
        assert_eq!(e.errno(), EIO);
        let e = Error::Unsupported(Unsupported::Feature("extents"));
        assert_eq!(
            e.to_string(),
            "unsupported ext2 image: feature `extents` is not supported (ext2/ext3 only)"
        );
        assert_eq!(e.errno(), EOPNOTSUPP);
        assert_eq!(Error::NotADirectory(InodeNo(5)).errno(), ENOTDIR);
        let io: io::Error = Error::NotASymlink(InodeNo(5)).into();
        assert_eq!(io.raw_os_error(), Some(EINVAL));
    }
}
