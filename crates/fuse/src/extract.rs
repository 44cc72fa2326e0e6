//! Copying an image's tree into a directory: the last rung of the mount
//! chain (`GLICK_MOUNT=extract`) and `--glick-extract`.
//!
//! Nothing is ever written outside the target: names holding `/`, NUL, `.`
//! or `..` are refused, every entry is created fresh (an existing name is an
//! error, so a symlink cannot be written "through"), and a directory met
//! twice (a loop) is refused. Directories are kept owner-writable so the
//! tree can be removed again.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use glick_ext2::{Ext2, FileType, InodeNo, ReadAt};

/// A failed extraction: the path being written and the cause.
#[derive(Debug)]
pub struct Error {
    /// The file or directory being created.
    pub path: PathBuf,
    /// What went wrong.
    pub source: io::Error,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.source)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

fn at(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error {
        path: path.to_owned(),
        source,
    }
}

fn image_error(e: glick_ext2::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// Depth beyond which a tree is taken for hostile.
const MAX_DEPTH: usize = 4096;

/// Copy the image's whole tree into `target`, which must exist and be empty
/// (or be created by the caller). Regular files keep their holes, modes and
/// hard links; symlinks and fifos are recreated; device nodes and sockets
/// are skipped (an ordinary user cannot create them).
///
/// # Errors
/// The first entry that cannot be read from the image or written.
pub fn extract_tree<R: ReadAt>(ext2: &Ext2<R>, target: &Path) -> Result<(), Error> {
    let mut state = State {
        ext2,
        links: HashMap::new(),
        dirs: HashSet::new(),
        buf: vec![0u8; 1 << 20],
    };
    state.dirs.insert(InodeNo::ROOT.0);
    state.directory(InodeNo::ROOT, target, 0)?;
    let root = ext2
        .inode(InodeNo::ROOT)
        .map_err(|e| at(target)(image_error(e)))?;
    set_dir_mode(target, root.permissions())
}

fn set_dir_mode(path: &Path, mode: u16) -> Result<(), Error> {
    std::fs::set_permissions(
        path,
        std::fs::Permissions::from_mode(u32::from(mode) | 0o700),
    )
    .map_err(at(path))
}

struct State<'a, R: ReadAt> {
    ext2: &'a Ext2<R>,
    /// Regular files with several links: image inode → first path written.
    links: HashMap<u32, PathBuf>,
    /// Directories already entered (a second visit is a loop).
    dirs: HashSet<u32>,
    buf: Vec<u8>,
}

impl<R: ReadAt> State<'_, R> {
    fn directory(&mut self, dir: InodeNo, path: &Path, depth: usize) -> Result<(), Error> {
        if depth > MAX_DEPTH {
            return Err(at(path)(io::Error::new(
                io::ErrorKind::InvalidData,
                "directory tree too deep",
            )));
        }
        let mut entries = Vec::new();
        for entry in self
            .ext2
            .read_dir(dir, 0)
            .map_err(|e| at(path)(image_error(e)))?
        {
            let entry = entry.map_err(|e| at(path)(image_error(e)))?;
            if entry.name == b"." || entry.name == b".." {
                continue;
            }
            entries.push(entry);
        }
        for entry in entries {
            let name = &entry.name;
            if name.is_empty() || name.contains(&b'/') || name.contains(&0) {
                return Err(at(path)(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "unsafe name {:?} in the image",
                        String::from_utf8_lossy(name)
                    ),
                )));
            }
            let child = path.join(std::ffi::OsStr::from_bytes(name));
            self.entry(entry.ino, &child, depth)?;
        }
        Ok(())
    }

    fn entry(&mut self, ino: InodeNo, path: &Path, depth: usize) -> Result<(), Error> {
        let inode = self.ext2.inode(ino).map_err(|e| at(path)(image_error(e)))?;
        let mode = inode.permissions();
        match inode.file_type() {
            Some(FileType::Directory) => {
                if !self.dirs.insert(ino.0) {
                    return Err(at(path)(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "directory loop in the image",
                    )));
                }
                std::fs::create_dir(path).map_err(at(path))?;
                self.directory(ino, path, depth + 1)?;
                set_dir_mode(path, mode)
            }
            Some(FileType::Regular) => {
                if inode.links_count > 1 {
                    if let Some(first) = self.links.get(&ino.0) {
                        return std::fs::hard_link(first, path).map_err(at(path));
                    }
                    self.links.insert(ino.0, path.to_owned());
                }
                self.file(ino, &inode, path)?;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode.into()))
                    .map_err(at(path))
            }
            Some(FileType::Symlink) => {
                let target = self
                    .ext2
                    .read_link(ino, &inode)
                    .map_err(|e| at(path)(image_error(e)))?;
                std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(&target), path)
                    .map_err(at(path))
            }
            Some(FileType::Fifo) => rustix::fs::mknodat(
                rustix::fs::CWD,
                path,
                rustix::fs::FileType::Fifo,
                rustix::fs::Mode::from_raw_mode(mode.into()),
                0,
            )
            .map_err(|e| at(path)(e.into())),
            // Devices and sockets cannot be made by an ordinary user and an
            // app has no use for copies of them: skipped.
            Some(_) => Ok(()),
            None => Err(at(path)(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("inode {}: unknown file type", ino.0),
            ))),
        }
    }

    fn file(&mut self, ino: InodeNo, inode: &glick_ext2::Inode, path: &Path) -> Result<(), Error> {
        use std::os::unix::fs::FileExt;
        let out: File = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .map_err(at(path))?;
        out.set_len(inode.size).map_err(at(path))?;
        let mut offset = 0u64;
        while offset < inode.size {
            let want = usize::try_from((inode.size - offset).min(self.buf.len() as u64))
                .unwrap_or(self.buf.len());
            let n = self
                .ext2
                .read(ino, inode, offset, &mut self.buf[..want])
                .map_err(|e| at(path)(image_error(e)))?;
            if n == 0 {
                break;
            }
            // All-zero chunks stay holes.
            if self.buf[..n].iter().any(|&b| b != 0) {
                out.write_all_at(&self.buf[..n], offset).map_err(at(path))?;
            }
            offset += n as u64;
        }
        Ok(())
    }
}

/// Remove an extracted tree, making directories writable first where the
/// image had them read-only. Best effort: used on the way out.
pub fn remove_tree(dir: &Path) {
    fn unlock(dir: &Path) {
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    unlock(&entry.path());
                }
            }
        }
    }
    unlock(dir);
    let _ = std::fs::remove_dir_all(dir);
}
