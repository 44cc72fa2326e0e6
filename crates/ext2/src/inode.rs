//! Inodes (`struct ext2_inode`): 128 bytes, plus the extra fields of larger inodes
//! (nanosecond timestamps, creation time).

use crate::bytes::{le16, le32, put16, put32};
use crate::error::{Corrupt, Error};

/// What kind of file an inode is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileType {
    /// A regular file.
    Regular,
    /// A directory.
    Directory,
    /// A symbolic link.
    Symlink,
    /// A character device.
    CharDevice,
    /// A block device.
    BlockDevice,
    /// A named pipe.
    Fifo,
    /// A Unix socket.
    Socket,
}

impl FileType {
    const S_IFMT: u16 = 0o170_000;

    /// The type in a mode's `S_IFMT` bits.
    #[must_use]
    pub fn from_mode(mode: u16) -> Option<Self> {
        Some(match mode & Self::S_IFMT {
            0o010_000 => FileType::Fifo,
            0o020_000 => FileType::CharDevice,
            0o040_000 => FileType::Directory,
            0o060_000 => FileType::BlockDevice,
            0o100_000 => FileType::Regular,
            0o120_000 => FileType::Symlink,
            0o140_000 => FileType::Socket,
            _ => return None,
        })
    }

    /// The `S_IFMT` bits of a mode of this type.
    #[must_use]
    pub fn mode_bits(self) -> u16 {
        match self {
            FileType::Fifo => 0o010_000,
            FileType::CharDevice => 0o020_000,
            FileType::Directory => 0o040_000,
            FileType::BlockDevice => 0o060_000,
            FileType::Regular => 0o100_000,
            FileType::Symlink => 0o120_000,
            FileType::Socket => 0o140_000,
        }
    }

    /// The `EXT2_FT_*` value directory entries record when `filetype` is set.
    #[must_use]
    pub fn dir_entry_type(self) -> u8 {
        match self {
            FileType::Regular => 1,
            FileType::Directory => 2,
            FileType::CharDevice => 3,
            FileType::BlockDevice => 4,
            FileType::Fifo => 5,
            FileType::Socket => 6,
            FileType::Symlink => 7,
        }
    }

    /// The type an `EXT2_FT_*` value names (`None` for 0, unknown, and anything else).
    #[must_use]
    pub fn from_dir_entry_type(t: u8) -> Option<Self> {
        Some(match t {
            1 => FileType::Regular,
            2 => FileType::Directory,
            3 => FileType::CharDevice,
            4 => FileType::BlockDevice,
            5 => FileType::Fifo,
            6 => FileType::Socket,
            7 => FileType::Symlink,
            _ => return None,
        })
    }
}

/// Inode flags (`i_flags`) the reader cares about.
pub mod flags {
    /// Hashed-index directory (read linearly).
    pub const INDEX: u32 = 0x0000_1000;
    /// `i_blocks` counts filesystem blocks rather than 512-byte sectors (`huge_file`).
    pub const HUGE_FILE: u32 = 0x0004_0000;
    /// Extent-mapped (refused).
    pub const EXTENTS: u32 = 0x0008_0000;
    /// Data stored inline (refused).
    pub const INLINE_DATA: u32 = 0x1000_0000;
}

/// One inode. The 32-bit owner ids and the 64-bit size are put together from their split
/// halves; fields of large inodes are zero when the inode is too small to hold them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[expect(missing_docs, reason = "fields are the kernel's, documented there")]
pub struct Inode {
    pub mode: u16,
    /// `i_uid | l_i_uid_high << 16`
    pub uid: u32,
    /// `i_size | i_size_high << 32`
    pub size: u64,
    pub atime: u32,
    pub ctime: u32,
    pub mtime: u32,
    pub dtime: u32,
    /// `i_gid | l_i_gid_high << 16`
    pub gid: u32,
    pub links_count: u16,
    /// `i_blocks`: 512-byte units.
    pub blocks: u32,
    pub flags: u32,
    pub block: [u32; 15],
    pub generation: u32,
    pub file_acl: u32,
    pub extra_isize: u16,
    pub ctime_extra: u32,
    pub mtime_extra: u32,
    pub atime_extra: u32,
    pub crtime: u32,
    pub crtime_extra: u32,
}

const W: &str = "inode";

/// Offsets in the inode of the extra fields, after the 128-byte base.
const EXTRA: [usize; 5] = [132, 136, 140, 144, 148];

impl Inode {
    /// The size of a revision-0 inode, and of the fields every inode has.
    pub const BASE_SIZE: usize = 128;
    /// `i_block` index of the single-indirect block.
    pub const IND_BLOCK: usize = 12;
    /// `i_block` index of the double-indirect block.
    pub const DIND_BLOCK: usize = 13;
    /// `i_block` index of the triple-indirect block.
    pub const TIND_BLOCK: usize = 14;
    /// The number of direct block pointers.
    pub const DIRECT_BLOCKS: usize = 12;
    /// Targets shorter than this are stored in `i_block` (a fast symlink).
    pub const FAST_SYMLINK_MAX: usize = 59;

    /// Parses an inode record (`inode_size` bytes; at least 128).
    ///
    /// # Errors
    ///
    /// [`Corrupt::Truncated`] when `b` is shorter than 128 bytes.
    pub fn from_bytes(b: &[u8]) -> Result<Self, Error> {
        if b.len() < Self::BASE_SIZE {
            return Err(Corrupt::Truncated {
                what: W,
                len: b.len(),
                needed: Self::BASE_SIZE,
            }
            .into());
        }
        let mut block = [0u32; 15];
        for (i, ptr) in block.iter_mut().enumerate() {
            *ptr = le32(b, 40 + 4 * i, W)?;
        }
        let extra_isize = if b.len() > Self::BASE_SIZE {
            le16(b, 128, W)?
        } else {
            0
        };
        // An extra field is there when both the record and i_extra_isize cover it.
        let covered = Self::BASE_SIZE
            .saturating_add(usize::from(extra_isize))
            .min(b.len());
        let extra = |off: usize| -> u32 {
            if off + 4 <= covered {
                le32(b, off, W).unwrap_or(0)
            } else {
                0
            }
        };
        Ok(Inode {
            mode: le16(b, 0, W)?,
            uid: u32::from(le16(b, 2, W)?) | u32::from(le16(b, 120, W)?) << 16,
            size: u64::from(le32(b, 4, W)?) | u64::from(le32(b, 108, W)?) << 32,
            atime: le32(b, 8, W)?,
            ctime: le32(b, 12, W)?,
            mtime: le32(b, 16, W)?,
            dtime: le32(b, 20, W)?,
            gid: u32::from(le16(b, 24, W)?) | u32::from(le16(b, 122, W)?) << 16,
            links_count: le16(b, 26, W)?,
            blocks: le32(b, 28, W)?,
            flags: le32(b, 32, W)?,
            block,
            generation: le32(b, 100, W)?,
            file_acl: le32(b, 104, W)?,
            extra_isize,
            ctime_extra: extra(EXTRA[0]),
            mtime_extra: extra(EXTRA[1]),
            atime_extra: extra(EXTRA[2]),
            crtime: extra(EXTRA[3]),
            crtime_extra: extra(EXTRA[4]),
        })
    }

    /// Writes the inode record to `out` (`inode_size` bytes): zeroes all of `out`, writes
    /// the 128-byte base, and, when `out` is larger, `i_extra_isize` and the extra fields
    /// that it covers. Fields that don't fit in `out` are not written.
    pub fn to_bytes(&self, out: &mut [u8]) {
        debug_assert!(
            out.len() >= Self::BASE_SIZE,
            "an inode record is 128 bytes or more"
        );
        out.fill(0);
        // The `as` casts below take the low or high half of split fields, on purpose.
        put16(out, 0, self.mode);
        put16(out, 2, self.uid as u16);
        put32(out, 4, self.size as u32);
        put32(out, 8, self.atime);
        put32(out, 12, self.ctime);
        put32(out, 16, self.mtime);
        put32(out, 20, self.dtime);
        put16(out, 24, self.gid as u16);
        put16(out, 26, self.links_count);
        put32(out, 28, self.blocks);
        put32(out, 32, self.flags);
        for (i, ptr) in self.block.iter().enumerate() {
            put32(out, 40 + 4 * i, *ptr);
        }
        put32(out, 100, self.generation);
        put32(out, 104, self.file_acl);
        put32(out, 108, (self.size >> 32) as u32);
        put16(out, 120, (self.uid >> 16) as u16);
        put16(out, 122, (self.gid >> 16) as u16);
        if out.len() > Self::BASE_SIZE {
            put16(out, 128, self.extra_isize);
            let covered = Self::BASE_SIZE + usize::from(self.extra_isize);
            let values = [
                self.ctime_extra,
                self.mtime_extra,
                self.atime_extra,
                self.crtime,
                self.crtime_extra,
            ];
            for (off, v) in EXTRA.iter().zip(values) {
                if off + 4 <= covered {
                    put32(out, *off, v);
                }
            }
        }
    }

    /// The file type, `None` for a mode with an unknown `S_IFMT`.
    #[must_use]
    pub fn file_type(&self) -> Option<FileType> {
        FileType::from_mode(self.mode)
    }

    /// The permission bits, setuid, setgid and sticky included (`mode & 0o7777`).
    #[must_use]
    pub fn permissions(&self) -> u16 {
        self.mode & 0o7777
    }

    /// The device number of a device inode, `(major, minor)`, in the kernel's old
    /// (`i_block[0]`) or new (`i_block[1]`) encoding.
    #[must_use]
    pub fn rdev(&self) -> (u32, u32) {
        if self.block[0] != 0 {
            let old = self.block[0];
            ((old >> 8) & 0xff, old & 0xff)
        } else {
            let new = self.block[1];
            (
                (new & 0x000f_ff00) >> 8,
                (new & 0xff) | ((new >> 12) & 0x000f_ff00),
            )
        }
    }

    /// Stores a device number the way the kernel does: the old 16-bit encoding in
    /// `i_block[0]` when major and minor are below 256, else the new one in `i_block[1]`.
    pub fn set_rdev(&mut self, major: u32, minor: u32) {
        if major < 256 && minor < 256 {
            self.block[0] = (major << 8) | minor;
            self.block[1] = 0;
        } else {
            self.block[0] = 0;
            self.block[1] = (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12);
            self.block[2] = 0;
        }
    }

    /// The nanoseconds of an extra timestamp field (its low two bits extend the epoch).
    #[must_use]
    pub fn nsec(extra: u32) -> u32 {
        extra >> 2
    }

    /// Whether this is a symbolic link whose target is stored in `i_block`: it has no data
    /// block (`i_blocks` is 0), or it has an extended-attribute block and a target short
    /// enough to be stored inline (what e2fsprogs checks).
    #[must_use]
    pub fn is_fast_symlink(&self) -> bool {
        if self.file_type() != Some(FileType::Symlink) {
            return false;
        }
        if self.blocks == 0 {
            return true;
        }
        self.file_acl != 0 && self.size <= Self::FAST_SYMLINK_MAX as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_image::mke2fs;

    fn root_inode(inode_size: &str) -> (Vec<u8>, usize, usize) {
        let img = mke2fs(&["-t", "ext2", "-b", "1024", "-I", inode_size], 2048, None);
        let gd = crate::block_group::GroupDesc::from_bytes(&img[2048..2080]).expect("gd");
        let isz: usize = inode_size.parse().expect("number");
        let at = usize::try_from(gd.inode_table).expect("small") * 1024 + isz; // inode 2
        (img, at, isz)
    }

    #[test]
    fn parses_the_root_directory_of_a_real_image() {
        for isz in ["128", "256"] {
            let (img, at, n) = root_inode(isz);
            let ino = Inode::from_bytes(&img[at..at + n]).expect("valid");
            assert_eq!(ino.file_type(), Some(FileType::Directory));
            assert_eq!(ino.permissions(), 0o755);
            assert_eq!(ino.links_count, 3);
            assert_eq!(ino.size, 1024);
            assert_eq!(ino.blocks, 2);
            assert_eq!(ino.mtime, 1_700_000_000);
            if n == 256 {
                assert_eq!(ino.extra_isize, 32);
                assert_eq!(ino.crtime, 1_700_000_000);
            } else {
                assert_eq!(ino.extra_isize, 0);
            }
            let mut out = vec![0u8; n];
            ino.to_bytes(&mut out);
            assert_eq!(Inode::from_bytes(&out).expect("valid"), ino);
            // the fields we know are where mke2fs put them
            assert_eq!(out[..104], img[at..at + 104]);
        }
    }

    #[test]
    fn one_change_at_a_time() {
        let (img, at, n) = root_inode("256");
        let good = img[at..at + n].to_vec();
        assert!(Inode::from_bytes(&good[..127]).is_err());
        assert!(Inode::from_bytes(&good[..128]).is_ok());
        let mut b = good.clone();
        b[108..112].copy_from_slice(&1u32.to_le_bytes()); // i_size_high
        assert_eq!(Inode::from_bytes(&b).expect("valid").size, (1 << 32) + 1024);
        let mut b = good.clone();
        b[120..124].copy_from_slice(&[1, 0, 2, 0]); // uid/gid high
        let ino = Inode::from_bytes(&b).expect("valid");
        assert_eq!((ino.uid, ino.gid), (1 << 16, 2 << 16));
        let mut b = good.clone();
        b[128..130].copy_from_slice(&0xffffu16.to_le_bytes()); // absurd i_extra_isize
        let ino = Inode::from_bytes(&b).expect("valid");
        assert_eq!(
            ino.crtime_extra,
            u32::from_le_bytes(good[148..152].try_into().expect("4"))
        );
        let mut b = good;
        b[128..130].copy_from_slice(&4u16.to_le_bytes()); // extras not covered
        let ino = Inode::from_bytes(&b).expect("valid");
        assert_eq!((ino.ctime_extra, ino.crtime), (0, 0));
    }

    #[test]
    fn file_types_round_trip() {
        for t in [
            FileType::Regular,
            FileType::Directory,
            FileType::Symlink,
            FileType::CharDevice,
            FileType::BlockDevice,
            FileType::Fifo,
            FileType::Socket,
        ] {
            assert_eq!(FileType::from_mode(t.mode_bits() | 0o644), Some(t));
            assert_eq!(FileType::from_dir_entry_type(t.dir_entry_type()), Some(t));
        }
        assert_eq!(FileType::from_mode(0o644), None);
        assert_eq!(FileType::from_mode(0o170_000), None);
        assert_eq!(FileType::from_dir_entry_type(0), None);
        assert_eq!(FileType::from_dir_entry_type(8), None);
    }

    #[test]
    fn device_numbers_use_both_encodings() {
        let mut ino = Inode::default();
        for (major, minor) in [
            (0, 0),
            (1, 3),
            (255, 255),
            (8, 256),
            (259, 0),
            (4095, 1_048_575),
        ] {
            ino.set_rdev(major, minor);
            assert_eq!(ino.rdev(), (major, minor));
        }
        ino.set_rdev(1, 3);
        assert_eq!(ino.block[..2], [0x103, 0]);
        ino.set_rdev(259, 65536);
        assert_eq!(ino.block[..3], [0, 0x1001_0300, 0]);
    }

    #[test]
    fn fast_symlinks() {
        let mut ino = Inode {
            mode: FileType::Symlink.mode_bits() | 0o777,
            size: 59,
            ..Inode::default()
        };
        assert!(ino.is_fast_symlink());
        ino.blocks = 2;
        assert!(!ino.is_fast_symlink());
        ino.file_acl = 100; // the block is an xattr block
        assert!(ino.is_fast_symlink());
        ino.size = 60;
        assert!(!ino.is_fast_symlink());
        ino.mode = FileType::Regular.mode_bits();
        ino.blocks = 0;
        assert!(!ino.is_fast_symlink());
    }
}
