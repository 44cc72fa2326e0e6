//! The reader: an ext2 (or ext3, journal ignored) image opened through [`ReadAt`], read by
//! inode number, the way a FUSE server asks for it.

use std::fmt;
use std::sync::Arc;

use crate::block_group::GroupDesc;
use crate::bytes::{le16, le32};
use crate::dir_entry::{self, DirEntry, DirEntryRef, NAME_MAX};
use crate::error::{Corrupt, Error, Unsupported};
use crate::inode::{self, FileType, Inode};
use crate::name_cache::{self, NameCache, Names};
use crate::read_at::ReadAt;
use crate::superblock::{Superblock, feature};
use crate::units::{BlockNo, BlockSize, InodeNo};

/// The most entries [`Ext2::file_blocks`] lists (16 Mi, 128 MiB of `Option<BlockNo>`).
const FILE_BLOCKS_MAX: u64 = 1 << 24;

/// Symlink targets longer than this are refused, whatever the block size (`PATH_MAX`).
const SYMLINK_MAX: u64 = 4096;

/// An ext2 image, opened for reading.
///
/// Everything is read on demand through `R`; only the superblock and the group descriptors
/// are kept in memory. `Ext2<R>` is `Send + Sync` when `R` is, so one image can serve many
/// threads.
pub struct Ext2<R: ReadAt> {
    reader: R,
    sb: Superblock,
    block_size: BlockSize,
    groups: Vec<GroupDesc>,
    /// Bytes per inode record.
    inode_size: u32,
    /// The first block after the primary superblock, descriptors and reserved descriptors:
    /// no file block can be below it.
    data_start: u32,
    /// Sorted, disjoint `[start, end)` block ranges of bitmaps and inode tables.
    metadata: Vec<(u32, u32)>,
    has_filetype: bool,
    /// Block pointers per indirect block.
    ptrs_per_block: u64,
    /// Blocks the block map of one inode can address (12 + p + p² + p³).
    max_file_blocks: u64,
    /// The names of large directories.
    names: NameCache,
}

impl<R: ReadAt> fmt::Debug for Ext2<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ext2")
            .field("block_size", &self.block_size)
            .field("blocks_count", &self.sb.blocks_count)
            .field("inodes_count", &self.sb.inodes_count)
            .field("groups", &self.groups.len())
            .finish_non_exhaustive()
    }
}

fn bad_sb(field: &'static str, value: impl Into<u64>) -> Error {
    Error::Corrupt(Corrupt::Superblock {
        field,
        value: value.into(),
    })
}

/// The indirect blocks on the way to a data block, one per level, remembering which block
/// each holds so that walking a file reads each indirect block once.
#[derive(Debug, Default)]
struct Scratch<'a> {
    levels: [Level<'a>; 3],
}

/// One level of [`Scratch`]: the block in place in the image when the reader holds it in
/// memory ([`ReadAt::bytes_at`]), else a copy.
#[derive(Debug, Default)]
struct Level<'a> {
    held: Option<u32>,
    view: Option<&'a [u8]>,
    copy: Vec<u8>,
}

impl Level<'_> {
    fn bytes(&self) -> &[u8] {
        self.view.unwrap_or(&self.copy)
    }
}

/// A run of logical blocks that are all holes or physically contiguous.
#[derive(Debug, Clone, Copy)]
struct Run {
    /// The first physical block, `None` for holes.
    start: Option<u32>,
    /// At least 1.
    len: u64,
}

impl<R: ReadAt> Ext2<R> {
    /// Opens an image: reads and checks the superblock and the group descriptors.
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`] when the superblock or a group descriptor is invalid or the image
    /// is shorter than the superblock says, [`Error::Unsupported`] for features this reader
    /// can't read (ext4's `extents` and `64bit`, `meta_bg`, compression, ...),
    /// [`Error::Io`] when reading fails.
    pub fn open(reader: R) -> Result<Self, Error> {
        let size = reader.size();
        let sb_end = Superblock::OFFSET + Superblock::SIZE as u64;
        if size < sb_end {
            return Err(Corrupt::ImageTooSmall {
                needed: sb_end,
                size,
            }
            .into());
        }
        let mut raw = [0u8; Superblock::SIZE];
        reader.read_exact_at(Superblock::OFFSET, &mut raw)?;
        let sb = Superblock::from_bytes(&raw)?;

        if sb.rev_level > 1 {
            return Err(Unsupported::Revision(sb.rev_level).into());
        }
        for &(bit, name) in feature::REFUSED_INCOMPAT {
            if sb.feature_incompat & bit != 0 {
                return Err(Unsupported::Feature(name).into());
            }
        }
        let unknown = sb.feature_incompat & !feature::READABLE_INCOMPAT;
        if unknown != 0 {
            return Err(Unsupported::UnknownIncompat(unknown).into());
        }
        let block_size = sb.block_size().ok_or(Unsupported::BlockSize {
            log: sb.log_block_size,
        })?;
        let bs = block_size.get();
        let bs64 = block_size.get_u64();

        let inode_size = u32::from(sb.inode_record_size());
        if inode_size < 128 || !inode_size.is_power_of_two() || inode_size > bs {
            return Err(bad_sb("inode_size", inode_size));
        }
        let bits_per_block = bs * 8;
        if sb.blocks_per_group == 0 || sb.blocks_per_group > bits_per_block {
            return Err(bad_sb("blocks_per_group", sb.blocks_per_group));
        }
        if sb.inodes_per_group == 0 || sb.inodes_per_group > bits_per_block {
            return Err(bad_sb("inodes_per_group", sb.inodes_per_group));
        }
        // The superblock is in block 1 of 1 KiB-block images and in block 0 otherwise.
        let sb_block: u32 = if bs == 1024 { 1 } else { 0 };
        if sb.first_data_block != sb_block {
            return Err(bad_sb("first_data_block", sb.first_data_block));
        }
        if sb.blocks_count <= sb.first_data_block {
            return Err(bad_sb("blocks_count", sb.blocks_count));
        }
        let needed = u64::from(sb.blocks_count) * bs64;
        if needed > size {
            return Err(Corrupt::ImageTooSmall { needed, size }.into());
        }
        let group_count = sb.group_count();
        if u64::from(sb.inodes_count) != u64::from(sb.inodes_per_group) * u64::from(group_count) {
            return Err(bad_sb("inodes_count", sb.inodes_count));
        }

        // Group descriptors, in the blocks after the superblock's.
        let gdt_bytes = u64::from(group_count) * GroupDesc::SIZE as u64;
        let gdt_blocks = gdt_bytes.div_ceil(bs64);
        let reserved_gdt = if sb.has_compat(feature::COMPAT_RESIZE_INODE) {
            u64::from(le16(
                &raw,
                Superblock::RESERVED_GDT_BLOCKS_OFFSET,
                "superblock",
            )?)
        } else {
            0
        };
        let data_start = u64::from(sb_block) + 1 + gdt_blocks + reserved_gdt;
        if data_start >= u64::from(sb.blocks_count) {
            return Err(bad_sb("blocks_count", sb.blocks_count));
        }
        let data_start = u32::try_from(data_start).map_err(|_| bad_sb("blocks_count", 0u32))?;
        // Bounded by the image size, checked above.
        let gdt_len = usize::try_from(gdt_bytes).map_err(|_| bad_sb("blocks_count", 0u32))?;
        let mut gdt = vec![0u8; gdt_len];
        reader.read_exact_at((u64::from(sb_block) + 1) * bs64, &mut gdt)?;

        let table_blocks = (u64::from(sb.inodes_per_group) * u64::from(inode_size)).div_ceil(bs64);
        let mut groups = Vec::with_capacity(gdt_len / GroupDesc::SIZE);
        let mut metadata = Vec::with_capacity(groups.capacity().saturating_mul(3));
        for (group, raw_gd) in (0u32..).zip(gdt.chunks_exact(GroupDesc::SIZE)) {
            let gd = GroupDesc::from_bytes(raw_gd)?;
            for (field, start, len) in [
                ("block_bitmap", gd.block_bitmap, 1),
                ("inode_bitmap", gd.inode_bitmap, 1),
                ("inode_table", gd.inode_table, table_blocks),
            ] {
                let end = u64::from(start) + len;
                if start < data_start || end > u64::from(sb.blocks_count) {
                    return Err(Corrupt::GroupDesc {
                        group,
                        field,
                        block: start,
                    }
                    .into());
                }
                // end <= blocks_count, so it fits
                metadata.push((start, u32::try_from(end).unwrap_or(u32::MAX)));
            }
            groups.push(gd);
        }
        metadata.sort_unstable();
        let mut merged: Vec<(u32, u32)> = Vec::with_capacity(metadata.len());
        for (start, end) in metadata {
            match merged.last_mut() {
                Some(last) if start <= last.1 => last.1 = last.1.max(end),
                _ => merged.push((start, end)),
            }
        }

        let p = bs64 / 4;
        Ok(Ext2 {
            has_filetype: sb.has_incompat(feature::INCOMPAT_FILETYPE),
            reader,
            sb,
            block_size,
            groups,
            inode_size,
            data_start,
            metadata: merged,
            ptrs_per_block: p,
            max_file_blocks: 12 + p + p * p + p * p * p,
            names: NameCache::default(),
        })
    }

    /// The superblock.
    #[must_use]
    pub fn superblock(&self) -> &Superblock {
        &self.sb
    }

    /// The block size.
    #[must_use]
    pub fn block_size(&self) -> BlockSize {
        self.block_size
    }

    /// The group descriptors.
    #[must_use]
    pub fn groups(&self) -> &[GroupDesc] {
        &self.groups
    }

    /// The reader the image is read through.
    #[must_use]
    pub fn reader(&self) -> &R {
        &self.reader
    }

    /// Reads inode `ino`.
    ///
    /// # Errors
    ///
    /// [`Error::NoSuchInode`] for 0 and numbers past `s_inodes_count`; [`Error::Io`].
    pub fn inode(&self, ino: InodeNo) -> Result<Inode, Error> {
        let index = ino
            .0
            .checked_sub(1)
            .filter(|_| ino.0 <= self.sb.inodes_count)
            .ok_or(Error::NoSuchInode {
                ino,
                inodes_count: self.sb.inodes_count,
            })?;
        let group = index / self.sb.inodes_per_group;
        let in_group = index % self.sb.inodes_per_group;
        let gd = usize::try_from(group)
            .ok()
            .and_then(|g| self.groups.get(g))
            .ok_or(Corrupt::Inode {
                ino,
                reason: "in no block group",
            })?;
        let offset = u64::from(gd.inode_table) * self.block_size.get_u64()
            + u64::from(in_group) * u64::from(self.inode_size);
        // Only the first 160 bytes hold fields we know; larger records hold xattrs.
        let mut raw = [0u8; 256];
        let len = usize::try_from(self.inode_size).map_or(raw.len(), |n| n.min(raw.len()));
        self.reader.read_exact_at(offset, &mut raw[..len])?;
        Inode::from_bytes(&raw[..len])
    }

    /// Looks `name` up in directory `dir`. Directories are searched linearly (`dir_index`
    /// ones too); the names of large directories are cached (a bounded cache), so that
    /// looking up every name of a large directory is not quadratic.
    ///
    /// # Errors
    ///
    /// [`Error::NotADirectory`] when `dir` is not a directory; errors reading it.
    pub fn lookup(&self, dir: InodeNo, name: &[u8]) -> Result<Option<InodeNo>, Error> {
        if let Some(names) = self.names.get(dir) {
            return Ok(names.get(name));
        }
        let entries = self.read_dir(dir, 0)?;
        if name.is_empty() || name.len() > NAME_MAX {
            return Ok(None);
        }
        if entries.inode.size > name_cache::MIN_DIR_SIZE {
            if let Some(names) = self.all_names(dir) {
                let found = names.get(name);
                self.names.insert(dir, names);
                return Ok(found);
            }
        }
        let mut entries = entries;
        while let Some(entry) = entries.next_borrowed()? {
            if entry.name == name {
                return Ok(Some(entry.ino));
            }
        }
        Ok(None)
    }

    /// All names of `dir`, or `None` if there are too many to cache or it can't be read
    /// to the end (then the linear search says what is wrong, and where).
    fn all_names(&self, dir: InodeNo) -> Option<Arc<Names>> {
        let mut entries = self.read_dir(dir, 0).ok()?;
        let mut names = Names::with_capacity(usize::try_from(entries.inode.size).ok()?);
        while let Some(entry) = entries.next_borrowed().ok()? {
            names.push(entry.name, entry.ino)?;
        }
        names.index()?;
        Some(Arc::new(names))
    }

    /// Reads up to `buf.len()` bytes of a regular file (or directory) from byte `offset`;
    /// returns how many, fewer only at the end of the file. Holes read as zeros. Physically
    /// contiguous blocks are read with one call to [`ReadAt::read_exact_at`].
    ///
    /// # Errors
    ///
    /// [`Error::NotAFile`] for other inode types, [`Error::Corrupt`] for invalid block
    /// pointers, [`Error::Unsupported`] for extent-mapped or inline-data inodes.
    pub fn read(
        &self,
        ino: InodeNo,
        inode: &Inode,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<usize, Error> {
        match inode.file_type() {
            Some(FileType::Regular | FileType::Directory) => {}
            _ => return Err(Error::NotAFile(ino)),
        }
        self.check_mapped(ino, inode)?;
        if offset >= inode.size {
            return Ok(0);
        }
        let want = usize::try_from(inode.size - offset).map_or(buf.len(), |n| n.min(buf.len()));
        let buf = &mut buf[..want];
        let bs = self.block_size.get_u64();
        let mut scratch = Scratch::default();
        // A physically contiguous stretch not read yet: (image offset, buf offset, length).
        let mut pending: Option<(u64, usize, usize)> = None;
        let mut done = 0usize;
        while done < want {
            let pos = offset + done as u64;
            let lblk = pos / bs;
            let within = pos % bs;
            let left = (want - done) as u64;
            let blocks = (within + left).div_ceil(bs);
            let run = self.map_run(ino, inode, lblk, blocks, &mut scratch)?;
            let run_bytes = usize::try_from((run.len * bs - within).min(left)).unwrap_or(want);
            match run.start {
                None => {
                    self.flush(&mut pending, buf)?;
                    buf[done..done + run_bytes].fill(0);
                }
                Some(phys) => {
                    let src = u64::from(phys) * bs + within;
                    match &mut pending {
                        Some((p_src, _, p_len)) if *p_src + *p_len as u64 == src => {
                            *p_len += run_bytes;
                        }
                        _ => {
                            self.flush(&mut pending, buf)?;
                            pending = Some((src, done, run_bytes));
                        }
                    }
                }
            }
            done += run_bytes;
        }
        self.flush(&mut pending, buf)?;
        Ok(want)
    }

    /// The bytes `[offset, offset + len)` of a regular file (or directory), clipped to its
    /// size, in place in the image: `Some` when the reader holds the image in memory
    /// ([`ReadAt::bytes_at`]) and the range is one physically contiguous run of data, so
    /// that a caller can pass them on without copying. `None` otherwise (a hole, a
    /// fragment boundary, a reader without such a view): use [`Ext2::read`].
    ///
    /// # Errors
    ///
    /// As [`Ext2::read`].
    pub fn bytes_in_place(
        &self,
        ino: InodeNo,
        inode: &Inode,
        offset: u64,
        len: usize,
    ) -> Result<Option<&[u8]>, Error> {
        match inode.file_type() {
            Some(FileType::Regular | FileType::Directory) => {}
            _ => return Err(Error::NotAFile(ino)),
        }
        self.check_mapped(ino, inode)?;
        let Some(left) = inode.size.checked_sub(offset).filter(|&n| n > 0) else {
            return Ok(Some(&[]));
        };
        let want = usize::try_from(left).map_or(len, |n| n.min(len));
        if want == 0 {
            return Ok(Some(&[]));
        }
        let bs = self.block_size.get_u64();
        let within = offset % bs;
        let blocks = (within + want as u64).div_ceil(bs);
        let first = offset / bs;
        let mut scratch = Scratch::default();
        let run = self.map_run(ino, inode, first, blocks, &mut scratch)?;
        let Some(phys) = run.start else {
            return Ok(None);
        };
        // A run found in one leaf of the block map (the direct pointers, one indirect
        // block) may go on in the next: physically contiguous is all that counts.
        let mut got = run.len;
        while got < blocks {
            let next = self.map_run(ino, inode, first + got, blocks - got, &mut scratch)?;
            if next.start != u32::try_from(got).ok().and_then(|g| phys.checked_add(g)) {
                return Ok(None);
            }
            got += next.len;
        }
        Ok(self.reader.bytes_at(u64::from(phys) * bs + within, want))
    }

    fn flush(
        &self,
        pending: &mut Option<(u64, usize, usize)>,
        buf: &mut [u8],
    ) -> Result<(), Error> {
        if let Some((src, dst, len)) = pending.take() {
            self.reader.read_exact_at(src, &mut buf[dst..dst + len])?;
        }
        Ok(())
    }

    /// Iterates over directory `dir` from byte `offset` (0, or the
    /// [`DirEntry::next_offset`] of an entry read before), `.` and `..` included.
    /// An offset that is not at a record is moved to the next record, as the kernel does.
    ///
    /// # Errors
    ///
    /// [`Error::NotADirectory`] when `dir` is not a directory; errors reading its inode or
    /// the block at `offset`. The iterator yields errors for corrupt records, then ends.
    pub fn read_dir(&self, dir: InodeNo, offset: u64) -> Result<ReadDir<'_, R>, Error> {
        let inode = self.inode(dir)?;
        if inode.file_type() != Some(FileType::Directory) {
            return Err(Error::NotADirectory(dir));
        }
        self.check_mapped(dir, &inode)?;
        let bs = self.block_size.get_u64();
        if inode.size % bs != 0 {
            return Err(Corrupt::Inode {
                ino: dir,
                reason: "directory size not a multiple of the block size",
            }
            .into());
        }
        if inode.size > self.reader.size() {
            return Err(Corrupt::Inode {
                ino: dir,
                reason: "directory larger than the image",
            }
            .into());
        }
        let mut it = ReadDir {
            fs: self,
            dir,
            inode,
            offset,
            block: None,
            copy: Vec::new(),
            loaded: None,
            scratch: Scratch::default(),
            done: false,
        };
        let within = offset % bs;
        if within != 0 && offset < it.inode.size {
            // Resuming from an offset that may not be a record boundary: walk the block's
            // records from its start to the first one at or after `offset`.
            let start = offset - within;
            it.load(start / bs)?;
            let mut pos = 0u64;
            while pos < within {
                let rec = it.record(start + pos)?;
                pos += rec.rec_len as u64;
            }
            it.offset = start + pos;
        }
        Ok(it)
    }

    /// The target of symbolic link `ino`: from `i_block` for fast symlinks, else from its
    /// data block. At most one block and at most 4096 bytes.
    ///
    /// # Errors
    ///
    /// [`Error::NotASymlink`] for other inode types; [`Error::Corrupt`] for an empty or
    /// oversized target or an invalid block pointer.
    pub fn read_link(&self, ino: InodeNo, inode: &Inode) -> Result<Vec<u8>, Error> {
        if inode.file_type() != Some(FileType::Symlink) {
            return Err(Error::NotASymlink(ino));
        }
        let corrupt = |reason| Error::Corrupt(Corrupt::Inode { ino, reason });
        if inode.size == 0 {
            return Err(corrupt("empty symlink target"));
        }
        if inode.is_fast_symlink() {
            if inode.flags & inode::flags::INLINE_DATA != 0 {
                return Err(Unsupported::InodeFlag {
                    ino,
                    feature: "inline_data",
                }
                .into());
            }
            let mut bytes = Vec::with_capacity(60);
            for ptr in inode.block {
                bytes.extend_from_slice(&ptr.to_le_bytes());
            }
            let len = usize::try_from(inode.size)
                .ok()
                .filter(|&n| n <= bytes.len())
                .ok_or_else(|| corrupt("fast symlink target longer than i_block"))?;
            bytes.truncate(len);
            return Ok(bytes);
        }
        self.check_mapped(ino, inode)?;
        if inode.size > self.block_size.get_u64().min(SYMLINK_MAX) {
            return Err(corrupt("symlink target longer than a block"));
        }
        let len = usize::try_from(inode.size).map_err(|_| corrupt("symlink size"))?;
        let mut scratch = Scratch::default();
        let run = self.map_run(ino, inode, 0, 1, &mut scratch)?;
        let phys = run
            .start
            .ok_or_else(|| corrupt("symlink without a data block"))?;
        let mut target = vec![0u8; len];
        self.reader
            .read_exact_at(u64::from(phys) * self.block_size.get_u64(), &mut target)?;
        Ok(target)
    }

    /// The physical block of each logical block of a file, directory or slow symlink
    /// (`None` for holes), as many as its size covers; empty for other inodes.
    ///
    /// # Errors
    ///
    /// [`Error::TooManyBlocks`] beyond 16 Mi blocks; [`Error::Corrupt`] for invalid
    /// pointers; [`Error::Unsupported`] for extent-mapped or inline-data inodes.
    pub fn file_blocks(&self, ino: InodeNo, inode: &Inode) -> Result<Vec<Option<BlockNo>>, Error> {
        match inode.file_type() {
            Some(FileType::Regular | FileType::Directory) => {}
            Some(FileType::Symlink) if !inode.is_fast_symlink() => {}
            _ => return Ok(Vec::new()),
        }
        self.check_mapped(ino, inode)?;
        let bs = self.block_size.get_u64();
        let count = inode.size.div_ceil(bs);
        if count > FILE_BLOCKS_MAX {
            return Err(Error::TooManyBlocks { ino, blocks: count });
        }
        let mut out = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
        let mut scratch = Scratch::default();
        let mut lblk = 0u64;
        while lblk < count {
            let run = self.map_run(ino, inode, lblk, count - lblk, &mut scratch)?;
            for i in 0..run.len {
                // i < len and start + len - 1 was checked against blocks_count
                out.push(run.start.map(|s| BlockNo(s + i as u32)));
            }
            lblk += run.len;
        }
        Ok(out)
    }

    /// Refuses inodes whose data isn't in a block map, and sizes the map can't address.
    fn check_mapped(&self, ino: InodeNo, inode: &Inode) -> Result<(), Error> {
        if inode.flags & inode::flags::EXTENTS != 0 {
            return Err(Unsupported::InodeFlag {
                ino,
                feature: "extents",
            }
            .into());
        }
        if inode.flags & inode::flags::INLINE_DATA != 0 {
            return Err(Unsupported::InodeFlag {
                ino,
                feature: "inline_data",
            }
            .into());
        }
        if inode.size.div_ceil(self.block_size.get_u64()) > self.max_file_blocks {
            return Err(Corrupt::Inode {
                ino,
                reason: "size larger than the block map can address",
            }
            .into());
        }
        Ok(())
    }

    /// Checks that blocks `[start, start + len)` may hold file data or indirect blocks.
    fn check_blocks(&self, ino: InodeNo, start: u32, len: u64) -> Result<(), Error> {
        let bad = |reason| {
            Err(Error::Corrupt(Corrupt::BlockPointer {
                ino,
                block: start,
                reason,
            }))
        };
        let end = u64::from(start) + len;
        if end > u64::from(self.sb.blocks_count) {
            return bad("past end of image");
        }
        if start < self.data_start {
            return bad("inside the superblock or group descriptors");
        }
        let i = self.metadata.partition_point(|&(_, e)| e <= start);
        if self
            .metadata
            .get(i)
            .is_some_and(|&(s, _)| u64::from(s) < end)
        {
            return bad("inside a bitmap or inode table");
        }
        Ok(())
    }

    /// Maps logical block `lblk` of the inode: the run of up to `max_len` (at least 1)
    /// blocks from it that are all holes or physically contiguous, within one indirect
    /// block.
    fn map_run<'a>(
        &'a self,
        ino: InodeNo,
        inode: &Inode,
        lblk: u64,
        max_len: u64,
        scratch: &mut Scratch<'a>,
    ) -> Result<Run, Error> {
        let max_len = max_len.max(1);
        let p = self.ptrs_per_block;
        if lblk < Inode::DIRECT_BLOCKS as u64 {
            let i = lblk as usize;
            return self.scan(
                ino,
                LeafPtrs::Direct(&inode.block[i..Inode::DIRECT_BLOCKS]),
                max_len,
            );
        }
        let mut rel = lblk - Inode::DIRECT_BLOCKS as u64;
        let (mut ptr, mut cover) = if rel < p {
            (inode.block[Inode::IND_BLOCK], p)
        } else if rel - p < p * p {
            rel -= p;
            (inode.block[Inode::DIND_BLOCK], p * p)
        } else if rel - p - p * p < p * p * p {
            rel -= p + p * p;
            (inode.block[Inode::TIND_BLOCK], p * p * p)
        } else {
            return Err(Corrupt::Inode {
                ino,
                reason: "block index past the triple-indirect block",
            }
            .into());
        };
        // `ptr` is an indirect block covering `cover` blocks, `rel` of them before lblk.
        let bs = self.block_size.get_usize();
        for level in &mut scratch.levels {
            if ptr == 0 {
                return Ok(Run {
                    start: None,
                    len: (cover - rel).min(max_len),
                });
            }
            if level.held != Some(ptr) {
                self.check_blocks(ino, ptr, 1)?;
                level.held = None;
                let at = u64::from(ptr) * self.block_size.get_u64();
                level.view = self.reader.bytes_at(at, bs);
                if level.view.is_none() {
                    level.copy.resize(bs, 0);
                    self.reader.read_exact_at(at, &mut level.copy)?;
                }
                level.held = Some(ptr);
            }
            let buf = level.bytes();
            let child = cover / p;
            // rel < cover, so idx < p: inside the block
            let idx = usize::try_from(rel / child).unwrap_or(usize::MAX);
            if child == 1 {
                return self.scan(
                    ino,
                    LeafPtrs::Block(buf.get(idx * 4..).unwrap_or(&[])),
                    max_len,
                );
            }
            ptr = le32(buf, idx * 4, "indirect block")?;
            rel %= child;
            cover = child;
        }
        Err(Corrupt::Inode {
            ino,
            reason: "block map deeper than triple-indirect",
        }
        .into())
    }

    /// The run at the start of `ptrs`: leading zeros, or pointers that go up by one.
    fn scan(&self, ino: InodeNo, ptrs: LeafPtrs<'_>, max_len: u64) -> Result<Run, Error> {
        let limit = usize::try_from(max_len).map_or(ptrs.len(), |m| m.min(ptrs.len()));
        let first = ptrs.get(0);
        let mut len = 1usize;
        while len < limit {
            let p = ptrs.get(len);
            let next = if first == 0 {
                p == 0
            } else {
                u64::from(p) == u64::from(first) + len as u64
            };
            if !next {
                break;
            }
            len += 1;
        }
        let len = len as u64;
        if first == 0 {
            return Ok(Run { start: None, len });
        }
        self.check_blocks(ino, first, len)?;
        Ok(Run {
            start: Some(first),
            len,
        })
    }
}

/// The pointers of a block map leaf from some index on: the inode's direct pointers or
/// (part of) an indirect block.
#[derive(Debug, Clone, Copy)]
enum LeafPtrs<'a> {
    Direct(&'a [u32]),
    Block(&'a [u8]),
}

impl LeafPtrs<'_> {
    fn len(self) -> usize {
        match self {
            LeafPtrs::Direct(p) => p.len(),
            LeafPtrs::Block(b) => b.len() / 4,
        }
    }

    /// Pointer `i`, 0 past the end.
    fn get(self, i: usize) -> u32 {
        match self {
            LeafPtrs::Direct(p) => p.get(i).copied().unwrap_or(0),
            LeafPtrs::Block(b) => le32(b, i * 4, "indirect block").unwrap_or(0),
        }
    }
}

/// The entries of a directory, from [`Ext2::read_dir`].
pub struct ReadDir<'a, R: ReadAt> {
    fs: &'a Ext2<R>,
    dir: InodeNo,
    inode: Inode,
    /// The byte offset of the next record.
    offset: u64,
    /// The loaded block: borrowed from the reader when it holds the image in memory
    /// ([`ReadAt::bytes_at`]), else copied into `copy`.
    block: Option<&'a [u8]>,
    /// The buffer for readers without an in-memory view; allocated on first use.
    copy: Vec<u8>,
    /// The logical block in `block` or `copy`.
    loaded: Option<u64>,
    scratch: Scratch<'a>,
    done: bool,
}

impl<R: ReadAt> fmt::Debug for ReadDir<'_, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadDir")
            .field("dir", &self.dir)
            .field("offset", &self.offset)
            .finish_non_exhaustive()
    }
}

impl<R: ReadAt> ReadDir<'_, R> {
    fn load(&mut self, lblk: u64) -> Result<(), Error> {
        if self.loaded == Some(lblk) {
            return Ok(());
        }
        self.loaded = None;
        let bs = self.fs.block_size.get_u64();
        let run = self
            .fs
            .map_run(self.dir, &self.inode, lblk, 1, &mut self.scratch)?;
        let phys = run.start.ok_or(Corrupt::DirEntry {
            dir: self.dir,
            offset: lblk * bs,
            reason: "hole in directory",
        })?;
        let at = u64::from(phys) * bs;
        self.block = self.fs.reader.bytes_at(at, self.fs.block_size.get_usize());
        if self.block.is_none() {
            self.copy.resize(self.fs.block_size.get_usize(), 0);
            self.fs.reader.read_exact_at(at, &mut self.copy)?;
        }
        self.loaded = Some(lblk);
        Ok(())
    }

    /// The record at directory offset `at`, whose block is loaded.
    fn record(&self, at: u64) -> Result<dir_entry::Record<'_>, Error> {
        let within = (at % self.fs.block_size.get_u64()) as usize;
        dir_entry::parse_record(
            self.block.unwrap_or(&self.copy),
            within,
            self.fs.has_filetype,
            self.fs.sb.inodes_count,
        )
        .map_err(|reason| dir_entry::corrupt(self.dir, at, reason).into())
    }

    /// The next entry, borrowed from the loaded block: no allocation, so that a search
    /// through a directory ([`Ext2::lookup`]) costs a few nanoseconds per record. After
    /// an error (or the end) it returns `Ok(None)`, as the iterator does.
    ///
    /// # Errors
    ///
    /// Reading a directory block, or a corrupt record.
    pub fn next_borrowed(&mut self) -> Result<Option<DirEntryRef<'_>>, Error> {
        if self.done {
            return Ok(None);
        }
        match self.advance() {
            Ok(Some(Found {
                ino,
                name,
                file_type,
                next_offset,
            })) => Ok(Some(DirEntryRef {
                ino,
                name: &self.block.unwrap_or(&self.copy)[name],
                file_type,
                next_offset,
            })),
            other => {
                self.done = true;
                other.map(|_| None)
            }
        }
    }

    /// Moves past the next used record and says where it was.
    fn advance(&mut self) -> Result<Option<Found>, Error> {
        let bs = self.fs.block_size.get_u64();
        while self.offset < self.inode.size {
            let at = self.offset;
            self.load(at / bs)?;
            let rec = self.record(at)?;
            let (ino, rec_len, name_len, raw_type) =
                (rec.ino, rec.rec_len as u64, rec.name.len(), rec.file_type);
            self.offset = at + rec_len;
            if ino == 0 {
                continue;
            }
            let start = (at % bs) as usize + dir_entry::HEADER_SIZE;
            let file_type = if self.fs.has_filetype {
                FileType::from_dir_entry_type(raw_type)
            } else {
                None
            };
            return Ok(Some(Found {
                ino: InodeNo(ino),
                name: start..start + name_len,
                file_type,
                next_offset: self.offset,
            }));
        }
        Ok(None)
    }
}

/// A used record [`ReadDir::advance`] moved past: its name as a range of the loaded block.
struct Found {
    ino: InodeNo,
    name: std::ops::Range<usize>,
    file_type: Option<FileType>,
    next_offset: u64,
}

impl<R: ReadAt> Iterator for ReadDir<'_, R> {
    type Item = Result<DirEntry, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_borrowed()
            .map(|entry| entry.map(|e| e.to_owned()))
            .transpose()
    }
}

impl<R: ReadAt> std::iter::FusedIterator for ReadDir<'_, R> {}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;
    use crate::read_at::FileRegion;
    use crate::units::BlockSize;
    use crate::write::{Image, Options};

    const BS: usize = 1024;

    /// An image with 1 KiB blocks, in memory, holding `f` and the directory `d`.
    /// `f`: 64 KiB of pattern whose blocks 5 and 6 are zeros (the writer stores them as a
    /// hole), so that it has direct blocks, a hole and blocks behind an indirect block,
    /// which the writer places before the file's data.
    /// `d`: enough entries for several directory blocks.
    fn image() -> (Vec<u8>, Vec<u8>) {
        let mut data: Vec<u8> = (0..64 * 1024u32).map(|i| (i % 251 + 1) as u8).collect();
        data[5 * BS..7 * BS].fill(0);
        let src = tempfile::tempdir().expect("tempdir");
        std::fs::write(src.path().join("f"), &data).expect("write source");
        std::fs::write(src.path().join("g"), big()).expect("write source");
        std::fs::create_dir(src.path().join("d")).expect("mkdir");
        for i in 0..200 {
            let name = format!("entry-with-a-longish-name-{i:03}");
            std::fs::write(src.path().join("d").join(name), b"x").expect("write entry");
        }
        let options = Options {
            block_size: Some(BlockSize::KIB_1),
            ..Options::default()
        };
        let image = Image::scan(src.path(), &options).expect("scan");
        let out = tempfile::tempfile().expect("tempfile");
        out.set_len(image.size()).expect("set_len");
        image.write_to(&out, &mut |_, _| {}).expect("write image");
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut &out, &mut bytes).expect("read image back");
        (bytes, data)
    }

    /// `g`: 1 MiB without zero blocks, reaching into the double-indirect range (and so
    /// needing six indirect blocks at 1 KiB).
    fn big() -> Vec<u8> {
        (0..1 << 20).map(|i: u32| (i % 253 + 1) as u8).collect()
    }

    fn file<R: ReadAt>(fs: &Ext2<R>, name: &[u8]) -> (InodeNo, Inode) {
        let ino = fs
            .lookup(InodeNo::ROOT, name)
            .expect("lookup")
            .expect("entry");
        (ino, fs.inode(ino).expect("inode"))
    }

    /// The same image as a file: a reader without bytes in memory.
    fn as_file(bytes: &[u8]) -> FileRegion {
        let mut file = tempfile::tempfile().expect("tempfile");
        file.write_all(bytes).expect("write");
        FileRegion::whole(file).expect("region")
    }

    #[test]
    fn bytes_in_place_are_exactly_one_contiguous_run_of_data() {
        let (bytes, data) = image();
        let fs = Ext2::open(bytes).expect("open");
        let (ino, inode) = file(&fs, b"f");
        let at = |offset: usize, len| fs.bytes_in_place(ino, &inode, offset as u64, len);
        // Inside the first run, across a block boundary; clipped at the end of the file.
        assert_eq!(at(100, BS).expect("read"), Some(&data[100..100 + BS]));
        // After the hole, from the direct blocks on into those behind the indirect block:
        // the writer puts indirect blocks before a file's data, so the data is one run.
        assert_eq!(
            at(7 * BS, 10 * BS).expect("read"),
            Some(&data[7 * BS..17 * BS])
        );
        assert_eq!(
            at(12 * BS - 10, 20).expect("read"),
            Some(&data[12 * BS - 10..12 * BS + 10])
        );
        // To the end of the file, clipped there.
        let tail = data.len() - 100;
        assert_eq!(at(tail, 1000).expect("read"), Some(&data[tail..]));
        assert_eq!(at(7 * BS, data.len()).expect("read"), Some(&data[7 * BS..]));
        // A file without holes is one run from its first byte to its last, across the
        // double-indirect tree too.
        let (g, g_inode) = file(&fs, b"g");
        let whole = fs.bytes_in_place(g, &g_inode, 0, 1 << 20).expect("read");
        assert!(whole == Some(&big()[..]), "g is not one run");
        // Touching the hole, or inside it: not one run of data.
        assert_eq!(at(5 * BS - 10, 20).expect("read"), None);
        assert_eq!(at(5 * BS + 10, 20).expect("read"), None);
        assert_eq!(at(0, data.len()).expect("read"), None);
        // Nothing to read: an empty answer, not a copy.
        assert_eq!(at(0, 0).expect("read"), Some(&[][..]));
        assert_eq!(at(data.len(), 10).expect("read"), Some(&[][..]));
        // The copying path agrees everywhere, hole included.
        let mut buf = vec![0xffu8; data.len()];
        assert_eq!(fs.read(ino, &inode, 0, &mut buf).expect("read"), data.len());
        assert!(buf == data);
    }

    #[test]
    fn a_block_pointer_past_the_image_is_an_error_not_bytes() {
        let (bytes, data) = image();
        let fs = Ext2::open(bytes).expect("open");
        let (ino, mut inode) = file(&fs, b"f");
        inode.block[0] = u32::MAX;
        assert!(fs.bytes_in_place(ino, &inode, 0, 10).is_err());
        let mut buf = vec![0u8; data.len()];
        assert!(fs.read(ino, &inode, 0, &mut buf).is_err());
    }

    fn names<R: ReadAt>(entries: ReadDir<'_, R>) -> Vec<(Vec<u8>, u64)> {
        entries
            .map(|e| e.map(|e| (e.name, e.next_offset)))
            .collect::<Result<_, _>>()
            .expect("entries")
    }

    #[test]
    fn a_reader_without_bytes_in_memory_reads_the_same_by_copying() {
        let (bytes, data) = image();
        let mapped = Ext2::open(bytes.clone()).expect("open");
        let copied = Ext2::open(as_file(&bytes)).expect("open");
        let (ino, inode) = file(&copied, b"f");
        assert_eq!(
            copied.bytes_in_place(ino, &inode, 0, 10).expect("read"),
            None
        );
        let mut buf = vec![0u8; data.len()];
        copied.read(ino, &inode, 0, &mut buf).expect("read");
        assert!(buf == data);
        // Directories, block by block, borrowed or copied: the same entries.
        let (d, _) = file(&mapped, b"d");
        let listed = names(mapped.read_dir(d, 0).expect("read_dir"));
        assert!(listed.len() == 202, "{} entries", listed.len());
        assert!(listed == names(copied.read_dir(d, 0).expect("read_dir")));
        // Resuming in the middle (the next block's first record) agrees too.
        let mid = listed[100].1;
        let rest = names(mapped.read_dir(d, mid).expect("read_dir"));
        assert!(rest == listed[101..]);
        assert!(rest == names(copied.read_dir(d, mid).expect("read_dir")));
    }
}
