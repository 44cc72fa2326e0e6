//! Shared helpers of the reader tests: a source tree, real `mke2fs -d` images of it, and a
//! comparison of what our reader sees with what `std::fs` sees in the source.

#![expect(dead_code, reason = "each test binary uses a different subset")]

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fs::{self, File};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

use glick_ext2::{Ext2, FileType, Inode, InodeNo, ReadAt};

/// Runs a tool, panicking with a clear message if it is missing or fails.
pub fn run(program: &str, args: &[&OsStr]) -> std::process::Output {
    Command::new(program)
        .args(args)
        .env("E2FSPROGS_FAKE_TIME", "1700000000")
        .output()
        .unwrap_or_else(|e| panic!("{program} (e2fsprogs/coreutils) is required by this test: {e}"))
}

pub fn run_ok(program: &str, args: &[&OsStr]) {
    let out = run(program, args);
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `mke2fs -F -q ARGS -d SOURCE IMAGE SIZE_BLOCKS` (or without `-d`).
pub fn mke2fs(image: &Path, args: &[&str], source: Option<&Path>, blocks: u64) -> Vec<u8> {
    let mut all: Vec<&OsStr> = vec!["-F".as_ref(), "-q".as_ref()];
    all.extend(args.iter().map(OsStr::new));
    if let Some(s) = source {
        all.push("-d".as_ref());
        all.push(s.as_os_str());
    }
    let blocks = blocks.to_string();
    all.push(image.as_os_str());
    all.push(blocks.as_ref());
    run_ok("mke2fs", &all);
    fs::read(image).expect("read image")
}

fn write_pattern(path: &Path, size: u64, seed: u8) {
    let data: Vec<u8> = (0..size)
        .map(|i| ((i % 251) as u8).wrapping_add(seed) | 1)
        .collect();
    fs::write(path, data).expect("write file");
}

fn sparse(path: &Path, len: u64, chunks: &[(u64, &[u8])]) {
    let f = File::create(path).expect("create");
    f.set_len(len).expect("set_len");
    for (off, data) in chunks {
        f.write_all_at(data, *off).expect("write");
    }
}

/// Block-size-agnostic boundaries: the last direct block, the first single-indirect,
/// double-indirect and triple-indirect blocks for 1, 2 and 4 KiB blocks.
pub const BOUNDARY_SIZES: &[u64] = &[
    1,
    1023,
    1024,
    1025,
    4095,
    4096,
    4097,
    12 * 1024,
    12 * 1024 + 1,
    12 * 2048 + 1,
    12 * 4096,
    12 * 4096 + 1,
    (12 + 256) * 1024,
    (12 + 256) * 1024 + 1,
    (12 + 512) * 2048 + 1,
    (12 + 1024) * 4096 + 1,
];

/// Makes the source tree the images are built from. `huge` adds a sparse 5 GiB file.
pub fn make_tree(root: &Path, huge: bool) {
    let d = |p: &str| {
        let path = root.join(p);
        fs::create_dir_all(&path).expect("mkdir");
        path
    };
    fs::write(root.join("empty"), b"").expect("write");
    fs::write(root.join("hello.txt"), b"hello, world\n").expect("write");
    let sizes = d("sizes");
    for (i, size) in BOUNDARY_SIZES.iter().enumerate() {
        write_pattern(&sizes.join(format!("f{size}")), *size, i as u8);
    }
    let holes = d("holes");
    sparse(
        &holes.join("direct"),
        9 * 4096 + 10,
        &[(0, b"A"), (8 * 4096, b"B")],
    );
    sparse(&holes.join("start"), 200_000, &[(100_000, b"late data")]);
    sparse(&holes.join("end"), 1_000_000, &[(0, b"early data")]);
    // Nothing in the whole single-indirect range at any block size, then data in the
    // double-indirect range.
    sparse(
        &holes.join("whole-indirect"),
        5 << 20,
        &[(0, b"head"), ((5 << 20) - 4, b"tail")],
    );
    // Into the triple-indirect range for 1 KiB blocks (it starts at 65804 KiB).
    sparse(
        &holes.join("triple"),
        70 << 20,
        &[
            (3000, b"x"),
            (66 << 20, b"triple-indirect"),
            ((70 << 20) - 1, b"z"),
        ],
    );
    if huge {
        sparse(
            &holes.join("five-gib"),
            5 << 30,
            &[((4 << 30) + 1, b"past 4 GiB"), ((5 << 30) - 3, b"end")],
        );
    }
    let links = d("links");
    for n in [1usize, 59, 60, 61, 1000] {
        let target = "t".repeat(n);
        std::os::unix::fs::symlink(&target, links.join(format!("s{n}"))).expect("symlink");
    }
    std::os::unix::fs::symlink("../hello.txt", links.join("rel")).expect("symlink");
    std::os::unix::fs::symlink("/nonexistent/dangling", links.join("dangling")).expect("symlink");
    write_pattern(&links.join("hard1"), 5000, 9);
    fs::hard_link(links.join("hard1"), links.join("hard2")).expect("link");
    fs::hard_link(links.join("hard1"), root.join("hard3")).expect("link");
    let special = d("special");
    run_ok("mkfifo", &[special.join("fifo").as_os_str()]);
    for (name, kind, major, minor) in [
        ("null", "c", 1, 3),
        ("loop", "b", 7, 200),
        ("big", "c", 259, 65536),
        ("bigblk", "b", 4095, 1_048_575),
    ] {
        let path = special.join(name);
        let (major, minor) = (major.to_string(), minor.to_string());
        run_ok(
            "mknod",
            &[
                path.as_os_str(),
                kind.as_ref(),
                major.as_ref(),
                minor.as_ref(),
            ],
        );
    }
    let _sock = std::os::unix::net::UnixListener::bind(special.join("socket")).expect("socket");
    let many = d("many");
    for i in 0..3000 {
        let name = if i % 7 == 0 {
            format!("a-rather-long-name-to-fill-directory-blocks-faster-{i:05}")
        } else {
            format!("e{i}")
        };
        fs::write(many.join(name), i.to_string()).expect("write");
    }
    let names = d("names");
    fs::write(names.join(OsStr::from_bytes(b"caf\xe9")), b"latin-1").expect("write");
    fs::write(names.join("n".repeat(255)), b"long name").expect("write");
    fs::write(names.join("sp ace\nnewline"), b"odd").expect("write");
    let perms = d("perms");
    for (name, mode) in [("setuid", 0o4755), ("zero", 0o000), ("setgid", 0o2711)] {
        let p = perms.join(name);
        fs::write(&p, name).expect("write");
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).expect("chmod");
    }
    let sticky = d("perms/sticky");
    fs::set_permissions(&sticky, fs::Permissions::from_mode(0o1777)).expect("chmod");
    let owners = d("owners");
    for (name, uid, gid) in [("user", 1000, 1000), ("big", 100_000, 200_000)] {
        let p = owners.join(name);
        fs::write(&p, name).expect("write");
        std::os::unix::fs::chown(&p, Some(uid), Some(gid)).expect("chown (tests run as root)");
    }
    let deep = d("a/b/c/d/e/f/g/h");
    fs::write(deep.join("leaf"), b"deep").expect("write");
    // Fixed mtimes, with nanoseconds, last (writing into a directory changes its mtime).
    let t = SystemTime::UNIX_EPOCH + Duration::new(1_234_567_890, 123_456_789);
    for p in ["hello.txt", "sizes/f1", "a/b/c/d/e/f/g/h/leaf", "a/b"] {
        File::options()
            .write(p != "a/b")
            .read(true)
            .open(root.join(p))
            .and_then(|f| f.set_modified(t))
            .expect("set mtime");
    }
}

/// `(major, minor)` of a `st_rdev`, as glibc's `major()`/`minor()`.
fn split_dev(dev: u64) -> (u32, u32) {
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    (major as u32, minor as u32)
}

/// What the comparison checked.
#[derive(Debug, Default)]
pub struct Seen {
    pub entries: usize,
    pub bytes_compared: u64,
}

/// Checks that the image shows exactly the tree at `src`: names, types, permissions,
/// owners, sizes, link counts, contents, symlink targets, mtimes, device numbers, and that
/// hard links share an inode. `nsec`: whether the image holds nanoseconds.
pub fn assert_same_tree<R: ReadAt>(fs: &Ext2<R>, src: &Path, nsec: bool) -> Seen {
    let mut seen = Seen::default();
    let mut links: BTreeMap<u64, InodeNo> = BTreeMap::new();
    compare_dir(fs, InodeNo::ROOT, src, true, nsec, &mut links, &mut seen);
    seen
}

fn compare_dir<R: ReadAt>(
    fs: &Ext2<R>,
    dir: InodeNo,
    src: &Path,
    is_root: bool,
    nsec: bool,
    links: &mut BTreeMap<u64, InodeNo>,
    seen: &mut Seen,
) {
    let mut image_names = BTreeMap::new();
    for entry in fs.read_dir(dir, 0).expect("read_dir") {
        let entry = entry.unwrap_or_else(|e| panic!("{}: {e}", src.display()));
        image_names.insert(entry.name.clone(), entry);
    }
    let dot = image_names.remove(&b"."[..]).expect(".");
    assert_eq!(dot.ino, dir);
    let dotdot = image_names.remove(&b".."[..]).expect("..");
    assert!(matches!(dotdot.file_type, Some(FileType::Directory) | None));
    if is_root {
        assert_eq!(dotdot.ino, InodeNo::ROOT);
        if !src.join("lost+found").exists() {
            image_names.remove(&b"lost+found"[..]).expect("lost+found");
        }
    }
    let src_names: BTreeSet<Vec<u8>> = fs::read_dir(src)
        .expect("read source dir")
        .map(|e| e.expect("entry").file_name().as_bytes().to_vec())
        .collect();
    let img: BTreeSet<Vec<u8>> = image_names.keys().cloned().collect();
    assert_eq!(img, src_names, "names in {}", src.display());

    for (name, entry) in image_names {
        seen.entries += 1;
        let path = src.join(OsStr::from_bytes(&name));
        let meta = fs::symlink_metadata(&path).expect("source metadata");
        assert_eq!(
            fs.lookup(dir, &name).expect("lookup"),
            Some(entry.ino),
            "{}",
            path.display()
        );
        let inode = fs.inode(entry.ino).expect("inode");
        compare_inode(fs, entry.ino, &inode, &path, &meta, nsec, seen);
        if entry.file_type.is_some()
            || fs
                .superblock()
                .has_incompat(glick_ext2::feature::INCOMPAT_FILETYPE)
        {
            assert_eq!(entry.file_type, inode.file_type(), "{}", path.display());
        }
        match links.get(&meta.ino()) {
            Some(ino) => assert_eq!(*ino, entry.ino, "hard link {}", path.display()),
            None => {
                links.insert(meta.ino(), entry.ino);
            }
        }
        if meta.is_dir() {
            compare_dir(fs, entry.ino, &path, false, nsec, links, seen);
        }
    }
}

fn compare_inode<R: ReadAt>(
    fs: &Ext2<R>,
    ino: InodeNo,
    inode: &Inode,
    path: &Path,
    meta: &fs::Metadata,
    nsec: bool,
    seen: &mut Seen,
) {
    let what = path.display();
    assert_eq!(u32::from(inode.mode), meta.mode(), "mode of {what}");
    assert_eq!(
        (inode.uid, inode.gid),
        (meta.uid(), meta.gid()),
        "owner of {what}"
    );
    assert_eq!(
        u64::from(inode.links_count),
        meta.nlink(),
        "nlink of {what}"
    );
    assert_eq!(i64::from(inode.mtime), meta.mtime(), "mtime of {what}");
    if nsec {
        assert_eq!(
            i64::from(Inode::nsec(inode.mtime_extra)),
            meta.mtime_nsec(),
            "mtime nsec of {what}"
        );
    }
    let ft = meta.file_type();
    if ft.is_dir() {
        return;
    }
    assert_eq!(inode.size, meta.size(), "size of {what}");
    if ft.is_symlink() {
        let target = fs.read_link(ino, inode).expect("read_link");
        assert_eq!(
            target,
            fs::read_link(path).expect("link").as_os_str().as_bytes(),
            "{what}"
        );
    } else if ft.is_file() {
        seen.bytes_compared += compare_content(fs, ino, inode, path);
    } else {
        use std::os::unix::fs::FileTypeExt;
        if ft.is_char_device() || ft.is_block_device() {
            assert_eq!(inode.rdev(), split_dev(meta.rdev()), "rdev of {what}");
        } else {
            assert!(ft.is_fifo() || ft.is_socket(), "{what}");
        }
    }
}

/// Compares file contents through `Ext2::read` with odd-sized reads; huge files are
/// compared in windows around their data and at many offsets.
fn compare_content<R: ReadAt>(fs: &Ext2<R>, ino: InodeNo, inode: &Inode, path: &Path) -> u64 {
    let src = File::open(path).expect("open source");
    let size = inode.size;
    let chunk = 65536 + 13;
    let mut windows: Vec<(u64, u64)> = Vec::new();
    if size <= 80 << 20 {
        windows.push((0, size));
    } else {
        for off in [0, (4 << 30) - 100, (4 << 30) + 1, size - 5000] {
            windows.push((off.min(size), 10_000));
        }
    }
    let mut compared = 0;
    let mut mine = vec![0u8; chunk];
    let mut theirs = vec![0u8; chunk];
    for (start, len) in windows {
        let end = (start + len).min(size);
        let mut off = start;
        while off < end {
            let n = usize::try_from((end - off).min(chunk as u64)).expect("small");
            let got = fs.read(ino, inode, off, &mut mine[..n]).expect("read");
            assert_eq!(got, n, "{} at {off}", path.display());
            src.read_exact_at(&mut theirs[..n], off)
                .expect("read source");
            assert!(
                mine[..n] == theirs[..n],
                "{} differs in [{off}, +{n})",
                path.display()
            );
            off += n as u64;
            compared += n as u64;
        }
    }
    // Reads at and past the end are short.
    assert_eq!(
        fs.read(ino, inode, size, &mut mine).expect("read at eof"),
        0
    );
    if size > 0 {
        assert_eq!(fs.read(ino, inode, size - 1, &mut mine).expect("read"), 1);
    }
    compared
}

/// The data blocks of `path` in `image` as debugfs lists them: logical → physical.
pub fn debugfs_blocks(image: &Path, path: &str) -> BTreeMap<u64, u32> {
    let req = format!("stat \"{path}\"");
    let out = run("debugfs", &["-R".as_ref(), req.as_ref(), image.as_os_str()]);
    assert!(out.status.success(), "debugfs: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let list = text
        .split("BLOCKS:\n")
        .nth(1)
        .map(|rest| rest.split("TOTAL:").next().unwrap_or(""))
        .unwrap_or("");
    let mut map = BTreeMap::new();
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (logical, physical) = item.split_once(':').expect("(L):P");
        let logical = logical.trim_matches(|c| c == '(' || c == ')');
        if logical.contains("IND") {
            continue;
        }
        let num = |s: &str| -> u64 { s.parse().unwrap_or_else(|e| panic!("{item}: {e}")) };
        let (l0, l1) = logical
            .split_once('-')
            .map_or_else(|| (num(logical), num(logical)), |(a, b)| (num(a), num(b)));
        let p0 = num(physical.split('-').next().expect("p"));
        for (i, l) in (l0..=l1).enumerate() {
            map.insert(l, u32::try_from(p0 + i as u64).expect("u32"));
        }
    }
    map
}

/// Walks everything reachable from the root, ignoring errors, with bounds on depth and on
/// the number of entries and bytes: what a FUSE client might ask of a hostile image.
/// Returns how many entries it saw.
pub fn walk<R: ReadAt>(fs: &Ext2<R>) -> usize {
    let mut budget = 20_000usize;
    walk_dir(fs, InodeNo::ROOT, 0, &mut budget);
    20_000 - budget
}

fn walk_dir<R: ReadAt>(fs: &Ext2<R>, dir: InodeNo, depth: u32, budget: &mut usize) {
    if depth > 32 {
        return;
    }
    let Ok(entries) = fs.read_dir(dir, 0) else {
        return;
    };
    for entry in entries {
        let Ok(entry) = entry else {
            return;
        };
        if *budget == 0 {
            return;
        }
        *budget -= 1;
        let _ = fs.lookup(dir, &entry.name);
        let _ = fs.read_dir(dir, entry.next_offset).map(|mut it| it.next());
        let Ok(inode) = fs.inode(entry.ino) else {
            continue;
        };
        let _ = fs.file_blocks(entry.ino, &inode);
        match inode.file_type() {
            Some(FileType::Directory) if entry.name != b"." && entry.name != b".." => {
                walk_dir(fs, entry.ino, depth + 1, budget);
            }
            Some(FileType::Regular) => {
                let mut buf = vec![0u8; 70_000];
                let mut off = 0u64;
                while off < inode.size.min(1 << 20) {
                    match fs.read(entry.ino, &inode, off, &mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => off += n as u64,
                    }
                }
                let _ = fs.read(entry.ino, &inode, inode.size.saturating_sub(10), &mut buf);
            }
            Some(FileType::Symlink) => {
                let _ = fs.read_link(entry.ino, &inode);
            }
            _ => {}
        }
    }
}
