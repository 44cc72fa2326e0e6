//! Writing the planned image: content blocks in one ascending sweep through a large buffer,
//! then inode tables, bitmaps, group descriptors and superblocks, each written once.
//!
//! Blocks are allocated in inode order from the start of the image, skipping each group's
//! metadata: a file's indirect blocks first, then all its data, so that the data of every
//! file is one contiguous run (group metadata and holes aside). A reader holding the image
//! in memory can then hand out any range of a file without copying; the kernel's own
//! allocator puts each indirect block between the data it maps instead.

use std::fs::File;
use std::io;
use std::ops::Range;
use std::os::unix::fs::FileExt as _;

use sha2::{Digest as _, Sha256};

use super::layout::{self, DIRECT, FAST_SYMLINK_MAX, Geometry, INODE_SIZE};
use super::scan::{Kind, Node, ROOT, Tree};
use super::{Error, Image};
use crate::block_group::GroupDesc;
use crate::dir_entry;
use crate::inode::{FileType, Inode};
use crate::superblock::{Superblock, feature};

/// `s_first_ino`: the first inode not reserved (it is `lost+found`).
pub(crate) const FIRST_INO: u32 = 11;

/// Bytes buffered before a write.
const BUFFER: usize = 8 << 20;

/// The volume UUID and directory hash seed: a SHA-256 of the tree's names and metadata.
pub(crate) fn identity(
    tree: &Tree,
    geometry: &Geometry,
    label: &[u8; 16],
    time: u32,
) -> ([u8; 16], [u32; 4]) {
    let mut h = Sha256::new();
    h.update(b"glick-ext2 v1\0");
    h.update(geometry.block_size.to_le_bytes());
    h.update(geometry.blocks_count.to_le_bytes());
    h.update(geometry.inodes_count().to_le_bytes());
    h.update(label);
    h.update(time.to_le_bytes());
    for node in &tree.nodes {
        h.update(node.mode.to_le_bytes());
        h.update(node.uid.to_le_bytes());
        h.update(node.gid.to_le_bytes());
        h.update(node.mtime.to_le_bytes());
        h.update(node.links.to_le_bytes());
        match &node.kind {
            Kind::File { size, data } => {
                h.update(size.to_le_bytes());
                for r in data {
                    h.update(r.start.to_le_bytes());
                    h.update(r.end.to_le_bytes());
                }
            }
            Kind::Dir { entries } => {
                for e in tree.children(entries) {
                    h.update((e.name.len() as u32).to_le_bytes());
                    h.update(&e.name);
                    h.update(e.node.to_le_bytes());
                }
            }
            Kind::Symlink { target } => {
                h.update((target.len() as u32).to_le_bytes());
                h.update(target);
            }
            Kind::Device { major, minor } => {
                h.update(major.to_le_bytes());
                h.update(minor.to_le_bytes());
            }
            Kind::Special => {}
        }
    }
    let digest = h.finalize();
    let mut uuid = [0u8; 16];
    uuid.copy_from_slice(&digest[..16]);
    // RFC 9562 version 8 (custom), variant 10.
    uuid[6] = (uuid[6] & 0x0f) | 0x80;
    uuid[8] = (uuid[8] & 0x3f) | 0x80;
    let mut seed = [0u32; 4];
    for (i, s) in seed.iter_mut().enumerate() {
        let at = 16 + 4 * i;
        *s = u32::from_le_bytes([digest[at], digest[at + 1], digest[at + 2], digest[at + 3]]);
    }
    (uuid, seed)
}

/// Bytes of file data the writer copies: whole blocks of each data run, but not past the
/// end of the file.
pub(crate) fn data_bytes(tree: &Tree, block_size: u32) -> u64 {
    let bs = u64::from(block_size);
    tree.nodes
        .iter()
        .map(|n| match &n.kind {
            Kind::File { size, data } => layout::block_runs(data, bs)
                .map(|r| (r.end * bs).min(*size) - r.start * bs)
                .sum(),
            _ => 0,
        })
        .sum()
}

/// An on-disk time: ext2 keeps signed 32-bit seconds.
fn disk_time(t: i64) -> u32 {
    t.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32 as u32
}

/// Hands out content blocks in ascending order, skipping group metadata.
struct Allocator<'g> {
    geometry: &'g Geometry,
    group: u32,
    next: u32,
    group_end: u32,
    /// Content blocks handed out in each group.
    used: Vec<u32>,
}

impl<'g> Allocator<'g> {
    fn new(geometry: &'g Geometry) -> Self {
        Allocator {
            geometry,
            group: 0,
            next: geometry.group_start(0) + geometry.overhead(0),
            group_end: geometry.group_start(0) + geometry.group_len(0),
            used: vec![0; geometry.group_count as usize],
        }
    }

    fn alloc(&mut self) -> Result<u32, Error> {
        while self.next >= self.group_end {
            self.group += 1;
            if self.group >= self.geometry.group_count {
                return Err(Error::Output(io::Error::other(
                    "internal error: more blocks needed than the layout planned",
                )));
            }
            let g = self.group;
            self.next = self.geometry.group_start(g) + self.geometry.overhead(g);
            self.group_end = self.geometry.group_start(g) + self.geometry.group_len(g);
        }
        let block = self.next;
        self.next += 1;
        self.used[self.group as usize] += 1;
        Ok(block)
    }
}

/// A piece of an inode's blocks, in physical order.
enum Piece {
    /// An indirect block and its pointers.
    Map { block: u32, pointers: Vec<u32> },
    /// `count` content blocks from logical block `logical` at physical block `block`.
    Data {
        logical: u64,
        block: u32,
        count: u32,
    },
}

/// Allocates the blocks for the given logical runs; fills `i_block` and returns the
/// pieces in physical order. The indirect blocks come first, all of them, then the data.
fn map_blocks(
    runs: &[std::ops::Range<u64>],
    block_size: u32,
    alloc: &mut Allocator<'_>,
    i_block: &mut [u32; 15],
) -> Result<(Vec<Piece>, u32), Error> {
    let p = u64::from(block_size / 4);
    let ind0 = DIRECT;
    let dind0 = ind0 + p;
    let tind0 = dind0 + p * p;
    let mut pieces: Vec<Piece> = Vec::new();
    let mut total = 0u32;
    // The indirect blocks open now, as (key, index into `pieces`): logical blocks come in
    // ascending order, so a block's map, once left, is never needed again. `single` is the
    // block of pointers to data: key u64::MAX for i_block[12], `n` for the n-th under the
    // double-indirect block, p² + n for the n-th under the triple-indirect tree. `double` is
    // the n-th double-indirect block under the triple-indirect one.
    let mut single: Option<(u64, usize)> = None;
    let mut double: Option<(u64, usize)> = None;
    let mut triple: Option<usize> = None;
    let mut top_dind: Option<usize> = None;
    // The indirect blocks, allocated ahead of the data; handed out as they are opened.
    let data: u64 = runs.iter().map(|r| r.end - r.start).sum();
    let maps = layout::file_blocks(runs, u64::from(block_size)) - data;
    let mut ahead = (0..maps)
        .map(|_| alloc.alloc())
        .collect::<Result<std::collections::VecDeque<u32>, Error>>()?;

    // Opens a new indirect block and returns its index in `pieces`.
    let mut open = |pieces: &mut Vec<Piece>, alloc: &mut Allocator<'_>| -> Result<usize, Error> {
        // `file_blocks` counts exactly the blocks opened below; the fallback is for safety.
        let block = match ahead.pop_front() {
            Some(block) => block,
            None => alloc.alloc()?,
        };
        pieces.push(Piece::Map {
            block,
            pointers: vec![0; p as usize],
        });
        Ok(pieces.len() - 1)
    };
    fn set(pieces: &mut [Piece], at: usize, slot: u64, value: u32) {
        if let Piece::Map { pointers, .. } = &mut pieces[at] {
            pointers[slot as usize] = value;
        }
    }
    fn block_of(pieces: &[Piece], at: usize) -> u32 {
        match &pieces[at] {
            Piece::Map { block, .. } | Piece::Data { block, .. } => *block,
        }
    }

    for run in runs {
        for logical in run.clone() {
            // Make sure the indirect blocks on the way to `logical` exist; find the slot the
            // data block's pointer goes into.
            let (parent, slot) = if logical < ind0 {
                (None, logical)
            } else if logical < dind0 {
                if single.is_none_or(|(key, _)| key != u64::MAX) {
                    let at = open(&mut pieces, alloc)?;
                    i_block[12] = block_of(&pieces, at);
                    single = Some((u64::MAX, at));
                    total += 1;
                }
                (single.map(|(_, at)| at), logical - ind0)
            } else if logical < tind0 {
                let off = logical - dind0;
                let dind_at = match top_dind {
                    Some(at) => at,
                    None => {
                        let at = open(&mut pieces, alloc)?;
                        i_block[13] = block_of(&pieces, at);
                        top_dind = Some(at);
                        total += 1;
                        at
                    }
                };
                let key = off / p;
                if single.is_none_or(|(k, _)| k != key) {
                    let at = open(&mut pieces, alloc)?;
                    let b = block_of(&pieces, at);
                    set(&mut pieces, dind_at, key, b);
                    single = Some((key, at));
                    total += 1;
                }
                (single.map(|(_, at)| at), off % p)
            } else {
                let off = logical - tind0;
                let tind_at = match triple {
                    Some(at) => at,
                    None => {
                        let at = open(&mut pieces, alloc)?;
                        i_block[14] = block_of(&pieces, at);
                        triple = Some(at);
                        total += 1;
                        at
                    }
                };
                let dkey = off / (p * p);
                if double.is_none_or(|(k, _)| k != dkey) {
                    let at = open(&mut pieces, alloc)?;
                    let b = block_of(&pieces, at);
                    set(&mut pieces, tind_at, dkey, b);
                    double = Some((dkey, at));
                    total += 1;
                }
                let key = p * p + off / p;
                if single.is_none_or(|(k, _)| k != key) {
                    let at = open(&mut pieces, alloc)?;
                    let b = block_of(&pieces, at);
                    let dind_at = double.map_or(0, |(_, at)| at);
                    set(&mut pieces, dind_at, (off / p) % p, b);
                    single = Some((key, at));
                    total += 1;
                }
                (single.map(|(_, at)| at), off % p)
            };
            let block = alloc.alloc()?;
            total += 1;
            match parent {
                None => i_block[slot as usize] = block,
                Some(at) => set(&mut pieces, at, slot, block),
            }
            match pieces.last_mut() {
                Some(Piece::Data {
                    logical: l,
                    block: b,
                    count,
                }) if *l + u64::from(*count) == logical && *b + *count == block => {
                    *count += 1;
                }
                _ => pieces.push(Piece::Data {
                    logical,
                    block,
                    count: 1,
                }),
            }
        }
    }
    // Physical order: the indirect blocks, then the data, merged into runs again where the
    // indirect blocks used to interrupt them.
    pieces.sort_by_key(|piece| match piece {
        Piece::Map { block, .. } | Piece::Data { block, .. } => *block,
    });
    let mut merged: Vec<Piece> = Vec::with_capacity(pieces.len());
    for piece in pieces {
        if let (
            Some(Piece::Data {
                logical: l,
                block: b,
                count,
            }),
            Piece::Data {
                logical,
                block,
                count: n,
            },
        ) = (merged.last_mut(), &piece)
        {
            if *l + u64::from(*count) == *logical && *b + *count == *block {
                *count += n;
                continue;
            }
        }
        merged.push(piece);
    }
    Ok((merged, total))
}

/// Buffers ascending writes into the image and writes them in large pieces.
struct Sink<'a> {
    out: &'a File,
    block_size: usize,
    /// Byte offset in the image of `buf[0]`.
    start: u64,
    buf: Vec<u8>,
    done: u64,
    total: u64,
    progress: &'a mut dyn FnMut(u64, u64),
    /// Whether `copy_file_range` works from the source to the image.
    direct_copy: bool,
}

impl Sink<'_> {
    /// `count` zeroed blocks at `block`, appended to the buffer.
    fn blocks(&mut self, block: u32, count: usize) -> Result<&mut [u8], Error> {
        let offset = u64::from(block) * self.block_size as u64;
        let len = count * self.block_size;
        if !self.buf.is_empty()
            && (offset != self.start + self.buf.len() as u64 || self.buf.len() + len > BUFFER)
        {
            self.flush()?;
        }
        if self.buf.is_empty() {
            self.start = offset;
        }
        let old = self.buf.len();
        self.buf.resize(old + len, 0);
        Ok(&mut self.buf[old..])
    }

    /// Most blocks one [`blocks`](Self::blocks) call should ask for.
    fn max_blocks(&self) -> usize {
        (BUFFER / self.block_size).max(1)
    }

    fn flush(&mut self) -> Result<(), Error> {
        if !self.buf.is_empty() {
            self.out
                .write_all_at(&self.buf, self.start)
                .map_err(Error::Output)?;
            self.buf.clear();
            (self.progress)(self.done, self.total);
        }
        Ok(())
    }
}

/// Reads `buf.len()` bytes at `offset`, or reports the file as changed.
fn read_full_at(
    file: &File,
    node: &Node,
    mut buf: &mut [u8],
    mut offset: u64,
) -> Result<(), Error> {
    while !buf.is_empty() {
        match file.read_at(buf, offset) {
            Ok(0) => {
                return Err(Error::Changed {
                    path: node.path.clone(),
                });
            }
            Ok(n) => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io(&node.path, e)),
        }
    }
    Ok(())
}

/// The directory's blocks: `.`, `..`, then its entries, no record spanning a block, the last
/// record of each block reaching to its end.
fn dir_content(
    tree: &Tree,
    entries: &std::ops::Range<u32>,
    ino: u32,
    parent: u32,
    bs: usize,
) -> Vec<u8> {
    let children = tree.children(entries);
    let dir_type = FileType::Directory.dir_entry_type();
    let records = [(ino, &b"."[..], dir_type), (parent, &b".."[..], dir_type)]
        .into_iter()
        .chain(children.iter().map(|e| {
            let node = &tree.nodes[e.node as usize];
            let ft = FileType::from_mode(node.mode).map_or(0, FileType::dir_entry_type);
            (Tree::ino(e.node), &*e.name, ft)
        }));
    let mut out = vec![0u8; bs];
    let mut block_start = 0;
    let mut pos = 0;
    // The record written last: (offset, ino, name, type), its rec_len still open.
    let mut last: Option<(usize, u32, &[u8], u8)> = None;
    for (rino, name, ft) in records {
        let len = dir_entry::rec_len_for(name.len());
        if pos + len > block_start + bs {
            if let Some((at, i, n, t)) = last.take() {
                dir_entry::encode(&mut out[at..], i, (block_start + bs - at) as u16, n, t);
            }
            block_start += bs;
            pos = block_start;
            out.resize(block_start + bs, 0);
        }
        if let Some((at, i, n, t)) = last.take() {
            dir_entry::encode(&mut out[at..], i, (pos - at) as u16, n, t);
        }
        last = Some((pos, rino, name, ft));
        pos += len;
    }
    if let Some((at, i, n, t)) = last {
        dir_entry::encode(&mut out[at..], i, (block_start + bs - at) as u16, n, t);
    }
    out
}

pub(crate) fn write(
    image: &Image,
    out: &File,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<(), Error> {
    let tree = &image.tree;
    let g = &image.geometry;
    let bs = g.block_size as usize;
    let bs64 = bs as u64;
    let inode_size = INODE_SIZE as usize;
    let mut inode_table = vec![0u8; g.inodes_count() as usize * inode_size];
    let mut alloc = Allocator::new(g);
    let mut used_dirs = vec![0u16; g.group_count as usize];
    let total = data_bytes(tree, g.block_size);
    let mut sink = Sink {
        out,
        block_size: bs,
        start: 0,
        buf: Vec::with_capacity(BUFFER),
        done: 0,
        total,
        progress,
        direct_copy: true,
    };
    (sink.progress)(0, total);

    // ".." of each directory.
    let mut parent = vec![ROOT; tree.nodes.len()];
    for (this, node) in tree.nodes.iter().enumerate() {
        if let Kind::Dir { entries } = &node.kind {
            let this = this as u32;
            for e in tree.children(entries) {
                if matches!(tree.nodes[e.node as usize].kind, Kind::Dir { .. }) {
                    parent[e.node as usize] = this;
                }
            }
        }
    }

    let mut runs = Vec::new();
    for (index, node) in tree.nodes.iter().enumerate() {
        let index = index as u32;
        let ino = Tree::ino(index);
        let time = disk_time(node.mtime);
        let mut inode = Inode {
            mode: node.mode,
            uid: node.uid,
            gid: node.gid,
            atime: time,
            ctime: time,
            mtime: time,
            links_count: node.links as u16,
            ..Inode::default()
        };
        match &node.kind {
            Kind::Dir { entries } => {
                let group = (ino - 1) / g.inodes_per_group;
                used_dirs[group as usize] += 1;
                let content =
                    dir_content(tree, entries, ino, Tree::ino(parent[index as usize]), bs);
                let count = (content.len() / bs) as u64;
                let (pieces, blocks) = map_blocks(
                    &[Range {
                        start: 0,
                        end: count,
                    }],
                    g.block_size,
                    &mut alloc,
                    &mut inode.block,
                )?;
                emit_pieces(&mut sink, &pieces, |buf, logical| {
                    let at = logical as usize * bs;
                    buf.copy_from_slice(&content[at..at + buf.len()]);
                    Ok(())
                })?;
                inode.size = count * bs64;
                inode.blocks = blocks * (g.block_size / 512);
            }
            Kind::File { size, data } => {
                runs.clear();
                runs.extend(layout::block_runs(data, bs64));
                let (pieces, blocks) =
                    map_blocks(&runs, g.block_size, &mut alloc, &mut inode.block)?;
                if !pieces.is_empty() {
                    copy_file(&mut sink, node, *size, &pieces)?;
                }
                inode.size = *size;
                inode.blocks = blocks * (g.block_size / 512);
            }
            Kind::Symlink { target } => {
                inode.size = target.len() as u64;
                if target.len() <= FAST_SYMLINK_MAX {
                    let mut bytes = [0u8; 60];
                    bytes[..target.len()].copy_from_slice(target);
                    for (slot, chunk) in inode.block.iter_mut().zip(bytes.chunks_exact(4)) {
                        *slot = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
                    }
                } else {
                    let (pieces, blocks) = map_blocks(
                        &[Range { start: 0, end: 1 }],
                        g.block_size,
                        &mut alloc,
                        &mut inode.block,
                    )?;
                    emit_pieces(&mut sink, &pieces, |buf, _| {
                        buf[..target.len()].copy_from_slice(target);
                        Ok(())
                    })?;
                    inode.blocks = blocks * (g.block_size / 512);
                }
            }
            Kind::Device { major, minor } => inode.set_rdev(*major, *minor),
            Kind::Special => {}
        }
        let at = (ino as usize - 1) * inode_size;
        inode.to_bytes(&mut inode_table[at..at + inode_size]);
    }
    sink.flush()?;
    let planned = image.content_blocks;
    let allocated: u64 = alloc.used.iter().map(|&u| u64::from(u)).sum();
    if allocated != planned {
        return Err(Error::Output(io::Error::other(format!(
            "internal error: {allocated} content blocks written, {planned} planned"
        ))));
    }
    write_metadata(image, out, &inode_table, &alloc.used, &used_dirs)
}

/// Writes pieces whose data blocks come from `fill(buf, logical)` (one call per run).
fn emit_pieces(
    sink: &mut Sink<'_>,
    pieces: &[Piece],
    mut fill: impl FnMut(&mut [u8], u64) -> Result<(), Error>,
) -> Result<(), Error> {
    for piece in pieces {
        match piece {
            Piece::Map { block, pointers } => write_pointers(sink, *block, pointers)?,
            Piece::Data {
                logical,
                block,
                count,
            } => {
                let buf = sink.blocks(*block, *count as usize)?;
                fill(buf, *logical)?;
            }
        }
    }
    Ok(())
}

fn write_pointers(sink: &mut Sink<'_>, block: u32, pointers: &[u32]) -> Result<(), Error> {
    let buf = sink.blocks(block, 1)?;
    for (chunk, p) in buf.chunks_exact_mut(4).zip(pointers) {
        chunk.copy_from_slice(&p.to_le_bytes());
    }
    Ok(())
}

/// Copies a file's data blocks (and writes its indirect blocks) through the sink.
fn copy_file(sink: &mut Sink<'_>, node: &Node, size: u64, pieces: &[Piece]) -> Result<(), Error> {
    let file = File::from(
        super::scan::open_path(&node.path, rustix::fs::OFlags::RDONLY)
            .map_err(|e| Error::io(&node.path, e))?,
    );
    let bs = sink.block_size as u64;
    for piece in pieces {
        match piece {
            Piece::Map { block, pointers } => write_pointers(sink, *block, pointers)?,
            Piece::Data {
                logical,
                block,
                count,
            } if u64::from(*count) * bs >= DIRECT_COPY && sink.direct_copy => {
                // Large runs go file to image inside the kernel, skipping our buffer.
                let offset = logical * bs;
                let want = (u64::from(*count) * bs).min(size.saturating_sub(offset));
                match copy_range(&file, offset, sink.out, u64::from(*block) * bs, want) {
                    Ok(true) => {
                        sink.done += want;
                        (sink.progress)(sink.done, sink.total);
                    }
                    Ok(false) => {
                        return Err(Error::Changed {
                            path: node.path.clone(),
                        });
                    }
                    Err(CopyError::Unsupported) => {
                        sink.direct_copy = false;
                        copy_buffered(sink, &file, node, size, *logical, *block, *count)?;
                    }
                    Err(CopyError::Read(e)) => return Err(Error::io(&node.path, e)),
                    Err(CopyError::Write(e)) => return Err(Error::Output(e)),
                }
            }
            Piece::Data {
                logical,
                block,
                count,
            } => {
                copy_buffered(sink, &file, node, size, *logical, *block, *count)?;
            }
        }
    }
    // The file must end where the scan said it does.
    let mut probe = [0u8; 1];
    match file.read_at(&mut probe, size) {
        Ok(0) => Ok(()),
        Ok(_) => Err(Error::Changed {
            path: node.path.clone(),
        }),
        Err(e) => Err(Error::io(&node.path, e)),
    }
}

/// Runs at least this long are copied with `copy_file_range`.
const DIRECT_COPY: u64 = 256 << 10;

enum CopyError {
    /// `copy_file_range` can't copy between these files: fall back to read and write.
    Unsupported,
    Read(io::Error),
    Write(io::Error),
}

/// Copies `len` bytes from `from` at `from_offset` to `to` at `to_offset` in the kernel.
/// `Ok(false)` when the source ended early.
fn copy_range(
    from: &File,
    mut from_offset: u64,
    to: &File,
    mut to_offset: u64,
    len: u64,
) -> Result<bool, CopyError> {
    use rustix::io::Errno;
    let mut left = len;
    let mut first = true;
    while left > 0 {
        let chunk = usize::try_from(left.min(1 << 30)).unwrap_or(1 << 30);
        match rustix::fs::copy_file_range(
            from,
            Some(&mut from_offset),
            to,
            Some(&mut to_offset),
            chunk,
        ) {
            Ok(0) => return Ok(false),
            Ok(n) => left -= n as u64,
            Err(Errno::INTR) => {}
            Err(Errno::XDEV | Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP | Errno::BADF)
                if first =>
            {
                return Err(CopyError::Unsupported);
            }
            // Which side failed is not said; the source is the likelier.
            Err(e @ (Errno::NOSPC | Errno::FBIG | Errno::DQUOT)) => {
                return Err(CopyError::Write(e.into()));
            }
            Err(e) => return Err(CopyError::Read(e.into())),
        }
        first = false;
    }
    Ok(true)
}

/// Copies `count` blocks from logical block `logical` of the file through the sink.
fn copy_buffered(
    sink: &mut Sink<'_>,
    file: &File,
    node: &Node,
    size: u64,
    logical: u64,
    block: u32,
    count: u32,
) -> Result<(), Error> {
    let bs = sink.block_size as u64;
    let max = sink.max_blocks() as u32;
    let mut done = 0;
    while done < count {
        let n = (count - done).min(max);
        let offset = (logical + u64::from(done)) * bs;
        let want = (u64::from(n) * bs).min(size.saturating_sub(offset)) as usize;
        let buf = sink.blocks(block + done, n as usize)?;
        read_full_at(file, node, &mut buf[..want], offset)?;
        sink.done += want as u64;
        done += n;
    }
    Ok(())
}

/// Inode tables, bitmaps, group descriptors and superblocks (with their backups).
fn write_metadata(
    image: &Image,
    out: &File,
    inode_table: &[u8],
    used_blocks: &[u32],
    used_dirs: &[u16],
) -> Result<(), Error> {
    let g = &image.geometry;
    let bs = g.block_size as usize;
    let bs64 = bs as u64;
    let used_inodes = image.tree.used_inodes() as u32;
    let ipg = g.inodes_per_group;
    let write = |block: u32, bytes: &[u8]| {
        out.write_all_at(bytes, u64::from(block) * bs64)
            .map_err(Error::Output)
    };

    let mut descs = Vec::with_capacity(g.group_count as usize);
    let mut free_blocks_total = 0u64;
    let mut bitmap = vec![0u8; bs];
    for group in 0..g.group_count {
        let len = g.group_len(group);
        let used = g.overhead(group) + used_blocks[group as usize];
        // Block bitmap: metadata and content from the start of the group; everything past
        // the group's end (padding) marked in use, as mke2fs does.
        set_bits(&mut bitmap, used, len);
        write(g.block_bitmap(group), &bitmap)?;
        let first = group * ipg + 1;
        let in_use = used_inodes.saturating_sub(first - 1).min(ipg);
        set_bits(&mut bitmap, in_use, ipg);
        write(g.inode_bitmap(group), &bitmap)?;
        let table = &inode_table[(group * ipg) as usize * INODE_SIZE as usize..]
            [..ipg as usize * INODE_SIZE as usize];
        write(g.inode_table(group), table)?;
        let free_blocks = len - used;
        free_blocks_total += u64::from(free_blocks);
        descs.push(GroupDesc {
            block_bitmap: g.block_bitmap(group),
            inode_bitmap: g.inode_bitmap(group),
            inode_table: g.inode_table(group),
            free_blocks_count: free_blocks as u16,
            free_inodes_count: (ipg - in_use) as u16,
            used_dirs_count: used_dirs[group as usize],
        });
    }
    let mut gdt = vec![0u8; g.gdt_blocks as usize * bs];
    for (i, d) in descs.iter().enumerate() {
        gdt[i * GroupDesc::SIZE..][..GroupDesc::SIZE].copy_from_slice(&d.to_bytes());
    }

    let mut sb = Superblock::default();
    sb.inodes_count = g.inodes_count();
    sb.blocks_count = g.blocks_count;
    sb.r_blocks_count = 0;
    sb.free_blocks_count = free_blocks_total as u32;
    sb.free_inodes_count = g.inodes_count() - used_inodes;
    sb.first_data_block = g.first_data_block;
    sb.log_block_size = g.block_size.trailing_zeros() - 10;
    sb.log_frag_size = sb.log_block_size;
    sb.blocks_per_group = g.blocks_per_group;
    sb.frags_per_group = g.blocks_per_group;
    sb.inodes_per_group = ipg;
    sb.mtime = 0;
    sb.wtime = image.time;
    sb.mnt_count = 0;
    sb.max_mnt_count = 0xFFFF;
    sb.magic = Superblock::MAGIC;
    sb.state = 1; // clean
    sb.errors = 1; // continue
    sb.minor_rev_level = 0;
    sb.lastcheck = image.time;
    sb.checkinterval = 0;
    sb.creator_os = 0; // Linux
    sb.rev_level = 1;
    sb.first_ino = FIRST_INO;
    sb.inode_size = INODE_SIZE as u16;
    sb.feature_compat = 0;
    sb.feature_incompat = feature::INCOMPAT_FILETYPE;
    sb.feature_ro_compat = feature::RO_COMPAT_SPARSE_SUPER | feature::RO_COMPAT_LARGE_FILE;
    sb.uuid = image.uuid;
    sb.volume_name = image.label;
    sb.hash_seed = image.hash_seed;
    sb.def_hash_version = 1; // half_md4, what mke2fs sets
    sb.mkfs_time = image.time;

    let mut block = vec![0u8; bs];
    for group in (0..g.group_count).filter(|&n| layout::has_super(n)) {
        sb.block_group_nr = group as u16;
        let bytes = sb.to_bytes();
        let start = g.group_start(group);
        if group == 0 {
            // The primary superblock is always at byte 1024.
            out.write_all_at(&bytes, Superblock::OFFSET)
                .map_err(Error::Output)?;
        } else {
            block[..bytes.len()].copy_from_slice(&bytes);
            write(start, &block)?;
        }
        write(start + 1, &gdt)?;
    }
    Ok(())
}

/// Fills `bitmap`: bits `0..used` set, `used..valid` clear, `valid..` set (padding).
fn set_bits(bitmap: &mut [u8], used: u32, valid: u32) {
    bitmap.fill(0);
    let bits = bitmap.len() * 8;
    for bit in (0..used as usize).chain(valid as usize..bits) {
        bitmap[bit / 8] |= 1 << (bit % 8);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitmap_marks_used_then_padding() {
        let mut b = vec![0u8; 4];
        set_bits(&mut b, 3, 20);
        assert_eq!(b, [0b0000_0111, 0, 0b1111_0000, 0xff]);
    }

    #[test]
    fn times_clamp_to_signed_32_bits() {
        assert_eq!(disk_time(0), 0);
        assert_eq!(disk_time(-1), u32::MAX);
        assert_eq!(disk_time(1 << 40), i32::MAX as u32);
        assert_eq!(disk_time(-(1 << 40)), i32::MIN as u32);
    }
}
