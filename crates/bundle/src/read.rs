//! Finding a bundle's parts from its ELF section table.

use std::fs::File;
use std::os::unix::fs::FileExt;

use sha2::{Digest, Sha256};

use crate::elf::{SHF_ALLOC, SHT_NOBITS};
use crate::table::{FileSource, Source, Table};
use crate::{DESKTOP, DIGEST, Error, ICON, IMAGE};

/// Largest icon or desktop entry [`Bundle::read_part`] callers should load (16 MiB).
pub const MAX_SMALL_PART: u64 = 16 << 20;

/// Where one part of a bundle lies in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Part {
    /// File offset of the first byte.
    pub offset: u64,
    /// Length in bytes.
    pub size: u64,
}

impl Part {
    /// One past the last byte.
    pub fn end(&self) -> u64 {
        self.offset + self.size
    }
}

/// One entry of the section table, for listings such as `glick-extract --info`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SectionInfo {
    /// The name (bytes that are not UTF-8 replaced).
    pub name: String,
    /// `sh_type`
    pub kind: u32,
    /// `sh_flags`
    pub flags: u64,
    /// `sh_offset`
    pub offset: u64,
    /// `sh_size`
    pub size: u64,
}

/// The layout of a bundle: where its image, icon, desktop entry and digest are.
///
/// Made by [`Bundle::open`], which reads only the ELF header, the section header table and
/// the section-name table (a few KiB, whatever the bundle's size) and checks every part
/// against the file's length. The caller keeps the file and reads the parts it needs.
#[derive(Debug, Clone)]
pub struct Bundle {
    file_len: u64,
    machine: u16,
    image: Part,
    image_allocated: bool,
    icon: Option<Part>,
    desktop_entry: Option<Part>,
    digest: Option<Part>,
    sections: Vec<SectionInfo>,
}

/// The outcome of [`Bundle::verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    /// The digest the bundle records, if it has a `.glick.digest` section.
    pub recorded: Option<[u8; 32]>,
    /// The SHA-256 of the image as it is now.
    pub actual: [u8; 32],
}

impl Verification {
    /// Whether a digest is recorded and matches.
    pub fn ok(&self) -> bool {
        self.recorded == Some(self.actual)
    }
}

impl Bundle {
    /// Reads a bundle's layout from an open file.
    ///
    /// # Errors
    /// Every way the file can fail to be a bundle has its own [`Error`] variant.
    pub fn open(file: &File) -> Result<Self, Error> {
        let len = file
            .metadata()
            .map_err(Error::io("reading the file's length"))?
            .len();
        Self::parse(&FileSource { file, len })
    }

    /// Reads a bundle's layout from bytes in memory (tests, fuzzing).
    ///
    /// # Errors
    /// As [`Bundle::open`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        Self::parse(bytes)
    }

    /// Reads a bundle's layout from any [`Source`].
    ///
    /// # Errors
    /// As [`Bundle::open`].
    pub fn parse(src: &(impl Source + ?Sized)) -> Result<Self, Error> {
        let file_len = src.size();
        let table = Table::read(src)?;
        if table.sections.is_empty() {
            return Err(Error::NoSectionTable);
        }
        let mut found: [Option<usize>; 4] = [None; 4];
        let names = [IMAGE, ICON, DESKTOP, DIGEST];
        let mut sections = Vec::with_capacity(table.sections.len());
        for (index, s) in table.sections.iter().enumerate() {
            let name = table.name(index)?;
            if let Some(which) = names.iter().position(|n| n.as_bytes() == name) {
                if found[which].is_some() {
                    return Err(Error::DuplicateSection(names[which]));
                }
                found[which] = Some(index);
            }
            sections.push(SectionInfo {
                name: String::from_utf8_lossy(name).into_owned(),
                kind: s.kind,
                flags: s.flags,
                offset: s.offset,
                size: s.size,
            });
        }
        let part = |which: usize| -> Result<Option<Part>, Error> {
            let Some(index) = found[which] else {
                return Ok(None);
            };
            let s = &table.sections[index];
            let name = names[which];
            if s.kind == SHT_NOBITS {
                return Err(if which == 0 && s.size == 0 {
                    Error::EmptyImage
                } else {
                    Error::NoBits(name)
                });
            }
            match s.file_end() {
                Some(end) if end <= file_len => Ok(Some(Part {
                    offset: s.offset,
                    size: s.size,
                })),
                _ => Err(Error::SectionPastEof {
                    name,
                    offset: s.offset,
                    size: s.size,
                    file_len,
                }),
            }
        };
        let image = part(0)?.ok_or(Error::NoImage)?;
        let icon = part(1)?;
        let desktop_entry = part(2)?;
        let digest = part(3)?;
        if image.size == 0 {
            return Err(Error::EmptyImage);
        }
        // No part may share bytes with another part or with the structures that locate them.
        let mut ranges: Vec<(String, Part, bool)> = vec![
            (
                "the ELF header".to_owned(),
                Part {
                    offset: 0,
                    size: crate::elf::FileHeader::SIZE as u64,
                },
                false,
            ),
            (
                "the section header table".to_owned(),
                Part {
                    offset: table.header.shoff,
                    size: table.table_end() - table.header.shoff,
                },
                false,
            ),
        ];
        if let Some(s) = table.sections.get(table.shstrndx as usize) {
            if table.shstrndx != 0 {
                ranges.push((
                    "section .shstrtab".to_owned(),
                    Part {
                        offset: s.offset,
                        size: s.size,
                    },
                    false,
                ));
            }
        }
        for (which, p) in [Some(image), icon, desktop_entry, digest]
            .into_iter()
            .enumerate()
        {
            if let Some(p) = p {
                ranges.push((format!("section {}", names[which]), p, true));
            }
        }
        for (i, (a_name, a, a_ours)) in ranges.iter().enumerate() {
            for (b_name, b, b_ours) in &ranges[i + 1..] {
                let overlap = a.size > 0 && b.size > 0 && a.offset < b.end() && b.offset < a.end();
                if overlap && (*a_ours || *b_ours) {
                    return Err(Error::Overlap {
                        first: a_name.clone(),
                        second: b_name.clone(),
                    });
                }
            }
        }
        let image_allocated = found[0].is_some_and(|i| table.sections[i].flags & SHF_ALLOC != 0);
        Ok(Self {
            file_len,
            machine: table.header.machine,
            image,
            image_allocated,
            icon,
            desktop_entry,
            digest,
            sections,
        })
    }

    /// The file's length when the layout was read.
    pub fn file_len(&self) -> u64 {
        self.file_len
    }

    /// `e_machine` of the runtime (62 = x86-64).
    pub fn machine(&self) -> u16 {
        self.machine
    }

    /// The ext2 image.
    pub fn image(&self) -> Part {
        self.image
    }

    /// Whether the image is an allocated section (Glick 1's layout) rather than glick's
    /// non-allocated one.
    pub fn is_glick1_layout(&self) -> bool {
        self.image_allocated
    }

    /// The image as a [`glick_ext2::ReadAt`] over `file` (pread, reads bounded to the
    /// section), ready for [`glick_ext2::Ext2::open`].
    pub fn image_region(&self, file: impl Into<std::sync::Arc<File>>) -> glick_ext2::FileRegion {
        glick_ext2::FileRegion::new(file, self.image.offset, self.image.size)
    }

    /// The 48×48 PNG icon, if any.
    pub fn icon(&self) -> Option<Part> {
        self.icon
    }

    /// The desktop entry, if any.
    pub fn desktop_entry(&self) -> Option<Part> {
        self.desktop_entry
    }

    /// The recorded digest, if any.
    pub fn digest(&self) -> Option<Part> {
        self.digest
    }

    /// Every section of the file, in table order.
    pub fn sections(&self) -> &[SectionInfo] {
        &self.sections
    }

    /// Reads a small part (icon, desktop entry, digest) into memory.
    ///
    /// # Errors
    /// [`Error::TooLarge`] beyond [`MAX_SMALL_PART`]; I/O errors.
    pub fn read_part(file: &File, name: &'static str, part: Part) -> Result<Vec<u8>, Error> {
        if part.size > MAX_SMALL_PART {
            return Err(Error::TooLarge {
                name,
                size: part.size,
                limit: MAX_SMALL_PART,
            });
        }
        let mut buf = vec![0u8; usize::try_from(part.size).unwrap_or(0)];
        file.read_exact_at(&mut buf, part.offset)
            .map_err(Error::io("reading a section"))?;
        Ok(buf)
    }

    /// Reads and decodes the recorded digest.
    ///
    /// # Errors
    /// [`Error::BadDigest`] when the section is not in the format [`crate::digest_text`] writes.
    pub fn recorded_digest(&self, file: &File) -> Result<Option<[u8; 32]>, Error> {
        let Some(part) = self.digest else {
            return Ok(None);
        };
        if part.size != crate::DIGEST_LEN as u64 {
            return Err(Error::BadDigest);
        }
        let text = Self::read_part(file, DIGEST, part)?;
        crate::parse_digest(&text).map(Some)
    }

    /// Hashes the image and compares it with the recorded digest.
    ///
    /// # Errors
    /// I/O errors and a malformed digest section.
    pub fn verify(&self, file: &File) -> Result<Verification, Error> {
        let recorded = self.recorded_digest(file)?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut done = 0;
        while done < self.image.size {
            let n = usize::try_from((self.image.size - done).min(buf.len() as u64))
                .unwrap_or(buf.len());
            file.read_exact_at(&mut buf[..n], self.image.offset + done)
                .map_err(Error::io("reading the image"))?;
            hasher.update(&buf[..n]);
            done += n as u64;
        }
        Ok(Verification {
            recorded,
            actual: hasher.finalize().into(),
        })
    }
}
