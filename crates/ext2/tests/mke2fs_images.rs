//! Our reader against real `mke2fs -d` images: ext2 and ext3, 1/2/4 KiB blocks, 128- and
//! 256-byte inodes, linear and hashed (`dir_index`) directories. Every image must show
//! exactly the source tree.

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::{assert_same_tree, make_tree, mke2fs, run};
use glick_ext2::{Error, Ext2, FileRegion, InodeNo, Unsupported, inode::flags};

/// One source tree for all the tests (it is only read). A static is never dropped, so the
/// tree lives in cargo's per-target scratch directory, remade by each run, not in /tmp.
fn tree() -> &'static Path {
    static TREE: OnceLock<PathBuf> = OnceLock::new();
    TREE.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("mke2fs-images-tree");
        if dir.exists() {
            std::fs::remove_dir_all(&dir).expect("removing the previous run's tree");
        }
        std::fs::create_dir_all(&dir).expect("creating the tree's directory");
        make_tree(&dir, true);
        dir
    })
}

#[derive(Clone, Copy, PartialEq)]
enum Dirs {
    Linear,
    Hashed,
}

fn check(kind: &str, block_size: u32, inode_size: u32, dirs: Dirs) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let image = tmp.path().join("image");
    let bs = block_size.to_string();
    let isz = inode_size.to_string();
    let features = if dirs == Dirs::Hashed {
        "dir_index"
    } else {
        "^dir_index"
    };
    let blocks = (160u64 << 20) / u64::from(block_size);
    mke2fs(
        &image,
        &[
            "-t", kind, "-b", &bs, "-I", &isz, "-N", "4096", "-O", features,
        ],
        Some(tree()),
        blocks,
    );
    if dirs == Dirs::Hashed {
        // mke2fs -d writes linear directories; e2fsck -D indexes them.
        let out = run("e2fsck", &["-fyD".as_ref(), image.as_os_str()]);
        assert!(
            out.status.code().is_some_and(|c| c <= 1),
            "e2fsck -fyD: {out:?}"
        );
    }
    let out = run("e2fsck", &["-fn".as_ref(), image.as_os_str()]);
    assert!(out.status.success(), "e2fsck -fn: {out:?}");

    // Read through a file region (as the runtime does) placed at an offset in a file.
    let file = std::fs::File::open(&image).expect("open image");
    let len = file.metadata().expect("metadata").len();
    let fs = Ext2::open(FileRegion::new(file, 0, len)).expect("open");
    assert_eq!(fs.block_size().get(), block_size);
    let many = fs
        .lookup(InodeNo::ROOT, b"many")
        .expect("lookup")
        .expect("many");
    let indexed = fs.inode(many).expect("inode").flags & flags::INDEX != 0;
    assert_eq!(indexed, dirs == Dirs::Hashed, "htree directory");
    // mke2fs -d (e2fsprogs 1.47) does not copy nanoseconds: see `nanoseconds` below.
    let seen = assert_same_tree(&fs, tree(), false);
    assert!(seen.entries > 3000, "{seen:?}");

    // Allocated blocks and holes, against debugfs.
    let mut files: Vec<String> = ["holes/direct", "holes/start", "holes/end"]
        .iter()
        .chain(&[
            "holes/whole-indirect",
            "holes/triple",
            "holes/five-gib",
            "links/s1000",
        ])
        .map(|s| (*s).to_owned())
        .collect();
    files.extend(common::BOUNDARY_SIZES.iter().map(|s| format!("sizes/f{s}")));
    for path in &files {
        let mut ino = InodeNo::ROOT;
        for part in path.split('/') {
            ino = fs
                .lookup(ino, part.as_bytes())
                .expect("lookup")
                .expect("exists");
        }
        let inode = fs.inode(ino).expect("inode");
        let ours: std::collections::BTreeMap<u64, u32> = fs
            .file_blocks(ino, &inode)
            .expect("file_blocks")
            .iter()
            .enumerate()
            .filter_map(|(l, p)| p.map(|p| (l as u64, p.get())))
            .collect();
        assert_eq!(ours, common::debugfs_blocks(&image, path), "{path}");
        assert_eq!(
            fs.file_blocks(ino, &inode).expect("file_blocks").len() as u64,
            inode.size.div_ceil(u64::from(block_size))
        );
    }
    eprintln!("{kind} -b {block_size} -I {inode_size} {features}: {seen:?}");
}

macro_rules! cases {
    ($($name:ident: $kind:literal, $bs:literal, $isz:literal, $dirs:ident;)*) => {
        $(#[test] fn $name() { check($kind, $bs, $isz, Dirs::$dirs); })*
    };
}

cases! {
    ext2_1k_128: "ext2", 1024, 128, Linear;
    ext2_1k_256: "ext2", 1024, 256, Linear;
    ext2_2k_128: "ext2", 2048, 128, Linear;
    ext2_2k_256: "ext2", 2048, 256, Linear;
    ext2_4k_128: "ext2", 4096, 128, Linear;
    ext2_4k_256: "ext2", 4096, 256, Linear;
    ext2_1k_128_dir_index: "ext2", 1024, 128, Hashed;
    ext2_2k_256_dir_index: "ext2", 2048, 256, Hashed;
    ext2_4k_256_dir_index: "ext2", 4096, 256, Hashed;
    ext3_1k_128: "ext3", 1024, 128, Hashed;
    ext3_2k_256: "ext3", 2048, 256, Linear;
    ext3_4k_256: "ext3", 4096, 256, Hashed;
}

#[test]
fn ext4_with_extents_is_refused_by_name() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let image = tmp.path().join("image");
    let bytes = mke2fs(&image, &["-t", "ext4"], None, 8192);
    let err = Ext2::open(bytes).expect_err("ext4 is refused");
    assert!(
        matches!(err, Error::Unsupported(Unsupported::Feature("extents"))),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "unsupported ext2 image: feature `extents` is not supported (ext2/ext3 only)"
    );
    // One incompatible bit set at a time in an ext2 image.
    let good = mke2fs(&image, &["-t", "ext2"], None, 8192);
    for (bit, name) in [
        (0x1, "compression"),
        (0x4, "needs_recovery"),
        (0x10, "meta_bg"),
        (0x40, "extents"),
        (0x80, "64bit"),
        (0x8000, "inline_data"),
        (0x1_0000, "encrypt"),
        (0x2_0000, "casefold"),
    ] {
        let err = Ext2::open(with_incompat(&good, bit)).expect_err("refused");
        assert!(
            matches!(err, Error::Unsupported(Unsupported::Feature(n)) if n == name),
            "{name}: {err:?}"
        );
        assert!(err.to_string().contains(name), "{err}");
    }
    let err = Ext2::open(with_incompat(&good, 0x8000_0000)).expect_err("refused");
    assert!(
        matches!(
            err,
            Error::Unsupported(Unsupported::UnknownIncompat(0x8000_0000))
        ),
        "{err:?}"
    );
    // Bits that don't change how an ext2 reader reads are accepted.
    for bit in [0x100, 0x200, 0x2000, 0x4000] {
        Ext2::open(with_incompat(&good, bit)).expect("readable");
    }
}

fn with_incompat(image: &[u8], bit: u32) -> Vec<u8> {
    let mut image = image.to_vec();
    let at = 1024 + 96;
    let old = u32::from_le_bytes(image[at..at + 4].try_into().expect("4 bytes"));
    image[at..at + 4].copy_from_slice(&(old | bit).to_le_bytes());
    image
}

#[test]
fn ext2_reader_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Ext2<FileRegion>>();
    assert_send_sync::<Ext2<Vec<u8>>>();
    assert_send_sync::<Ext2<&[u8]>>();
    assert_send_sync::<Ext2<std::sync::Arc<[u8]>>>();
}

/// Nanosecond timestamps of 256-byte inodes, set with debugfs (mke2fs -d drops them).
#[test]
fn nanoseconds_of_large_inodes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).expect("mkdir");
    std::fs::write(src.join("f"), b"x").expect("write");
    let image = tmp.path().join("image");
    mke2fs(&image, &["-t", "ext2", "-I", "256"], Some(&src), 1024);
    // nsec 123456789 << 2, epoch bits 0
    let extra = (123_456_789u32 << 2).to_string();
    let req = format!("sif /f mtime_extra {extra}");
    common::run_ok(
        "debugfs",
        &[
            "-w".as_ref(),
            "-R".as_ref(),
            req.as_ref(),
            image.as_os_str(),
        ],
    );
    let fs = Ext2::open(std::fs::read(&image).expect("read")).expect("open");
    let ino = fs.lookup(InodeNo::ROOT, b"f").expect("lookup").expect("f");
    let inode = fs.inode(ino).expect("inode");
    assert_eq!(glick_ext2::Inode::nsec(inode.mtime_extra), 123_456_789);
    assert_eq!(inode.extra_isize, 32);
}

/// Revision 0 (no features: no `filetype`, so entries carry no type) and revision 1 without
/// `filetype`.
#[test]
fn revision_0_and_no_filetype() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).expect("mkdir");
    make_tree(&src, false);
    for args in [&["-r", "0"][..], &["-O", "^filetype"][..]] {
        let image = tmp.path().join("image");
        let _ = std::fs::remove_file(&image);
        let mut all = vec!["-t", "ext2", "-b", "1024", "-N", "4096"];
        all.extend_from_slice(args);
        let bytes = mke2fs(&image, &all, Some(&src), 160 << 10);
        let fs = Ext2::open(bytes.as_slice()).expect("open");
        assert_eq!(fs.superblock().rev_level, u32::from(args[0] == "-O"));
        for entry in fs.read_dir(InodeNo::ROOT, 0).expect("read_dir") {
            assert_eq!(entry.expect("entry").file_type, None);
        }
        assert_same_tree(&fs, &src, false);
    }
}

/// 64 KiB blocks: a whole-block directory record's length is stored as 65535.
#[test]
fn blocks_of_64_kib() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("src");
    let dir = src.join("dir");
    std::fs::create_dir_all(&dir).expect("mkdir");
    for i in 0..100 {
        std::fs::write(dir.join(format!("entry-{i}")), format!("{i}")).expect("write");
    }
    let big: Vec<u8> = (0..(12 * 65536 + 70_000))
        .map(|i: u32| (i % 249) as u8)
        .collect();
    std::fs::write(src.join("indirect"), big).expect("write");
    let f = std::fs::File::create(src.join("sparse")).expect("create");
    f.set_len(40 << 20).expect("set_len");
    std::os::unix::fs::FileExt::write_all_at(&f, b"far", (40 << 20) - 3).expect("write");
    std::os::unix::fs::symlink("x".repeat(300), src.join("slow")).expect("symlink");
    let image = tmp.path().join("image");
    let bytes = mke2fs(
        &image,
        &["-t", "ext2", "-b", "65536", "-N", "512"],
        Some(&src),
        256,
    );
    let fs = Ext2::open(bytes.as_slice()).expect("open");
    assert_eq!(fs.block_size().get(), 65536);
    let seen = assert_same_tree(&fs, &src, false);
    assert_eq!(seen.entries, 104);
}
