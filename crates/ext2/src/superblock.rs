//! The superblock (`struct ext2_super_block`): 1024 bytes at byte 1024 of the image.

use crate::bytes::{array, le16, le32, put, put16, put32, u8_at};
use crate::error::{Corrupt, Error};
use crate::units::BlockSize;

/// Feature flags (`s_feature_compat`, `s_feature_incompat`, `s_feature_ro_compat`).
pub mod feature {
    /// Directory preallocation.
    pub const COMPAT_DIR_PREALLOC: u32 = 0x0001;
    /// AFS server inodes.
    pub const COMPAT_IMAGIC_INODES: u32 = 0x0002;
    /// An ext3 journal (ignored by the reader).
    pub const COMPAT_HAS_JOURNAL: u32 = 0x0004;
    /// Extended attributes.
    pub const COMPAT_EXT_ATTR: u32 = 0x0008;
    /// Reserved GDT blocks for online resizing (the resize inode).
    pub const COMPAT_RESIZE_INODE: u32 = 0x0010;
    /// Hashed directory indexes (read linearly).
    pub const COMPAT_DIR_INDEX: u32 = 0x0020;
    /// Only two backup superblocks.
    pub const COMPAT_SPARSE_SUPER2: u32 = 0x0200;

    /// Compression (refused).
    pub const INCOMPAT_COMPRESSION: u32 = 0x0001;
    /// Directory entries record the file type.
    pub const INCOMPAT_FILETYPE: u32 = 0x0002;
    /// The journal needs recovery (refused: the image would be inconsistent).
    pub const INCOMPAT_RECOVER: u32 = 0x0004;
    /// An external journal device (refused: not a filesystem).
    pub const INCOMPAT_JOURNAL_DEV: u32 = 0x0008;
    /// Meta block groups (refused).
    pub const INCOMPAT_META_BG: u32 = 0x0010;
    /// Extent-mapped files (refused).
    pub const INCOMPAT_EXTENTS: u32 = 0x0040;
    /// 64-bit block numbers (refused).
    pub const INCOMPAT_64BIT: u32 = 0x0080;
    /// Multiple mount protection.
    pub const INCOMPAT_MMP: u32 = 0x0100;
    /// Flexible block groups.
    pub const INCOMPAT_FLEX_BG: u32 = 0x0200;
    /// Extended attributes in inodes.
    pub const INCOMPAT_EA_INODE: u32 = 0x0400;
    /// Data in directory entries (refused).
    pub const INCOMPAT_DIRDATA: u32 = 0x1000;
    /// Checksum seed in the superblock.
    pub const INCOMPAT_CSUM_SEED: u32 = 0x2000;
    /// Large directories.
    pub const INCOMPAT_LARGEDIR: u32 = 0x4000;
    /// Data inline in inodes (refused).
    pub const INCOMPAT_INLINE_DATA: u32 = 0x8000;
    /// Encrypted files (refused).
    pub const INCOMPAT_ENCRYPT: u32 = 0x10000;
    /// Case-insensitive names (refused).
    pub const INCOMPAT_CASEFOLD: u32 = 0x20000;

    /// Superblock backups only in groups 0, 1 and powers of 3, 5 and 7.
    pub const RO_COMPAT_SPARSE_SUPER: u32 = 0x0001;
    /// Files of 2 GiB or more.
    pub const RO_COMPAT_LARGE_FILE: u32 = 0x0002;
    /// B-tree directories (never used).
    pub const RO_COMPAT_BTREE_DIR: u32 = 0x0004;
    /// `i_blocks` in filesystem blocks for some inodes.
    pub const RO_COMPAT_HUGE_FILE: u32 = 0x0008;
    /// Group descriptor checksums.
    pub const RO_COMPAT_GDT_CSUM: u32 = 0x0010;
    /// More than 65000 subdirectories.
    pub const RO_COMPAT_DIR_NLINK: u32 = 0x0020;
    /// Large inodes reserve `s_min_extra_isize`.
    pub const RO_COMPAT_EXTRA_ISIZE: u32 = 0x0040;
    /// Quota inodes.
    pub const RO_COMPAT_QUOTA: u32 = 0x0100;
    /// Clustered allocation.
    pub const RO_COMPAT_BIGALLOC: u32 = 0x0200;
    /// Metadata checksums.
    pub const RO_COMPAT_METADATA_CSUM: u32 = 0x0400;
    /// Read-only filesystem.
    pub const RO_COMPAT_READONLY: u32 = 0x1000;
    /// Project quotas.
    pub const RO_COMPAT_PROJECT: u32 = 0x2000;
    /// fs-verity files.
    pub const RO_COMPAT_VERITY: u32 = 0x8000;

    /// Incompatible features the reader refuses, with their e2fsprogs names.
    pub(crate) const REFUSED_INCOMPAT: &[(u32, &str)] = &[
        (INCOMPAT_COMPRESSION, "compression"),
        (INCOMPAT_RECOVER, "needs_recovery"),
        (INCOMPAT_JOURNAL_DEV, "journal_dev"),
        (INCOMPAT_META_BG, "meta_bg"),
        (INCOMPAT_EXTENTS, "extents"),
        (INCOMPAT_64BIT, "64bit"),
        (INCOMPAT_DIRDATA, "dirdata"),
        (INCOMPAT_INLINE_DATA, "inline_data"),
        (INCOMPAT_ENCRYPT, "encrypt"),
        (INCOMPAT_CASEFOLD, "casefold"),
    ];

    /// Incompatible features the reader can read.
    pub(crate) const READABLE_INCOMPAT: u32 = INCOMPAT_FILETYPE
        | INCOMPAT_MMP
        | INCOMPAT_FLEX_BG
        | INCOMPAT_EA_INODE
        | INCOMPAT_CSUM_SEED
        | INCOMPAT_LARGEDIR;
}

/// Whether block group `group` holds a backup of the superblock and group descriptors when
/// `sparse_super` is set: groups 0 and 1 and the powers of 3, 5 and 7.
#[must_use]
pub fn has_superblock_backup(group: u32) -> bool {
    if group <= 1 {
        return true;
    }
    [3u32, 5, 7].iter().any(|&base| {
        let mut n = base;
        while n < group {
            match n.checked_mul(base) {
                Some(next) => n = next,
                None => return false,
            }
        }
        n == group
    })
}

/// The superblock, fields named as in the kernel's `struct ext2_super_block` without `s_`.
/// Fields not listed here (journal, 64-bit, checksums) read as zero and are written as zero.
#[derive(Debug, Clone, PartialEq, Eq)]
#[expect(missing_docs, reason = "fields are the kernel's, documented there")]
pub struct Superblock {
    pub inodes_count: u32,
    pub blocks_count: u32,
    pub r_blocks_count: u32,
    pub free_blocks_count: u32,
    pub free_inodes_count: u32,
    pub first_data_block: u32,
    pub log_block_size: u32,
    pub log_frag_size: u32,
    pub blocks_per_group: u32,
    pub frags_per_group: u32,
    pub inodes_per_group: u32,
    pub mtime: u32,
    pub wtime: u32,
    pub mnt_count: u16,
    pub max_mnt_count: u16,
    pub magic: u16,
    pub state: u16,
    pub errors: u16,
    pub minor_rev_level: u16,
    pub lastcheck: u32,
    pub checkinterval: u32,
    pub creator_os: u32,
    pub rev_level: u32,
    pub def_resuid: u16,
    pub def_resgid: u16,
    pub first_ino: u32,
    pub inode_size: u16,
    pub block_group_nr: u16,
    pub feature_compat: u32,
    pub feature_incompat: u32,
    pub feature_ro_compat: u32,
    pub uuid: [u8; 16],
    pub volume_name: [u8; 16],
    pub last_mounted: [u8; 64],
    pub algorithm_usage_bitmap: u32,
    pub hash_seed: [u32; 4],
    pub def_hash_version: u8,
    pub default_mount_opts: u32,
    pub first_meta_bg: u32,
    pub mkfs_time: u32,
    pub min_extra_isize: u16,
    pub want_extra_isize: u16,
}

impl Default for Superblock {
    /// All zero except the magic.
    fn default() -> Self {
        Superblock {
            inodes_count: 0,
            blocks_count: 0,
            r_blocks_count: 0,
            free_blocks_count: 0,
            free_inodes_count: 0,
            first_data_block: 0,
            log_block_size: 0,
            log_frag_size: 0,
            blocks_per_group: 0,
            frags_per_group: 0,
            inodes_per_group: 0,
            mtime: 0,
            wtime: 0,
            mnt_count: 0,
            max_mnt_count: 0,
            magic: Superblock::MAGIC,
            state: 0,
            errors: 0,
            minor_rev_level: 0,
            lastcheck: 0,
            checkinterval: 0,
            creator_os: 0,
            rev_level: 0,
            def_resuid: 0,
            def_resgid: 0,
            first_ino: 0,
            inode_size: 0,
            block_group_nr: 0,
            feature_compat: 0,
            feature_incompat: 0,
            feature_ro_compat: 0,
            uuid: [0; 16],
            volume_name: [0; 16],
            last_mounted: [0; 64],
            algorithm_usage_bitmap: 0,
            hash_seed: [0; 4],
            def_hash_version: 0,
            default_mount_opts: 0,
            first_meta_bg: 0,
            mkfs_time: 0,
            min_extra_isize: 0,
            want_extra_isize: 0,
        }
    }
}

const W: &str = "superblock";

impl Superblock {
    /// The superblock's byte offset in the image.
    pub const OFFSET: u64 = 1024;
    /// The superblock's size in bytes.
    pub const SIZE: usize = 1024;
    /// `s_magic`.
    pub const MAGIC: u16 = 0xEF53;
    /// `s_reserved_gdt_blocks`'s offset: not a field of this struct (the writer writes no
    /// resize inode) but the reader needs it to know where metadata ends.
    pub(crate) const RESERVED_GDT_BLOCKS_OFFSET: usize = 206;

    /// Parses the 1024 superblock bytes.
    ///
    /// # Errors
    ///
    /// [`Corrupt::Truncated`] when `b` is shorter than [`Superblock::SIZE`],
    /// [`Corrupt::Magic`] when the magic is wrong. Other fields are checked by the reader.
    pub fn from_bytes(b: &[u8]) -> Result<Self, Error> {
        if b.len() < Self::SIZE {
            return Err(Corrupt::Truncated {
                what: W,
                len: b.len(),
                needed: Self::SIZE,
            }
            .into());
        }
        let magic = le16(b, 56, W)?;
        if magic != Self::MAGIC {
            return Err(Corrupt::Magic(magic).into());
        }
        Ok(Superblock {
            inodes_count: le32(b, 0, W)?,
            blocks_count: le32(b, 4, W)?,
            r_blocks_count: le32(b, 8, W)?,
            free_blocks_count: le32(b, 12, W)?,
            free_inodes_count: le32(b, 16, W)?,
            first_data_block: le32(b, 20, W)?,
            log_block_size: le32(b, 24, W)?,
            log_frag_size: le32(b, 28, W)?,
            blocks_per_group: le32(b, 32, W)?,
            frags_per_group: le32(b, 36, W)?,
            inodes_per_group: le32(b, 40, W)?,
            mtime: le32(b, 44, W)?,
            wtime: le32(b, 48, W)?,
            mnt_count: le16(b, 52, W)?,
            max_mnt_count: le16(b, 54, W)?,
            magic,
            state: le16(b, 58, W)?,
            errors: le16(b, 60, W)?,
            minor_rev_level: le16(b, 62, W)?,
            lastcheck: le32(b, 64, W)?,
            checkinterval: le32(b, 68, W)?,
            creator_os: le32(b, 72, W)?,
            rev_level: le32(b, 76, W)?,
            def_resuid: le16(b, 80, W)?,
            def_resgid: le16(b, 82, W)?,
            first_ino: le32(b, 84, W)?,
            inode_size: le16(b, 88, W)?,
            block_group_nr: le16(b, 90, W)?,
            feature_compat: le32(b, 92, W)?,
            feature_incompat: le32(b, 96, W)?,
            feature_ro_compat: le32(b, 100, W)?,
            uuid: array(b, 104, W)?,
            volume_name: array(b, 120, W)?,
            last_mounted: array(b, 136, W)?,
            algorithm_usage_bitmap: le32(b, 200, W)?,
            hash_seed: [
                le32(b, 236, W)?,
                le32(b, 240, W)?,
                le32(b, 244, W)?,
                le32(b, 248, W)?,
            ],
            def_hash_version: u8_at(b, 252, W)?,
            default_mount_opts: le32(b, 256, W)?,
            first_meta_bg: le32(b, 260, W)?,
            mkfs_time: le32(b, 264, W)?,
            min_extra_isize: le16(b, 348, W)?,
            want_extra_isize: le16(b, 350, W)?,
        })
    }

    /// The 1024 superblock bytes; fields this struct doesn't have are zero.
    #[must_use]
    pub fn to_bytes(&self) -> [u8; 1024] {
        let mut b = [0u8; 1024];
        put32(&mut b, 0, self.inodes_count);
        put32(&mut b, 4, self.blocks_count);
        put32(&mut b, 8, self.r_blocks_count);
        put32(&mut b, 12, self.free_blocks_count);
        put32(&mut b, 16, self.free_inodes_count);
        put32(&mut b, 20, self.first_data_block);
        put32(&mut b, 24, self.log_block_size);
        put32(&mut b, 28, self.log_frag_size);
        put32(&mut b, 32, self.blocks_per_group);
        put32(&mut b, 36, self.frags_per_group);
        put32(&mut b, 40, self.inodes_per_group);
        put32(&mut b, 44, self.mtime);
        put32(&mut b, 48, self.wtime);
        put16(&mut b, 52, self.mnt_count);
        put16(&mut b, 54, self.max_mnt_count);
        put16(&mut b, 56, self.magic);
        put16(&mut b, 58, self.state);
        put16(&mut b, 60, self.errors);
        put16(&mut b, 62, self.minor_rev_level);
        put32(&mut b, 64, self.lastcheck);
        put32(&mut b, 68, self.checkinterval);
        put32(&mut b, 72, self.creator_os);
        put32(&mut b, 76, self.rev_level);
        put16(&mut b, 80, self.def_resuid);
        put16(&mut b, 82, self.def_resgid);
        put32(&mut b, 84, self.first_ino);
        put16(&mut b, 88, self.inode_size);
        put16(&mut b, 90, self.block_group_nr);
        put32(&mut b, 92, self.feature_compat);
        put32(&mut b, 96, self.feature_incompat);
        put32(&mut b, 100, self.feature_ro_compat);
        put(&mut b, 104, &self.uuid);
        put(&mut b, 120, &self.volume_name);
        put(&mut b, 136, &self.last_mounted);
        put32(&mut b, 200, self.algorithm_usage_bitmap);
        for (i, seed) in self.hash_seed.iter().enumerate() {
            put32(&mut b, 236 + 4 * i, *seed);
        }
        b[252] = self.def_hash_version;
        put32(&mut b, 256, self.default_mount_opts);
        put32(&mut b, 260, self.first_meta_bg);
        put32(&mut b, 264, self.mkfs_time);
        put16(&mut b, 348, self.min_extra_isize);
        put16(&mut b, 350, self.want_extra_isize);
        b
    }

    /// The block size, if `log_block_size` names one from 1 KiB to 64 KiB.
    #[must_use]
    pub fn block_size(&self) -> Option<BlockSize> {
        BlockSize::from_log(self.log_block_size)
    }

    /// The number of block groups: `ceil((blocks_count - first_data_block) /
    /// blocks_per_group)`, 0 when those fields are inconsistent.
    #[must_use]
    pub fn group_count(&self) -> u32 {
        if self.blocks_per_group == 0 {
            return 0;
        }
        self.blocks_count
            .checked_sub(self.first_data_block)
            .map_or(0, |n| n.div_ceil(self.blocks_per_group))
    }

    /// The size of an inode record: `inode_size` for revision 1, 128 for revision 0.
    #[must_use]
    pub fn inode_record_size(&self) -> u16 {
        if self.rev_level == 0 {
            128
        } else {
            self.inode_size
        }
    }

    /// Whether all of `bits` are set in `feature_compat`.
    #[must_use]
    pub fn has_compat(&self, bits: u32) -> bool {
        self.feature_compat & bits == bits
    }

    /// Whether all of `bits` are set in `feature_incompat`.
    #[must_use]
    pub fn has_incompat(&self, bits: u32) -> bool {
        self.feature_incompat & bits == bits
    }

    /// Whether all of `bits` are set in `feature_ro_compat`.
    #[must_use]
    pub fn has_ro_compat(&self, bits: u32) -> bool {
        self.feature_ro_compat & bits == bits
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_image::mke2fs;

    #[test]
    fn backups_are_in_groups_0_1_and_powers_of_3_5_7() {
        let with: Vec<u32> = (0..400).filter(|&g| has_superblock_backup(g)).collect();
        assert_eq!(with, [0, 1, 3, 5, 7, 9, 25, 27, 49, 81, 125, 243, 343]);
        assert!(has_superblock_backup(3u32.pow(20)));
        assert!(!has_superblock_backup(u32::MAX));
    }

    #[test]
    fn parses_a_real_mke2fs_superblock() {
        let img = mke2fs(
            &["-t", "ext2", "-b", "1024", "-N", "64", "-L", "glick"],
            4096,
            None,
        );
        let sb = Superblock::from_bytes(&img[1024..2048]).expect("valid");
        assert_eq!(sb.magic, Superblock::MAGIC);
        assert_eq!(sb.blocks_count, 4096);
        assert_eq!(sb.first_data_block, 1);
        assert_eq!(sb.block_size(), Some(BlockSize::KIB_1));
        assert_eq!(sb.rev_level, 1);
        assert_eq!(&sb.volume_name[..6], b"glick\0");
        assert_eq!(sb.group_count(), 1);
        assert!(sb.has_incompat(feature::INCOMPAT_FILETYPE));
        assert!(sb.has_ro_compat(feature::RO_COMPAT_SPARSE_SUPER));
        assert_eq!(sb.inodes_count, sb.inodes_per_group * sb.group_count());
    }

    #[test]
    fn round_trips() {
        let img = mke2fs(&["-t", "ext2", "-b", "4096", "-I", "256"], 64, None);
        let sb = Superblock::from_bytes(&img[1024..2048]).expect("valid");
        assert_eq!(Superblock::from_bytes(&sb.to_bytes()).expect("valid"), sb);
        // Every field this struct knows is written back where mke2fs put it.
        let bytes = sb.to_bytes();
        for (off, len) in [(0, 200), (200, 4), (236, 17), (256, 12), (348, 4)] {
            assert_eq!(
                bytes[off..off + len],
                img[1024 + off..1024 + off + len],
                "at {off}"
            );
        }
        let default = Superblock::default();
        assert_eq!(
            Superblock::from_bytes(&default.to_bytes()).expect("magic"),
            default
        );
    }

    #[test]
    fn one_change_at_a_time() {
        let img = mke2fs(&["-t", "ext2", "-b", "2048"], 512, None);
        let good = img[1024..2048].to_vec();
        let mut b = good.clone();
        b[56] = 0x54;
        assert!(matches!(
            Superblock::from_bytes(&b),
            Err(Error::Corrupt(Corrupt::Magic(0xEF54)))
        ));
        assert!(matches!(
            Superblock::from_bytes(&good[..1023]),
            Err(Error::Corrupt(Corrupt::Truncated { .. }))
        ));
        let mut b = good.clone();
        b[24] = 7;
        assert_eq!(
            Superblock::from_bytes(&b).expect("parses").block_size(),
            None
        );
        let mut b = good;
        b[32..36].copy_from_slice(&0u32.to_le_bytes());
        assert_eq!(Superblock::from_bytes(&b).expect("parses").group_count(), 0);
    }
}
