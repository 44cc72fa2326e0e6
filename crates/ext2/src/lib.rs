//! Read and write minimal, deterministic ext2 images.
//!
//! glick carries an application's files as an ext2 image inside the bundle's executable.
//! This crate is the knowledge of that format: [`write`](mod@write) makes the smallest image a tree
//! fits in (see its docs), and [`Ext2`] reads images, ours and those `mke2fs` makes.
//!
//! # Reading
//!
//! [`Ext2::open`] takes anything that implements [`ReadAt`] (a byte slice, a `Vec<u8>`, a
//! [`FileRegion`] of an open file such as the image section of a bundle) and checks the
//! superblock and group descriptors. From there everything is by inode number, as a FUSE
//! server asks: [`Ext2::lookup`] a name in a directory, [`Ext2::inode`] for attributes,
//! [`Ext2::read`] a byte range into the caller's buffer, [`Ext2::read_dir`] from an offset,
//! [`Ext2::read_link`]. `Ext2<R>` is `Send + Sync` when `R` is.
//!
//! ```no_run
//! use glick_ext2::{Ext2, FileRegion, InodeNo};
//!
//! let file = std::fs::File::open("app.ext2")?;
//! let fs = Ext2::open(FileRegion::whole(file)?)?;
//! for entry in fs.read_dir(InodeNo::ROOT, 0)? {
//!     let entry = entry?;
//!     println!("{}", String::from_utf8_lossy(&entry.name));
//! }
//! if let Some(ino) = fs.lookup(InodeNo::ROOT, b"start")? {
//!     let inode = fs.inode(ino)?;
//!     let mut head = [0u8; 2];
//!     let n = fs.read(ino, &inode, 0, &mut head)?;
//!     println!("start begins with {:?}, mode {:o}", &head[..n], inode.permissions());
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! What it reads: ext2 revision 0 and 1 and ext3 (the journal is ignored) with 1 to 64 KiB
//! blocks, 128-byte and larger inodes (nanosecond timestamps), direct to triple-indirect
//! block maps with holes, files over 4 GiB (`large_file`), `dir_index` directories (read
//! linearly). It refuses, naming the feature, what it can't read: ext4's `extents` and
//! `64bit`, `meta_bg`, compression, `inline_data`, encryption, case folding and unknown
//! incompatible features.
//!
//! The on-disk structures have a module each ([`superblock`], [`block_group`], [`inode`],
//! [`dir_entry`]), with `from_bytes` and `to_bytes`, shared by the reader and the writer.
//!
//! # Errors
//!
//! Reading returns [`Error`]: [`Error::Io`] when the bytes can't be read,
//! [`Error::Corrupt`] with what is wrong and where ("inode 12: block pointer 99999 past end
//! of image"), [`Error::Unsupported`] for features it does not read, and errors for
//! requests that don't fit the inode (reading a directory's entries from a file, ...).
//! [`Error::errno`] maps each to the errno a FUSE reply needs.
//!
//! Images are untrusted input: on any bytes the reader returns an error rather than
//! panicking, and bounds its work and memory by the size of the image and the caller's
//! buffers (directory records, block pointers, sizes and counts are all checked; indirect
//! block chains and directory loops can't make it loop). A cargo-fuzz target checks this
//! (`fuzz/` in the repository).

#![forbid(unsafe_code)]

pub mod block_group;
mod bytes;
pub mod dir_entry;
pub mod error;
mod fs;
pub mod inode;
mod name_cache;
pub mod read_at;
pub mod superblock;
pub mod units;
pub mod write;

#[cfg(test)]
mod test_image;

pub use block_group::GroupDesc;
pub use dir_entry::{DirEntry, DirEntryRef, rec_len_for};
pub use error::{Corrupt, Error, Unsupported};
pub use fs::{Ext2, ReadDir};
pub use inode::{FileType, Inode};
pub use read_at::{FileRegion, ReadAt};
pub use superblock::{Superblock, feature, has_superblock_backup};
pub use units::{BlockNo, BlockSize, InodeNo};
