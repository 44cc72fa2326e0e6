//! Layout planning: how many blocks each inode needs, and the smallest group geometry that
//! holds them.
//!
//! Every figure here is exact: the writer allocates precisely the blocks counted here, and the
//! tests check that the image it writes has no free block it did not ask for.

use std::ops::Range;
use std::path::PathBuf;

use super::Error;
use super::scan::{Kind, Node, Tree};

/// Block pointers in `i_block` before the single-indirect one.
pub(crate) const DIRECT: u64 = 12;
/// Bytes of one inode (revision 1, no extra fields: the smallest the format allows).
pub(crate) const INODE_SIZE: u32 = 128;
/// Bytes of one group descriptor (no `64bit` feature).
pub(crate) const GROUP_DESC_SIZE: u32 = 32;
/// A symlink target shorter than this is stored in `i_block` itself (a "fast" symlink).
pub(crate) const FAST_SYMLINK_MAX: usize = 59;

/// The block sizes the writer chooses between.
pub(crate) const BLOCK_SIZES: [u32; 3] = [1024, 2048, 4096];

/// Merges a file's data byte ranges into the runs of logical blocks they touch.
pub(crate) fn block_runs(
    data: &[Range<u64>],
    block_size: u64,
) -> impl Iterator<Item = Range<u64>> + '_ {
    let mut runs = data
        .iter()
        .map(move |r| r.start / block_size..r.end.div_ceil(block_size));
    let mut pending = runs.next();
    std::iter::from_fn(move || {
        let mut run = pending.take()?;
        for next in runs.by_ref() {
            if next.start <= run.end {
                run.end = run.end.max(next.end);
            } else {
                pending = Some(next);
                break;
            }
        }
        Some(run)
    })
}

/// Number of distinct `span`-sized slots of `region` (slot 0 starts at `region.start`) that
/// the sorted, disjoint `runs` touch.
fn slots_touched(runs: &[Range<u64>], region: &Range<u64>, span: u64) -> u64 {
    let mut count = 0;
    let mut last: Option<u64> = None;
    for run in runs {
        let start = run.start.max(region.start);
        let end = run.end.min(region.end);
        if start >= end {
            continue;
        }
        let mut lo = (start - region.start) / span;
        let hi = (end - 1 - region.start) / span;
        if last == Some(lo) {
            lo += 1;
        }
        if lo <= hi {
            count += hi - lo + 1;
        }
        last = Some(hi);
    }
    count
}

/// Blocks a file with these data runs needs, data and indirect blocks together. Indirect
/// blocks are counted only where they map data (holes need none).
pub(crate) fn file_blocks(runs: &[Range<u64>], block_size: u64) -> u64 {
    let p = block_size / 4;
    let data: u64 = runs.iter().map(|r| r.end - r.start).sum();
    let ind = DIRECT..DIRECT + p;
    let dind = ind.end..ind.end + p * p;
    let tind = dind.end..dind.end + p * p * p;
    let mut meta = slots_touched(runs, &ind, p);
    let dind_ind = slots_touched(runs, &dind, p);
    if dind_ind > 0 {
        meta += 1 + dind_ind;
    }
    let tind_ind = slots_touched(runs, &tind, p);
    if tind_ind > 0 {
        meta += 1 + slots_touched(runs, &tind, p * p) + tind_ind;
    }
    data + meta
}

/// The largest file size the kernel's ext2 driver and e2fsck both accept at this block size.
///
/// The kernel (`ext2_max_size`) also keeps `i_blocks` (512-byte units, 32 bits) of a dense
/// file of that size, indirect blocks included, within 32 bits.
pub(crate) fn max_file_size(block_size: u32) -> u64 {
    let bits = block_size.trailing_zeros();
    let ppb = 1u64 << (bits - 2);
    let tree = DIRECT + ppb + ppb * ppb + ppb * ppb * ppb;
    let mut upper = ((1u64 << 32) - 1) >> (bits - 9);
    let meta_full = 1 + (1 + ppb) + (1 + ppb + ppb * ppb);
    let blocks = if tree + meta_full <= upper {
        tree
    } else {
        let mut res = upper;
        upper -= DIRECT;
        let mut meta = 1;
        upper -= ppb;
        if upper < ppb * ppb {
            meta += 1 + upper.div_ceil(ppb);
        } else {
            meta += 1 + ppb;
            upper -= ppb * ppb;
            meta += 1 + upper.div_ceil(ppb) + upper.div_ceil(ppb * ppb);
        }
        res -= meta;
        res
    };
    blocks << bits
}

/// Bytes of the directory record for a name of `name_len` bytes.
pub(crate) fn rec_len(name_len: usize) -> u32 {
    crate::dir_entry::rec_len_for(name_len) as u32
}

/// Blocks a directory needs: `.` and `..` then its entries, packed in order, no record
/// spanning a block. At least one block.
pub(crate) fn dir_blocks<'a>(names: impl Iterator<Item = &'a [u8]>, block_size: u32) -> u64 {
    let mut blocks = 1;
    let mut used = rec_len(1) + rec_len(2);
    for name in names {
        let len = rec_len(name.len());
        if used + len > block_size {
            blocks += 1;
            used = len;
        } else {
            used += len;
        }
    }
    blocks
}

/// Blocks the content of every inode needs at `block_size`, or what makes the tree
/// impossible at that size.
pub(crate) fn content_blocks(tree: &Tree, block_size: u32) -> Result<u64, Error> {
    let mut total = 0u64;
    let mut runs = Vec::new();
    for node in &tree.nodes {
        total += node_blocks(tree, node, block_size, &mut runs)?;
    }
    Ok(total)
}

/// Blocks one inode needs (`runs` is scratch space).
pub(crate) fn node_blocks(
    tree: &Tree,
    node: &Node,
    block_size: u32,
    runs: &mut Vec<Range<u64>>,
) -> Result<u64, Error> {
    let bs = u64::from(block_size);
    Ok(match &node.kind {
        Kind::File { size, data } => {
            let max_size = max_file_size(block_size);
            if *size > max_size {
                return Err(Error::TooLarge {
                    path: node.path.clone(),
                    what: super::Limit::FileSize {
                        size: *size,
                        max: max_size,
                        block_size,
                    },
                });
            }
            runs.clear();
            runs.extend(block_runs(data, bs));
            file_blocks(runs, bs)
        }
        Kind::Dir { entries } => {
            // Large directories need indirect blocks too.
            let count = dir_blocks(tree.children(entries).iter().map(|e| &*e.name), block_size);
            file_blocks(
                &[Range {
                    start: 0,
                    end: count,
                }],
                bs,
            )
        }
        Kind::Symlink { target } if target.len() > FAST_SYMLINK_MAX => {
            if target.len() >= block_size as usize {
                return Err(Error::TooLarge {
                    path: node.path.clone(),
                    what: super::Limit::SymlinkLength {
                        len: target.len(),
                        block_size,
                    },
                });
            }
            1
        }
        Kind::Symlink { .. } | Kind::Device { .. } | Kind::Special => 0,
    })
}

pub(crate) use crate::superblock::has_superblock_backup as has_super;

/// The group geometry of an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Geometry {
    pub block_size: u32,
    /// 1 for 1 KiB blocks (block 0 is the boot block), else 0.
    pub first_data_block: u32,
    pub blocks_count: u32,
    pub blocks_per_group: u32,
    pub inodes_per_group: u32,
    pub group_count: u32,
    /// Blocks of the group descriptor table (and of each backup).
    pub gdt_blocks: u32,
    /// Blocks of each group's inode table.
    pub inode_table_blocks: u32,
}

impl Geometry {
    pub(crate) fn inodes_count(&self) -> u32 {
        self.inodes_per_group * self.group_count
    }

    pub(crate) fn size(&self) -> u64 {
        u64::from(self.blocks_count) * u64::from(self.block_size)
    }

    pub(crate) fn group_start(&self, group: u32) -> u32 {
        self.first_data_block + group * self.blocks_per_group
    }

    /// Blocks in `group` (the last one may be short).
    pub(crate) fn group_len(&self, group: u32) -> u32 {
        if group + 1 == self.group_count {
            self.blocks_count - self.group_start(group)
        } else {
            self.blocks_per_group
        }
    }

    /// Blocks at the start of `group` taken by its metadata.
    pub(crate) fn overhead(&self, group: u32) -> u32 {
        overhead(group, self.gdt_blocks, self.inode_table_blocks)
    }

    /// Where `group`'s block bitmap is; its inode bitmap and inode table follow.
    pub(crate) fn block_bitmap(&self, group: u32) -> u32 {
        let sb = if has_super(group) {
            1 + self.gdt_blocks
        } else {
            0
        };
        self.group_start(group) + sb
    }

    pub(crate) fn inode_bitmap(&self, group: u32) -> u32 {
        self.block_bitmap(group) + 1
    }

    pub(crate) fn inode_table(&self, group: u32) -> u32 {
        self.block_bitmap(group) + 2
    }

    /// Blocks free for content in the whole image.
    #[cfg(test)]
    pub(crate) fn content_capacity(&self) -> u64 {
        (0..self.group_count)
            .map(|g| u64::from(self.group_len(g) - self.overhead(g)))
            .sum()
    }
}

fn overhead(group: u32, gdt_blocks: u32, inode_table_blocks: u32) -> u32 {
    let sb = if has_super(group) { 1 + gdt_blocks } else { 0 };
    sb + 2 + inode_table_blocks
}

/// The smallest geometry at `block_size` for `content` blocks and `inodes` inodes.
///
/// Each group needs its own bitmaps and inode table (no `flex_bg`), and the backup groups a
/// superblock and descriptor table, so more groups cost more blocks: try group counts upward
/// from the fewest the bitmaps allow and keep the smallest result.
pub(crate) fn plan(block_size: u32, content: u64, inodes: u64) -> Option<Geometry> {
    let bits_per_block = 8 * block_size;
    let inodes_per_block = block_size / INODE_SIZE;
    // e2fsck: at most 65536 - inodes_per_block inodes per group, and the inode bitmap is one
    // block.
    let ipg_max = (bits_per_block).min(65_536 - inodes_per_block);
    let first_data_block = u32::from(block_size == 1024);
    let inodes = inodes.max(11);

    let min_groups = inodes.div_ceil(u64::from(ipg_max)).max(1);
    let mut best: Option<Geometry> = None;
    let mut group_count = min_groups;
    loop {
        let groups = u32::try_from(group_count).ok()?;
        if let Some(g) = plan_groups(block_size, first_data_block, content, inodes, groups) {
            if best
                .as_ref()
                .is_none_or(|b| g.blocks_count < b.blocks_count)
            {
                best = Some(g);
            }
        }
        // Past the point where the groups' bitmaps can map everything, more groups only add
        // overhead; a few more are tried because inode-table rounding is not monotonic.
        if let Some(b) = &best {
            if group_count > u64::from(b.group_count) + 8 {
                break;
            }
        }
        group_count += 1;
        if group_count > u64::from(u32::MAX / bits_per_block) + 2 {
            break;
        }
    }
    best
}

fn plan_groups(
    block_size: u32,
    first_data_block: u32,
    content: u64,
    inodes: u64,
    groups: u32,
) -> Option<Geometry> {
    let bits_per_block = 8 * block_size;
    let inodes_per_block = block_size / INODE_SIZE;
    let ipg = inodes
        .div_ceil(u64::from(groups))
        .next_multiple_of(u64::from(inodes_per_block.max(8)));
    let ipg = u32::try_from(ipg).ok()?;
    if ipg > bits_per_block.min(65_536 - inodes_per_block) {
        return None;
    }
    let inode_table_blocks = ipg / inodes_per_block;
    let gdt_blocks =
        (u64::from(groups) * u64::from(GROUP_DESC_SIZE)).div_ceil(u64::from(block_size));
    let gdt_blocks = u32::try_from(gdt_blocks).ok()?;
    let overheads = (0..groups).map(|g| u64::from(overhead(g, gdt_blocks, inode_table_blocks)));
    let meta: u64 = overheads.clone().sum();
    let max_overhead = overheads.clone().max().unwrap_or(0);
    let last_overhead = u64::from(overhead(groups - 1, gdt_blocks, inode_table_blocks));
    let needed = meta + content;

    // Group sizes: the standard 8 × block_size when that leaves a last group big enough for
    // its own metadata; otherwise groups of equal size (a multiple of 8, as mke2fs -g wants).
    // e2fsck also wants inodes_per_group <= inodes_per_block * (blocks_per_group - 4).
    let min_bpg = max_overhead.max(u64::from(inode_table_blocks) + 4).max(8);
    let full = u64::from(bits_per_block);
    let bpg = if groups == 1
        || (needed > u64::from(groups - 1) * full
            && needed - u64::from(groups - 1) * full >= last_overhead)
    {
        full
    } else {
        needed
            .div_ceil(u64::from(groups))
            .next_multiple_of(8)
            .max(min_bpg.next_multiple_of(8))
    };
    if bpg > full || bpg < min_bpg {
        return None;
    }
    if groups == 1 && needed > full {
        return None;
    }
    let before_last = u64::from(groups - 1) * bpg;
    // The last group must exist and hold its metadata; pad with free blocks if it must.
    let total = needed.max(before_last + last_overhead);
    if total > before_last + bpg {
        return None;
    }
    let blocks_count = u32::try_from(total + u64::from(first_data_block)).ok()?;
    Some(Geometry {
        block_size,
        first_data_block,
        blocks_count,
        blocks_per_group: u32::try_from(bpg).ok()?,
        inodes_per_group: ipg,
        group_count: groups,
        gdt_blocks,
        inode_table_blocks,
    })
}

/// The geometry for `tree` at one block size, with the requested spare room.
pub(crate) fn plan_tree(
    tree: &Tree,
    block_size: u32,
    extra_bytes: u64,
    extra_inodes: u32,
    source: &std::path::Path,
) -> Result<Geometry, Error> {
    let content = content_blocks(tree, block_size)? + extra_bytes.div_ceil(u64::from(block_size));
    let inodes = tree.used_inodes() + u64::from(extra_inodes);
    plan(block_size, content, inodes).ok_or_else(|| Error::TooLarge {
        path: PathBuf::from(source),
        what: super::Limit::ImageSize { block_size },
    })
}

#[cfg(test)]
#[expect(
    clippy::single_range_in_vec_init,
    reason = "block runs written as ranges"
)]
mod tests {
    use super::*;

    #[test]
    fn backup_groups_are_0_1_and_powers_of_3_5_7() {
        let backups: Vec<u32> = (0..130).filter(|&g| has_super(g)).collect();
        assert_eq!(backups, [0, 1, 3, 5, 7, 9, 25, 27, 49, 81, 125]);
        assert!(has_super(343) && has_super(2187) && !has_super(4095));
    }

    #[test]
    fn block_runs_merge_ranges_sharing_a_block() {
        let runs: Vec<_> = block_runs(&[0..10, 1000..1030, 5000..5001], 1024).collect();
        assert_eq!(runs, [0..2, 4..5]);
        let runs: Vec<_> = block_runs(&[0..4096, 8192..8193], 4096).collect();
        assert_eq!(runs, [0..1, 2..3]);
    }

    #[test]
    fn indirect_blocks_only_where_data_is() {
        let b = 1024;
        // 12 direct blocks: none.
        assert_eq!(file_blocks(&[0..12], b), 12);
        // 13 blocks: one single-indirect.
        assert_eq!(file_blocks(&[0..13], b), 14);
        // Full single indirect range, then one block of double indirect.
        assert_eq!(file_blocks(&[0..12 + 256], b), 12 + 256 + 1);
        assert_eq!(file_blocks(&[0..12 + 256 + 1], b), 12 + 256 + 1 + 1 + 2);
        // A lone block far into the double-indirect range: dind + one ind.
        assert_eq!(file_blocks(&[10_000..10_001], b), 1 + 2);
        // Two blocks under different indirect blocks of the dind tree.
        assert_eq!(file_blocks(&[268..269, 268 + 256..268 + 257], b), 2 + 1 + 2);
        // Triple indirect: a lone block needs tind + dind + ind.
        let t0 = 12 + 256 + 256 * 256;
        assert_eq!(file_blocks(&[t0..t0 + 1], b), 1 + 3);
        // A hole spanning a whole indirect block's range costs nothing.
        assert_eq!(file_blocks(&[0..1, 268 + 256..268 + 257], b), 1 + 1 + 2);
    }

    #[test]
    fn max_file_sizes_match_the_kernel() {
        assert_eq!(max_file_size(1024), 16_843_020 * 1024);
        assert_eq!(max_file_size(2048), 134_480_396 * 2048);
        // 4 KiB: limited by i_blocks, a little under 2 TiB.
        let max = max_file_size(4096);
        assert!(max < 2 << 40 && max > (2 << 40) - (8 << 30), "{max}");
    }

    #[test]
    fn directory_records_never_span_blocks() {
        // "." and ".." take 24 bytes; a 255-byte name takes 264.
        let long = [b'x'; 255];
        let names = [&long[..]; 3];
        assert_eq!(dir_blocks(names.iter().copied(), 1024), 1);
        let names = [&long[..]; 4];
        assert_eq!(dir_blocks(names.iter().copied(), 1024), 2);
        assert_eq!(dir_blocks(std::iter::empty(), 1024), 1);
        // 1000-byte block fill: 1024 - 24 = 1000 = 125 records of 8 bytes... names of 1
        // byte take 12: 83 fit in the first block, the 84th starts the second.
        let one = [b'a'];
        assert_eq!(dir_blocks(vec![&one[..]; 83].into_iter(), 1024), 1);
        assert_eq!(dir_blocks(vec![&one[..]; 84].into_iter(), 1024), 2);
    }

    #[test]
    fn one_group_for_a_small_tree() {
        let g = plan(1024, 100, 20).expect("fits");
        assert_eq!(g.group_count, 1);
        assert_eq!(g.first_data_block, 1);
        assert_eq!(g.inodes_per_group, 24);
        // boot + sb + gdt + 2 bitmaps + 3 inode-table blocks + 100
        assert_eq!(g.blocks_count, 1 + 1 + 1 + 2 + 3 + 100);
        assert_eq!(g.content_capacity(), 100);
    }

    #[test]
    fn groups_split_at_8_times_block_size() {
        let g = plan(1024, 20_000, 100).expect("fits");
        assert_eq!(g.group_count, 3);
        assert_eq!(g.blocks_per_group, 8192);
        assert_eq!(g.content_capacity(), 20_000);
        let g = plan(4096, 20_000, 100).expect("fits");
        assert_eq!(g.group_count, 1);
        assert_eq!(g.first_data_block, 0);
    }

    #[test]
    fn many_inodes_force_more_smaller_groups() {
        // 100,000 inodes at 1 KiB: at most 8192 per group, so 13 groups or more (a 14th can
        // round better), with little data.
        let g = plan(1024, 100, 100_000).expect("fits");
        assert!((13..=15).contains(&g.group_count), "{g:?}");
        assert!(g.inodes_count() >= 100_000);
        assert!(g.blocks_per_group <= 8192);
        assert!(g.content_capacity() >= 100);
        for group in 0..g.group_count {
            assert!(g.group_len(group) >= g.overhead(group));
        }
    }

    #[test]
    fn capacity_is_exact_whatever_the_size() {
        for bs in BLOCK_SIZES {
            for content in [
                0u64, 1, 7, 8000, 8189, 8190, 8191, 8192, 16_000, 65_536, 300_000,
            ] {
                for inodes in [11u64, 12, 5000, 40_000] {
                    let g = plan(bs, content, inodes).expect("fits");
                    let cap = g.content_capacity();
                    assert!(cap >= content, "{bs} {content} {inodes}: {g:?}");
                    // Padding only when the last group must hold its own metadata.
                    assert!(cap - content <= u64::from(g.overhead(g.group_count - 1)));
                    assert!(g.inodes_count() as u64 >= inodes);
                    assert_eq!(g.inodes_per_group % 8, 0);
                    assert_eq!((g.inodes_per_group * INODE_SIZE) % bs, 0);
                }
            }
        }
    }
}
