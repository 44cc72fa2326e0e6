//! glick's own reader ([`glick_ext2::Ext2`]) as a [`View`], plus checks of the parts of its API
//! a tree walk does not exercise (directory offsets, lookups, reads at odd offsets).

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context as _, Result, bail, ensure};
use glick_ext2::{Ext2, FileRegion, FileType, Inode, InodeNo};

use crate::tree::{Entry, FileReader, Kind, Ranges, Snapshot, View, push_range, show};

/// glick_ext2 reading an image (or a region of a file that holds one).
#[derive(Debug)]
pub struct OurView {
    fs: Ext2<FileRegion>,
    label: String,
}

fn kind_of(t: FileType) -> Kind {
    match t {
        FileType::Regular => Kind::File,
        FileType::Directory => Kind::Dir,
        FileType::Symlink => Kind::Symlink,
        FileType::CharDevice => Kind::CharDev,
        FileType::BlockDevice => Kind::BlockDev,
        FileType::Fifo => Kind::Fifo,
        FileType::Socket => Kind::Socket,
    }
}

fn g<T>(r: Result<T, glick_ext2::Error>, what: &str, path: &[u8]) -> Result<T> {
    r.map_err(|e| anyhow::anyhow!("glick_ext2: {what} {}: {e}", show(path)))
}

/// One directory entry as read (for the API checks).
type Listing = Vec<(Vec<u8>, InodeNo, u64)>;

impl OurView {
    /// Opens a whole image file.
    pub fn open(image: &Path, label: &str) -> Result<Self> {
        let file = File::open(image).with_context(|| format!("open {}", image.display()))?;
        let len = file.metadata()?.len();
        Self::open_region(file, 0, len, label)
    }

    /// Opens the image stored at `start..start + len` of `file`.
    pub fn open_region(file: File, start: u64, len: u64, label: &str) -> Result<Self> {
        let region = FileRegion::new(Arc::new(file), start, len);
        let fs = Ext2::open(region).map_err(|e| anyhow::anyhow!("glick_ext2::Ext2::open: {e}"))?;
        Ok(OurView {
            fs,
            label: label.to_owned(),
        })
    }

    /// The reader.
    #[must_use]
    pub fn fs(&self) -> &Ext2<FileRegion> {
        &self.fs
    }

    fn entry(&self, path: &[u8], ino: InodeNo, inode: &Inode) -> Result<Entry> {
        let kind = kind_of(
            inode
                .file_type()
                .with_context(|| format!("{}: mode {:o} has no type", show(path), inode.mode))?,
        );
        let target = match kind {
            Kind::Symlink => Some(g(self.fs.read_link(ino, inode), "read_link", path)?),
            _ => None,
        };
        let alloc = match kind {
            Kind::File => {
                let blocks = g(self.fs.file_blocks(ino, inode), "file_blocks", path)?;
                let mut ranges = Ranges::new();
                for (i, b) in blocks.iter().enumerate() {
                    if b.is_some() {
                        push_range(&mut ranges, i as u64, i as u64 + 1);
                    }
                }
                Some(ranges)
            }
            _ => None,
        };
        Ok(Entry {
            kind,
            perm: u32::from(inode.permissions()),
            uid: inode.uid,
            gid: inode.gid,
            size: inode.size,
            nlink: Some(u64::from(inode.links_count)),
            // The kernel reads ext2 timestamps as signed 32-bit.
            mtime: i64::from(inode.mtime as i32),
            rdev: kind.is_device().then(|| inode.rdev()),
            target,
            ino: Some(u64::from(ino.0)),
            blocks: Some(u64::from(inode.blocks)),
            alloc,
        })
    }

    fn list(&self, dir: InodeNo, offset: u64, path: &[u8]) -> Result<Listing> {
        let mut out = Vec::new();
        for item in g(self.fs.read_dir(dir, offset), "read_dir", path)? {
            let item = g(item, "read_dir entry of", path)?;
            out.push((item.name, item.ino, item.next_offset));
        }
        Ok(out)
    }

    /// Checks the API a walk doesn't: resuming `read_dir` at an entry's `next_offset`,
    /// `lookup` of every (or, in big directories, of a sample of) name and of a missing one,
    /// and reads at odd offsets and past the end.
    pub fn check_api(&self, snap: &Snapshot) -> Result<()> {
        for (path, e) in snap {
            let ino = InodeNo(u32::try_from(e.ino.context("no inode number")?)?);
            match e.kind {
                Kind::Dir => self.check_dir(path, ino)?,
                Kind::File if e.size > 0 => self.check_reads(path, ino, e.size)?,
                _ => {}
            }
        }
        Ok(())
    }

    fn check_dir(&self, path: &[u8], ino: InodeNo) -> Result<()> {
        let all = self.list(ino, 0, path)?;
        let n = all.len();
        let step = (n / 8).max(1);
        for k in (0..n).step_by(step) {
            let rest = self.list(ino, all[k].2, path)?;
            let want: Vec<&Vec<u8>> = all[k + 1..].iter().map(|x| &x.0).collect();
            let got: Vec<&Vec<u8>> = rest.iter().map(|x| &x.0).collect();
            ensure!(
                want == got,
                "glick_ext2: {}: read_dir from next_offset {} of entry {k} gave {} names, expected {}",
                show(path),
                all[k].2,
                got.len(),
                want.len()
            );
        }
        let step = if n <= 2000 { 1 } else { n / 50 };
        for (name, child, _) in all.iter().step_by(step) {
            let found = g(self.fs.lookup(ino, name), "lookup in", path)?;
            ensure!(
                found == Some(*child),
                "glick_ext2: {}: lookup({:?}) = {found:?}, read_dir says {child:?}",
                show(path),
                name.escape_ascii().to_string()
            );
        }
        let missing = g(
            self.fs.lookup(ino, b"\x01no such name\x02"),
            "lookup in",
            path,
        )?;
        ensure!(
            missing.is_none(),
            "glick_ext2: {}: lookup of a missing name found {missing:?}",
            show(path)
        );
        Ok(())
    }

    fn check_reads(&self, path: &[u8], ino: InodeNo, size: u64) -> Result<()> {
        let inode = g(self.fs.inode(ino), "inode", path)?;
        let bs = u64::from(self.fs.block_size().get());
        // One byte at assorted offsets must equal the same byte read as part of a bigger read.
        let mut offsets = vec![0, size - 1, size / 2];
        for b in [1, 11, 12, 13] {
            offsets.extend([b * bs - 1, b * bs]);
        }
        let mut reference = [0u8; 3];
        for off in offsets.into_iter().filter(|o| *o < size) {
            let start = off.saturating_sub(1);
            let want_len = (size - start).min(3) as usize;
            let n = g(
                self.fs.read(ino, &inode, start, &mut reference[..]),
                "read",
                path,
            )?;
            ensure!(
                n == want_len,
                "glick_ext2: {}: read of 3 bytes at {start} returned {n}, want {want_len}",
                show(path)
            );
            let mut one = [0u8; 1];
            let n = g(self.fs.read(ino, &inode, off, &mut one), "read", path)?;
            ensure!(
                n == 1,
                "glick_ext2: {}: read of 1 byte at {off} returned {n}",
                show(path)
            );
            ensure!(
                one[0] == reference[(off - start) as usize],
                "glick_ext2: {}: byte {off} reads differently alone and in a 3-byte read",
                show(path)
            );
        }
        for off in [size, size + 1, size + bs, u64::MAX - 10] {
            let mut buf = [0u8; 8];
            match self.fs.read(ino, &inode, off, &mut buf) {
                Ok(0) => {}
                Ok(n) => bail!(
                    "glick_ext2: {}: read at {off} (size {size}) returned {n} bytes",
                    show(path)
                ),
                Err(e) => bail!(
                    "glick_ext2: {}: read at {off} (size {size}) failed: {e}",
                    show(path)
                ),
            }
        }
        Ok(())
    }
}

impl View for OurView {
    fn name(&self) -> String {
        self.label.clone()
    }

    fn snapshot(&self) -> Result<Snapshot> {
        let mut snap = Snapshot::new();
        let root = g(self.fs.inode(InodeNo::ROOT), "inode", b"")?;
        snap.insert(Vec::new(), self.entry(b"", InodeNo::ROOT, &root)?);
        let mut stack = vec![(Vec::new(), InodeNo::ROOT, InodeNo::ROOT)];
        while let Some((dir, dir_ino, parent_ino)) = stack.pop() {
            let mut seen_dot = (false, false);
            for item in g(self.fs.read_dir(dir_ino, 0), "read_dir", &dir)? {
                let item = g(item, "read_dir entry of", &dir)?;
                if item.name == b"." || item.name == b".." {
                    let (want, seen) = if item.name == b"." {
                        (dir_ino, &mut seen_dot.0)
                    } else {
                        (parent_ino, &mut seen_dot.1)
                    };
                    ensure!(
                        item.ino == want && !*seen,
                        "glick_ext2: {}: {:?} points at {:?}, expected {want:?} (or appears twice)",
                        show(&dir),
                        String::from_utf8_lossy(&item.name),
                        item.ino
                    );
                    *seen = true;
                    continue;
                }
                let rel = if dir.is_empty() {
                    item.name.clone()
                } else {
                    [dir.as_slice(), b"/", &item.name].concat()
                };
                let inode = g(self.fs.inode(item.ino), "inode", &rel)?;
                if dir.is_empty() && item.name == b"lost+found" {
                    let names = self.list(item.ino, 0, &rel)?;
                    ensure!(
                        inode.file_type() == Some(FileType::Directory) && names.len() == 2,
                        "glick_ext2: /lost+found is not an empty directory ({} entries)",
                        names.len()
                    );
                    continue;
                }
                let entry = self.entry(&rel, item.ino, &inode)?;
                ensure!(
                    item.file_type.map(kind_of) == Some(entry.kind),
                    "glick_ext2: {}: directory entry type {:?}, inode type {:?}",
                    show(&rel),
                    item.file_type,
                    entry.kind
                );
                if entry.kind == Kind::Dir {
                    stack.push((rel.clone(), item.ino, dir_ino));
                }
                ensure!(
                    !snap.contains_key(&rel),
                    "glick_ext2: {} listed twice",
                    show(&rel)
                );
                snap.insert(rel, entry);
            }
            ensure!(
                seen_dot == (true, true),
                "glick_ext2: {}: missing \".\" or \"..\"",
                show(&dir)
            );
        }
        Ok(snap)
    }

    fn open(&self, path: &[u8], entry: &Entry) -> Result<Box<dyn FileReader + '_>> {
        let ino = InodeNo(u32::try_from(entry.ino.context("no inode number")?)?);
        let inode = g(self.fs.inode(ino), "inode", path)?;
        Ok(Box::new(OurFile {
            fs: &self.fs,
            ino,
            inode,
        }))
    }
}

struct OurFile<'a> {
    fs: &'a Ext2<FileRegion>,
    ino: InodeNo,
    inode: Inode,
}

impl FileReader for OurFile<'_> {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize> {
        self.fs
            .read(self.ino, &self.inode, offset, buf)
            .map_err(|e| anyhow::anyhow!("glick_ext2 read at {offset}: {e}"))
    }
}
