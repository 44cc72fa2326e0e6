//! What a reader sees of a tree ([`Snapshot`]), what an image of a source tree must show
//! ([`Expected`]), and the comparisons between them (metadata, allocation, contents).
//!
//! Every reader under test (the kernel through a mount, our reader, ext4-view) is a [`View`]:
//! it makes a snapshot and opens files for reading at an offset. The comparison functions
//! return the list of differences; [`assert_no_diffs`] turns a non-empty list into a failure
//! message that names the reader and the paths.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::{FileExt as _, FileTypeExt as _, MetadataExt as _};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};

/// The type of an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// Regular file.
    File,
    /// Directory.
    Dir,
    /// Symbolic link.
    Symlink,
    /// Character device.
    CharDev,
    /// Block device.
    BlockDev,
    /// Named pipe.
    Fifo,
    /// Unix socket.
    Socket,
}

impl Kind {
    /// The kind of a `st_mode`.
    #[must_use]
    pub fn from_mode(mode: u32) -> Option<Kind> {
        Some(match mode & 0o170_000 {
            0o100_000 => Kind::File,
            0o040_000 => Kind::Dir,
            0o120_000 => Kind::Symlink,
            0o020_000 => Kind::CharDev,
            0o060_000 => Kind::BlockDev,
            0o010_000 => Kind::Fifo,
            0o140_000 => Kind::Socket,
            _ => return None,
        })
    }

    /// The kind std reports (lstat or `d_type`).
    #[must_use]
    pub fn from_std(t: fs::FileType) -> Option<Kind> {
        Some(if t.is_file() {
            Kind::File
        } else if t.is_dir() {
            Kind::Dir
        } else if t.is_symlink() {
            Kind::Symlink
        } else if t.is_char_device() {
            Kind::CharDev
        } else if t.is_block_device() {
            Kind::BlockDev
        } else if t.is_fifo() {
            Kind::Fifo
        } else if t.is_socket() {
            Kind::Socket
        } else {
            return None;
        })
    }

    /// Devices carry a device number.
    #[must_use]
    pub fn is_device(self) -> bool {
        matches!(self, Kind::CharDev | Kind::BlockDev)
    }
}

/// Half-open ranges `[start, end)`, sorted, disjoint and not touching.
pub type Ranges = Vec<(u64, u64)>;

/// What one reader reports for one entry. `None` = this reader can't tell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The type.
    pub kind: Kind,
    /// `mode & 0o7777`.
    pub perm: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// `st_size`.
    pub size: u64,
    /// Link count.
    pub nlink: Option<u64>,
    /// Modification time, seconds.
    pub mtime: i64,
    /// (major, minor) for devices.
    pub rdev: Option<(u32, u32)>,
    /// Symlink target.
    pub target: Option<Vec<u8>>,
    /// Inode number.
    pub ino: Option<u64>,
    /// `st_blocks` (512-byte units).
    pub blocks: Option<u64>,
    /// Allocated blocks of a regular file, as ranges of logical block numbers.
    pub alloc: Option<Ranges>,
}

/// A whole tree as one reader sees it: relative path (bytes, `/`-joined; the root is empty)
/// to entry.
pub type Snapshot = BTreeMap<Vec<u8>, Entry>;

/// A path for messages.
#[must_use]
pub fn show(path: &[u8]) -> String {
    if path.is_empty() {
        "/".to_owned()
    } else {
        format!("/{}", path.escape_ascii())
    }
}

fn join(parent: &[u8], name: &[u8]) -> Vec<u8> {
    if parent.is_empty() {
        name.to_vec()
    } else {
        [parent, b"/", name].concat()
    }
}

/// A random-access reader of one file's bytes.
pub trait FileReader {
    /// Reads at `offset`; may return fewer bytes only at end of file.
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize>;
}

/// A reader of a whole tree.
pub trait View {
    /// Names the reader in messages ("kernel", "glick_ext2", "ext4-view", ...).
    fn name(&self) -> String;
    /// Walks the tree.
    fn snapshot(&self) -> Result<Snapshot>;
    /// Opens the regular file at `path` (an entry of this view's snapshot).
    fn open(&self, path: &[u8], entry: &Entry) -> Result<Box<dyn FileReader + '_>>;
    /// Whether a short read before end of file is a failure (it is for `pread` and our
    /// reader; ext4-view documents that its reads may be short).
    fn strict_reads(&self) -> bool {
        true
    }
}

/// A directory of the host: the source tree, or an image mounted by the kernel.
#[derive(Debug, Clone)]
pub struct HostView {
    /// The root directory.
    pub root: PathBuf,
    /// Name for messages.
    pub label: String,
    /// Leave out (and check) the root's `lost+found`: a mounted image has one, the source
    /// tree doesn't.
    pub image_root: bool,
    /// Report allocation (`SEEK_DATA`/`SEEK_HOLE`) in blocks of this size.
    pub alloc_block_size: Option<u64>,
}

impl HostView {
    fn path_of(&self, rel: &[u8]) -> PathBuf {
        if rel.is_empty() {
            self.root.clone()
        } else {
            self.root.join(OsStr::from_bytes(rel))
        }
    }

    fn entry_of(&self, path: &Path) -> Result<Entry> {
        let md = fs::symlink_metadata(path).with_context(|| format!("lstat {}", path.display()))?;
        let kind = Kind::from_mode(md.mode())
            .with_context(|| format!("{}: unknown type", path.display()))?;
        let target = if kind == Kind::Symlink {
            Some(fs::read_link(path)?.into_os_string().into_encoded_bytes())
        } else {
            None
        };
        let alloc = match (kind, self.alloc_block_size) {
            (Kind::File, Some(bs)) => Some(to_blocks(&data_ranges(path)?, bs)),
            _ => None,
        };
        Ok(Entry {
            kind,
            perm: md.mode() & 0o7777,
            uid: md.uid(),
            gid: md.gid(),
            size: md.size(),
            nlink: Some(md.nlink()),
            mtime: md.mtime(),
            rdev: kind
                .is_device()
                .then(|| (rustix::fs::major(md.rdev()), rustix::fs::minor(md.rdev()))),
            target,
            ino: Some(md.ino()),
            blocks: Some(md.blocks()),
            alloc,
        })
    }
}

impl View for HostView {
    fn name(&self) -> String {
        self.label.clone()
    }

    fn snapshot(&self) -> Result<Snapshot> {
        let mut snap = Snapshot::new();
        snap.insert(Vec::new(), self.entry_of(&self.root)?);
        let mut stack = vec![Vec::new()];
        while let Some(dir) = stack.pop() {
            let dir_path = self.path_of(&dir);
            let mut names = Vec::new();
            for item in fs::read_dir(&dir_path)
                .with_context(|| format!("readdir {}", dir_path.display()))?
            {
                let item = item?;
                names.push((item.file_name().into_encoded_bytes(), item.file_type()?));
            }
            for (name, d_type) in names {
                if self.image_root && dir.is_empty() && name == b"lost+found" {
                    check_lost_found(&dir_path.join("lost+found"))?;
                    continue;
                }
                let rel = join(&dir, &name);
                let entry = self.entry_of(&self.path_of(&rel))?;
                if Kind::from_std(d_type) != Some(entry.kind) {
                    bail!(
                        "{}: {}: directory entry says {:?}, inode says {:?}",
                        self.label,
                        show(&rel),
                        Kind::from_std(d_type),
                        entry.kind
                    );
                }
                if entry.kind == Kind::Dir {
                    stack.push(rel.clone());
                }
                snap.insert(rel, entry);
            }
        }
        if self.image_root && !self.root.join("lost+found").is_dir() {
            bail!("{}: the image has no /lost+found directory", self.label);
        }
        Ok(snap)
    }

    fn open(&self, path: &[u8], _entry: &Entry) -> Result<Box<dyn FileReader + '_>> {
        let full = self.path_of(path);
        let file = File::open(&full).with_context(|| format!("open {}", full.display()))?;
        Ok(Box::new(PreadReader(file)))
    }
}

fn check_lost_found(path: &Path) -> Result<()> {
    let md = fs::symlink_metadata(path)?;
    if !md.is_dir() {
        bail!("{}: lost+found is not a directory", path.display());
    }
    if let Some(first) = fs::read_dir(path)?.next() {
        bail!(
            "{}: lost+found is not empty: {:?}",
            path.display(),
            first?.file_name()
        );
    }
    Ok(())
}

/// `pread` on an open file.
#[derive(Debug)]
pub struct PreadReader(pub File);

impl FileReader for PreadReader {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let mut done = 0;
        while done < buf.len() {
            let n = self.0.read_at(&mut buf[done..], offset + done as u64)?;
            if n == 0 {
                break;
            }
            done += n;
        }
        Ok(done)
    }
}

/// The data ranges (bytes) of a file according to `SEEK_DATA`/`SEEK_HOLE`, clipped to its size.
pub fn data_ranges(path: &Path) -> Result<Ranges> {
    use rustix::fs::SeekFrom;
    let file = File::open(path).with_context(|| format!("open {}", path.display()))?;
    let size = file.metadata()?.len();
    let mut out = Ranges::new();
    let mut pos = 0;
    while pos < size {
        let start = match rustix::fs::seek(&file, SeekFrom::Data(pos)) {
            Ok(s) => s,
            Err(rustix::io::Errno::NXIO) => break,
            Err(e) => return Err(e).with_context(|| format!("SEEK_DATA {}", path.display())),
        };
        let end = rustix::fs::seek(&file, SeekFrom::Hole(start))
            .with_context(|| format!("SEEK_HOLE {}", path.display()))?
            .min(size);
        if end <= start {
            bail!(
                "{}: SEEK_HOLE went backwards ({start} -> {end})",
                path.display()
            );
        }
        push_range(&mut out, start, end);
        pos = end;
    }
    Ok(out)
}

/// Appends `[start, end)` to sorted ranges, merging with the last one if they touch.
pub fn push_range(ranges: &mut Ranges, start: u64, end: u64) {
    if start >= end {
        return;
    }
    match ranges.last_mut() {
        Some(last) if last.1 >= start => last.1 = last.1.max(end),
        _ => ranges.push((start, end)),
    }
}

/// Byte ranges to the ranges of the blocks of size `bs` they touch.
#[must_use]
pub fn to_blocks(bytes: &[(u64, u64)], bs: u64) -> Ranges {
    let mut out = Ranges::new();
    for &(s, e) in bytes {
        push_range(&mut out, s / bs, e.div_ceil(bs));
    }
    out
}

/// Number of blocks in the ranges.
#[must_use]
pub fn count(ranges: &[(u64, u64)]) -> u64 {
    ranges.iter().map(|(s, e)| e - s).sum()
}

/// The number of distinct `(b - lo) / div` for blocks `b` in `ranges ∩ [lo, hi)`.
fn distinct_groups(ranges: &[(u64, u64)], lo: u64, hi: u64, div: u64) -> u64 {
    let mut groups = Ranges::new();
    for &(s, e) in ranges {
        let (s, e) = (s.max(lo), e.min(hi));
        if s < e {
            push_range(&mut groups, (s - lo) / div, (e - 1 - lo) / div + 1);
        }
    }
    count(&groups)
}

/// `st_blocks` (512-byte units) of an ext2 file whose data blocks are `alloc`: the data
/// blocks plus every indirect, double- and triple-indirect block needed to map them (and no
/// others: a hole over a whole indirect block's range has no indirect block).
#[must_use]
pub fn ext2_st_blocks(alloc: &[(u64, u64)], bs: u64) -> u64 {
    let p = bs / 4;
    let ind = 12;
    let dind = ind + p;
    let tind = dind + p * p;
    let end = tind + p * p * p;
    let mut blocks = count(alloc);
    blocks += distinct_groups(alloc, ind, dind, p); // the indirect block (0 or 1)
    if distinct_groups(alloc, dind, tind, p * p) > 0 {
        blocks += 1 + distinct_groups(alloc, dind, tind, p);
    }
    if distinct_groups(alloc, tind, end, p * p * p) > 0 {
        blocks +=
            1 + distinct_groups(alloc, tind, end, p * p) + distinct_groups(alloc, tind, end, p);
    }
    blocks * (bs / 512)
}

/// Options of the image writer that change what the image must show.
#[derive(Clone, Copy, Debug, Default)]
pub struct Expect {
    /// The image's block size.
    pub block_size: u64,
    /// Owners kept (else everything is 0:0).
    pub keep_owner: bool,
    /// Mtimes later than this are clamped to it.
    pub source_date_epoch: Option<i64>,
}

/// What an image of a source tree must show.
#[derive(Clone, Debug)]
pub struct Expected {
    /// The entries (directory sizes are not known: compare without [`Field::DirSize`]).
    pub tree: Snapshot,
    /// For each regular file, exactly the blocks an image must allocate: [`must_allocate`].
    pub alloc: BTreeMap<Vec<u8>, Ranges>,
    /// For each regular file, its data ranges in the source (bytes).
    pub data: BTreeMap<Vec<u8>, Ranges>,
    /// The source root.
    pub source: PathBuf,
    /// The options.
    pub expect: Expect,
}

/// Reads the source tree at `source` and derives what an image of it must show.
pub fn expected(source: &Path, expect: Expect) -> Result<Expected> {
    let bs = expect.block_size;
    let host = HostView {
        root: source.to_owned(),
        label: "source".into(),
        image_root: false,
        alloc_block_size: None,
    };
    let mut tree = host.snapshot()?;
    // Link counts: names of each inode inside the tree; directories: 2 + subdirectories.
    let mut names_per_ino: BTreeMap<u64, u64> = BTreeMap::new();
    let mut subdirs: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
    for (path, e) in &tree {
        if e.kind == Kind::Dir {
            if !path.is_empty() {
                *subdirs.entry(parent(path).to_vec()).or_default() += 1;
            }
        } else {
            *names_per_ino.entry(e.ino.unwrap_or_default()).or_default() += 1;
        }
    }
    let mut alloc = BTreeMap::new();
    let mut data = BTreeMap::new();
    for (path, e) in &mut tree {
        let full = if path.is_empty() {
            source.to_owned()
        } else {
            source.join(OsStr::from_bytes(path))
        };
        e.nlink = Some(if e.kind == Kind::Dir {
            2 + subdirs.get(path).copied().unwrap_or(0) + u64::from(path.is_empty())
        } else {
            names_per_ino[&e.ino.unwrap_or_default()]
        });
        if !expect.keep_owner {
            e.uid = 0;
            e.gid = 0;
        }
        if let Some(sde) = expect.source_date_epoch {
            e.mtime = e.mtime.min(sde);
        }
        e.blocks = match e.kind {
            Kind::Symlink if e.size >= 60 => Some(bs / 512),
            Kind::File | Kind::Dir => None,
            _ => Some(0),
        };
        if e.kind == Kind::Dir {
            e.size = 0;
        }
        if e.kind == Kind::File {
            let ranges = data_ranges(&full)?;
            alloc.insert(path.clone(), must_allocate(&full, &ranges, bs, e.size)?);
            data.insert(path.clone(), ranges);
        }
    }
    Ok(Expected {
        tree,
        alloc,
        data,
        source: source.to_owned(),
        expect,
    })
}

fn parent(path: &[u8]) -> &[u8] {
    match path.iter().rposition(|b| *b == b'/') {
        Some(i) => &path[..i],
        None => &[],
    }
}

/// The blocks (of `bs` bytes) an image of the source file at `path` must allocate: the
/// blocks of its data (`data`, its `SEEK_DATA` byte ranges) minus those that are all zero.
/// Equivalently, the blocks holding a non-zero byte, since holes read as zeros. This is what
/// `mke2fs -d` does too (its `copy_file_chunk` skips all-zero blocks), and the one definition
/// every allocation check ([`check_alloc`], `st_blocks` through [`ext2_st_blocks`]) uses.
pub fn must_allocate(path: &Path, data: &[(u64, u64)], bs: u64, size: u64) -> Result<Ranges> {
    let file = File::open(path)?;
    let mut out = Ranges::new();
    let mut buf = vec![0u8; bs as usize];
    for &(s, e) in &to_blocks(data, bs) {
        for block in s..e {
            let off = block * bs;
            let len = bs.min(size.saturating_sub(off)) as usize;
            file.read_exact_at(&mut buf[..len], off)?;
            if buf[..len].iter().any(|b| *b != 0) {
                push_range(&mut out, block, block + 1);
            }
        }
    }
    Ok(out)
}

/// What to compare.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    /// Type.
    Kind,
    /// Permission bits.
    Perm,
    /// uid and gid.
    Owner,
    /// Size of non-directories.
    Size,
    /// Size of directories (only between two readers of one image).
    DirSize,
    /// Link count.
    Nlink,
    /// Mtime.
    Mtime,
    /// Device numbers.
    Rdev,
    /// Symlink targets.
    Target,
    /// Which names share an inode.
    LinkGroups,
    /// Inode numbers (only between two readers of one image).
    Ino,
    /// `st_blocks` (only between two readers of one image; see [`check_alloc`] for the source).
    Blocks,
    /// Allocation maps (only between two readers of one image).
    Alloc,
}

/// The fields a reader of an image must agree with the source on.
pub const SOURCE_FIELDS: &[Field] = &[
    Field::Kind,
    Field::Perm,
    Field::Owner,
    Field::Size,
    Field::Nlink,
    Field::Mtime,
    Field::Rdev,
    Field::Target,
    Field::LinkGroups,
];

/// Every field: two readers of the same image must agree on all of them.
pub const ALL_FIELDS: &[Field] = &[
    Field::Kind,
    Field::Perm,
    Field::Owner,
    Field::Size,
    Field::DirSize,
    Field::Nlink,
    Field::Mtime,
    Field::Rdev,
    Field::Target,
    Field::LinkGroups,
    Field::Ino,
    Field::Blocks,
    Field::Alloc,
];

/// For each non-directory path, the first path (in byte order) naming the same inode.
fn link_leaders(snap: &Snapshot) -> Option<BTreeMap<&[u8], &[u8]>> {
    let mut first: BTreeMap<u64, &[u8]> = BTreeMap::new();
    let mut out = BTreeMap::new();
    for (path, e) in snap {
        if e.kind == Kind::Dir {
            continue;
        }
        let leader = *first.entry(e.ino?).or_insert(path.as_slice());
        out.insert(path.as_slice(), leader);
    }
    Some(out)
}

/// Differences between two snapshots in `fields`.
#[must_use]
pub fn compare(
    a_name: &str,
    a: &Snapshot,
    b_name: &str,
    b: &Snapshot,
    fields: &[Field],
) -> Vec<String> {
    let mut diffs = Vec::new();
    for path in a.keys().filter(|p| !b.contains_key(*p)) {
        diffs.push(format!("{}: in {a_name}, missing in {b_name}", show(path)));
    }
    for path in b.keys().filter(|p| !a.contains_key(*p)) {
        diffs.push(format!("{}: in {b_name}, not in {a_name}", show(path)));
    }
    let leaders = if fields.contains(&Field::LinkGroups) {
        match (link_leaders(a), link_leaders(b)) {
            (Some(la), Some(lb)) => Some((la, lb)),
            _ => {
                diffs.push(format!(
                    "link groups: {a_name} or {b_name} has no inode numbers"
                ));
                None
            }
        }
    } else {
        None
    };
    for (path, ea) in a {
        let Some(eb) = b.get(path) else { continue };
        let mut field_diff = |what: &str, va: String, vb: String| {
            if va != vb {
                diffs.push(format!(
                    "{}: {what}: {a_name} {va}, {b_name} {vb}",
                    show(path)
                ));
            }
        };
        for field in fields {
            match field {
                Field::Kind => {
                    field_diff("type", format!("{:?}", ea.kind), format!("{:?}", eb.kind))
                }
                Field::Perm => {
                    field_diff("mode", format!("{:o}", ea.perm), format!("{:o}", eb.perm))
                }
                Field::Owner => field_diff(
                    "owner",
                    format!("{}:{}", ea.uid, ea.gid),
                    format!("{}:{}", eb.uid, eb.gid),
                ),
                Field::Size if ea.kind != Kind::Dir => {
                    field_diff("size", ea.size.to_string(), eb.size.to_string())
                }
                Field::DirSize if ea.kind == Kind::Dir => {
                    field_diff("size", ea.size.to_string(), eb.size.to_string())
                }
                Field::Nlink => field_diff(
                    "nlink",
                    format!("{:?}", ea.nlink),
                    format!("{:?}", eb.nlink),
                ),
                Field::Mtime => field_diff("mtime", ea.mtime.to_string(), eb.mtime.to_string()),
                Field::Rdev if ea.kind.is_device() || eb.kind.is_device() => {
                    field_diff("rdev", format!("{:?}", ea.rdev), format!("{:?}", eb.rdev));
                }
                Field::Target => field_diff(
                    "symlink target",
                    format!(
                        "{:?}",
                        ea.target.as_ref().map(|t| t.escape_ascii().to_string())
                    ),
                    format!(
                        "{:?}",
                        eb.target.as_ref().map(|t| t.escape_ascii().to_string())
                    ),
                ),
                Field::Ino => field_diff("inode", format!("{:?}", ea.ino), format!("{:?}", eb.ino)),
                Field::Blocks => field_diff(
                    "st_blocks",
                    format!("{:?}", ea.blocks),
                    format!("{:?}", eb.blocks),
                ),
                Field::Alloc if ea.kind == Kind::File || eb.kind == Kind::File => {
                    field_diff(
                        "allocated blocks",
                        format!("{:?}", ea.alloc),
                        format!("{:?}", eb.alloc),
                    );
                }
                Field::LinkGroups => {
                    if let Some((la, lb)) = &leaders {
                        let (ga, gb) = (la.get(path.as_slice()), lb.get(path.as_slice()));
                        field_diff(
                            "same inode as",
                            format!("{:?}", ga.map(|p| show(p))),
                            format!("{:?}", gb.map(|p| show(p))),
                        );
                    }
                }
                _ => {}
            }
        }
    }
    diffs
}

/// Checks each regular file's allocated blocks and every entry's `st_blocks` in `actual`
/// (which must have them) against what the source requires.
#[must_use]
pub fn check_alloc(
    exp: &Expected,
    actual_name: &str,
    actual: &Snapshot,
    check_map: bool,
) -> Vec<String> {
    let bs = exp.expect.block_size;
    let mut diffs = Vec::new();
    for (path, e) in actual {
        let Some(blocks) = e.blocks else {
            diffs.push(format!(
                "{}: {actual_name} reports no st_blocks",
                show(path)
            ));
            continue;
        };
        let wanted = match e.kind {
            Kind::File => {
                let Some(want) = exp.alloc.get(path) else {
                    continue;
                };
                if check_map {
                    match &e.alloc {
                        None => diffs.push(format!(
                            "{}: {actual_name} reports no allocation map",
                            show(path)
                        )),
                        Some(map) if map != want => diffs.push(format!(
                            "{}: {actual_name} allocates blocks {map:?}, the source's non-zero data \
                             needs exactly {want:?} (block size {bs})",
                            show(path)
                        )),
                        Some(_) => {}
                    }
                }
                let expected = ext2_st_blocks(want, bs);
                if blocks != expected {
                    diffs.push(format!(
                        "{}: {actual_name} st_blocks {blocks}, expected {expected} (data blocks \
                         {want:?}, block size {bs})",
                        show(path)
                    ));
                }
                continue;
            }
            // Directories are fully allocated (no holes).
            Kind::Dir => {
                if e.size == 0 || e.size % bs != 0 {
                    diffs.push(format!(
                        "{}: {actual_name}: directory size {} is not a multiple of {bs}",
                        show(path),
                        e.size
                    ));
                }
                ext2_st_blocks(&[(0, e.size / bs)], bs)
            }
            Kind::Symlink if e.size >= 60 => bs / 512,
            _ => 0,
        };
        if blocks != wanted {
            diffs.push(format!(
                "{}: {actual_name} st_blocks {blocks}, expected {wanted} ({:?})",
                show(path),
                e.kind
            ));
        }
    }
    diffs
}

fn any_in(ranges: &[(u64, u64)], lo: u64, hi: u64) -> bool {
    ranges.iter().any(|&(s, e)| s < hi && lo < e)
}

/// Whether every indirect, double- and triple-indirect block that a file of `size` bytes
/// with data blocks `alloc` walks through exists, i.e. maps at least one data block.
///
/// ext4-view 1.0 reads block-mapped files through an iterator that reads every indirect
/// block up to the end of the file and fails ("invalid read ... from block 0") when an
/// indirect pointer is 0, which is how ext2 (and `mke2fs -d`) stores a hole over a whole
/// indirect block's range. Its reads of such files are not comparable; everything else is.
#[must_use]
pub fn indirect_chain_complete(alloc: &[(u64, u64)], size: u64, bs: u64) -> bool {
    let n = size.div_ceil(bs);
    let p = bs / 4;
    let (ind, dind, tind) = (12, 12 + p, 12 + p + p * p);
    let nodes_present = |lo: u64, hi: u64, span: u64| {
        let mut at = lo;
        while at < hi.min(n) {
            if !any_in(alloc, at, (at + span).min(hi)) {
                return false;
            }
            at += span;
        }
        true
    };
    nodes_present(ind, dind, p)
        && nodes_present(dind, tind, p * p)
        && nodes_present(dind, tind, p)
        && nodes_present(tind, u64::MAX, p * p * p)
        && nodes_present(tind, u64::MAX, p * p)
        && nodes_present(tind, u64::MAX, p)
}

/// Bytes read per call when comparing contents: odd, so reads straddle block boundaries.
const CHUNK: usize = 262_147;
/// Holes longer than this are sampled rather than read whole (the allocation checks prove
/// they are holes; the reads prove they read as zeros).
const FULL_HOLE_READ: u64 = 64 << 20;

/// Compares every regular file's contents in `view` with the source.
pub fn compare_contents(exp: &Expected, view: &dyn View, snap: &Snapshot) -> Vec<String> {
    compare_contents_where(exp, view, snap, &|_| true)
}

/// Compares the contents of the regular files for which `wanted(path)` holds.
pub fn compare_contents_where(
    exp: &Expected,
    view: &dyn View,
    snap: &Snapshot,
    wanted: &dyn Fn(&[u8]) -> bool,
) -> Vec<String> {
    let mut diffs = Vec::new();
    let mut empty_files = 0u64;
    for (path, e) in &exp.tree {
        if e.kind != Kind::File || !wanted(path) {
            continue;
        }
        // An empty file's size is checked by the snapshot comparison; opening each of 100,000
        // of them (ext4-view resolves every path with a linear directory scan) would take
        // hours, so read a sample.
        if e.size == 0 {
            empty_files += 1;
            if empty_files > 200 && empty_files % 1000 != 0 {
                continue;
            }
        }
        let Some(actual) = snap.get(path) else {
            continue;
        };
        if let Err(err) = compare_file(exp, view, path, actual) {
            diffs.push(format!("{}: {}: {err:#}", show(path), view.name()));
        }
        if diffs.len() > 20 {
            break;
        }
    }
    diffs
}

fn compare_file(exp: &Expected, view: &dyn View, path: &[u8], actual: &Entry) -> Result<()> {
    let size = exp.tree[path].size;
    let source = File::open(exp.source.join(OsStr::from_bytes(path)))?;
    let mut reader = view.open(path, actual)?;
    let mut segments: Vec<(u64, u64, bool)> = Vec::new(); // (start, end, is_data)
    let mut pos = 0;
    for &(s, e) in &exp.data[path] {
        if s > pos {
            segments.push((pos, s, false));
        }
        segments.push((s, e, true));
        pos = e;
    }
    if pos < size {
        segments.push((pos, size, false));
    }
    let mut want = vec![0u8; CHUNK];
    let mut got = vec![0u8; CHUNK];
    for (start, end, is_data) in segments {
        let pieces: Vec<(u64, u64)> = if !is_data && end - start > FULL_HOLE_READ {
            let mut p = vec![(start, start + (1 << 20)), (end - (1 << 20), end)];
            let mut at = start + (256 << 20);
            while at + (1 << 20) < end {
                p.push((at, at + (1 << 20)));
                at += 256 << 20;
            }
            p
        } else {
            vec![(start, end)]
        };
        for (s, e) in pieces {
            let mut off = s;
            while off < e {
                let n = CHUNK.min((e - off) as usize);
                let want = &mut want[..n];
                if is_data {
                    source.read_exact_at(want, off)?;
                } else {
                    want.fill(0);
                }
                let got_n = read_full(reader.as_mut(), off, &mut got[..n], view.strict_reads())?;
                if got_n != n {
                    bail!("short read at {off}: {got_n} of {n} bytes (file size {size})");
                }
                if got[..n] != *want {
                    let at = got[..n]
                        .iter()
                        .zip(want.iter())
                        .position(|(a, b)| a != b)
                        .unwrap_or(0);
                    bail!(
                        "contents differ at byte {} ({}): read {:#04x}, expected {:#04x}",
                        off + at as u64,
                        if is_data { "data" } else { "hole" },
                        got[at],
                        want[at]
                    );
                }
                off += n as u64;
            }
        }
    }
    let mut tail = [0u8; 16];
    let n = reader.read_at(size, &mut tail)?;
    if n != 0 {
        bail!("read at end of file ({size}) returned {n} bytes");
    }
    Ok(())
}

fn read_full(
    reader: &mut dyn FileReader,
    offset: u64,
    buf: &mut [u8],
    strict: bool,
) -> Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        let n = reader.read_at(offset + done as u64, &mut buf[done..])?;
        if n == 0 || (strict && n < buf.len() - done) {
            return Ok(done + n);
        }
        done += n;
    }
    Ok(done)
}

/// Fails with a readable report if `diffs` is not empty.
pub fn assert_no_diffs(what: &str, diffs: &[String]) -> Result<()> {
    if diffs.is_empty() {
        return Ok(());
    }
    let mut msg = format!("{what}: {} difference(s)\n", diffs.len());
    for d in diffs.iter().take(40) {
        let _ = writeln!(msg, "  {d}");
    }
    if diffs.len() > 40 {
        let _ = writeln!(msg, "  ... and {} more", diffs.len() - 40);
    }
    bail!(msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn st_blocks_counts_indirect_blocks() {
        // 1 KiB blocks: 256 pointers per block.
        assert_eq!(ext2_st_blocks(&[(0, 12)], 1024), 24);
        assert_eq!(ext2_st_blocks(&[(0, 13)], 1024), 2 * 14);
        assert_eq!(ext2_st_blocks(&[(0, 268)], 1024), 2 * 269);
        // First block behind the double indirect: data + ind + dind + one child.
        assert_eq!(ext2_st_blocks(&[(0, 269)], 1024), 2 * (269 + 1 + 2));
        // Only one block, in the second double-indirect child's range.
        assert_eq!(ext2_st_blocks(&[(268 + 256, 268 + 257)], 1024), 2 * 3);
        // Triple: data + tind + dind + ind.
        let t = 12 + 256 + 256 * 256;
        assert_eq!(ext2_st_blocks(&[(t, t + 1)], 1024), 2 * 4);
        // t - 1 is the last block of the last double-indirect child.
        assert_eq!(ext2_st_blocks(&[(t - 1, t + 1)], 1024), 2 * (2 + 2 + 3));
        // 4 KiB blocks.
        assert_eq!(ext2_st_blocks(&[(0, 1036)], 4096), 8 * 1037);
    }

    #[test]
    fn indirect_chain() {
        // 1 KiB blocks: the indirect block covers blocks 12..268.
        assert!(indirect_chain_complete(&[(0, 12)], 12 * 1024, 1024));
        assert!(!indirect_chain_complete(&[(0, 1)], 13 * 1024, 1024));
        assert!(indirect_chain_complete(
            &[(0, 1), (267, 268)],
            268 * 1024,
            1024
        ));
        // Second double-indirect child empty while the file extends into it.
        assert!(!indirect_chain_complete(
            &[(0, 269)],
            (268 + 257) * 1024,
            1024
        ));
        assert!(indirect_chain_complete(
            &[(0, 269), (524, 525)],
            525 * 1024,
            1024
        ));
    }

    #[test]
    fn blocks_of_byte_ranges() {
        assert_eq!(
            to_blocks(&[(0, 1), (4096, 8193)], 4096),
            vec![(0, 1), (1, 3)]
                .into_iter()
                .fold(Vec::new(), |mut v, (s, e)| {
                    push_range(&mut v, s, e);
                    v
                })
        );
        assert_eq!(to_blocks(&[(1024, 3000)], 1024), vec![(1, 3)]);
    }
}
