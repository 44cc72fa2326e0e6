//! The writer: a directory tree in, a minimal, deterministic ext2 image out.
//!
//! [`Image::scan`] walks the source tree once and plans the smallest layout that holds it;
//! [`Image::write_to`] then writes the image into a file (or memfd) with positioned writes.
//!
//! ```no_run
//! use glick_ext2::write::{Image, Options};
//!
//! let image = Image::scan("app".as_ref(), &Options::default())?;
//! let out = std::fs::File::create("app.ext2")?;
//! out.set_len(image.size())?;
//! image.write_to(&out, &mut |_done, _total| {})?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # What the image holds
//!
//! ext2 revision 1 with the `filetype`, `sparse_super` and `large_file` features, 128-byte
//! inodes, no journal, no resize inode, no reserved blocks, and an empty `lost+found` (or the
//! source's own) so that `e2fsck -fn` is clean. Every kind of entry a Linux tree holds: files,
//! directories, fast and slow symlinks, hard links (one inode, the number of links inside the
//! tree), fifos, sockets and devices.
//!
//! A file's allocated blocks are the blocks of its source data (`SEEK_DATA`) that hold a
//! non-zero byte: source holes stay holes and every all-zero block becomes one too, as
//! `mke2fs -d` does; an indirect block is allocated only where it maps a data block, and a
//! file's indirect blocks all precede its data, which is then one contiguous run. The scan
//! reads each file's data once to find its zero blocks (the layout needs their count before
//! it places anything) and the writer reads it again to copy it.
//!
//! # Determinism
//!
//! Entries are in byte order of names; inode numbers follow a breadth-first walk; every file
//! is contiguous except where group metadata interrupts it. Nothing depends on the clock:
//! each inode's atime, ctime and mtime are the source's mtime (clamped to `SOURCE_DATE_EPOCH`
//! when set); the superblock's times are `SOURCE_DATE_EPOCH`, or 0 when it is not set. The UUID
//! and directory hash seed are a SHA-256 of the tree's names, metadata and the positions of
//! each file's non-zero data (not the file contents: hashing them would cost more than the
//! rest of the build). Timestamps outside the signed 32-bit range ext2 holds are clamped to it.
//!
//! # Errors
//!
//! Every [`Error`] names the path it is about: an unreadable or vanished entry, a tree ext2
//! can't hold (a file too large for the block size, too many links, a symlink target longer
//! than a block), or a file that changed while it was being imaged.

mod emit;
mod layout;
mod scan;
#[cfg(test)]
mod tests;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use crate::units::BlockSize;

/// How to build an image.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The block size; `None` picks the one that makes the smallest image (ties go to the
    /// larger block).
    pub block_size: Option<BlockSize>,
    /// The volume label (at most 16 bytes are stored).
    pub label: Option<String>,
    /// Keep the source's owners instead of making everything 0:0.
    pub keep_owner: bool,
    /// `SOURCE_DATE_EPOCH`: the latest timestamp the image may hold, and its creation time.
    pub source_date_epoch: Option<i64>,
    /// Free space to leave in the image, in bytes.
    pub extra_bytes: u64,
    /// Free inodes to leave in the image.
    pub extra_inodes: u32,
}

/// Which ext2 limit a tree exceeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Limit {
    /// A file larger than the block size's indirect-block tree (or `i_blocks`) can map.
    FileSize {
        /// The file's size.
        size: u64,
        /// The largest size ext2 holds at this block size.
        max: u64,
        /// The block size.
        block_size: u32,
    },
    /// A symlink target that doesn't fit in one block.
    SymlinkLength {
        /// The target's length.
        len: usize,
        /// The block size.
        block_size: u32,
    },
    /// More blocks or inodes than ext2's 32-bit counters hold.
    ImageSize {
        /// The block size.
        block_size: u32,
    },
}

/// Why an image could not be built. Each names the path it is about.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// Reading `path` failed.
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// Writing the image failed.
    Output(io::Error),
    /// The source is not a directory.
    NotADirectory {
        /// The source.
        path: PathBuf,
    },
    /// A name longer than the 255 bytes a directory record holds.
    NameTooLong {
        /// The entry.
        path: PathBuf,
    },
    /// More links to one inode (hard links, or subdirectories of a directory) than ext2's
    /// 32,000.
    TooManyLinks {
        /// The file or directory.
        path: PathBuf,
        /// How many it would have.
        links: u64,
    },
    /// Beyond what ext2 can hold.
    TooLarge {
        /// The offending entry (the source root for the image as a whole).
        path: PathBuf,
        /// Which limit.
        what: Limit,
    },
    /// `lost+found` at the root of the source is not a directory.
    LostFoundNotADirectory {
        /// The entry.
        path: PathBuf,
    },
    /// A file changed size (or kind) between the scan and the write.
    Changed {
        /// The file.
        path: PathBuf,
    },
}

impl Error {
    pub(crate) fn io(path: &Path, source: io::Error) -> Self {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// The path the error is about, if any (not for [`Error::Output`]).
    #[must_use]
    pub fn path(&self) -> Option<&Path> {
        match self {
            Error::Io { path, .. }
            | Error::NotADirectory { path }
            | Error::NameTooLong { path }
            | Error::TooManyLinks { path, .. }
            | Error::TooLarge { path, .. }
            | Error::LostFoundNotADirectory { path }
            | Error::Changed { path } => Some(path),
            Error::Output(_) => None,
        }
    }
}

/// An `io::Error`'s message without the " (os error N)" suffix std adds.
pub(crate) fn io_cause(e: &io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error ") {
        Some(at) => text[..at].to_owned(),
        None => text,
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(path) = self.path() {
            write!(f, "{}: ", path.display())?;
        }
        match self {
            Error::Io { source, .. } => f.write_str(&io_cause(source)),
            Error::Output(source) => write!(f, "writing the image: {}", io_cause(source)),
            Error::NotADirectory { .. } => f.write_str("not a directory"),
            Error::NameTooLong { .. } => f.write_str("name longer than 255 bytes"),
            Error::TooManyLinks { links, .. } => {
                write!(
                    f,
                    "{links} links, more than ext2's limit of {}",
                    scan::LINK_MAX
                )
            }
            Error::TooLarge { what, .. } => match what {
                Limit::FileSize {
                    size,
                    max,
                    block_size,
                } => write!(
                    f,
                    "file of {size} bytes is larger than ext2 holds with {block_size}-byte \
                     blocks ({max} bytes)"
                ),
                Limit::SymlinkLength { len, block_size } => write!(
                    f,
                    "symlink target of {len} bytes does not fit in a {block_size}-byte block"
                ),
                Limit::ImageSize { block_size } => {
                    write!(
                        f,
                        "tree too large for an ext2 image with {block_size}-byte blocks"
                    )
                }
            },
            Error::LostFoundNotADirectory { .. } => {
                f.write_str("lost+found at the root of an ext2 image must be a directory")
            }
            Error::Changed { .. } => f.write_str("file changed while the image was written"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } | Error::Output(source) => Some(source),
            _ => None,
        }
    }
}

/// A scanned source tree and the layout of its image.
#[derive(Debug)]
pub struct Image {
    tree: scan::Tree,
    geometry: layout::Geometry,
    /// Content blocks planned (what the writer must allocate, without the extra space).
    content_blocks: u64,
    label: [u8; 16],
    /// Superblock times.
    time: u32,
    uuid: [u8; 16],
    hash_seed: [u32; 4],
}

impl Image {
    /// Walks `source` and plans its image.
    ///
    /// # Errors
    ///
    /// The source can't be read, is not a directory, or holds something ext2 can't.
    pub fn scan(source: &Path, options: &Options) -> Result<Image, Error> {
        let tree = scan::scan(source, options)?;
        let (geometry, content_blocks) = match options.block_size {
            Some(bs) => plan_at(&tree, bs.get(), options, source)?,
            None => {
                let mut best: Option<(layout::Geometry, u64)> = None;
                let mut last_err = None;
                // Largest first so that a tie keeps the larger block.
                for bs in layout::BLOCK_SIZES.iter().rev() {
                    match plan_at(&tree, *bs, options, source) {
                        Ok(plan) => {
                            if best.as_ref().is_none_or(|b| plan.0.size() < b.0.size()) {
                                best = Some(plan);
                            }
                        }
                        Err(e) => {
                            if last_err.is_none() {
                                last_err = Some(e);
                            }
                        }
                    }
                }
                match (best, last_err) {
                    (Some(best), _) => best,
                    (None, Some(e)) => return Err(e),
                    (None, None) => unreachable!("three block sizes were tried"),
                }
            }
        };
        let mut label = [0u8; 16];
        if let Some(l) = &options.label {
            let bytes = l.as_bytes();
            let n = bytes.len().min(16);
            label[..n].copy_from_slice(&bytes[..n]);
        }
        let time = options
            .source_date_epoch
            .map_or(0, |t| u32::try_from(t.max(0)).unwrap_or(u32::MAX));
        let (uuid, hash_seed) = emit::identity(&tree, &geometry, &label, time);
        Ok(Image {
            tree,
            geometry,
            content_blocks,
            label,
            time,
            uuid,
            hash_seed,
        })
    }

    /// The image's size in bytes.
    #[must_use]
    pub fn size(&self) -> u64 {
        self.geometry.size()
    }

    /// The block size chosen.
    #[must_use]
    pub fn block_size(&self) -> BlockSize {
        BlockSize::new(self.geometry.block_size).unwrap_or(BlockSize::KIB_4)
    }

    /// The number of inodes (used and free).
    #[must_use]
    pub fn inode_count(&self) -> u32 {
        self.geometry.inodes_count()
    }

    /// The number of entries in the tree: inodes in use other than the reserved ones.
    #[must_use]
    pub fn entry_count(&self) -> u64 {
        self.tree.nodes.len() as u64
    }

    /// Bytes of file data `write_to` copies: what its progress callback counts.
    #[must_use]
    pub fn data_bytes(&self) -> u64 {
        emit::data_bytes(&self.tree, self.geometry.block_size)
    }

    /// The volume UUID (derived from the tree).
    #[must_use]
    pub fn uuid(&self) -> [u8; 16] {
        self.uuid
    }

    /// Writes the image into `out`, which must already be [`size`](Self::size) bytes long
    /// (`set_len`): blocks that stay zero are not written, so the image file is sparse.
    /// `progress` is called now and then with the file-data bytes copied so far and the total.
    ///
    /// # Errors
    ///
    /// A source file can't be read or changed since the scan, or writing `out` failed.
    pub fn write_to(
        &self,
        out: &std::fs::File,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<(), Error> {
        emit::write(self, out, progress)
    }
}

fn plan_at(
    tree: &scan::Tree,
    block_size: u32,
    options: &Options,
    source: &Path,
) -> Result<(layout::Geometry, u64), Error> {
    let geometry = layout::plan_tree(
        tree,
        block_size,
        options.extra_bytes,
        options.extra_inodes,
        source,
    )?;
    let content = layout::content_blocks(tree, block_size)?;
    Ok((geometry, content))
}
