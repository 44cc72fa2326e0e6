//! Corrupt and hostile images: one targeted change to a real `mke2fs -d` image per case.
//! Every case must give an error (or a bounded answer), never a panic or a hang.

mod common;

use std::fs;

use common::{mke2fs, walk};
use glick_ext2::{Corrupt, Error, Ext2, InodeNo, Unsupported};

const BS: usize = 1024;

/// A small image: `/d/f` (20 KiB, uses the single-indirect block), `/d/slow` (a 100-byte
/// symlink), `/fast` (a short symlink), `/big` (sparse, uses the double-indirect block).
fn base() -> Vec<u8> {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    fs::create_dir_all(src.join("d")).expect("mkdir");
    let data: Vec<u8> = (0..20 * 1024).map(|i| (i % 253) as u8 | 1).collect();
    fs::write(src.join("d/f"), data).expect("write");
    std::os::unix::fs::symlink("s".repeat(100), src.join("d/slow")).expect("symlink");
    std::os::unix::fs::symlink("target", src.join("fast")).expect("symlink");
    let big = fs::File::create(src.join("big")).expect("create");
    big.set_len(400 * 1024).expect("set_len");
    std::os::unix::fs::FileExt::write_all_at(&big, b"dind", 300 * 1024).expect("write");
    mke2fs(
        &tmp.path().join("image"),
        &[
            "-t",
            "ext2",
            "-b",
            "1024",
            "-g",
            "256",
            "-N",
            "48",
            "-O",
            "^resize_inode",
        ],
        Some(&src),
        600,
    )
}

struct Img {
    bytes: Vec<u8>,
}

impl Img {
    fn new() -> Self {
        Img { bytes: base() }
    }
    fn fs(&self) -> Ext2<&[u8]> {
        Ext2::open(self.bytes.as_slice()).expect("base image opens")
    }
    fn ino(&self, path: &str) -> InodeNo {
        let fs = self.fs();
        let mut ino = InodeNo::ROOT;
        for part in path.split('/') {
            ino = fs
                .lookup(ino, part.as_bytes())
                .expect("lookup")
                .expect("exists");
        }
        ino
    }
    /// Byte offset of inode `ino`'s record.
    fn inode_at(&self, ino: InodeNo) -> usize {
        let fs = self.fs();
        let ipg = fs.superblock().inodes_per_group;
        let gd = fs.groups()[((ino.0 - 1) / ipg) as usize];
        let isz = usize::from(fs.superblock().inode_size);
        gd.inode_table as usize * BS + ((ino.0 - 1) % ipg) as usize * isz
    }
    /// Byte offset of the first data block of `ino`.
    fn block_at(&self, ino: InodeNo) -> usize {
        let fs = self.fs();
        let inode = fs.inode(ino).expect("inode");
        inode.block[0] as usize * BS
    }
    fn put32(&mut self, at: usize, v: u32) {
        self.bytes[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }
    fn put16(&mut self, at: usize, v: u16) {
        self.bytes[at..at + 2].copy_from_slice(&v.to_le_bytes());
    }
}

fn corrupt(e: &Error) -> &Corrupt {
    match e {
        Error::Corrupt(c) => c,
        other => panic!("expected a Corrupt error, got {other:?}"),
    }
}

/// Reads the whole of `path` through the reader; the first error.
fn read_all(img: &Img, ino: InodeNo) -> Result<Vec<u8>, Error> {
    let fs = img.fs();
    let inode = fs.inode(ino)?;
    let mut buf = vec![0u8; usize::try_from(inode.size).expect("small")];
    let n = fs.read(ino, &inode, 0, &mut buf)?;
    buf.truncate(n);
    Ok(buf)
}

fn dir_errors(img: &Img, dir: InodeNo) -> Error {
    let fs = img.fs();
    let err = match fs.read_dir(dir, 0) {
        Err(e) => e,
        Ok(it) => it
            .filter_map(Result::err)
            .next()
            .expect("an error while reading the directory"),
    };
    assert!(fs.lookup(dir, b"no-such-name").is_err());
    err
}

#[test]
fn the_base_image_reads() {
    let img = Img::new();
    assert!(walk(&img.fs()) >= 7);
    assert_eq!(
        read_all(&img, img.ino("d/f")).expect("read").len(),
        20 * 1024
    );
}

#[test]
fn rec_len_zero() {
    let mut img = Img::new();
    let at = img.block_at(InodeNo::ROOT);
    img.put16(at + 4, 0);
    let err = dir_errors(&img, InodeNo::ROOT);
    assert_eq!(
        err.to_string(),
        "corrupt ext2 image: directory inode 2: entry at offset 0: \
         rec_len smaller than the smallest record"
    );
    assert_eq!(err.errno(), 5);
}

#[test]
fn rec_len_past_the_block() {
    let mut img = Img::new();
    let at = img.block_at(InodeNo::ROOT);
    img.put16(at + 12 + 4, 2000); // ".."
    assert!(matches!(
        corrupt(&dir_errors(&img, InodeNo::ROOT)),
        Corrupt::DirEntry {
            offset: 12,
            reason: "rec_len past the end of the block",
            ..
        }
    ));
}

#[test]
fn name_len_past_rec_len() {
    let mut img = Img::new();
    let at = img.block_at(InodeNo::ROOT);
    img.bytes[at + 6] = 200; // "." claims a 200-byte name in a 12-byte record
    assert!(matches!(
        corrupt(&dir_errors(&img, InodeNo::ROOT)),
        Corrupt::DirEntry {
            reason: "name_len too large for rec_len",
            ..
        }
    ));
}

#[test]
fn entry_inode_past_inodes_count() {
    let mut img = Img::new();
    let at = img.block_at(InodeNo::ROOT);
    img.put32(at + 24, 1_000_000); // the third entry
    assert!(matches!(
        corrupt(&dir_errors(&img, InodeNo::ROOT)),
        Corrupt::DirEntry {
            offset: 24,
            reason: "inode number past s_inodes_count",
            ..
        }
    ));
}

#[test]
fn inode_zero_and_past_the_end() {
    let img = Img::new();
    let fs = img.fs();
    let count = fs.superblock().inodes_count;
    for n in [0, count + 1, u32::MAX] {
        let err = fs.inode(InodeNo(n)).expect_err("no such inode");
        assert!(matches!(err, Error::NoSuchInode { .. }), "{err:?}");
        assert_eq!(err.errno(), 2);
    }
    fs.inode(InodeNo(count)).expect("the last inode exists");
}

#[test]
fn block_pointer_past_the_end() {
    let mut img = Img::new();
    let f = img.ino("d/f");
    let at = img.inode_at(f);
    img.put32(at + 40, 99_999);
    let err = read_all(&img, f).expect_err("bad pointer");
    assert_eq!(
        err.to_string(),
        format!("corrupt ext2 image: inode {f}: block pointer 99999 past end of image")
    );
}

#[test]
fn block_pointers_into_metadata() {
    let img = Img::new();
    let f = img.ino("d/f");
    let at = img.inode_at(f);
    let table = img.fs().groups()[0].inode_table;
    let bitmap = img.fs().groups()[0].block_bitmap;
    for (slot, ptr, reason) in [
        (0, 1, "inside the superblock or group descriptors"),
        (0, 2, "inside the superblock or group descriptors"),
        (3, table + 1, "inside a bitmap or inode table"),
        (11, bitmap, "inside a bitmap or inode table"),
        (12, table, "inside a bitmap or inode table"), // the indirect block
    ] {
        let mut bad = Img {
            bytes: img.bytes.clone(),
        };
        bad.put32(at + 40 + 4 * slot, ptr);
        let err = read_all(&bad, f).expect_err("bad pointer");
        assert!(
            matches!(corrupt(&err), Corrupt::BlockPointer { block, reason: r, .. } if *block == ptr && *r == reason),
            "slot {slot}: {err}"
        );
    }
    // A run of contiguous pointers that runs into group 1's block bitmap.
    let bitmap1 = img.fs().groups()[1].block_bitmap;
    let mut bad = Img {
        bytes: img.bytes.clone(),
    };
    for i in 0..12 {
        bad.put32(at + 40 + 4 * i, bitmap1 - 6 + i as u32);
    }
    let err = read_all(&bad, f).expect_err("run into metadata");
    assert!(
        matches!(
            corrupt(&err),
            Corrupt::BlockPointer {
                reason: "inside a bitmap or inode table",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn self_referencing_indirect_blocks_end() {
    let mut img = Img::new();
    let big = img.ino("big");
    let at = img.inode_at(big);
    let dind = u32::from_le_bytes(img.bytes[at + 40 + 52..at + 40 + 56].try_into().expect("4"));
    assert_ne!(
        dind, 0,
        "the base image's /big uses a double-indirect block"
    );
    // Every pointer of the double-indirect block points at itself.
    let b = dind as usize * BS;
    for i in 0..BS / 4 {
        img.put32(b + 4 * i, dind);
    }
    img.put32(at + 40 + 56, dind); // and the triple-indirect block is the same block
    img.put32(at + 4, 0x7fff_ffff); // size: into the triple-indirect range
    img.put32(at + 108, 3);
    let fs = img.fs();
    let inode = fs.inode(big).expect("inode");
    let mut buf = vec![0u8; 300_000];
    for off in [0, 300 * 1024, 70 << 20, (3 << 32) + 5] {
        let _ = fs.read(big, &inode, off, &mut buf);
    }
    assert!(matches!(
        fs.file_blocks(big, &inode),
        Err(Error::TooManyBlocks { .. }) | Ok(_)
    ));
}

#[test]
fn directory_loops_are_answered_not_followed() {
    let mut img = Img::new();
    let d = img.ino("d");
    // Rename the entry "f" in /d to point at the root directory.
    let at = img.block_at(d);
    let fs = img.fs();
    let f = fs
        .read_dir(d, 0)
        .expect("read_dir")
        .map(|e| e.expect("entry"))
        .find(|e| e.name == b"f")
        .expect("f");
    drop(fs);
    let rec = usize::try_from(f.next_offset).expect("small") - 12; // "f" has a 12-byte record unless last
    let rec = if img.bytes[at + rec + 8] == b'f' {
        rec
    } else {
        // "f" is the last record: find it by scanning
        (0..BS - 8)
            .find(|&o| img.bytes[at + o + 6] == 1 && img.bytes[at + o + 8] == b'f')
            .expect("record")
    };
    img.put32(at + rec, 2);
    let fs = img.fs();
    assert_eq!(fs.lookup(d, b"f").expect("lookup"), Some(InodeNo::ROOT));
    assert!(walk(&fs) > 0); // bounded by depth and budget
}

#[test]
fn hole_in_a_directory() {
    let mut img = Img::new();
    let d = img.ino("d");
    let at = img.inode_at(d);
    img.put32(at + 40, 0);
    assert!(matches!(
        corrupt(&dir_errors(&img, d)),
        Corrupt::DirEntry {
            reason: "hole in directory",
            ..
        }
    ));
}

#[test]
fn absurd_sizes() {
    let img = Img::new();
    let (d, f, slow, fast) = (
        img.ino("d"),
        img.ino("d/f"),
        img.ino("d/slow"),
        img.ino("fast"),
    );
    let fs = img.fs();

    let mut bad = Img {
        bytes: img.bytes.clone(),
    };
    let at = bad.inode_at(d);
    bad.put32(at + 4, 0);
    bad.put32(at + 108, 2); // 8 GiB: addressable, but larger than the image
    assert!(matches!(
        bad.fs()
            .read_dir(d, 0)
            .map(|_| ())
            .map_err(|e| corrupt(&e).clone()),
        Err(Corrupt::Inode {
            reason: "directory larger than the image",
            ..
        })
    ));

    let mut file = fs.inode(f).expect("inode");
    file.size = u64::MAX;
    let err = fs.read(f, &file, 0, &mut [0; 10]).expect_err("absurd size");
    assert!(matches!(
        corrupt(&err),
        Corrupt::Inode {
            reason: "size larger than the block map can address",
            ..
        }
    ));
    assert!(fs.file_blocks(f, &file).is_err());
    // A sparse size the block map can address is fine: holes read as zeros.
    file.size = (1 << 34) + 1024; // 2^24 + 1 blocks, just addressable
    let mut buf = [1u8; 10];
    assert_eq!(fs.read(f, &file, 8 << 30, &mut buf).expect("hole"), 10);
    assert_eq!(buf, [0; 10]);
    assert!(matches!(
        fs.file_blocks(f, &file),
        Err(Error::TooManyBlocks { .. })
    ));

    let mut link = fs.inode(slow).expect("inode");
    assert_eq!(fs.read_link(slow, &link).expect("slow").len(), 100);
    link.size = 5000;
    assert!(fs.read_link(slow, &link).is_err());
    link.size = 0;
    assert!(fs.read_link(slow, &link).is_err());

    let mut link = fs.inode(fast).expect("inode");
    assert!(link.is_fast_symlink());
    assert_eq!(fs.read_link(fast, &link).expect("fast"), b"target");
    link.size = 60;
    assert_eq!(
        fs.read_link(fast, &link)
            .expect("60 bytes of i_block")
            .len(),
        60
    );
    link.size = 61;
    assert!(fs.read_link(fast, &link).is_err());
    assert!(matches!(fs.read_link(f, &file), Err(Error::NotASymlink(_))));
    assert!(matches!(
        fs.read(fast, &link, 0, &mut buf),
        Err(Error::NotAFile(_))
    ));
    assert!(matches!(fs.read_dir(f, 0), Err(Error::NotADirectory(_))));
    assert!(matches!(fs.lookup(f, b"x"), Err(Error::NotADirectory(_))));
}

#[test]
fn extent_and_inline_inodes_are_refused() {
    let img = Img::new();
    let f = img.ino("d/f");
    let fs = img.fs();
    let mut inode = fs.inode(f).expect("inode");
    inode.flags |= glick_ext2::inode::flags::EXTENTS;
    let err = fs.read(f, &inode, 0, &mut [0; 4]).expect_err("extents");
    assert!(matches!(
        err,
        Error::Unsupported(Unsupported::InodeFlag {
            feature: "extents",
            ..
        })
    ));
    assert_eq!(
        err.to_string(),
        format!("unsupported ext2 image: inode {f}: uses `extents` (ext2/ext3 only)")
    );
}

#[track_caller]
fn open_err(bytes: Vec<u8>) -> Error {
    Ext2::open(bytes).expect_err("refused")
}

#[test]
fn bad_superblocks_and_descriptors() {
    let img = Img::new();
    let sb = |off: usize, v: u32| {
        let mut b = img.bytes.clone();
        b[1024 + off..1024 + off + 4].copy_from_slice(&v.to_le_bytes());
        b
    };
    assert!(matches!(
        open_err(sb(4, 1 << 30)),
        Error::Corrupt(Corrupt::ImageTooSmall { .. })
    ));
    assert!(matches!(
        open_err(sb(40, 0)),
        Error::Corrupt(Corrupt::Superblock {
            field: "inodes_per_group",
            ..
        })
    ));
    assert!(matches!(
        open_err(sb(32, 0)),
        Error::Corrupt(Corrupt::Superblock {
            field: "blocks_per_group",
            ..
        })
    ));
    assert!(matches!(
        open_err(sb(24, 7)),
        Error::Unsupported(Unsupported::BlockSize { log: 7 })
    ));
    assert!(matches!(
        open_err(sb(24, u32::MAX)),
        Error::Unsupported(Unsupported::BlockSize { .. })
    ));
    assert!(matches!(
        open_err(sb(0, 7)),
        Error::Corrupt(Corrupt::Superblock {
            field: "inodes_count",
            ..
        })
    ));
    assert!(matches!(
        open_err(sb(20, 0)),
        Error::Corrupt(Corrupt::Superblock {
            field: "first_data_block",
            ..
        })
    ));
    assert!(matches!(
        open_err(sb(76, 2)),
        Error::Unsupported(Unsupported::Revision(2))
    ));
    assert!(matches!(
        open_err(sb(56, 0)),
        Error::Corrupt(Corrupt::Magic(0))
    ));
    // inode table past the end
    let mut b = img.bytes.clone();
    b[2048 + 8..2048 + 12].copy_from_slice(&598u32.to_le_bytes());
    assert!(matches!(
        open_err(b),
        Error::Corrupt(Corrupt::GroupDesc {
            group: 0,
            field: "inode_table",
            block: 598
        })
    ));
    // block bitmap over the superblock
    let mut b = img.bytes.clone();
    b[2048..2052].copy_from_slice(&1u32.to_le_bytes());
    assert!(matches!(
        open_err(b),
        Error::Corrupt(Corrupt::GroupDesc {
            field: "block_bitmap",
            ..
        })
    ));
    // truncated and empty images
    for len in [0, 100, 1500, 2047, 2048, 100 * 1024] {
        let err = open_err(img.bytes[..len].to_vec());
        assert!(matches!(err, Error::Corrupt(_)), "{len}: {err:?}");
    }
    assert!(matches!(
        open_err(vec![0; 1 << 16]),
        Error::Corrupt(Corrupt::Magic(0))
    ));
    assert_eq!(
        open_err(img.bytes[..100 * 1024].to_vec()).to_string(),
        "corrupt ext2 image: image truncated: the superblock describes 614400 bytes, the image has 102400"
    );
}

#[test]
fn read_dir_resumes_from_any_offset() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    fs::create_dir(&src).expect("mkdir");
    for i in 0..500 {
        fs::write(src.join(format!("entry-with-a-name-{i}")), b"").expect("write");
    }
    let bytes = mke2fs(
        &tmp.path().join("image"),
        &["-t", "ext2", "-b", "1024", "-N", "600"],
        Some(&src),
        2048,
    );
    let fs = Ext2::open(bytes.as_slice()).expect("open");
    let all: Vec<_> = fs
        .read_dir(InodeNo::ROOT, 0)
        .expect("read_dir")
        .map(|e| e.expect("entry"))
        .collect();
    assert_eq!(all.len(), 503); // . .. lost+found
    assert!(all.iter().all(|e| e.file_type.is_some()));
    for k in [0, 1, 2, 50, 250, 501, 502] {
        let rest: Vec<_> = fs
            .read_dir(InodeNo::ROOT, all[k].next_offset)
            .expect("read_dir")
            .map(|e| e.expect("entry"))
            .collect();
        assert_eq!(rest, all[k + 1..], "after entry {k}");
        // An offset inside a record moves on to the next record.
        let rest: Vec<_> = fs
            .read_dir(InodeNo::ROOT, all[k].next_offset - 3)
            .expect("read_dir")
            .map(|e| e.expect("entry"))
            .collect();
        assert_eq!(rest, all[k + 1..], "inside entry {k}");
    }
    let size = fs.inode(InodeNo::ROOT).expect("root").size;
    assert_eq!(fs.read_dir(InodeNo::ROOT, size).expect("at end").count(), 0);
    assert_eq!(
        fs.read_dir(InodeNo::ROOT, u64::MAX)
            .expect("past end")
            .count(),
        0
    );
}

/// Every byte of the metadata the walk depends on, changed a few ways: no panics, no
/// hangs. (The fuzz target does this at random and at length.)
#[test]
fn single_byte_mutations_of_metadata() {
    let img = Img::new();
    let fs = img.fs();
    let mut regions: Vec<(usize, usize)> = vec![(1024, 1024 + 264), (2048, 2048 + 32)];
    let isz = usize::from(fs.superblock().inode_size);
    for path in ["d", "d/f", "d/slow", "fast", "big"] {
        let at = img.inode_at(img.ino(path));
        regions.push((at, at + 128.min(isz)));
    }
    regions.push((
        img.inode_at(InodeNo::ROOT),
        img.inode_at(InodeNo::ROOT) + 128,
    ));
    for dir in [InodeNo::ROOT, img.ino("d")] {
        let at = img.block_at(dir);
        regions.push((at, at + 64));
    }
    drop(fs);
    let mut walks = 0;
    let start = std::time::Instant::now();
    for (from, to) in regions {
        for off in from..to {
            let orig = img.bytes[off];
            for v in [0u8, 0xff, orig ^ 1, orig ^ 0x80] {
                if v == orig {
                    continue;
                }
                let mut bytes = img.bytes.clone();
                bytes[off] = v;
                if let Ok(fs) = Ext2::open(bytes.as_slice()) {
                    walk(&fs);
                }
                walks += 1;
            }
        }
    }
    eprintln!("{walks} mutated images walked in {:?}", start.elapsed());
    assert!(walks > 3000);
}
