//! The writer checked by e2fsprogs: small generated trees with every kind of entry, imaged at
//! each block size, must pass `e2fsck -fn` with every block and inode accounted for.
//! (The large corpus, kernel-mount and round-trip tests live in the workspace's `tests/`.)

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::Write as _;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::{PermissionsExt as _, symlink};
use std::path::Path;
use std::process::Command;

use super::{Error, Image, Options};
use crate::BlockSize;

fn write_file(path: &Path, size: u64, data_at: &[(u64, usize)]) {
    let mut f = File::create(path).expect("create file");
    f.set_len(size).expect("set_len");
    for &(offset, len) in data_at {
        let bytes: Vec<u8> = (0..len).map(|i| (i % 251) as u8 + 1).collect();
        std::os::unix::fs::FileExt::write_all_at(&f, &bytes, offset).expect("write data");
    }
    f.flush().expect("flush");
}

fn mknod(path: &Path, kind: &str, major: u32, minor: u32) {
    let mut cmd = Command::new("mknod");
    cmd.arg(path).arg(kind);
    if kind != "p" {
        cmd.arg(major.to_string()).arg(minor.to_string());
    }
    let status = cmd.status().expect("mknod runs");
    assert!(status.success(), "mknod {}", path.display());
}

/// A tree with every kind of entry and the size boundaries of each block size.
fn make_tree(root: &Path) {
    let sizes = [
        0u64,
        1,
        1023,
        1024,
        1025,
        4095,
        4096,
        4097,
        12 * 1024,
        12 * 1024 + 1,
    ];
    for size in sizes {
        let len = usize::try_from(size).expect("small");
        write_file(&root.join(format!("f{size}")), size, &[(0, len)]);
    }
    // Into the double-indirect range at 1 KiB blocks, and past the single-indirect one at 4 KiB.
    let big = (12 + 256 + 3) * 1024 + 17;
    write_file(
        &root.join("double"),
        big,
        &[(0, usize::try_from(big).expect("small"))],
    );
    // Holes: at the start, in the middle, at the end, and over a whole indirect block's range
    // (256 KiB at 1 KiB blocks), and a 5 GiB file whose data is in the triple-indirect range
    // at 1 KiB blocks.
    write_file(&root.join("hole-start"), 200_000, &[(150_000, 50_000)]);
    write_file(
        &root.join("hole-middle"),
        300_000,
        &[(0, 4096), (280_000, 20_000)],
    );
    write_file(&root.join("hole-end"), 1 << 20, &[(0, 8192)]);
    write_file(
        &root.join("hole-indirect"),
        2 << 20,
        &[(0, 4096), (1_900_000, 4096)],
    );
    write_file(
        &root.join("sparse-5g"),
        5 << 30,
        &[(4 << 30, 10_000), ((5 << 30) - 1, 1)],
    );

    fs::create_dir(root.join("links")).expect("mkdir");
    write_file(&root.join("links/a"), 3000, &[(0, 3000)]);
    fs::hard_link(root.join("links/a"), root.join("links/b")).expect("link");
    fs::hard_link(root.join("links/a"), root.join("c-hard")).expect("link");
    for len in [1usize, 59, 60, 61, 1000] {
        symlink("t".repeat(len), root.join(format!("sym{len}"))).expect("symlink");
    }
    mknod(&root.join("fifo"), "p", 0, 0);
    mknod(&root.join("null"), "c", 1, 3);
    mknod(&root.join("bigdev"), "b", 300, 70_000);
    let _socket = std::os::unix::net::UnixListener::bind(root.join("socket")).expect("socket");

    fs::create_dir(root.join("names")).expect("mkdir");
    write_file(
        &root.join("names").join(OsStr::from_bytes(b"caf\xe9")),
        1,
        &[(0, 1)],
    );
    write_file(&root.join("names").join("n".repeat(255)), 1, &[(0, 1)]);
    // Enough entries that the directory needs an indirect block at 1 KiB.
    fs::create_dir(root.join("many")).expect("mkdir");
    for i in 0..1500 {
        File::create(root.join(format!("many/entry-{i:05}"))).expect("create");
    }
    let mut deep = root.join("deep");
    for _ in 0..40 {
        deep.push("d");
    }
    fs::create_dir_all(&deep).expect("mkdir -p");
    for (name, mode) in [("setuid", 0o4755), ("sticky", 0o1777), ("none", 0o000)] {
        let p = root.join(name);
        fs::create_dir(&p).expect("mkdir");
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).expect("chmod");
    }
}

/// Writes `image` to a new file and returns its bytes.
fn write_image(image: &Image, path: &Path) -> Vec<u8> {
    let out = File::create(path).expect("create image");
    out.set_len(image.size()).expect("size image");
    let mut last = (0, 0);
    image
        .write_to(&out, &mut |done, total| last = (done, total))
        .expect("write image");
    assert_eq!(last.0, last.1, "progress ends at the total");
    fs::read(path).expect("read image")
}

/// Runs `e2fsck -fn` and returns its stdout; fails the test unless it exits 0.
fn e2fsck(path: &Path) -> String {
    let out = Command::new("e2fsck")
        .arg("-fn")
        .arg(path)
        .output()
        .expect("e2fsck must be installed (e2fsprogs)");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "e2fsck -fn {}: {}\n{stdout}{}",
        path.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// "used/total files ... used/total blocks" from e2fsck's summary line.
fn usage(summary: &str) -> ((u64, u64), (u64, u64)) {
    let line = summary.lines().last().expect("a summary line");
    let nums: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .filter_map(|s| s.parse().ok())
        .collect();
    // name digits may come first; the last five numbers are: files used, total, % (2), blocks
    let n = nums.len();
    ((nums[n - 6], nums[n - 5]), (nums[n - 2], nums[n - 1]))
}

#[test]
fn every_entry_kind_is_e2fsck_clean_at_every_block_size() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src");
    fs::create_dir(&src).expect("mkdir");
    make_tree(&src);
    for bs in [None, Some(1024), Some(2048), Some(4096)] {
        let options = Options {
            block_size: bs.and_then(BlockSize::new),
            label: Some("test".into()),
            source_date_epoch: Some(1_700_000_000),
            ..Options::default()
        };
        let image = Image::scan(&src, &options).expect("scan");
        let path = dir.path().join(format!("image-{bs:?}"));
        let first = write_image(&image, &path);
        let summary = e2fsck(&path);
        // Minimal: no free block at all, and every inode but the rounding used.
        let ((files, inodes), (used, blocks)) = usage(&summary);
        assert_eq!(used, blocks, "{bs:?}: {summary}");
        assert_eq!(blocks * u64::from(image.block_size().get()), image.size());
        assert_eq!(inodes, u64::from(image.inode_count()));
        assert!(inodes - files < 32, "{bs:?}: {summary}");
        // Deterministic.
        let again = Image::scan(&src, &options).expect("scan again");
        let second = write_image(&again, &dir.path().join("again"));
        assert!(first == second, "{bs:?}: two builds differ");
    }
}

#[test]
fn extra_space_and_inodes_are_free_and_clean() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src");
    fs::create_dir_all(src.join("sub")).expect("mkdir");
    write_file(&src.join("sub/file"), 10_000, &[(0, 10_000)]);
    for bs in [1024, 4096] {
        let options = Options {
            block_size: BlockSize::new(bs),
            extra_bytes: 3 << 20,
            extra_inodes: 1000,
            ..Options::default()
        };
        let image = Image::scan(&src, &options).expect("scan");
        let path = dir.path().join(format!("image-{bs}"));
        write_image(&image, &path);
        let summary = e2fsck(&path);
        let ((files, inodes), (used, blocks)) = usage(&summary);
        assert!(inodes - files >= 1000, "{summary}");
        assert!((blocks - used) * u64::from(bs) >= 3 << 20, "{summary}");
    }
}

#[test]
fn empty_tree_and_deep_tree() {
    let dir = tempfile::tempdir().expect("tempdir");
    let empty = dir.path().join("empty");
    fs::create_dir(&empty).expect("mkdir");
    let image = Image::scan(&empty, &Options::default()).expect("scan");
    write_image(&image, &dir.path().join("empty.img"));
    e2fsck(&dir.path().join("empty.img"));

    let deep_root = dir.path().join("deep");
    let mut deep = deep_root.clone();
    for _ in 0..600 {
        deep.push("d");
    }
    fs::create_dir_all(&deep).expect("mkdir -p");
    write_file(&deep.join("leaf"), 5, &[(0, 5)]);
    let image = Image::scan(&deep_root, &Options::default()).expect("scan");
    write_image(&image, &dir.path().join("deep.img"));
    e2fsck(&dir.path().join("deep.img"));
}

#[test]
fn paths_longer_than_path_max_are_walked() {
    use rustix::fs::{Mode, OFlags};
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("long");
    fs::create_dir(&root).expect("mkdir");
    // 300 levels of 40-byte names: 12,300 bytes of path, three times PATH_MAX.
    let name = "n".repeat(40);
    let mut fd = rustix::fs::open(&root, OFlags::DIRECTORY | OFlags::RDONLY, Mode::empty())
        .expect("open root");
    for _ in 0..300 {
        rustix::fs::mkdirat(&fd, name.as_str(), Mode::from_raw_mode(0o755)).expect("mkdirat");
        fd = rustix::fs::openat(
            &fd,
            name.as_str(),
            OFlags::DIRECTORY | OFlags::RDONLY,
            Mode::empty(),
        )
        .expect("openat");
    }
    let leaf = rustix::fs::openat(
        &fd,
        "leaf",
        OFlags::CREATE | OFlags::WRONLY,
        Mode::from_raw_mode(0o644),
    )
    .expect("create leaf");
    rustix::io::write(&leaf, b"deep data").expect("write leaf");
    let image = Image::scan(&root, &Options::default()).expect("scan");
    let path = dir.path().join("long.img");
    write_image(&image, &path);
    e2fsck(&path);
    // The tempdir can't remove what its path can't reach: take the tree apart bottom up.
    drop(leaf);
    let _ = Command::new("rm").arg("-rf").arg(&root).status();
}

#[test]
fn source_lost_found_is_used_and_must_be_a_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src");
    fs::create_dir_all(src.join("lost+found")).expect("mkdir");
    write_file(&src.join("lost+found/kept"), 5, &[(0, 5)]);
    let image = Image::scan(&src, &Options::default()).expect("scan");
    write_image(&image, &dir.path().join("lf.img"));
    e2fsck(&dir.path().join("lf.img"));

    let bad = dir.path().join("bad");
    fs::create_dir(&bad).expect("mkdir");
    File::create(bad.join("lost+found")).expect("create");
    let err = Image::scan(&bad, &Options::default()).expect_err("refused");
    assert!(matches!(err, Error::LostFoundNotADirectory { .. }), "{err}");
}

#[test]
fn limits_are_refused_with_the_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src");
    fs::create_dir(&src).expect("mkdir");
    // 17 GiB is past the 1 KiB-block limit (about 16 GiB) but fine at 2 KiB.
    write_file(&src.join("huge"), 17 << 30, &[]);
    let options = Options {
        block_size: BlockSize::new(1024),
        ..Options::default()
    };
    let err = Image::scan(&src, &options).expect_err("too large at 1 KiB");
    assert!(
        err.to_string()
            .starts_with(&format!("{}: file of", src.join("huge").display()))
    );
    let image = Image::scan(&src, &Options::default()).expect("auto picks a larger block");
    assert!(image.block_size().get() >= 2048);

    // e2fsck wants a slow symlink's target shorter than a block: 1024 bytes needs 2 KiB.
    let src2 = dir.path().join("src2");
    fs::create_dir(&src2).expect("mkdir");
    symlink("x".repeat(1024), src2.join("long")).expect("symlink");
    let err = Image::scan(&src2, &options).expect_err("symlink too long for 1 KiB");
    assert!(matches!(err, Error::TooLarge { .. }), "{err}");
    assert_eq!(
        Image::scan(&src2, &Options::default())
            .expect("auto")
            .block_size()
            .get(),
        2048
    );

    let err = Image::scan(&src.join("huge"), &Options::default()).expect_err("not a dir");
    assert_eq!(
        err.to_string(),
        format!("{}: not a directory", src.join("huge").display())
    );
}

#[test]
fn a_file_that_changes_is_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src");
    fs::create_dir(&src).expect("mkdir");
    write_file(&src.join("grows"), 100, &[(0, 100)]);
    let image = Image::scan(&src, &Options::default()).expect("scan");
    write_file(&src.join("grows"), 200, &[(0, 200)]);
    let out = File::create(dir.path().join("img")).expect("create");
    out.set_len(image.size()).expect("size");
    let err = image.write_to(&out, &mut |_, _| {}).expect_err("changed");
    assert!(matches!(err, Error::Changed { .. }), "{err}");
}

/// Writes `bytes` at each offset of a new file of `size` bytes: what is written is allocated
/// in the source even where it is zeros; the rest is a hole.
fn write_bytes(path: &Path, size: u64, writes: &[(u64, Vec<u8>)]) {
    let f = File::create(path).expect("create file");
    f.set_len(size).expect("set_len");
    for (offset, bytes) in writes {
        std::os::unix::fs::FileExt::write_all_at(&f, bytes, *offset).expect("write");
    }
}

fn ones(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 + 1).collect()
}

/// The blocks of a `bs`-byte block size that hold a non-zero byte of `content`: what the
/// image must allocate (holes and all-zero blocks are left out, as `mke2fs -d` does).
fn nonzero_blocks(content: &[u8], bs: usize) -> Vec<u64> {
    content
        .chunks(bs)
        .enumerate()
        .filter(|(_, block)| block.iter().any(|&b| b != 0))
        .map(|(i, _)| i as u64)
        .collect()
}

#[test]
fn all_zero_blocks_become_holes_at_every_block_size() {
    use crate::{Ext2, InodeNo};
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src");
    fs::create_dir(&src).expect("mkdir");
    let k = 1024u64;
    // Zeros written out (allocated in the source, not sparse).
    write_bytes(&src.join("all-zeros"), 10_000, &[(0, vec![0; 10_000])]);
    write_bytes(&src.join("zero-byte"), 1, &[(0, vec![0])]);
    // A zero 4 KiB block between data blocks.
    let mut middle = ones(4096);
    middle.extend(vec![0; 4096]);
    middle.extend(ones(4096));
    write_bytes(&src.join("zero-middle"), 3 * 4096, &[(0, middle)]);
    // Data, then a zero tail that ends in a partial block.
    let mut tail = ones(5000);
    tail.extend(vec![0; 9000]);
    write_bytes(&src.join("zero-tail"), 14_000, &[(0, tail)]);
    // Zeros over exactly the single-indirect block's range at 1 KiB blocks (blocks 12..268),
    // data on both sides: no indirect block there.
    let mut ind = ones(12 * 1024);
    ind.extend(vec![0; 256 * 1024]);
    ind.extend(ones(2048));
    write_bytes(&src.join("zero-indirect"), 270 * k, &[(0, ind)]);
    // One non-zero byte in the fourth 1 KiB of a 4 KiB block, and at the very end.
    let mut grain = vec![0u8; 8192];
    grain[3000] = 7;
    grain[8191] = 9;
    write_bytes(&src.join("grain"), 8192, &[(0, grain)]);
    // Source holes and written zeros mixed.
    write_bytes(
        &src.join("mixed"),
        1 << 20,
        &[
            (0, vec![0; 8192]),
            (8192, ones(1)),
            (500_000, vec![0; 100_000]),
            (700_000, ones(3000)),
        ],
    );

    let names = [
        "all-zeros",
        "zero-byte",
        "zero-middle",
        "zero-tail",
        "zero-indirect",
        "grain",
        "mixed",
    ];
    for bs in [1024u32, 2048, 4096] {
        let options = Options {
            block_size: BlockSize::new(bs),
            ..Options::default()
        };
        let image = Image::scan(&src, &options).expect("scan");
        let path = dir.path().join(format!("zeros-{bs}"));
        let bytes = write_image(&image, &path);
        // Clean (i_blocks included) and minimal: no block allocated that is not needed.
        let summary = e2fsck(&path);
        let (_, (used, blocks)) = usage(&summary);
        assert_eq!(used, blocks, "{bs}: {summary}");
        let fs = Ext2::open(bytes).expect("open image");
        for name in names {
            let content = fs::read(src.join(name)).expect("read source");
            let ino = fs
                .lookup(InodeNo::ROOT, name.as_bytes())
                .expect("lookup")
                .expect("present");
            let inode = fs.inode(ino).expect("inode");
            let map = fs.file_blocks(ino, &inode).expect("block map");
            let allocated: Vec<u64> = map
                .iter()
                .enumerate()
                .filter(|(_, b)| b.is_some())
                .map(|(i, _)| i as u64)
                .collect();
            assert_eq!(
                allocated,
                nonzero_blocks(&content, bs as usize),
                "{name} at {bs}-byte blocks"
            );
            let mut back = vec![0u8; content.len()];
            let n = fs.read(ino, &inode, 0, &mut back).expect("read back");
            assert_eq!(n, content.len(), "{name}");
            assert!(back == content, "{name} at {bs}: contents differ");
        }
        // Data blocks plus one single-indirect block: none for the zero range at 1 KiB.
        let ino = fs
            .lookup(InodeNo::ROOT, b"zero-indirect")
            .expect("lookup")
            .expect("present");
        let inode = fs.inode(ino).expect("inode");
        if bs == 1024 {
            assert_eq!(inode.block[12], 0, "an indirect block mapping only zeros");
            assert_eq!(u64::from(inode.blocks), (12 + 2 + 2) * 2);
        }
    }
}

#[test]
fn zero_grains_are_found_wherever_reads_split() {
    use super::scan::{ZERO_GRAIN, is_zero};
    assert!(is_zero(&[]));
    assert!(is_zero(&[0; 1000]));
    for at in [0usize, 15, 16, 17, 63, 64, 999] {
        let mut b = vec![0u8; 1000];
        b[at] = 1;
        assert!(!is_zero(&b), "non-zero byte at {at}");
    }
    // A file whose non-zero bytes straddle the scan's read size: every grain with one of them
    // is allocated at 1 KiB, and nothing else.
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src");
    fs::create_dir(&src).expect("mkdir");
    let size = 600 * ZERO_GRAIN as usize + 10;
    let mut content = vec![0u8; size];
    for at in [
        0,
        1023,
        1024,
        256 * 1024 - 1,
        256 * 1024,
        512 * 1024 + 5,
        size - 1,
    ] {
        content[at] = 0xff;
    }
    write_bytes(&src.join("f"), size as u64, &[(0, content.clone())]);
    let image = Image::scan(
        &src,
        &Options {
            block_size: BlockSize::new(1024),
            ..Options::default()
        },
    )
    .expect("scan");
    let bytes = write_image(&image, &dir.path().join("img"));
    e2fsck(&dir.path().join("img"));
    let fs = crate::Ext2::open(bytes).expect("open");
    let ino = fs
        .lookup(crate::InodeNo::ROOT, b"f")
        .expect("lookup")
        .expect("present");
    let inode = fs.inode(ino).expect("inode");
    let allocated: Vec<u64> = (fs.file_blocks(ino, &inode).expect("map").iter())
        .enumerate()
        .filter(|(_, b)| b.is_some())
        .map(|(i, _)| i as u64)
        .collect();
    assert_eq!(allocated, [0, 1, 255, 256, 512, 600]);
    assert_eq!(allocated, nonzero_blocks(&content, 1024));
}
