//! Reading an ELF file's header and section header table through positioned reads.
//!
//! Shared by the reader (a bundle) and the writer (a stub). Only the ELF header, the section
//! header table and the section-name string table are read, and each is checked against the
//! file's length before it is read, so a hostile file cannot make us allocate or read more
//! than [`MAX_SECTIONS`] headers and [`MAX_SHSTRTAB`] bytes of names.

use std::io;

use crate::Error;
use crate::elf::{FileHeader, SHN_XINDEX, SHT_NOBITS, SectionHeader};

/// Most section headers accepted (a stub has about 30; a bundle 4 more).
pub const MAX_SECTIONS: u64 = 65_536;
/// Largest section-name string table accepted.
pub const MAX_SHSTRTAB: u64 = 1 << 20;

/// Something that can be read at an offset: a file or a byte slice.
pub trait Source {
    /// The total length in bytes.
    fn size(&self) -> u64;
    /// Fills `buf` from `offset`; `offset + buf.len()` has been checked against [`Self::size`].
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
}

impl Source for [u8] {
    fn size(&self) -> u64 {
        self.len() as u64
    }
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let start = usize::try_from(offset).map_err(|_| io::ErrorKind::UnexpectedEof)?;
        let src = start
            .checked_add(buf.len())
            .and_then(|end| self.get(start..end))
            .ok_or(io::ErrorKind::UnexpectedEof)?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

/// A file together with the length it had when it was opened.
pub(crate) struct FileSource<'a> {
    pub file: &'a std::fs::File,
    pub len: u64,
}

impl Source for FileSource<'_> {
    fn size(&self) -> u64 {
        self.len
    }
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(self.file, buf, offset)
    }
}

/// The section table of an ELF file.
#[derive(Debug, Clone)]
pub struct Table {
    /// The file header.
    pub header: FileHeader,
    /// Every section header, index 0 included (empty when the file has no table).
    pub sections: Vec<SectionHeader>,
    /// Index of the section-name string table (0 = none).
    pub shstrndx: u32,
    /// The section-name string table's bytes (empty when there is none).
    pub shstrtab: Vec<u8>,
}

impl Table {
    /// Reads the header and (when present) the section table.
    ///
    /// # Errors
    /// Not an ELF64 LE file, or a table that is malformed or lies past the end of the file.
    pub fn read(src: &(impl Source + ?Sized)) -> Result<Self, Error> {
        let len = src.size();
        let mut head = [0u8; FileHeader::SIZE];
        let head_len = usize::try_from(len.min(FileHeader::SIZE as u64)).unwrap_or(0);
        let head = &mut head[..head_len];
        src.read_exact_at(0, head)
            .map_err(Error::io("reading the ELF header"))?;
        let header = FileHeader::from_bytes(head, len)?;
        if header.shoff == 0 {
            return Ok(Self {
                header,
                sections: Vec::new(),
                shstrndx: 0,
                shstrtab: Vec::new(),
            });
        }
        if usize::from(header.shentsize) != SectionHeader::SIZE {
            return Err(Error::BadSectionTable("e_shentsize is not 64"));
        }
        let read_header = |index: u64| -> Result<SectionHeader, Error> {
            let at = header
                .shoff
                .checked_add(index * SectionHeader::SIZE as u64)
                .ok_or(Error::BadSectionTable("e_shoff overflows"))?;
            let end = at
                .checked_add(SectionHeader::SIZE as u64)
                .ok_or(Error::BadSectionTable("e_shoff overflows"))?;
            if end > len {
                return Err(Error::Truncated {
                    what: "section header table",
                    end,
                    file_len: len,
                });
            }
            let mut b = [0u8; SectionHeader::SIZE];
            src.read_exact_at(at, &mut b)
                .map_err(Error::io("reading the section header table"))?;
            Ok(SectionHeader::from_bytes(&b))
        };
        // Extended numbering: a count too large for e_shnum is kept in section 0.
        let mut count = u64::from(header.shnum);
        let mut shstrndx = u32::from(header.shstrndx);
        if count == 0 || header.shstrndx == SHN_XINDEX {
            let first = read_header(0)?;
            if count == 0 {
                count = first.size;
            }
            if header.shstrndx == SHN_XINDEX {
                shstrndx = first.link;
            }
        }
        if count == 0 {
            return Err(Error::BadSectionTable("the table has no sections"));
        }
        if count > MAX_SECTIONS {
            return Err(Error::BadSectionTable("more than 65536 sections"));
        }
        let table_end = count
            .checked_mul(SectionHeader::SIZE as u64)
            .and_then(|size| header.shoff.checked_add(size))
            .ok_or(Error::BadSectionTable("e_shoff overflows"))?;
        if table_end > len {
            return Err(Error::Truncated {
                what: "section header table",
                end: table_end,
                file_len: len,
            });
        }
        let table_len = usize::try_from(table_end - header.shoff)
            .map_err(|_| Error::BadSectionTable("table too large"))?;
        let mut raw = vec![0u8; table_len];
        src.read_exact_at(header.shoff, &mut raw)
            .map_err(Error::io("reading the section header table"))?;
        let sections: Vec<SectionHeader> = raw
            .chunks_exact(SectionHeader::SIZE)
            .map(|c| {
                let mut b = [0u8; SectionHeader::SIZE];
                b.copy_from_slice(c);
                SectionHeader::from_bytes(&b)
            })
            .collect();
        let shstrtab = if shstrndx == 0 {
            Vec::new()
        } else {
            let s = usize::try_from(shstrndx)
                .ok()
                .and_then(|i| sections.get(i))
                .ok_or(Error::BadSectionTable("e_shstrndx is out of range"))?;
            if s.kind == SHT_NOBITS {
                return Err(Error::NoBits(".shstrtab"));
            }
            let end = s.file_end().ok_or(Error::SectionPastEof {
                name: ".shstrtab",
                offset: s.offset,
                size: s.size,
                file_len: len,
            })?;
            if end > len {
                return Err(Error::SectionPastEof {
                    name: ".shstrtab",
                    offset: s.offset,
                    size: s.size,
                    file_len: len,
                });
            }
            if s.size > MAX_SHSTRTAB {
                return Err(Error::TooLarge {
                    name: ".shstrtab",
                    size: s.size,
                    limit: MAX_SHSTRTAB,
                });
            }
            let mut names = vec![0u8; usize::try_from(s.size).unwrap_or(0)];
            src.read_exact_at(s.offset, &mut names)
                .map_err(Error::io("reading the section name table"))?;
            names
        };
        Ok(Self {
            header,
            sections,
            shstrndx,
            shstrtab,
        })
    }

    /// The name of section `index`.
    ///
    /// # Errors
    /// [`Error::BadSectionName`] when the name offset is outside the string table.
    pub fn name(&self, index: usize) -> Result<&[u8], Error> {
        let bad = || Error::BadSectionName {
            index: u32::try_from(index).unwrap_or(u32::MAX),
        };
        let s = self.sections.get(index).ok_or_else(bad)?;
        if self.shstrtab.is_empty() {
            return Ok(b"");
        }
        crate::elf::name_at(&self.shstrtab, s.name).ok_or_else(bad)
    }

    /// One past the last byte of the section header table (0 without one).
    pub fn table_end(&self) -> u64 {
        if self.sections.is_empty() {
            0
        } else {
            self.header.shoff + (self.sections.len() * SectionHeader::SIZE) as u64
        }
    }
}
