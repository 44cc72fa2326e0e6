//! Block group descriptors (`struct ext2_group_desc`): 32 bytes each, in the blocks that
//! follow the superblock.

use crate::bytes::{le16, le32, put16, put32};
use crate::error::{Corrupt, Error};

/// One block group descriptor, fields named as in `struct ext2_group_desc` without `bg_`.
/// The ext4 fields (flags, checksums) read as zero and are written as zero.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[expect(missing_docs, reason = "fields are the kernel's, documented there")]
pub struct GroupDesc {
    pub block_bitmap: u32,
    pub inode_bitmap: u32,
    pub inode_table: u32,
    pub free_blocks_count: u16,
    pub free_inodes_count: u16,
    pub used_dirs_count: u16,
}

const W: &str = "group descriptor";

impl GroupDesc {
    /// The size of a descriptor in bytes.
    pub const SIZE: usize = 32;

    /// Parses one descriptor.
    ///
    /// # Errors
    ///
    /// [`Corrupt::Truncated`] when `b` is shorter than [`GroupDesc::SIZE`].
    pub fn from_bytes(b: &[u8]) -> Result<Self, Error> {
        if b.len() < Self::SIZE {
            return Err(Corrupt::Truncated {
                what: W,
                len: b.len(),
                needed: Self::SIZE,
            }
            .into());
        }
        Ok(GroupDesc {
            block_bitmap: le32(b, 0, W)?,
            inode_bitmap: le32(b, 4, W)?,
            inode_table: le32(b, 8, W)?,
            free_blocks_count: le16(b, 12, W)?,
            free_inodes_count: le16(b, 14, W)?,
            used_dirs_count: le16(b, 16, W)?,
        })
    }

    /// The 32 descriptor bytes.
    #[must_use]
    pub fn to_bytes(&self) -> [u8; 32] {
        let mut b = [0u8; 32];
        put32(&mut b, 0, self.block_bitmap);
        put32(&mut b, 4, self.inode_bitmap);
        put32(&mut b, 8, self.inode_table);
        put16(&mut b, 12, self.free_blocks_count);
        put16(&mut b, 14, self.free_inodes_count);
        put16(&mut b, 16, self.used_dirs_count);
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_image::mke2fs;

    #[test]
    fn parses_and_round_trips_real_descriptors() {
        // 1 KiB blocks, 3 groups: descriptors start at block 2.
        let img = mke2fs(
            &["-t", "ext2", "-b", "1024", "-g", "1024", "-N", "48"],
            3000,
            None,
        );
        let gdt = &img[2048..2048 + 3 * GroupDesc::SIZE];
        let groups: Vec<GroupDesc> = gdt
            .chunks(GroupDesc::SIZE)
            .map(|c| GroupDesc::from_bytes(c).expect("valid"))
            .collect();
        for (i, g) in groups.iter().enumerate() {
            let first = 1 + 1024 * u32::try_from(i).expect("small");
            assert!(
                g.block_bitmap >= first && g.block_bitmap < first + 1024,
                "{g:?}"
            );
            assert!(g.inode_table > g.inode_bitmap || g.inode_table < g.block_bitmap);
            assert_eq!(GroupDesc::from_bytes(&g.to_bytes()).expect("valid"), *g);
            // the ext2 fields are the first 18 bytes; mke2fs leaves the rest zero for ext2
            assert_eq!(g.to_bytes()[..18], gdt[i * 32..i * 32 + 18]);
        }
        assert_eq!(groups[0].used_dirs_count, 2); // root and lost+found
    }

    #[test]
    fn short_input_is_an_error() {
        assert!(matches!(
            GroupDesc::from_bytes(&[0u8; 31]),
            Err(Error::Corrupt(Corrupt::Truncated { needed: 32, .. }))
        ));
    }
}
