//! Newtypes for the units an ext2 image is measured in, so that a block number can't be
//! passed where an inode number is expected.

use std::fmt;

/// The size of a filesystem block in bytes: a power of two from 1 KiB to 64 KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockSize(u32);

impl BlockSize {
    /// 1 KiB blocks.
    pub const KIB_1: BlockSize = BlockSize(1024);
    /// 2 KiB blocks.
    pub const KIB_2: BlockSize = BlockSize(2048);
    /// 4 KiB blocks.
    pub const KIB_4: BlockSize = BlockSize(4096);

    /// `bytes` as a block size, if it is a power of two in `1024..=65536`.
    #[must_use]
    pub fn new(bytes: u32) -> Option<Self> {
        ((1024..=65536).contains(&bytes) && bytes.is_power_of_two()).then_some(BlockSize(bytes))
    }

    /// The block size whose superblock `s_log_block_size` is `log` (block size = 1024 << log).
    #[must_use]
    pub fn from_log(log: u32) -> Option<Self> {
        if log > 6 {
            return None;
        }
        Self::new(1024 << log)
    }

    /// The size in bytes.
    #[must_use]
    pub fn get(self) -> u32 {
        self.0
    }

    /// The size in bytes, as a `u64` for offset arithmetic.
    #[must_use]
    pub fn get_u64(self) -> u64 {
        u64::from(self.0)
    }

    /// The size in bytes, as a `usize` for buffer lengths.
    #[must_use]
    pub fn get_usize(self) -> usize {
        // A block size is at most 65536, which fits any usize Rust supports for std.
        usize::try_from(self.0).unwrap_or(usize::MAX)
    }

    /// `log2(block size) - 10`: the superblock's `s_log_block_size`.
    #[must_use]
    pub fn log(self) -> u32 {
        self.0.trailing_zeros() - 10
    }
}

impl fmt::Display for BlockSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// An inode number. Inode numbers start at 1; the root directory is [`InodeNo::ROOT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InodeNo(pub u32);

impl InodeNo {
    /// The root directory (`EXT2_ROOT_INO`).
    pub const ROOT: InodeNo = InodeNo(2);
    /// The first inode of revision-0 filesystems that ordinary files may use
    /// (`EXT2_GOOD_OLD_FIRST_INO`); revision 1 stores it in `s_first_ino`.
    pub const GOOD_OLD_FIRST: InodeNo = InodeNo(11);

    /// The number.
    #[must_use]
    pub fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Display for InodeNo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A block number: the block's byte offset in the image divided by the block size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockNo(pub u32);

impl BlockNo {
    /// The number.
    #[must_use]
    pub fn get(self) -> u32 {
        self.0
    }

    /// The block's byte offset in the image.
    #[must_use]
    pub fn byte_offset(self, block_size: BlockSize) -> u64 {
        u64::from(self.0) * block_size.get_u64()
    }
}

impl fmt::Display for BlockNo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_size_accepts_powers_of_two_from_1k_to_64k() {
        for log in 0..=6 {
            let bs = BlockSize::from_log(log).expect("valid log");
            assert_eq!(bs.log(), log);
            assert_eq!(BlockSize::new(bs.get()), Some(bs));
        }
        for bad in [0, 512, 1000, 3072, 131_072, u32::MAX] {
            assert_eq!(BlockSize::new(bad), None, "{bad}");
        }
        assert_eq!(BlockSize::from_log(7), None);
        assert_eq!(BlockSize::from_log(u32::MAX), None);
    }

    #[test]
    fn block_offset_does_not_overflow() {
        let bs = BlockSize::new(65536).expect("valid");
        assert_eq!(
            BlockNo(u32::MAX).byte_offset(bs),
            u64::from(u32::MAX) * 65536
        );
    }
}
