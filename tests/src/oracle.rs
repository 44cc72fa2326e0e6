//! Oracles that know nothing of glick: e2fsprogs (`e2fsck -fn`, `debugfs`, `mke2fs -d`), the
//! kernel (a read-only loop mount) and ext4-view (an independent reader).

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::fs::File;
use std::os::unix::fs::{FileExt as _, MetadataExt as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result, bail, ensure};

use crate::tools::{arg, command_line, output_text, require_root, require_tool, run, run_ok};
use crate::tree::{Entry, FileReader, HostView, Kind, Snapshot, View, show};

/// `e2fsck -fn IMAGE` must exit 0; its output is in the error otherwise.
pub fn e2fsck(image: &Path) -> Result<String> {
    let args: [&OsStr; 2] = ["-fn".as_ref(), arg(image)];
    let out = run("e2fsck", &args)?;
    let text = output_text(&out);
    if out.status.code() != Some(0) {
        bail!(
            "`{}` exited with {} (image not clean):\n{text}",
            command_line("e2fsck", &args),
            out.status
        );
    }
    Ok(text)
}

/// `debugfs -R CMD IMAGE`'s stdout (debugfs exits 0 even when a command fails, so its stderr
/// must be empty apart from its version banner).
pub fn debugfs(image: &Path, request: &str) -> Result<String> {
    let args: [&OsStr; 3] = ["-R".as_ref(), request.as_ref(), arg(image)];
    let out = run_ok("debugfs", &args)?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let complaints: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.starts_with("debugfs "))
        .collect();
    ensure!(
        complaints.is_empty(),
        "`{}` complained:\n{}",
        command_line("debugfs", &args),
        stderr
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The "Name: value" lines of `debugfs -R stats`.
pub fn superblock_stats(image: &Path) -> Result<BTreeMap<String, String>> {
    let text = debugfs(image, "stats")?;
    let mut map = BTreeMap::new();
    for line in text.lines() {
        if line.starts_with(" Group") {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            map.insert(k.trim().to_owned(), v.trim().to_owned());
        }
    }
    ensure!(
        map.contains_key("Filesystem features"),
        "debugfs stats printed no features:\n{text}"
    );
    Ok(map)
}

/// What DESIGN §3 demands of the superblock, checked through `debugfs -R stats`.
pub fn check_superblock(image: &Path, label: Option<&str>) -> Result<BTreeMap<String, String>> {
    let stats = superblock_stats(image)?;
    let get = |k: &str| stats.get(k).map(String::as_str).unwrap_or("<missing>");
    let mut problems = Vec::new();
    let mut features: Vec<&str> = get("Filesystem features").split_whitespace().collect();
    features.sort_unstable();
    if features != ["filetype", "large_file", "sparse_super"] {
        problems.push(format!(
            "features {features:?}, want exactly filetype sparse_super large_file"
        ));
    }
    let mut want = vec![
        ("Reserved block count", "0".to_owned()),
        ("Inode size", "128".to_owned()),
        ("Filesystem revision #", "1 (dynamic)".to_owned()),
        ("Filesystem magic number", "0xEF53".to_owned()),
        ("Filesystem state", "clean".to_owned()),
    ];
    if let Some(label) = label {
        want.push(("Filesystem volume name", label.to_owned()));
    }
    for (k, v) in want {
        if get(k) != v {
            problems.push(format!("{k}: {:?}, want {v:?}", get(k)));
        }
    }
    for k in stats.keys() {
        if k.starts_with("Journal") || k.starts_with("Reserved GDT") {
            problems.push(format!("unexpected {k:?} (journal / resize inode)"));
        }
    }
    if get("Filesystem UUID") == "<none>" {
        problems.push("null UUID".to_owned());
    }
    ensure!(
        problems.is_empty(),
        "{}: superblock: {}\nstats: {stats:#?}",
        image.display(),
        problems.join("; ")
    );
    Ok(stats)
}

/// Compares `debugfs stat <ino>` of up to `limit` inodes with what the kernel showed (type,
/// mode, owner, size, link count, block count, device numbers).
pub fn debugfs_spot_check(image: &Path, kernel: &Snapshot, limit: usize) -> Result<()> {
    let mut by_ino: BTreeMap<u64, (&[u8], &Entry)> = BTreeMap::new();
    for (path, e) in kernel {
        if let Some(ino) = e.ino {
            by_ino.entry(ino).or_insert((path, e));
        }
    }
    let step = (by_ino.len() / limit.max(1)).max(1);
    let picked: Vec<(u64, (&[u8], &Entry))> =
        by_ino.into_iter().step_by(step).take(limit).collect();
    let dir = tempfile::tempdir()?;
    let script = dir.path().join("cmds");
    let mut cmds = String::new();
    for (ino, _) in &picked {
        let _ = writeln!(cmds, "stat <{ino}>");
    }
    std::fs::write(&script, cmds)?;
    let args: [&OsStr; 3] = ["-f".as_ref(), arg(&script), arg(image)];
    let out = run_ok("debugfs", &args)?;
    let text = String::from_utf8_lossy(&out.stdout);
    let stats = parse_debugfs_stat(&text);
    let mut diffs = Vec::new();
    for (ino, (path, e)) in picked {
        let Some(s) = stats.get(&ino) else {
            diffs.push(format!(
                "{}: debugfs printed nothing for inode {ino}",
                show(path)
            ));
            continue;
        };
        let want_type = match e.kind {
            Kind::File => "regular",
            Kind::Dir => "directory",
            Kind::Symlink => "symlink",
            Kind::CharDev => "character special",
            Kind::BlockDev => "block special",
            Kind::Fifo => "FIFO",
            Kind::Socket => "socket",
        };
        let mut check = |what: &str, got: Option<&String>, want: String| {
            if got.map(String::as_str) != Some(want.as_str()) {
                diffs.push(format!(
                    "{} (inode {ino}): debugfs {what} {got:?}, kernel {want:?}",
                    show(path)
                ));
            }
        };
        check("Type", s.get("Type"), want_type.to_owned());
        // debugfs prints the mode as "0%03o" and ids with "%d" (signed).
        check("Mode", s.get("Mode"), format!("0{:03o}", e.perm));
        check("User", s.get("User"), (e.uid as i32).to_string());
        check("Group", s.get("Group"), (e.gid as i32).to_string());
        check("Size", s.get("Size"), e.size.to_string());
        check(
            "Links",
            s.get("Links"),
            e.nlink.unwrap_or_default().to_string(),
        );
        check(
            "Blockcount",
            s.get("Blockcount"),
            e.blocks.unwrap_or_default().to_string(),
        );
        if let (true, Some((major, minor))) = (e.kind.is_device(), e.rdev) {
            check(
                "Device major/minor number",
                s.get("Device major/minor number"),
                format!("{major}:{minor}"),
            );
        }
    }
    crate::tree::assert_no_diffs(
        &format!("debugfs stat vs kernel on {}", image.display()),
        &diffs,
    )
}

/// Parses `stat <N>` output blocks into inode → field → value.
fn parse_debugfs_stat(text: &str) -> BTreeMap<u64, BTreeMap<String, String>> {
    let mut out: BTreeMap<u64, BTreeMap<String, String>> = BTreeMap::new();
    let mut current: Option<u64> = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("Inode: ") {
            current = rest.split_whitespace().next().and_then(|n| n.parse().ok());
        }
        let Some(ino) = current else { continue };
        let fields = out.entry(ino).or_default();
        if let Some(at) = line.find("Device major/minor number: ") {
            // "Device major/minor number: 01:03 (hex 01:03)" (decimal, zero-padded), or with a
            // "(New-style) " prefix for numbers that need the new encoding.
            let rest = &line[at + "Device major/minor number: ".len()..];
            if let Some((ma, mi)) = rest
                .split_whitespace()
                .next()
                .and_then(|d| d.split_once(':'))
            {
                let parse = |s: &str| {
                    s.parse::<u64>()
                        .map(|v| v.to_string())
                        .unwrap_or_else(|_| s.to_owned())
                };
                fields.insert(
                    "Device major/minor number".into(),
                    format!("{}:{}", parse(ma), parse(mi)),
                );
            }
            continue;
        }
        // "Inode: 12   Type: regular    Mode:  0644   Flags: 0x0", "User:     0   Group:     0
        // Project:     0   Size: 3", "Links: 1   Blockcount: 2": a value runs from after its
        // "Key:" (and the spaces after it) to the next run of two spaces.
        if !(line.starts_with("Inode:") || line.starts_with("User:") || line.starts_with("Links:"))
        {
            continue;
        }
        for key in [
            "Type",
            "Mode",
            "User",
            "Group",
            "Size",
            "Links",
            "Blockcount",
        ] {
            let pat = format!("{key}:");
            let found = line
                .match_indices(&pat)
                .find(|(i, _)| *i == 0 || line.as_bytes()[i - 1] == b' ');
            if let Some((i, _)) = found {
                let rest = line[i + pat.len()..].trim_start();
                let value = rest.split("  ").next().unwrap_or("").trim();
                fields.insert(key.to_owned(), value.to_owned());
            }
        }
    }
    out
}

/// A read-only loop mount of an image with the kernel's ext2 support, unmounted on drop (also
/// when the test panics).
#[derive(Debug)]
pub struct Mount {
    dir: tempfile::TempDir,
    mounted: bool,
}

impl Mount {
    /// `mount -t ext2 -o loop,ro IMAGE <tempdir>`, retrying when loop devices are contended.
    ///
    /// Kernels built with `CONFIG_EXT4_USE_FOR_EXT2` and without `CONFIG_EXT2_FS` (as the CI
    /// machine's 6.18) serve `-t ext2` with the ext4 driver in ext2 mode; it reports
    /// `SEEK_DATA`/`SEEK_HOLE` at block granularity, which the allocation checks rely on.
    pub fn new(image: &Path) -> Result<Self> {
        Self::with_type(image, "ext2")
    }

    /// As [`Mount::new`] with another filesystem type (`ext3`, `ext4`).
    pub fn with_type(image: &Path, fstype: &str) -> Result<Self> {
        require_root("loop-mounting images")?;
        require_tool("mount")?;
        let dir = tempfile::Builder::new().prefix("glick-mnt-").tempdir()?;
        let mut last = String::new();
        for attempt in 0..8 {
            let args: [&OsStr; 6] = [
                "-t".as_ref(),
                fstype.as_ref(),
                "-o".as_ref(),
                "loop,ro".as_ref(),
                arg(image),
                arg(dir.path()),
            ];
            let out = run("mount", &args)?;
            if out.status.success() {
                return Ok(Mount { dir, mounted: true });
            }
            last = format!(
                "`{}` failed ({}):\n{}",
                command_line("mount", &args),
                out.status,
                output_text(&out)
            );
            let transient =
                last.contains("loop device") || last.contains("busy") || last.contains("resource");
            if !transient {
                break;
            }
            std::thread::sleep(Duration::from_millis(200 * (attempt + 1)));
        }
        bail!("{last}")
    }

    /// The mount point.
    #[must_use]
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The mounted tree as a [`View`], with allocation maps in `block_size` blocks.
    #[must_use]
    pub fn view(&self, label: &str, block_size: u64) -> HostView {
        HostView {
            root: self.path().to_owned(),
            label: label.to_owned(),
            image_root: true,
            alloc_block_size: Some(block_size),
        }
    }

    /// Unmounts now. "Target is busy" is retried for a while (a concurrent test's
    /// fork may briefly hold a copy of a file descriptor); in the end the mount is detached
    /// lazily, with a warning, since the image is read-only and nothing of it is tested here.
    pub fn unmount(mut self) -> Result<()> {
        self.mounted = false;
        let mut last = String::new();
        for attempt in 0..20 {
            let out = run("umount", &[arg(self.path())])?;
            if out.status.success() {
                return Ok(());
            }
            last = output_text(&out);
            if !last.contains("busy") {
                break;
            }
            std::thread::sleep(Duration::from_millis(50 * (attempt + 1)));
        }
        let lazy = run("umount", &["-l".as_ref(), arg(self.path())])?;
        if lazy.status.success() && last.contains("busy") {
            eprintln!(
                "warning: {} stayed busy; detached it lazily",
                self.path().display()
            );
            return Ok(());
        }
        bail!("umount {} failed:\n{last}", self.path().display())
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if self.mounted {
            let ok = run("umount", &[arg(self.path())]).is_ok_and(|o| o.status.success());
            if !ok {
                let _ = run("umount", &["-l".as_ref(), arg(self.path())]);
            }
        }
    }
}

/// How to make a reference image with `mke2fs -d`.
#[derive(Clone, Debug)]
pub struct Mke2fs {
    /// `-t` type: `ext2` or `ext3`.
    pub fs_type: &'static str,
    /// `-b`.
    pub block_size: u32,
    /// `-I`: 128 or 256.
    pub inode_size: u32,
}

/// Builds `image` from `source` with `mke2fs -d`, sized generously for `data_bytes` of file
/// data and `entries` entries.
pub fn mke2fs(
    source: &Path,
    image: &Path,
    opts: &Mke2fs,
    data_bytes: u64,
    entries: u64,
) -> Result<()> {
    let bs = u64::from(opts.block_size);
    let inodes = entries + 64;
    // Data (+ indirect blocks, generously), inode tables, directories, metadata, journal.
    let journal = if opts.fs_type == "ext3" { 8 << 20 } else { 0 };
    let bytes = data_bytes
        + data_bytes / 16
        + inodes * (u64::from(opts.inode_size) + 2 * bs)
        + 16 * bs * 1024
        + journal;
    let blocks = bytes.div_ceil(bs);
    let file = File::create(image)?;
    file.set_len(blocks * bs)?;
    drop(file);
    let args: Vec<OsString> = vec![
        "-q".into(),
        "-F".into(),
        "-t".into(),
        opts.fs_type.into(),
        "-b".into(),
        opts.block_size.to_string().into(),
        "-I".into(),
        opts.inode_size.to_string().into(),
        "-N".into(),
        inodes.to_string().into(),
        "-m".into(),
        "0".into(),
        "-d".into(),
        source.as_os_str().into(),
        image.as_os_str().into(),
        blocks.to_string().into(),
    ];
    let args: Vec<&OsStr> = args.iter().map(OsString::as_os_str).collect();
    run_ok("mke2fs", &args)?;
    Ok(())
}

/// ext4-view reading an image file: the independent reader.
pub struct Ext4View {
    fs: ext4_view::Ext4,
    label: String,
}

impl std::fmt::Debug for Ext4View {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ext4View")
            .field("label", &self.label)
            .finish_non_exhaustive()
    }
}

struct PreadImage(File);

impl ext4_view::Ext4Read for PreadImage {
    fn read(
        &mut self,
        start_byte: u64,
        dst: &mut [u8],
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync + 'static>> {
        self.0.read_exact_at(dst, start_byte).map_err(Into::into)
    }
}

impl Ext4View {
    /// Loads the image.
    pub fn open(image: &Path) -> Result<Self> {
        let file = File::open(image)?;
        let fs = ext4_view::Ext4::load(Box::new(PreadImage(file)))
            .map_err(|e| anyhow::anyhow!("ext4-view cannot load {}: {e}", image.display()))?;
        Ok(Ext4View {
            fs,
            label: "ext4-view".into(),
        })
    }

    fn abs(path: &[u8]) -> Vec<u8> {
        [b"/".as_slice(), path].concat()
    }
}

fn e4<T>(r: Result<T, ext4_view::Ext4Error>, what: &str, path: &[u8]) -> Result<T> {
    r.map_err(|e| anyhow::anyhow!("ext4-view: {what} {}: {e}", show(path)))
}

impl View for Ext4View {
    fn name(&self) -> String {
        self.label.clone()
    }

    fn snapshot(&self) -> Result<Snapshot> {
        let mut snap = Snapshot::new();
        let root_md = e4(self.fs.metadata("/"), "metadata", b"")?;
        snap.insert(Vec::new(), self.entry(b"", &root_md)?);
        let mut stack: Vec<Vec<u8>> = vec![Vec::new()];
        while let Some(dir) = stack.pop() {
            let abs = Self::abs(&dir);
            for item in e4(self.fs.read_dir(e4path(&abs)?), "read_dir", &dir)? {
                let item = e4(item, "read_dir entry in", &dir)?;
                let name = item.file_name().as_ref().to_vec();
                if name == b"." || name == b".." || (dir.is_empty() && name == b"lost+found") {
                    continue;
                }
                let rel = if dir.is_empty() {
                    name.clone()
                } else {
                    [dir.as_slice(), b"/", &name].concat()
                };
                let md = e4(item.metadata(), "metadata", &rel)?;
                let d_type = e4(item.file_type(), "file_type", &rel)?;
                let entry = self.entry(&rel, &md)?;
                ensure!(
                    kind_of(d_type) == entry.kind,
                    "ext4-view: {}: directory entry type {d_type:?}, inode type {:?}",
                    show(&rel),
                    entry.kind
                );
                if entry.kind == Kind::Dir {
                    stack.push(rel.clone());
                }
                snap.insert(rel, entry);
            }
        }
        Ok(snap)
    }

    fn open(&self, path: &[u8], _entry: &Entry) -> Result<Box<dyn FileReader + '_>> {
        let abs = Self::abs(path);
        let file = e4(self.fs.open(e4path(&abs)?), "open", path)?;
        Ok(Box::new(Ext4File(file)))
    }

    fn strict_reads(&self) -> bool {
        false
    }
}

impl Ext4View {
    fn entry(&self, rel: &[u8], md: &ext4_view::Metadata) -> Result<Entry> {
        let kind = kind_of(md.file_type());
        let target = if kind == Kind::Symlink {
            let abs = Self::abs(rel);
            Some(
                e4(self.fs.read_link(e4path(&abs)?), "read_link", rel)?
                    .as_ref()
                    .to_vec(),
            )
        } else {
            None
        };
        Ok(Entry {
            kind,
            perm: u32::from(md.mode()),
            uid: md.uid(),
            gid: md.gid(),
            size: md.len(),
            nlink: None,
            mtime: md.modified().seconds(),
            rdev: None,
            target,
            ino: None,
            blocks: None,
            alloc: None,
        })
    }
}

fn e4path(abs: &[u8]) -> Result<ext4_view::Path<'_>> {
    ext4_view::Path::try_from(abs)
        .map_err(|e| anyhow::anyhow!("ext4-view: bad path {}: {e}", abs.escape_ascii()))
}

fn kind_of(t: ext4_view::FileType) -> Kind {
    use ext4_view::FileType as T;
    match t {
        T::BlockDevice => Kind::BlockDev,
        T::CharacterDevice => Kind::CharDev,
        T::Directory => Kind::Dir,
        T::Fifo => Kind::Fifo,
        T::Regular => Kind::File,
        T::Socket => Kind::Socket,
        T::Symlink => Kind::Symlink,
    }
}

struct Ext4File(ext4_view::File);

impl FileReader for Ext4File {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize> {
        if offset >= self.0.metadata().len() {
            return Ok(0);
        }
        self.0
            .seek_to(offset)
            .map_err(|e| anyhow::anyhow!("ext4-view seek to {offset}: {e}"))?;
        self.0
            .read_bytes(buf)
            .map_err(|e| anyhow::anyhow!("ext4-view read at {offset}: {e}"))
    }
}

/// The ext2 block size an image says it has (from its superblock).
pub fn image_block_size(image: &Path) -> Result<u32> {
    let file = File::open(image)?;
    let mut sb = [0u8; 1024];
    file.read_exact_at(&mut sb, 1024)
        .context("reading the superblock")?;
    let log = u32::from_le_bytes([sb[24], sb[25], sb[26], sb[27]]);
    ensure!(log <= 6, "{}: s_log_block_size {log}", image.display());
    Ok(1024 << log)
}

/// Size in bytes of a file (for messages and checks).
pub fn file_size(path: &Path) -> Result<u64> {
    Ok(std::fs::metadata(path)
        .with_context(|| format!("stat {}", path.display()))?
        .size())
}

/// A fresh scratch directory for one test's images and mounts.
pub fn scratch(prefix: &str) -> Result<(tempfile::TempDir, PathBuf)> {
    let dir = tempfile::Builder::new()
        .prefix(&format!("glick-{prefix}-"))
        .tempdir()?;
    let path = dir.path().to_owned();
    Ok((dir, path))
}
