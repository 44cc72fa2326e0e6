//! The small trait the reader reads the image through: positioned reads, no seeking, so one
//! reader can be shared by many threads.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

/// Random access to the bytes of an image.
pub trait ReadAt: Send + Sync {
    /// Fills `buf` with the bytes at `offset`; reading past [`ReadAt::size`] is an error
    /// (`UnexpectedEof`).
    ///
    /// # Errors
    ///
    /// Any I/O error, or `UnexpectedEof` when `offset + buf.len()` is past the end.
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;

    /// The number of bytes.
    fn size(&self) -> u64;

    /// The bytes `[offset, offset + len)` in place, for a reader that holds the image in
    /// memory (a slice, a mapping), so that a caller can pass them on without copying.
    /// `None` when the reader has no such view or the range is not inside: use
    /// [`ReadAt::read_exact_at`].
    fn bytes_at(&self, offset: u64, len: usize) -> Option<&[u8]> {
        let _ = (offset, len);
        None
    }
}

fn out_of_range(offset: u64, len: usize, size: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!(
            "read of {len} bytes at offset {offset} is past the end of the image ({size} bytes)"
        ),
    )
}

/// The sub-slice `[offset, offset + len)` of a slice, if it is inside.
fn range(size: usize, offset: u64, len: usize) -> Option<std::ops::Range<usize>> {
    let start = usize::try_from(offset).ok()?;
    let end = start.checked_add(len)?;
    (end <= size).then_some(start..end)
}

impl ReadAt for [u8] {
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let r = range(self.len(), offset, buf.len())
            .ok_or_else(|| out_of_range(offset, buf.len(), self.size()))?;
        buf.copy_from_slice(&self[r]);
        Ok(())
    }

    fn size(&self) -> u64 {
        self.len() as u64
    }

    fn bytes_at(&self, offset: u64, len: usize) -> Option<&[u8]> {
        self.get(range(self.len(), offset, len)?)
    }
}

impl ReadAt for Vec<u8> {
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.as_slice().read_exact_at(offset, buf)
    }

    fn size(&self) -> u64 {
        self.as_slice().size()
    }

    fn bytes_at(&self, offset: u64, len: usize) -> Option<&[u8]> {
        self.as_slice().bytes_at(offset, len)
    }
}

impl<T: ReadAt + ?Sized> ReadAt for &T {
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        (**self).read_exact_at(offset, buf)
    }

    fn size(&self) -> u64 {
        (**self).size()
    }

    fn bytes_at(&self, offset: u64, len: usize) -> Option<&[u8]> {
        (**self).bytes_at(offset, len)
    }
}

impl<T: ReadAt + ?Sized> ReadAt for Arc<T> {
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        (**self).read_exact_at(offset, buf)
    }

    fn size(&self) -> u64 {
        (**self).size()
    }

    fn bytes_at(&self, offset: u64, len: usize) -> Option<&[u8]> {
        (**self).bytes_at(offset, len)
    }
}

impl<T: ReadAt + ?Sized> ReadAt for Box<T> {
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        (**self).read_exact_at(offset, buf)
    }

    fn size(&self) -> u64 {
        (**self).size()
    }

    fn bytes_at(&self, offset: u64, len: usize) -> Option<&[u8]> {
        (**self).bytes_at(offset, len)
    }
}

/// The bytes `[start, start + len)` of an open file, read with `pread`: for an image that
/// is a section of a bundle. The file's cursor is never used, so the file may be shared.
#[derive(Debug, Clone)]
pub struct FileRegion {
    file: Arc<File>,
    start: u64,
    len: u64,
}

impl FileRegion {
    /// The region `[start, start + len)` of `file`. Nothing is checked until a read.
    pub fn new(file: impl Into<Arc<File>>, start: u64, len: u64) -> Self {
        FileRegion {
            file: file.into(),
            start,
            len,
        }
    }

    /// The whole of `file`, as long as it is now.
    ///
    /// # Errors
    ///
    /// When the file's metadata can't be read.
    pub fn whole(file: impl Into<Arc<File>>) -> io::Result<Self> {
        let file = file.into();
        let len = file.metadata()?.len();
        Ok(FileRegion::new(file, 0, len))
    }

    /// The file.
    #[must_use]
    pub fn file(&self) -> &Arc<File> {
        &self.file
    }

    /// The region's first byte in the file.
    #[must_use]
    pub fn start(&self) -> u64 {
        self.start
    }
}

impl ReadAt for FileRegion {
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let len = buf.len() as u64;
        let inside = offset.checked_add(len).is_some_and(|end| end <= self.len);
        let at = self.start.checked_add(offset).filter(|_| inside);
        match at {
            Some(at) => self.file.read_exact_at(buf, at),
            None => Err(out_of_range(offset, buf.len(), self.len)),
        }
    }

    fn size(&self) -> u64 {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn slices_read_inside_and_refuse_outside() {
        let data: Vec<u8> = (0..=9).collect();
        let mut buf = [0u8; 3];
        data.read_exact_at(7, &mut buf).expect("inside");
        assert_eq!(buf, [7, 8, 9]);
        assert!(data.read_exact_at(8, &mut buf).is_err());
        assert!(data.read_exact_at(u64::MAX, &mut buf).is_err());
        let s: &[u8] = &data;
        assert_eq!(ReadAt::size(&s), 10);
        let arc: Arc<[u8]> = Arc::from(data.as_slice());
        arc.read_exact_at(0, &mut buf).expect("inside");
        assert_eq!(buf, [0, 1, 2]);
        assert_eq!(data.bytes_at(7, 3), Some(&[7u8, 8, 9][..]));
        assert_eq!(arc.bytes_at(8, 3), None);
        assert_eq!(data.bytes_at(u64::MAX, 1), None);
    }

    #[test]
    fn file_region_is_offset_and_bounded() {
        let mut f = tempfile_in_target();
        f.write_all(b"0123456789").expect("write");
        let region = FileRegion::new(f, 2, 5);
        let mut buf = [0u8; 5];
        region.read_exact_at(0, &mut buf).expect("inside");
        assert_eq!(&buf, b"23456");
        assert!(region.read_exact_at(1, &mut buf).is_err());
        assert!(region.read_exact_at(u64::MAX, &mut buf[..1]).is_err());
        assert_eq!(region.size(), 5);
        assert_eq!(
            region.bytes_at(0, 1),
            None,
            "a file is read, never viewed in place"
        );
    }

    fn tempfile_in_target() -> File {
        let dir = std::env::temp_dir();
        let path = dir.join(format!("glick-ext2-read-at-{}", std::process::id()));
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .expect("create temp file");
        std::fs::remove_file(&path).expect("unlink temp file");
        f
    }
}
