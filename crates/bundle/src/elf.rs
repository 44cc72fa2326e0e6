//! The few ELF64 little-endian structures a bundle needs: the file header, section headers
//! and program headers, decoded and encoded by hand (they are small and fixed).
//!
//! Every multi-byte field is little-endian; only ELFCLASS64 + ELFDATA2LSB files are handled.
//! Any `e_machine` is accepted: the section table does not depend on the machine, so a
//! bundle built around a stub for another architecture is read the same way.

use crate::Error;

/// `\x7fELF`.
pub const MAGIC: [u8; 4] = *b"\x7fELF";
/// `e_ident[EI_CLASS]` of a 64-bit file.
pub const CLASS_64: u8 = 2;
/// `e_ident[EI_DATA]` of a little-endian file.
pub const DATA_LSB: u8 = 1;
/// `e_ident[EI_VERSION]` / `e_version`: the only ELF version.
pub const VERSION_CURRENT: u8 = 1;

/// `SHT_NULL`
pub const SHT_NULL: u32 = 0;
/// `SHT_PROGBITS`
pub const SHT_PROGBITS: u32 = 1;
/// `SHT_STRTAB`
pub const SHT_STRTAB: u32 = 3;
/// `SHT_NOBITS`: a section that occupies no bytes in the file (`.bss`).
pub const SHT_NOBITS: u32 = 8;
/// `SHF_ALLOC`: the section is part of the process image (Glick 1 put its image there).
pub const SHF_ALLOC: u64 = 0x2;
/// `SHN_XINDEX`: the real `e_shstrndx` is in section 0's `sh_link`.
pub const SHN_XINDEX: u16 = 0xffff;
/// `SHN_LORESERVE`: section counts at or above this use extended numbering.
pub const SHN_LORESERVE: u16 = 0xff00;

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut v = [0; 4];
    v.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(v)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut v = [0; 8];
    v.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(v)
}

fn put(out: &mut [u8], at: usize, bytes: &[u8]) {
    out[at..at + bytes.len()].copy_from_slice(bytes);
}

/// The ELF file header (`Elf64_Ehdr`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileHeader {
    /// `e_ident`: magic, class, data, version, OS ABI, ABI version, padding.
    pub ident: [u8; 16],
    /// `e_type` (`ET_EXEC`, `ET_DYN`, …).
    pub kind: u16,
    /// `e_machine` (62 = x86-64).
    pub machine: u16,
    /// `e_version`
    pub version: u32,
    /// `e_entry`
    pub entry: u64,
    /// `e_phoff`: file offset of the program header table.
    pub phoff: u64,
    /// `e_shoff`: file offset of the section header table (0 = none).
    pub shoff: u64,
    /// `e_flags`
    pub flags: u32,
    /// `e_ehsize`
    pub ehsize: u16,
    /// `e_phentsize`
    pub phentsize: u16,
    /// `e_phnum`
    pub phnum: u16,
    /// `e_shentsize`
    pub shentsize: u16,
    /// `e_shnum` (0 with a non-zero `e_shoff` = extended numbering)
    pub shnum: u16,
    /// `e_shstrndx` (`SHN_XINDEX` = extended numbering)
    pub shstrndx: u16,
}

impl FileHeader {
    /// Size of `Elf64_Ehdr`.
    pub const SIZE: usize = 64;

    /// Decodes and checks the identification bytes.
    ///
    /// # Errors
    /// [`Error::Truncated`] when fewer than 64 bytes are given, [`Error::NotElf`] without the
    /// magic, [`Error::NotElf64Le`] for 32-bit or big-endian files.
    pub fn from_bytes(b: &[u8], file_len: u64) -> Result<Self, Error> {
        if b.len() >= 4 && b[..4] != MAGIC {
            return Err(Error::NotElf);
        }
        if b.len() < Self::SIZE {
            if b.len() < 4 {
                return Err(Error::NotElf);
            }
            return Err(Error::Truncated {
                what: "ELF header",
                end: Self::SIZE as u64,
                file_len,
            });
        }
        if b[4] != CLASS_64 || b[5] != DATA_LSB {
            return Err(Error::NotElf64Le {
                class: b[4],
                data: b[5],
            });
        }
        let mut ident = [0; 16];
        ident.copy_from_slice(&b[..16]);
        Ok(Self {
            ident,
            kind: u16_at(b, 16),
            machine: u16_at(b, 18),
            version: u32_at(b, 20),
            entry: u64_at(b, 24),
            phoff: u64_at(b, 32),
            shoff: u64_at(b, 40),
            flags: u32_at(b, 48),
            ehsize: u16_at(b, 52),
            phentsize: u16_at(b, 54),
            phnum: u16_at(b, 56),
            shentsize: u16_at(b, 58),
            shnum: u16_at(b, 60),
            shstrndx: u16_at(b, 62),
        })
    }

    /// Encodes the header.
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut b = [0; Self::SIZE];
        put(&mut b, 0, &self.ident);
        put(&mut b, 16, &self.kind.to_le_bytes());
        put(&mut b, 18, &self.machine.to_le_bytes());
        put(&mut b, 20, &self.version.to_le_bytes());
        put(&mut b, 24, &self.entry.to_le_bytes());
        put(&mut b, 32, &self.phoff.to_le_bytes());
        put(&mut b, 40, &self.shoff.to_le_bytes());
        put(&mut b, 48, &self.flags.to_le_bytes());
        put(&mut b, 52, &self.ehsize.to_le_bytes());
        put(&mut b, 54, &self.phentsize.to_le_bytes());
        put(&mut b, 56, &self.phnum.to_le_bytes());
        put(&mut b, 58, &self.shentsize.to_le_bytes());
        put(&mut b, 60, &self.shnum.to_le_bytes());
        put(&mut b, 62, &self.shstrndx.to_le_bytes());
        b
    }
}

/// A section header (`Elf64_Shdr`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SectionHeader {
    /// `sh_name`: offset of the name in the section-name string table.
    pub name: u32,
    /// `sh_type`
    pub kind: u32,
    /// `sh_flags`
    pub flags: u64,
    /// `sh_addr`
    pub addr: u64,
    /// `sh_offset`: where the section's bytes are in the file.
    pub offset: u64,
    /// `sh_size`
    pub size: u64,
    /// `sh_link`
    pub link: u32,
    /// `sh_info`
    pub info: u32,
    /// `sh_addralign`
    pub addralign: u64,
    /// `sh_entsize`
    pub entsize: u64,
}

impl SectionHeader {
    /// Size of `Elf64_Shdr`.
    pub const SIZE: usize = 64;

    /// Decodes one section header from exactly [`Self::SIZE`] bytes.
    pub fn from_bytes(b: &[u8; Self::SIZE]) -> Self {
        Self {
            name: u32_at(b, 0),
            kind: u32_at(b, 4),
            flags: u64_at(b, 8),
            addr: u64_at(b, 16),
            offset: u64_at(b, 24),
            size: u64_at(b, 32),
            link: u32_at(b, 40),
            info: u32_at(b, 44),
            addralign: u64_at(b, 48),
            entsize: u64_at(b, 56),
        }
    }

    /// Encodes the header.
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut b = [0; Self::SIZE];
        put(&mut b, 0, &self.name.to_le_bytes());
        put(&mut b, 4, &self.kind.to_le_bytes());
        put(&mut b, 8, &self.flags.to_le_bytes());
        put(&mut b, 16, &self.addr.to_le_bytes());
        put(&mut b, 24, &self.offset.to_le_bytes());
        put(&mut b, 32, &self.size.to_le_bytes());
        put(&mut b, 40, &self.link.to_le_bytes());
        put(&mut b, 44, &self.info.to_le_bytes());
        put(&mut b, 48, &self.addralign.to_le_bytes());
        put(&mut b, 56, &self.entsize.to_le_bytes());
        b
    }

    /// Whether the section has bytes in the file (not `SHT_NULL`/`SHT_NOBITS`, non-empty).
    pub fn has_file_bytes(&self) -> bool {
        self.kind != SHT_NOBITS && self.kind != SHT_NULL && self.size > 0
    }

    /// One past the section's last byte in the file, or `None` on overflow.
    pub fn file_end(&self) -> Option<u64> {
        self.offset.checked_add(self.size)
    }
}

/// A program header (`Elf64_Phdr`): only what the writer needs to know where a stub's
/// loadable bytes end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProgramHeader {
    /// `p_type`
    pub kind: u32,
    /// `p_offset`
    pub offset: u64,
    /// `p_filesz`
    pub filesz: u64,
}

impl ProgramHeader {
    /// Size of `Elf64_Phdr`.
    pub const SIZE: usize = 56;

    /// Decodes the fields the writer uses from exactly [`Self::SIZE`] bytes.
    pub fn from_bytes(b: &[u8; Self::SIZE]) -> Self {
        Self {
            kind: u32_at(b, 0),
            offset: u64_at(b, 8),
            filesz: u64_at(b, 32),
        }
    }
}

/// Reads the NUL-terminated name at `offset` in a string table.
pub fn name_at(strtab: &[u8], offset: u32) -> Option<&[u8]> {
    let tail = strtab.get(usize::try_from(offset).ok()?..)?;
    let end = tail.iter().position(|&c| c == 0)?;
    Some(&tail[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip() {
        let mut b = [0u8; 64];
        b[..4].copy_from_slice(&MAGIC);
        b[4] = CLASS_64;
        b[5] = DATA_LSB;
        b[6] = 1;
        b[40] = 0x10;
        b[60] = 7;
        let h = FileHeader::from_bytes(&b, 64).expect("valid header");
        assert_eq!(h.shoff, 0x10);
        assert_eq!(h.shnum, 7);
        assert_eq!(h.to_bytes(), b);
    }

    #[test]
    fn header_errors() {
        assert!(matches!(
            FileHeader::from_bytes(b"MZ\x90\0", 4),
            Err(Error::NotElf)
        ));
        assert!(matches!(
            FileHeader::from_bytes(b"\x7fEL", 3),
            Err(Error::NotElf)
        ));
        assert!(matches!(
            FileHeader::from_bytes(b"\x7fELF\x02\x01", 6),
            Err(Error::Truncated { .. })
        ));
        let mut b = [0u8; 64];
        b[..4].copy_from_slice(&MAGIC);
        b[4] = 1;
        b[5] = DATA_LSB;
        assert!(matches!(
            FileHeader::from_bytes(&b, 64),
            Err(Error::NotElf64Le { class: 1, data: 1 })
        ));
    }

    #[test]
    fn section_round_trip() {
        let s = SectionHeader {
            name: 1,
            kind: SHT_PROGBITS,
            flags: SHF_ALLOC,
            addr: 0x1000,
            offset: 0x2000,
            size: 3,
            link: 4,
            info: 5,
            addralign: 4096,
            entsize: 0,
        };
        assert_eq!(SectionHeader::from_bytes(&s.to_bytes()), s);
    }

    #[test]
    fn names() {
        let t = b"\0.text\0.glick.image\0";
        assert_eq!(name_at(t, 1), Some(&b".text"[..]));
        assert_eq!(name_at(t, 7), Some(&b".glick.image"[..]));
        assert_eq!(name_at(t, 0), Some(&b""[..]));
        assert_eq!(name_at(t, 100), None);
        assert_eq!(name_at(b"\0abc", 1), None);
    }
}
