//! Opens arbitrary bytes as an ext2 image and walks everything reachable from the root:
//! lookups, directory listings resumed from every offset, every file read (in odd-sized
//! pieces, at the end, past the end), every symlink, every block map. The reader must
//! return errors, never panic, hang or allocate without bound.

#![no_main]

use glick_ext2::{Ext2, FileType, InodeNo};
use libfuzzer_sys::fuzz_target;

/// Bounds of the walk (the reader bounds each call; the walk bounds how many calls).
const MAX_DEPTH: u32 = 16;
const MAX_ENTRIES: usize = 2000;
const MAX_FILE_BYTES: u64 = 1 << 20;
const MAX_LISTED_SIZE: u64 = 64 << 20;

fuzz_target!(|data: &[u8]| {
    let Ok(fs) = Ext2::open(data) else {
        return;
    };
    let _ = fs.inode(InodeNo(0));
    let _ = fs.inode(InodeNo(fs.superblock().inodes_count));
    let _ = fs.inode(InodeNo(u32::MAX));
    let mut budget = MAX_ENTRIES;
    walk(&fs, InodeNo::ROOT, 0, &mut budget);
});

fn walk(fs: &Ext2<&[u8]>, dir: InodeNo, depth: u32, budget: &mut usize) {
    if depth > MAX_DEPTH {
        return;
    }
    let Ok(entries) = fs.read_dir(dir, 0) else {
        let _ = fs.lookup(dir, b"x");
        return;
    };
    let mut last = 0;
    for entry in entries {
        let Ok(entry) = entry else {
            return;
        };
        assert!(entry.next_offset > last, "directory offsets go forward");
        last = entry.next_offset;
        if *budget == 0 {
            return;
        }
        *budget -= 1;
        // lookup finds an entry of that name (the first one, if names repeat)
        let found = fs.lookup(dir, &entry.name);
        assert!(!matches!(found, Ok(None)), "lookup misses a listed name");
        // resuming just after this entry, and from inside it
        let _ = fs.read_dir(dir, entry.next_offset).map(|mut it| it.next());
        let _ = fs
            .read_dir(dir, entry.next_offset.saturating_sub(1))
            .map(|mut it| it.next());
        let Ok(inode) = fs.inode(entry.ino) else {
            continue;
        };
        // file_blocks lists every block of the size (holes too): a test helper, capped at
        // 16 Mi entries; keep the fuzzer fast by asking only for plausible sizes.
        if inode.size <= MAX_LISTED_SIZE {
            let _ = fs.file_blocks(entry.ino, &inode);
        }
        match inode.file_type() {
            Some(FileType::Directory) => {
                if entry.name != b"." && entry.name != b".." {
                    walk(fs, entry.ino, depth + 1, budget);
                }
            }
            Some(FileType::Regular) => read_file(fs, entry.ino, &inode),
            Some(FileType::Symlink) => {
                if let Ok(target) = fs.read_link(entry.ino, &inode) {
                    assert!(target.len() <= 4096);
                }
            }
            _ => {
                let _ = inode.rdev();
            }
        }
    }
}

fn read_file(fs: &Ext2<&[u8]>, ino: InodeNo, inode: &glick_ext2::Inode) {
    let mut buf = vec![0u8; 70_001];
    let mut off = 0u64;
    while off < inode.size.min(MAX_FILE_BYTES) {
        match fs.read(ino, inode, off, &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                assert!(n <= buf.len());
                // Answered in place, the bytes are the ones read by copying.
                if let Ok(Some(view)) = fs.bytes_in_place(ino, inode, off, buf.len()) {
                    assert!(view == &buf[..n]);
                }
                off += n as u64;
            }
        }
    }
    for at in [
        inode.size.saturating_sub(3),
        inode.size,
        inode.size.saturating_add(1),
    ] {
        if let Ok(n) = fs.read(ino, inode, at, &mut buf[..10]) {
            assert!(n as u64 <= inode.size.saturating_sub(at).min(10));
        }
    }
}
