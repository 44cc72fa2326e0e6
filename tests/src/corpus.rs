//! The corpus: trees to turn into images, described as a [`Spec`] and written to disk by
//! [`materialize`].
//!
//! A spec is plain data, so the same tree can be written twice (in another directory, in
//! another creation order, with other access times) to check that images are deterministic.
//! The named cases ([`cases`]) cover what the ext2 issue asks for; [`random_spec`] and
//! [`spec_strategy`] make random trees for property tests.
//!
//! # Data and holes
//!
//! File data is written only in [`PAGE`]-aligned runs of [`PAGE`]-multiple length (the last one
//! may stop at end of file), so the source filesystem (ext4/xfs/tmpfs, 4 KiB granularity)
//! reports exactly those runs as data. A file has two kinds of runs: *data* runs never contain
//! a zero byte, so every image block inside them holds a non-zero byte and must be allocated;
//! *zero* runs are written out as zero bytes (allocated in the source, not holes), so every
//! image block inside them is all zero and must be a hole, as `mke2fs -d` makes it. The tests
//! demand exactly that ([`crate::tree::must_allocate`]).
//!
//! # Timestamps
//!
//! Images use 128-byte inodes, whose timestamps are signed 32-bit seconds: every mtime in the
//! corpus is within `0..=i32::MAX` (1970-01-01 .. 2038-01-19).

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fs::{self, File};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::{FileExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail, ensure};
use filetime::FileTime;
use proptest::prelude::*;
use proptest::strategy::ValueTree as _;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

/// The granularity of written data (see the module docs).
pub const PAGE: u64 = 4096;

/// The mtime entries get unless a case says otherwise (2020-09-13).
pub const DEFAULT_MTIME: i64 = 1_600_000_000;

/// The largest timestamp a 128-byte ext2 inode can hold.
pub const MAX_MTIME: i64 = i32::MAX as i64;

/// What an entry is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A directory.
    Dir,
    /// A regular file of `size` bytes whose data runs are `data` and zero runs `zeros`
    /// (`(offset, len)`, PAGE-aligned, sorted, not overlapping each other or the other kind,
    /// within `size`); the rest is holes. `seed` picks the bytes.
    File {
        /// The file size.
        size: u64,
        /// The data runs (never a zero byte).
        data: Vec<(u64, u64)>,
        /// Runs written as zero bytes: allocated in the source, holes in an image.
        zeros: Vec<(u64, u64)>,
        /// Seed of the (never zero) data bytes.
        seed: u64,
    },
    /// A symbolic link.
    Symlink {
        /// Its target.
        target: Vec<u8>,
    },
    /// Another name for the (non-directory) entry at path `to`, which comes earlier in the spec.
    HardLink {
        /// The path of the first name.
        to: Vec<u8>,
    },
    /// A named pipe.
    Fifo,
    /// A character device.
    CharDev {
        /// Major number.
        major: u32,
        /// Minor number.
        minor: u32,
    },
    /// A block device.
    BlockDev {
        /// Major number.
        major: u32,
        /// Minor number.
        minor: u32,
    },
    /// A unix socket.
    Socket,
}

/// One entry of a spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// Path relative to the root, components joined by `/`.
    pub path: Vec<u8>,
    /// What it is.
    pub kind: Kind,
    /// Permission bits (`mode & 0o7777`); ignored for symlinks and hard links.
    pub perm: u32,
    /// Modification time in seconds; ignored for hard links.
    pub mtime: i64,
    /// Owner; ignored for hard links.
    pub uid: u32,
    /// Group; ignored for hard links.
    pub gid: u32,
}

/// A whole tree. Parents come before their children.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spec {
    /// Permission bits of the root directory.
    pub root_perm: u32,
    /// Mtime of the root directory.
    pub root_mtime: i64,
    /// Every entry but the root.
    pub nodes: Vec<Node>,
}

impl Default for Spec {
    fn default() -> Self {
        Spec {
            root_perm: 0o755,
            root_mtime: DEFAULT_MTIME,
            nodes: Vec::new(),
        }
    }
}

impl Spec {
    /// An empty tree.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of entries (not counting the root).
    #[must_use]
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the tree holds nothing but its root.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    fn has(&self, path: &[u8]) -> bool {
        self.nodes.iter().any(|n| n.path == path)
    }

    fn ensure_parents(&mut self, path: &[u8]) {
        let mut prefix_end = Vec::new();
        for (i, b) in path.iter().enumerate() {
            if *b == b'/' {
                prefix_end.push(i);
            }
        }
        for end in prefix_end {
            let parent = &path[..end];
            if !parent.is_empty() && !self.has(parent) {
                self.nodes.push(Node {
                    path: parent.to_vec(),
                    kind: Kind::Dir,
                    perm: 0o755,
                    mtime: DEFAULT_MTIME,
                    uid: 0,
                    gid: 0,
                });
            }
        }
    }

    /// Adds an entry (creating missing parent directories with default attributes) and
    /// returns it so that the caller can change its attributes.
    pub fn add(&mut self, path: impl AsRef<[u8]>, kind: Kind) -> &mut Node {
        let path = path.as_ref().to_vec();
        self.ensure_parents(&path);
        let perm = match kind {
            Kind::Dir => 0o755,
            Kind::Symlink { .. } => 0o777,
            _ => 0o644,
        };
        self.nodes.push(Node {
            path,
            kind,
            perm,
            mtime: DEFAULT_MTIME,
            uid: 0,
            gid: 0,
        });
        let last = self.nodes.len() - 1;
        &mut self.nodes[last]
    }

    /// A directory.
    pub fn dir(&mut self, path: impl AsRef<[u8]>) -> &mut Node {
        self.add(path, Kind::Dir)
    }

    /// A file whose `size` bytes are all data.
    pub fn dense(&mut self, path: impl AsRef<[u8]>, size: u64) -> &mut Node {
        let seed = seed_of(path.as_ref());
        let data = if size == 0 {
            Vec::new()
        } else {
            vec![(0, size)]
        };
        self.add(
            path,
            Kind::File {
                size,
                data,
                zeros: Vec::new(),
                seed,
            },
        )
    }

    /// A file of `size` bytes with data only in `data` (offset, len) runs.
    pub fn sparse(&mut self, path: impl AsRef<[u8]>, size: u64, data: &[(u64, u64)]) -> &mut Node {
        let seed = seed_of(path.as_ref());
        self.add(
            path,
            Kind::File {
                size,
                data: data.to_vec(),
                zeros: Vec::new(),
                seed,
            },
        )
    }

    /// A file of `size` bytes with data in `data` runs, zero bytes written in `zeros` runs
    /// and holes elsewhere.
    pub fn with_zeros(
        &mut self,
        path: impl AsRef<[u8]>,
        size: u64,
        data: &[(u64, u64)],
        zeros: &[(u64, u64)],
    ) -> &mut Node {
        let seed = seed_of(path.as_ref());
        self.add(
            path,
            Kind::File {
                size,
                data: data.to_vec(),
                zeros: zeros.to_vec(),
                seed,
            },
        )
    }

    /// A symbolic link.
    pub fn symlink(&mut self, path: impl AsRef<[u8]>, target: impl AsRef<[u8]>) -> &mut Node {
        self.add(
            path,
            Kind::Symlink {
                target: target.as_ref().to_vec(),
            },
        )
    }

    /// A second name for the entry at `to`.
    pub fn hard_link(&mut self, path: impl AsRef<[u8]>, to: impl AsRef<[u8]>) -> &mut Node {
        self.add(
            path,
            Kind::HardLink {
                to: to.as_ref().to_vec(),
            },
        )
    }

    /// Checks the spec's own invariants (see [`Kind::File`]); [`materialize`] calls this.
    pub fn validate(&self) -> Result<()> {
        let mut seen: BTreeMap<&[u8], &Kind> = BTreeMap::new();
        for node in &self.nodes {
            let shown = String::from_utf8_lossy(&node.path);
            ensure!(!node.path.is_empty(), "empty path in spec");
            for component in node.path.split(|b| *b == b'/') {
                ensure!(
                    !component.is_empty()
                        && component.len() <= 255
                        && component != b"."
                        && component != b".."
                        && !component.contains(&0),
                    "{shown}: bad component"
                );
            }
            if let Some(slash) = node.path.iter().rposition(|b| *b == b'/') {
                ensure!(
                    matches!(seen.get(&node.path[..slash]), Some(Kind::Dir)),
                    "{shown}: parent is not an earlier directory"
                );
            }
            ensure!(
                !seen.contains_key(node.path.as_slice()),
                "{shown}: duplicate path"
            );
            ensure!(
                (0..=MAX_MTIME).contains(&node.mtime),
                "{shown}: mtime out of range"
            );
            match &node.kind {
                Kind::File {
                    size, data, zeros, ..
                } => {
                    let mut runs: Vec<(u64, u64)> = data.iter().chain(zeros).copied().collect();
                    ensure!(
                        data.is_sorted() && zeros.is_sorted(),
                        "{shown}: runs not sorted"
                    );
                    runs.sort_unstable();
                    let mut end = 0;
                    for &(off, len) in &runs {
                        ensure!(
                            len > 0 && off >= end,
                            "{shown}: data runs overlap or are empty"
                        );
                        ensure!(off % PAGE == 0, "{shown}: data run not page aligned");
                        let run_end = off.checked_add(len).context("overflow")?;
                        ensure!(run_end <= *size, "{shown}: data past end of file");
                        ensure!(
                            run_end % PAGE == 0 || run_end == *size,
                            "{shown}: data run does not end on a page or at end of file"
                        );
                        end = run_end;
                    }
                }
                Kind::HardLink { to } => match seen.get(to.as_slice()) {
                    Some(Kind::Dir | Kind::HardLink { .. }) | None => {
                        bail!("{shown}: hard link to a missing, directory or hard-link entry")
                    }
                    Some(_) => {}
                },
                Kind::Symlink { target } => {
                    ensure!(
                        !target.is_empty() && target.len() < 4096 && !target.contains(&0),
                        "{shown}: bad symlink target"
                    );
                }
                _ => {}
            }
            seen.insert(&node.path, &node.kind);
        }
        Ok(())
    }

    /// The number of bytes the files' data and zero runs hold (hard links counted once).
    #[must_use]
    pub fn data_bytes(&self) -> u64 {
        self.nodes
            .iter()
            .map(|n| match &n.kind {
                Kind::File { data, zeros, .. } => data.iter().chain(zeros).map(|r| r.1).sum(),
                _ => 0,
            })
            .sum()
    }
}

fn seed_of(path: &[u8]) -> u64 {
    path.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x1000_0000_01b3)
    })
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Fills `buf` with the data of a file with `seed` at `offset`: pseudo-random, never zero,
/// different for every 8-byte word, so a block read from the wrong place is noticed.
pub fn fill(seed: u64, offset: u64, buf: &mut [u8]) {
    for (i, b) in buf.iter_mut().enumerate() {
        let pos = offset + i as u64;
        let word = splitmix(seed ^ splitmix(pos / 8));
        let byte = word.to_le_bytes()[(pos % 8) as usize];
        *b = if byte == 0 { 0x5a } else { byte };
    }
}

/// How [`materialize`] writes a tree.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Variant {
    /// Create non-directory entries in reverse order (so directories list them differently).
    pub reverse: bool,
    /// Added to every entry's mtime to get its atime.
    pub atime_offset: i64,
}

/// Writes `spec` into the new directory `root` (which must not exist; its parent must).
pub fn materialize(spec: &Spec, root: &Path, variant: Variant) -> Result<()> {
    spec.validate()?;
    fs::create_dir(root).with_context(|| format!("create {}", root.display()))?;
    let at = |p: &[u8]| root.join(OsStr::from_bytes(p));

    for node in spec.nodes.iter().filter(|n| n.kind == Kind::Dir) {
        let path = at(&node.path);
        fs::create_dir(&path).with_context(|| format!("mkdir {}", path.display()))?;
    }
    let mut others: Vec<&Node> = spec
        .nodes
        .iter()
        .filter(|n| !matches!(n.kind, Kind::Dir | Kind::HardLink { .. }))
        .collect();
    if variant.reverse {
        others.reverse();
    }
    let root_dir = File::open(root).with_context(|| format!("open {}", root.display()))?;
    for (i, node) in others.iter().enumerate() {
        create(root, &root_dir, i, node)
            .with_context(|| format!("create {}", at(&node.path).display()))?;
    }
    for node in &spec.nodes {
        if let Kind::HardLink { to } = &node.kind {
            fs::hard_link(at(to), at(&node.path))
                .with_context(|| format!("link {}", at(&node.path).display()))?;
        }
    }
    for node in &others {
        set_attributes(&at(&node.path), node, variant)?;
    }
    // Directories last and deepest first: creating entries changes a directory's mtime.
    let mut dirs: Vec<&Node> = spec.nodes.iter().filter(|n| n.kind == Kind::Dir).collect();
    dirs.sort_by_key(|n| std::cmp::Reverse(n.path.iter().filter(|b| **b == b'/').count()));
    for node in dirs {
        set_attributes(&at(&node.path), node, variant)?;
    }
    let root_node = Node {
        path: Vec::new(),
        kind: Kind::Dir,
        perm: spec.root_perm,
        mtime: spec.root_mtime,
        uid: 0,
        gid: 0,
    };
    set_attributes(root, &root_node, variant)
}

fn create(root: &Path, root_dir: &File, index: usize, node: &Node) -> Result<()> {
    use rustix::fs::{FileType, Mode, makedev, mknodat};
    use std::os::fd::AsFd as _;

    let path = root.join(OsStr::from_bytes(&node.path));
    let mode = Mode::from_raw_mode(0o600);
    match &node.kind {
        Kind::File {
            size,
            data,
            zeros,
            seed,
        } => {
            let file = File::create(&path)?;
            file.set_len(*size)?;
            let mut buf = vec![0u8; 1 << 20];
            let runs = data
                .iter()
                .map(|r| (r, true))
                .chain(zeros.iter().map(|r| (r, false)));
            for (&(off, len), is_data) in runs {
                let mut done = 0;
                while done < len {
                    let n = (len - done).min(buf.len() as u64) as usize;
                    if is_data {
                        fill(*seed, off + done, &mut buf[..n]);
                    } else {
                        buf[..n].fill(0);
                    }
                    file.write_all_at(&buf[..n], off + done)?;
                    done += n as u64;
                }
            }
        }
        Kind::Symlink { target } => std::os::unix::fs::symlink(OsStr::from_bytes(target), &path)?,
        Kind::Fifo => mknodat(rustix::fs::CWD, &path, FileType::Fifo, mode, 0)?,
        Kind::CharDev { major, minor } => {
            mknodat(
                rustix::fs::CWD,
                &path,
                FileType::CharacterDevice,
                mode,
                makedev(*major, *minor),
            )?;
        }
        Kind::BlockDev { major, minor } => {
            mknodat(
                rustix::fs::CWD,
                &path,
                FileType::BlockDevice,
                mode,
                makedev(*major, *minor),
            )?;
        }
        Kind::Socket => {
            // bind(2) takes at most 108 bytes of path: bind under a short name reached through
            // the root's file descriptor, then move the socket into place.
            let short = format!(".glick-sock-{index}");
            let fd_path = format!(
                "/proc/self/fd/{}/{short}",
                std::os::fd::AsRawFd::as_raw_fd(&root_dir.as_fd())
            );
            let listener = std::os::unix::net::UnixListener::bind(&fd_path)?;
            drop(listener);
            fs::rename(root.join(&short), &path)?;
        }
        Kind::Dir | Kind::HardLink { .. } => bail!("not created here"),
    }
    Ok(())
}

fn set_attributes(path: &Path, node: &Node, variant: Variant) -> Result<()> {
    // Owner first: chown clears the setuid and setgid bits.
    std::os::unix::fs::lchown(path, Some(node.uid), Some(node.gid))
        .with_context(|| format!("chown {}", path.display()))?;
    if !matches!(node.kind, Kind::Symlink { .. }) {
        fs::set_permissions(path, fs::Permissions::from_mode(node.perm))
            .with_context(|| format!("chmod {}", path.display()))?;
    }
    let mtime = FileTime::from_unix_time(node.mtime, 0);
    let atime = FileTime::from_unix_time(node.mtime + variant.atime_offset, 0);
    filetime::set_symlink_file_times(path, atime, mtime)
        .with_context(|| format!("set times of {}", path.display()))
}

/// A named case: a tree and the image block sizes to build it with.
#[derive(Clone, Debug)]
pub struct Case {
    /// Name (used in messages and temporary directory names).
    pub name: String,
    /// The tree.
    pub spec: Spec,
    /// `None` = let the writer choose.
    pub block_size: Option<u32>,
}

/// Every block size the issue asks boundary cases for.
pub const BLOCK_SIZES: [u32; 3] = [1024, 2048, 4096];

/// Named cases.
pub mod cases {
    use super::*;

    /// Nothing but the root directory.
    #[must_use]
    pub fn empty() -> Spec {
        Spec::new()
    }

    /// Empty files and directories, alone and nested.
    #[must_use]
    pub fn empty_files() -> Spec {
        let mut s = Spec::new();
        for i in 0..20 {
            s.dense(format!("empty-{i:02}"), 0);
        }
        s.dir("empty-dir");
        s.dir("a/b/c/d");
        s.dense("a/b/empty", 0);
        s.dense("a/b/c/d/empty", 0);
        s
    }

    /// Symlink targets around the fast/slow limit (60 bytes: the size of `i_block`) and up to
    /// `max` bytes (a symlink target must be shorter than one block).
    #[must_use]
    pub fn symlink_lengths(max: usize) -> Spec {
        let mut s = Spec::new();
        for len in [1usize, 2, 58, 59, 60, 61, 200, 1023, 2047, 4000, 4095] {
            if len <= max {
                s.symlink(format!("len-{len:04}"), target_of_len(len));
            }
        }
        s.symlink("dangling", "does/not/exist");
        s.symlink("absolute", "/etc/passwd");
        s.symlink("dot", ".");
        s.symlink("non-utf8", b"\xff\xfe/\x80");
        s
    }

    /// A symlink target of exactly `len` bytes that looks like a path.
    #[must_use]
    pub fn target_of_len(len: usize) -> Vec<u8> {
        let mut t: Vec<u8> = b"../some/where/"
            .iter()
            .copied()
            .cycle()
            .take(len)
            .collect();
        if let Some(last) = t.last_mut() {
            *last = b'x';
        }
        t
    }

    /// Every kind of entry a Linux tree holds.
    #[must_use]
    pub fn entry_kinds() -> Spec {
        let mut s = symlink_lengths(4000);
        s.dense("file", 5000);
        s.dir("dir");
        s.symlink("dir/to-file", "../file");
        s.symlink("to-dir", "dir");
        // Three names, one inode, across directories.
        s.dense("links/a/original", 3000);
        s.hard_link("links/b/second", "links/a/original");
        s.hard_link("links/third", "links/a/original");
        // Hard links to an empty file, a symlink, a fifo and a device.
        s.dense("links/empty", 0);
        s.hard_link("links/empty-2", "links/empty");
        s.symlink("links/sym", "original");
        s.hard_link("links/sym-2", "links/sym");
        s.add("fifo", Kind::Fifo);
        s.hard_link("links/fifo-2", "fifo");
        s.add("null", Kind::CharDev { major: 1, minor: 3 });
        s.add(
            "tty-like",
            Kind::CharDev {
                major: 4,
                minor: 64,
            },
        );
        s.add(
            "char-big",
            Kind::CharDev {
                major: 4095,
                minor: 1_048_575,
            },
        );
        s.add(
            "char-mid",
            Kind::CharDev {
                major: 300,
                minor: 70_000,
            },
        );
        s.hard_link("links/null-2", "null");
        s.add("loop0", Kind::BlockDev { major: 7, minor: 0 });
        s.add("sda1", Kind::BlockDev { major: 8, minor: 1 });
        s.add(
            "nvme",
            Kind::BlockDev {
                major: 259,
                minor: 256,
            },
        );
        s.add("socket", Kind::Socket);
        s
    }

    /// Dense files whose sizes sit on (and one byte either side of) the block, direct →
    /// indirect and indirect → double-indirect boundaries of `block_size`.
    #[must_use]
    pub fn block_boundaries(block_size: u32) -> Spec {
        let bs = u64::from(block_size);
        let per = bs / 4;
        let mut s = Spec::new();
        let mut sizes = BTreeSet::new();
        for blocks in [1, 2, 12, 12 + per] {
            for delta in [-1i64, 0, 1] {
                sizes.insert((blocks * bs).saturating_add_signed(delta));
            }
        }
        sizes.insert(0);
        sizes.insert(1);
        for size in sizes {
            s.dense(format!("size-{size:09}"), size);
        }
        s
    }

    /// Holes at the start, in the middle, at the end, a file that is all hole, a hole over a
    /// whole indirect block's range, over a whole double-indirect child's range, and data just
    /// around the double- and triple-indirect boundaries.
    #[must_use]
    pub fn holes(block_size: u32) -> Spec {
        let bs = u64::from(block_size);
        let per = bs / 4;
        let ind = 12 * bs; // first byte mapped through the indirect block
        let dind = (12 + per) * bs; // first byte mapped through the double-indirect block
        let tind = (12 + per + per * per) * bs; // ... triple-indirect block
        let mut s = Spec::new();
        s.sparse("hole-start", 3 * PAGE + 100, &[(2 * PAGE, PAGE + 100)]);
        s.sparse("hole-middle", 5 * PAGE, &[(0, PAGE), (4 * PAGE, PAGE)]);
        s.sparse("hole-end", 1_000_000, &[(0, 2 * PAGE)]);
        s.sparse("all-hole", 3_000_000, &[]);
        s.sparse("all-hole-small", 1, &[]);
        s.sparse("data-in-indirect-only", dind, &[(ind, PAGE)]);
        // Data before and after the indirect range, none inside: no indirect block.
        s.sparse(
            "hole-whole-indirect",
            dind + PAGE,
            &[(0, ind), (dind, PAGE)],
        );
        // The first double-indirect child's range is a hole; data in the second.
        s.sparse(
            "hole-whole-dind-child",
            dind + 2 * per * bs,
            &[(0, PAGE), (dind + per * bs, 2 * PAGE)],
        );
        s.sparse("around-dind", dind + PAGE, &[(dind - PAGE, 2 * PAGE)]);
        s.sparse(
            "around-tind",
            tind + 2 * PAGE + 7,
            &[(tind - PAGE, 3 * PAGE + 7)],
        );
        s.sparse("one-byte-at-end", 10 * PAGE + 1, &[(10 * PAGE, 1)]);
        s
    }

    /// Zeros written out (allocated in the source), which an image stores as holes: a file of
    /// nothing but zeros, a zero page between data pages, a zero tail, zeros over exactly the
    /// range one indirect block maps (so that indirect block must not exist), and zeros next
    /// to source holes.
    #[must_use]
    pub fn zeros(block_size: u32) -> Spec {
        let bs = u64::from(block_size);
        let per = bs / 4;
        let ind = 12 * bs;
        let dind = (12 + per) * bs;
        let mut s = Spec::new();
        s.with_zeros("all-zeros", 5 * PAGE + 100, &[], &[(0, 5 * PAGE + 100)]);
        s.with_zeros("all-zeros-small", 10, &[], &[(0, 10)]);
        s.with_zeros(
            "zero-between",
            3 * PAGE,
            &[(0, PAGE), (2 * PAGE, PAGE)],
            &[(PAGE, PAGE)],
        );
        s.with_zeros(
            "zero-tail",
            5 * PAGE + 500,
            &[(0, 2 * PAGE)],
            &[(2 * PAGE, 3 * PAGE + 500)],
        );
        s.with_zeros(
            "zeros-whole-indirect",
            dind + PAGE,
            &[(0, ind), (dind, PAGE)],
            &[(ind, dind - ind)],
        );
        s.with_zeros(
            "zeros-and-holes",
            10 * PAGE,
            &[(3 * PAGE, PAGE)],
            &[(PAGE, PAGE), (6 * PAGE, PAGE)],
        );
        s.dense("dense", 3 * PAGE + 1);
        s
    }

    /// A 5 GiB sparse file with data at the start, at 1 GiB, across 4 GiB and at the end.
    #[must_use]
    pub fn sparse_5gib() -> Spec {
        const GIB: u64 = 1 << 30;
        let mut s = Spec::new();
        s.sparse(
            "five-gib",
            5 * GIB,
            &[
                (0, 16 * PAGE),
                (GIB, PAGE),
                (4 * GIB - PAGE, 2 * PAGE),
                (5 * GIB - PAGE, PAGE),
            ],
        );
        s.sparse("just-over-4gib", 4 * GIB + 1, &[(4 * GIB, 1)]);
        s.dense("small", 10);
        s
    }

    /// Names that are not UTF-8, that hold odd bytes, and that are 255 bytes long.
    #[must_use]
    pub fn names() -> Spec {
        let mut s = Spec::new();
        let long_ascii = vec![b'n'; 255];
        let mut long_utf8 = "é".repeat(127).into_bytes();
        long_utf8.push(b'!');
        let long_binary: Vec<u8> = (0..255u32).map(|i| 0x80 + (i % 0x7f) as u8).collect();
        for name in [
            b"\xff".to_vec(),
            b"\xff\xfe\xfd".to_vec(),
            b"caf\xe9".to_vec(),
            b"\x01".to_vec(),
            b"\x7f".to_vec(),
            b"new\nline".to_vec(),
            b"tab\there".to_vec(),
            b"back\\slash".to_vec(),
            b" leading space".to_vec(),
            b"trailing space ".to_vec(),
            b"-dash".to_vec(),
            b".hidden".to_vec(),
            b"...".to_vec(),
            b"a".to_vec(),
            b"aa".to_vec(),
            b"aaa".to_vec(),
            "日本語".as_bytes().to_vec(),
            long_ascii.clone(),
            long_utf8.clone(),
            long_binary.clone(),
        ] {
            s.dense(&name, name.len() as u64);
        }
        let mut dir = long_binary.clone();
        dir[0] = b'D';
        let mut deep = dir.clone();
        deep.push(b'/');
        deep.extend_from_slice(&long_ascii);
        s.dense(&deep, 3);
        let mut link = dir.clone();
        link.push(b'/');
        link.extend_from_slice(&long_utf8);
        s.symlink(&link, &long_binary);
        let mut sub = dir;
        sub.extend_from_slice(b"/\xc0\xc1");
        s.dir(&sub);
        s
    }

    /// One directory with `count` entries (mostly empty files, some with data, some links).
    #[must_use]
    pub fn wide_dir(count: usize) -> Spec {
        let mut s = Spec::new();
        s.dir("wide");
        for i in 0..count.saturating_sub(3) {
            let path = format!("wide/entry-{i:06}");
            if i % 10_000 == 1 {
                s.dense(&path, 100 + i as u64);
            } else {
                s.dense(&path, 0);
            }
        }
        s.symlink("wide/zz-symlink", "entry-000001");
        s.hard_link("wide/zz-hardlink", "wide/entry-000001");
        s.dir("wide/zz-subdir");
        s.dense("wide/zz-subdir/inside", 10);
        s
    }

    /// Directories nested `depth` levels deep, with a file at the bottom.
    #[must_use]
    pub fn deep(depth: usize) -> Spec {
        let mut s = Spec::new();
        let mut path = Vec::new();
        for level in 0..depth {
            if level > 0 {
                path.push(b'/');
            }
            path.push(b'd');
            s.dir(&path);
            if level % 100 == 0 {
                let mut side = path.clone();
                side.extend_from_slice(b"/side-file");
                // Inserted later than its directory: fine, parents only need to come first.
                s.dense(&side, level as u64);
            }
        }
        path.extend_from_slice(b"/bottom");
        s.dense(&path, 12345);
        s.symlink("to-bottom", &path);
        s
    }

    /// Setuid, setgid, sticky, 0000, 0777, 07777 and friends, on files and directories.
    #[must_use]
    pub fn permissions() -> Spec {
        let mut s = Spec::new();
        s.root_perm = 0o700;
        for perm in [
            0o4755, 0o2755, 0o1755, 0o6711, 0o7777, 0o0000, 0o0777, 0o0400, 0o0111, 0o0644,
        ] {
            s.dense(format!("file-{perm:04o}"), 10).perm = perm;
            s.dir(format!("dir-{perm:04o}")).perm = perm;
            s.add(format!("fifo-{perm:04o}"), Kind::Fifo).perm = perm;
        }
        s.dir("sticky-tmp").perm = 0o1777;
        s.dense("sticky-tmp/inside", 1).perm = 0o600;
        s.dir("closed").perm = 0;
        s.dense("closed/hidden", 5).perm = 0;
        s.add("closed/dev", Kind::CharDev { major: 1, minor: 5 })
            .perm = 0o4666;
        s
    }

    /// Mtimes from 1970 to 2038 on every kind of entry.
    #[must_use]
    pub fn mtimes() -> Spec {
        let mut s = Spec::new();
        s.root_mtime = 1;
        let times = [
            0,
            1,
            59,
            86_399,
            1_000_000_000,
            1_234_567_890,
            2_000_000_000,
            MAX_MTIME - 1,
            MAX_MTIME,
        ];
        for t in times {
            s.dense(format!("file-{t}"), 1).mtime = t;
            s.dir(format!("dir-{t}")).mtime = t;
            s.symlink(format!("link-{t}"), "target").mtime = t;
            s.add(format!("fifo-{t}"), Kind::Fifo).mtime = t;
            s.add(format!("dev-{t}"), Kind::BlockDev { major: 1, minor: 2 })
                .mtime = t;
        }
        s
    }

    /// Owners and groups, including ones that need the high 16 bits of the inode fields.
    #[must_use]
    pub fn owners() -> Spec {
        let mut s = Spec::new();
        let ids = [
            (0, 0),
            (1, 2),
            (1000, 1000),
            (65_534, 65_534),
            (65_535, 0),
            (65_536, 65_537),
            (70_000, 80_000),
            (4_294_967_294, 4_000_000_000),
        ];
        for (uid, gid) in ids {
            let n = s.dense(format!("file-{uid}-{gid}"), 3);
            n.uid = uid;
            n.gid = gid;
            n.perm = 0o6755;
            let n = s.dir(format!("dir-{uid}-{gid}"));
            n.uid = uid;
            n.gid = gid;
            let n = s.symlink(format!("link-{uid}-{gid}"), "x");
            n.uid = uid;
            n.gid = gid;
        }
        s
    }

    /// Something like an application directory: executables, libraries with version symlinks,
    /// data files of assorted sizes.
    #[must_use]
    pub fn app_like() -> Spec {
        let mut s = Spec::new();
        s.dense("start", 120).perm = 0o755;
        s.dense("bin/app", 300_000).perm = 0o755;
        s.dense("lib/libfoo.so.1.2.3", 150_000).perm = 0o755;
        s.symlink("lib/libfoo.so.1", "libfoo.so.1.2.3");
        s.symlink("lib/libfoo.so", "libfoo.so.1");
        for i in 0..200u64 {
            s.dense(
                format!("share/app/data/{:03}/item-{i}.txt", i % 17),
                (i * 997) % 20_000,
            );
        }
        s.dense("share/icons/app.png", 4096);
        s.sparse(
            "var/cache.db",
            2_000_000,
            &[(0, PAGE), (1_000_000 / PAGE * PAGE, 3 * PAGE)],
        );
        for (i, n) in s.nodes.iter_mut().enumerate() {
            n.mtime = 1_500_000_000 + (i as i64) * 3_600;
        }
        s
    }
}

/// Every named case at the block sizes the issue asks for, small enough for the per-case
/// oracle battery (the big ones, 5 GiB, 100,000 entries, 500 levels, have their own tests).
#[must_use]
pub fn standard_cases() -> Vec<Case> {
    let mut all = vec![
        case("empty", cases::empty(), None),
        case("empty-files", cases::empty_files(), None),
        case("entry-kinds", cases::entry_kinds(), None),
        case("names", cases::names(), None),
        case("permissions", cases::permissions(), None),
        case("mtimes", cases::mtimes(), None),
        case("owners", cases::owners(), None),
        case("app-like", cases::app_like(), None),
    ];
    for bs in BLOCK_SIZES {
        all.push(case(
            &format!("block-boundaries-{bs}"),
            cases::block_boundaries(bs),
            Some(bs),
        ));
        all.push(case(&format!("holes-{bs}"), cases::holes(bs), Some(bs)));
        all.push(case(
            &format!("symlinks-{bs}"),
            cases::symlink_lengths(bs as usize - 1),
            Some(bs),
        ));
    }
    all
}

fn case(name: &str, spec: Spec, block_size: Option<u32>) -> Case {
    Case {
        name: name.to_owned(),
        spec,
        block_size,
    }
}

/// Parameters of random trees.
#[derive(Clone, Copy, Debug)]
pub struct RandomParams {
    /// At most this many entries.
    pub max_entries: usize,
    /// Largest file size (sparse files may be this big; dense ones are smaller).
    pub max_file_size: u64,
    /// Largest symlink target (keep below 1024 for trees imaged with 1 KiB blocks).
    pub max_target: usize,
    /// Write zero pages among the data of some dense files. Off by default: an image stores
    /// them as holes, so a tree copied out of an image is sparser than its source.
    pub zero_pages: bool,
}

impl Default for RandomParams {
    fn default() -> Self {
        RandomParams {
            max_entries: 40,
            max_file_size: 80 << 20,
            max_target: 300,
            zero_pages: false,
        }
    }
}

#[derive(Clone, Debug)]
struct RawNode {
    parent: usize,
    name: Vec<u8>,
    kind: u8,
    size_class: u8,
    size: u64,
    runs: Vec<(u64, u8)>,
    target: Vec<u8>,
    perm: u32,
    mtime: i64,
    owner: u8,
    link: usize,
    major: u32,
    minor: u32,
}

fn raw_name() -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![
        6 => prop::sample::select(b"abcdefghijklmnopqrstuvwxyz0123456789._-".to_vec()),
        1 => (1u8..=255).prop_filter("no slash", |b| *b != b'/'),
    ];
    prop_oneof![
        12 => prop::collection::vec(byte.clone(), 1..=12),
        1 => prop::collection::vec(byte, 200..=255),
    ]
}

fn raw_node(p: RandomParams) -> impl Strategy<Value = RawNode> {
    let target_byte = (1u8..=255).boxed();
    (
        (
            any::<usize>(),
            raw_name(),
            0u8..100,
            0u8..4,
            0..=p.max_file_size,
        ),
        prop::collection::vec((any::<u64>(), 1u8..=8), 0..4),
        prop::collection::vec(target_byte, 1..=p.max_target),
        (0u32..=0o7777, 0..=MAX_MTIME, any::<u8>(), any::<usize>()),
        (0u32..4096, 0u32..(1 << 20)),
    )
        .prop_map(
            |(
                (parent, name, kind, size_class, size),
                runs,
                target,
                (perm, mtime, owner, link),
                (major, minor),
            )| {
                RawNode {
                    parent,
                    name,
                    kind,
                    size_class,
                    size,
                    runs,
                    target,
                    perm,
                    mtime,
                    owner,
                    link,
                    major,
                    minor,
                }
            },
        )
}

/// Random trees: names of any bytes but `/` and NUL (some 200-255 bytes long), every kind of
/// entry, hard links, sparse and dense files, any permission bits, mtimes and owners.
/// Shrinks towards fewer and simpler entries.
pub fn spec_strategy(p: RandomParams) -> impl Strategy<Value = Spec> {
    (
        prop::collection::vec(raw_node(p), 0..=p.max_entries),
        0u32..=0o7777,
        0..=MAX_MTIME,
    )
        .prop_map(move |(raw, root_perm, root_mtime)| build_random(&raw, root_perm, root_mtime, p))
}

fn build_random(raw: &[RawNode], root_perm: u32, root_mtime: i64, p: RandomParams) -> Spec {
    const OWNERS: [(u32, u32); 5] = [
        (0, 0),
        (1000, 1000),
        (65_534, 100),
        (70_000, 5),
        (3, 200_000),
    ];
    let mut spec = Spec {
        root_perm,
        root_mtime,
        nodes: Vec::new(),
    };
    let mut dirs: Vec<Vec<u8>> = vec![Vec::new()];
    let mut names: BTreeSet<Vec<u8>> = BTreeSet::new();
    let mut linkable: Vec<Vec<u8>> = Vec::new();
    for r in raw {
        let parent = dirs[r.parent % dirs.len()].clone();
        let mut name: Vec<u8> = r
            .name
            .iter()
            .copied()
            .filter(|b| *b != b'/' && *b != 0)
            .collect();
        if name.is_empty() || name == b"." || name == b".." {
            name.push(b'_');
        }
        name.truncate(255);
        let mut path = parent.clone();
        if !path.is_empty() {
            path.push(b'/');
        }
        let mut candidate = [path.as_slice(), &name].concat();
        let mut n = 0u32;
        while names.contains(&candidate) {
            let suffix = format!("~{n}");
            name.truncate(255 - suffix.len());
            candidate = [path.as_slice(), &name, suffix.as_bytes()].concat();
            n += 1;
        }
        let path = candidate;
        let (uid, gid) = OWNERS[usize::from(r.owner) % OWNERS.len()];
        let kind = match r.kind {
            0..40 => {
                let size = match r.size_class {
                    0 => 0,
                    1 => r.size % 10_000,
                    2 => r.size % 300_000,
                    _ => r.size,
                };
                let dense = r.size_class < 3 && r.runs.len() % 2 == 0;
                // Some dense files have zero pages written among their data.
                let (data, zeros) =
                    if p.zero_pages && dense && !r.runs.is_empty() && r.mtime % 2 == 0 {
                        let zeros = random_runs(size, &r.runs);
                        (complement(&zeros, size), zeros)
                    } else if dense {
                        let data = if size == 0 {
                            Vec::new()
                        } else {
                            vec![(0, size)]
                        };
                        (data, Vec::new())
                    } else {
                        (random_runs(size, &r.runs), Vec::new())
                    };
                Kind::File {
                    size,
                    data,
                    zeros,
                    seed: r.size ^ r.mtime as u64,
                }
            }
            40..60 => Kind::Dir,
            // A '/' at least every 128 bytes: ext4-view refuses targets with a component longer
            // than 255 bytes (Linux stores them, but they can't name anything).
            60..75 => Kind::Symlink {
                target: r
                    .target
                    .iter()
                    .enumerate()
                    .map(|(i, b)| if i % 128 == 127 { b'/' } else { *b })
                    .filter(|b| *b != 0)
                    .take(p.max_target)
                    .collect(),
            },
            75..85 if !linkable.is_empty() => Kind::HardLink {
                to: linkable[r.link % linkable.len()].clone(),
            },
            75..85 => Kind::Fifo,
            85..89 => Kind::Fifo,
            89..93 => Kind::CharDev {
                major: r.major,
                minor: r.minor,
            },
            93..96 => Kind::BlockDev {
                major: r.major,
                minor: r.minor,
            },
            _ => Kind::Socket,
        };
        let kind = match kind {
            Kind::Symlink { target } if target.is_empty() => Kind::Symlink {
                target: b"t".to_vec(),
            },
            k => k,
        };
        match kind {
            Kind::Dir => dirs.push(path.clone()),
            Kind::HardLink { .. } => {}
            _ => linkable.push(path.clone()),
        }
        names.insert(path.clone());
        spec.nodes.push(Node {
            path,
            kind,
            perm: r.perm,
            mtime: r.mtime,
            uid,
            gid,
        });
    }
    spec
}

fn random_runs(size: u64, runs: &[(u64, u8)]) -> Vec<(u64, u64)> {
    let pages = size.div_ceil(PAGE);
    if pages == 0 {
        return Vec::new();
    }
    let mut marked: BTreeSet<u64> = BTreeSet::new();
    for &(at, len) in runs {
        let start = at % pages;
        for page in start..(start + u64::from(len)).min(pages) {
            marked.insert(page);
        }
    }
    let mut out: Vec<(u64, u64)> = Vec::new();
    for page in marked {
        let off = page * PAGE;
        let len = PAGE.min(size - off);
        match out.last_mut() {
            Some(last) if last.0 + last.1 == off => last.1 += len,
            _ => out.push((off, len)),
        }
    }
    out
}

/// The runs of `0..size` not in the sorted, disjoint `runs`.
fn complement(runs: &[(u64, u64)], size: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut at = 0;
    for &(off, len) in runs {
        if off > at {
            out.push((at, off - at));
        }
        at = off + len;
    }
    if at < size {
        out.push((at, size - at));
    }
    out
}

/// One random tree, the same for the same seed.
#[must_use]
pub fn random_spec(seed: u64, params: RandomParams) -> Spec {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &key);
    let mut runner = TestRunner::new_with_rng(Config::default(), rng);
    match spec_strategy(params).new_tree(&mut runner) {
        Ok(tree) => tree.current(),
        // The strategy has no filters that can reject a whole tree; keep the API total anyway.
        Err(_) => Spec::new(),
    }
}

/// A directory holding a materialized tree, deleted on drop.
#[derive(Debug)]
pub struct TempTree {
    /// Keeps the directory alive.
    pub dir: tempfile::TempDir,
    /// The tree's root (inside `dir`).
    pub root: PathBuf,
}

impl TempTree {
    /// Materializes `spec` in a fresh temporary directory.
    pub fn new(spec: &Spec, variant: Variant) -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("glick-tree-").tempdir()?;
        let root = dir.path().join("root");
        materialize(spec, &root, variant)?;
        Ok(TempTree { dir, root })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_cases_are_valid() {
        for case in standard_cases() {
            case.spec
                .validate()
                .unwrap_or_else(|e| panic!("{}: {e:#}", case.name));
        }
        for spec in [
            cases::zeros(1024),
            cases::zeros(2048),
            cases::zeros(4096),
            cases::sparse_5gib(),
            cases::wide_dir(1000),
            cases::deep(500),
        ] {
            spec.validate().expect("valid spec");
        }
    }

    #[test]
    fn random_specs_are_valid_and_seeded() {
        let zeros = RandomParams {
            zero_pages: true,
            ..RandomParams::default()
        };
        let mut zero_runs = 0;
        for seed in 0..200 {
            let spec = random_spec(seed, RandomParams::default());
            spec.validate()
                .unwrap_or_else(|e| panic!("seed {seed}: {e:#}"));
            assert_eq!(spec, random_spec(seed, RandomParams::default()));
            let spec = random_spec(seed, zeros);
            spec.validate()
                .unwrap_or_else(|e| panic!("seed {seed} with zero pages: {e:#}"));
            for n in &spec.nodes {
                if let Kind::File { zeros, .. } = &n.kind {
                    zero_runs += zeros.len();
                }
            }
        }
        assert!(zero_runs > 50, "random trees hold {zero_runs} zero runs");
    }

    #[test]
    fn fill_never_writes_zero() {
        let mut buf = vec![0u8; 100_000];
        fill(7, 12_345, &mut buf);
        assert!(buf.iter().all(|b| *b != 0));
        let mut part = vec![0u8; 10];
        fill(7, 12_345 + 500, &mut part);
        assert_eq!(part, buf[500..510]);
    }
}
