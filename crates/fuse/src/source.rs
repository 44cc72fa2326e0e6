//! [`ImageSource`]: where the server reads the image from — a mapping of the running
//! bundle, or `pread` on any other file.
//!
//! A mapping lets a read be answered straight from the bundle's page cache (the reply's
//! `writev` copies once, into the FUSE file's pages) and metadata be read without a system
//! call; `pread` copies into a buffer first. Mapping is only safe while the file cannot
//! shrink under it (a truncated page raises `SIGBUS` in the server), and the kernel promises
//! that for one file only: the executable a process is running, which it refuses to open
//! for writing (`ETXTBSY`). The stub serves `/proc/self/exe`, so it maps; `glick-shell
//! GLICK` serves a bundle it merely opened, so it reads. (The promise is local: a bundle on
//! a network filesystem truncated by another machine while it runs is outside it.)

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;

use glick_ext2::{FileRegion, ReadAt};

use crate::sys::Mapping;

/// The image's bytes, as the server reads them.
#[derive(Debug)]
pub struct ImageSource(Inner);

#[derive(Debug)]
enum Inner {
    /// A read-only mapping of the running executable: the image starts `skip` bytes in.
    Mapped {
        /// The mapping, from the page boundary at or before the image.
        map: Mapping,
        /// Where the image starts in the mapping.
        skip: usize,
    },
    /// `pread` on the file.
    File(FileRegion),
}

impl ImageSource {
    /// The image `[offset, offset + len)` of `file`: mapped when `file` is the executable
    /// this process runs (and the mapping can be made), read with `pread` otherwise.
    pub fn new(file: File, offset: u64, len: u64) -> Self {
        match Self::map_if_running(&file, offset, len) {
            Some(mapped) => ImageSource(mapped),
            None => ImageSource(Inner::File(FileRegion::new(file, offset, len))),
        }
    }

    fn map_if_running(file: &File, offset: u64, len: u64) -> Option<Inner> {
        let ours = file.metadata().ok()?;
        let running = std::fs::metadata("/proc/self/exe").ok()?;
        if (ours.dev(), ours.ino()) != (running.dev(), running.ino()) {
            return None;
        }
        // The image must lie inside the file as it is now: past its end the mapping
        // would fault instead of failing a read.
        if offset.checked_add(len)? > ours.len() {
            return None;
        }
        let page = rustix::param::page_size() as u64;
        let start = offset - offset % page;
        let skip = usize::try_from(offset - start).ok()?;
        let map_len = usize::try_from(len).ok()?.checked_add(skip)?;
        let map = Mapping::file(file.as_fd(), start, map_len).ok()?;
        Some(Inner::Mapped { map, skip })
    }

    /// Whether reads are answered from a mapping.
    pub fn is_mapped(&self) -> bool {
        matches!(self.0, Inner::Mapped { .. })
    }
}

impl ImageSource {
    /// The mapped image as a byte slice, whose `ReadAt` does the bounds checks.
    fn mapped(&self) -> Option<&[u8]> {
        match &self.0 {
            Inner::Mapped { map, skip } => map.bytes().get(*skip..),
            Inner::File(_) => None,
        }
    }
}

impl ReadAt for ImageSource {
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        match (&self.0, self.mapped()) {
            (_, Some(image)) => image.read_exact_at(offset, buf),
            (Inner::File(region), None) => region.read_exact_at(offset, buf),
            (Inner::Mapped { .. }, None) => Err(io::ErrorKind::UnexpectedEof.into()),
        }
    }

    fn size(&self) -> u64 {
        match (&self.0, self.mapped()) {
            (_, Some(image)) => ReadAt::size(image),
            (Inner::File(region), None) => region.size(),
            (Inner::Mapped { .. }, None) => 0,
        }
    }

    fn bytes_at(&self, offset: u64, len: usize) -> Option<&[u8]> {
        self.mapped()?.bytes_at(offset, len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::FileExt;

    fn running() -> (File, u64) {
        let exe = File::open("/proc/self/exe").expect("open /proc/self/exe");
        let len = exe.metadata().expect("metadata").len();
        (exe, len)
    }

    #[test]
    fn the_running_executable_is_mapped_and_reads_like_the_file() {
        let (exe, len) = running();
        // An offset off the page grid, as in Glick 1's layout.
        let (offset, size) = (4097, 10_000);
        assert!(offset + size <= len);
        let source = ImageSource::new(exe.try_clone().expect("dup"), offset, size);
        assert!(source.is_mapped());
        assert_eq!(source.size(), size);
        let mut expected = vec![0u8; 100];
        exe.read_exact_at(&mut expected, offset + 50)
            .expect("pread");
        let mut got = vec![0u8; 100];
        source.read_exact_at(50, &mut got).expect("read");
        assert_eq!(got, expected);
        assert_eq!(source.bytes_at(50, 100), Some(&expected[..]));
        assert!(source.read_exact_at(size - 10, &mut [0u8; 20]).is_err());
        assert_eq!(source.bytes_at(size - 10, 20), None);
        assert_eq!(source.bytes_at(u64::MAX, 1), None);
    }

    #[test]
    fn an_image_past_the_end_of_the_running_file_is_read_not_mapped() {
        let (exe, len) = running();
        let source = ImageSource::new(exe, len - 10, 20);
        assert!(!source.is_mapped(), "a mapping past the end would fault");
        assert!(source.read_exact_at(0, &mut [0u8; 20]).is_err());
    }

    #[test]
    fn any_other_file_is_read_with_pread() {
        let mut file = tempfile::tempfile().expect("tempfile");
        file.write_all(b"0123456789").expect("write");
        let source = ImageSource::new(file, 2, 5);
        assert!(
            !source.is_mapped(),
            "only the running executable is safe to map"
        );
        let mut buf = [0u8; 5];
        source.read_exact_at(0, &mut buf).expect("read");
        assert_eq!(&buf, b"23456");
        assert_eq!(source.bytes_at(0, 5), None);
    }
}
