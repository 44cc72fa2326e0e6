//! Making a bundle: the stub, then the parts, then a new section table.
//!
//! Layout of the output (all offsets computed before anything is written):
//!
//! ```text
//! stub bytes (up to the end of its last section or segment; its old section table dropped)
//! .xdg.icon.48    (if any)
//! .xdg.desktop    (if any)
//! .glick.digest   "sha256:<64 hex>\n"
//! padding to 4096
//! .glick.image
//! .shstrtab       (the stub's names + ours)
//! section header table (the stub's sections + ours), 8-byte aligned
//! ```
//!
//! The image is streamed: its data extents (found with `SEEK_DATA`/`SEEK_HOLE`) are copied
//! with `copy_file_range(2)` — in the kernel, a reflink where the filesystem can — falling
//! back to `pread`/`pwrite` through a 1 MiB buffer; its holes stay holes in the output. The
//! SHA-256 is computed by a second thread reading the image alongside, so memory stays a few
//! MiB whatever the image's size and the copy is not slowed down by the hash.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use rustix::fs::SeekFrom;
use rustix::io::Errno;
use sha2::{Digest, Sha256};

use crate::elf::{SHN_LORESERVE, SHT_PROGBITS, SHT_STRTAB, SectionHeader};
use crate::read::Part;
use crate::table::Table;
use crate::{DESKTOP, DIGEST, DIGEST_LEN, Error, ICON, IMAGE, IMAGE_ALIGN};

const CHUNK: usize = 1 << 20;
/// Bytes handed to one `copy_file_range` call (progress is reported between calls).
const COPY_CHUNK: u64 = 64 << 20;

/// Where everything goes in a bundle being written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The image section.
    pub image: Part,
    /// The icon section, if any.
    pub icon: Option<Part>,
    /// The desktop-entry section, if any.
    pub desktop_entry: Option<Part>,
    /// The digest section, if any.
    pub digest: Option<Part>,
    /// The length of the whole bundle.
    pub len: u64,
}

/// Writes bundles around one stub.
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let stub = std::fs::read("glick-stub")?;
/// let image = std::fs::File::open("app.ext2")?;
/// let out = std::fs::File::create("app.glick")?;
/// glick_bundle::Writer::new(&stub)?
///     .icon(&std::fs::read("icon.png")?)
///     .write(&image, &out, &mut |_done, _total| {})?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Writer<'a> {
    stub: &'a [u8],
    table: Table,
    content_end: u64,
    icon: Option<&'a [u8]>,
    desktop_entry: Option<&'a [u8]>,
    digest: bool,
}

fn align_up(x: u64, to: u64) -> u64 {
    x.div_ceil(to) * to
}

impl<'a> Writer<'a> {
    /// Checks a stub and prepares to write bundles around it.
    ///
    /// # Errors
    /// The stub is not an ELF64 LE file, is malformed, or already carries glick sections.
    pub fn new(stub: &'a [u8]) -> Result<Self, Error> {
        let table = Table::read(stub)?;
        let len = stub.len() as u64;
        for index in 0..table.sections.len() {
            let name = table.name(index)?;
            if let Some(ours) = [IMAGE, ICON, DESKTOP, DIGEST]
                .into_iter()
                .find(|n| n.as_bytes() == name)
            {
                return Err(Error::StubIsBundle(ours));
            }
        }
        // Keep every byte a section or segment uses; drop what follows (the old table).
        let h = &table.header;
        let mut end = crate::elf::FileHeader::SIZE as u64;
        if h.phnum > 0 {
            let ph_size = crate::elf::ProgramHeader::SIZE as u64;
            let ph_end = h
                .phoff
                .checked_add(u64::from(h.phnum) * ph_size)
                .filter(|&e| e <= len)
                .ok_or(Error::Truncated {
                    what: "program header table",
                    end: h.phoff.saturating_add(u64::from(h.phnum) * ph_size),
                    file_len: len,
                })?;
            end = end.max(ph_end);
            for i in 0..u64::from(h.phnum) {
                let at = usize::try_from(h.phoff + i * ph_size).unwrap_or(usize::MAX);
                let mut b = [0u8; crate::elf::ProgramHeader::SIZE];
                b.copy_from_slice(&stub[at..at + crate::elf::ProgramHeader::SIZE]);
                let p = crate::elf::ProgramHeader::from_bytes(&b);
                let seg_end = p.offset.checked_add(p.filesz).filter(|&e| e <= len).ok_or(
                    Error::Truncated {
                        what: "runtime's segments",
                        end: p.offset.saturating_add(p.filesz),
                        file_len: len,
                    },
                )?;
                end = end.max(seg_end);
            }
        }
        for (index, s) in table.sections.iter().enumerate() {
            if index as u32 == table.shstrndx || !s.has_file_bytes() {
                continue;
            }
            let sec_end = s
                .file_end()
                .filter(|&e| e <= len)
                .ok_or(Error::SectionPastEof {
                    name: "of the runtime",
                    offset: s.offset,
                    size: s.size,
                    file_len: len,
                })?;
            end = end.max(sec_end);
        }
        let count = table.sections.len().max(1) as u64 + 5;
        if count >= u64::from(SHN_LORESERVE) {
            return Err(Error::TooManySections(table.sections.len() as u64));
        }
        Ok(Self {
            stub,
            table,
            content_end: end,
            icon: None,
            desktop_entry: None,
            digest: true,
        })
    }

    /// Adds a `.xdg.icon.48` section with these bytes (the caller checks it is a 48×48 PNG).
    #[must_use]
    pub fn icon(mut self, png: &'a [u8]) -> Self {
        self.icon = Some(png);
        self
    }

    /// Adds a `.xdg.desktop` section with these bytes (the caller checks they parse).
    #[must_use]
    pub fn desktop_entry(mut self, entry: &'a [u8]) -> Self {
        self.desktop_entry = Some(entry);
        self
    }

    /// Whether to write `.glick.digest` (default: yes).
    #[must_use]
    pub fn digest(mut self, digest: bool) -> Self {
        self.digest = digest;
        self
    }

    /// Where everything goes for an image of `image_len` bytes.
    pub fn layout(&self, image_len: u64) -> Layout {
        self.plan(image_len).0
    }

    fn plan(&self, image_len: u64) -> (Layout, Vec<u8>, Vec<SectionHeader>, u32) {
        fn place(pos: &mut u64, size: u64) -> Part {
            let p = Part { offset: *pos, size };
            *pos += size;
            p
        }
        fn add_name(names: &mut Vec<u8>, name: &str) -> u32 {
            let at = names.len() as u32;
            names.extend_from_slice(name.as_bytes());
            names.push(0);
            at
        }
        let mut pos = self.content_end;
        let icon = self.icon.map(|b| place(&mut pos, b.len() as u64));
        let desktop_entry = self.desktop_entry.map(|b| place(&mut pos, b.len() as u64));
        let digest = self.digest.then(|| place(&mut pos, DIGEST_LEN as u64));
        pos = align_up(pos, IMAGE_ALIGN);
        let image = place(&mut pos, image_len);

        let mut sections = if self.table.sections.is_empty() {
            vec![SectionHeader::default()]
        } else {
            self.table.sections.clone()
        };
        let mut names = if self.table.shstrtab.is_empty() {
            vec![0u8]
        } else {
            self.table.shstrtab.clone()
        };
        let ours = [
            (ICON, icon, 1),
            (DESKTOP, desktop_entry, 1),
            (DIGEST, digest, 1),
            (IMAGE, Some(image), IMAGE_ALIGN),
        ];
        for (name, part, align) in ours {
            if let Some(p) = part {
                sections.push(SectionHeader {
                    name: add_name(&mut names, name),
                    kind: SHT_PROGBITS,
                    offset: p.offset,
                    size: p.size,
                    addralign: align,
                    ..SectionHeader::default()
                });
            }
        }
        let shstrndx = if self.table.shstrndx == 0 {
            let at = add_name(&mut names, ".shstrtab");
            sections.push(SectionHeader {
                name: at,
                kind: SHT_STRTAB,
                addralign: 1,
                ..SectionHeader::default()
            });
            (sections.len() - 1) as u32
        } else {
            self.table.shstrndx
        };
        let strtab = &mut sections[shstrndx as usize];
        strtab.offset = pos;
        strtab.size = names.len() as u64;
        pos += names.len() as u64;
        pos = align_up(pos, 8);
        pos += (sections.len() * SectionHeader::SIZE) as u64;
        (
            Layout {
                image,
                icon,
                desktop_entry,
                digest,
                len: pos,
            },
            names,
            sections,
            shstrndx,
        )
    }

    /// Writes the bundle to `out` (truncated first), copying the whole of `image`.
    ///
    /// `progress(done, total)` is called as the image is copied. The output is a pure
    /// function of the stub, the parts and the image's bytes.
    ///
    /// # Errors
    /// I/O errors (naming the step), [`Error::EmptyImage`], [`Error::ImageChanged`].
    pub fn write(
        &self,
        image: &File,
        out: &File,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<Layout, Error> {
        let image_len = image
            .metadata()
            .map_err(Error::io("reading the image's length"))?
            .len();
        if image_len == 0 {
            return Err(Error::EmptyImage);
        }
        let (layout, names, sections, shstrndx) = self.plan(image_len);
        // The image's holes and the padding are not written, so they must read as zeros,
        // whatever `out` held before. Only truncate a non-empty file: on ext4 a truncation to
        // zero makes the final close() flush the whole file (auto_da_alloc), seconds for GiBs.
        let held = out
            .metadata()
            .map_err(Error::io("sizing the output"))?
            .len();
        if held > 0 {
            out.set_len(0).map_err(Error::io("sizing the output"))?;
        }
        out.set_len(layout.len)
            .map_err(Error::io("sizing the output"))?;

        let digest = std::thread::scope(|scope| {
            let hasher = self
                .digest
                .then(|| scope.spawn(|| hash_file(image, image_len)));
            copy_range(image, 0, image_len, out, layout.image.offset, progress)?;
            match hasher.map(|h| h.join()) {
                None => Ok(None),
                Some(Ok(result)) => result.map(Some),
                Some(Err(panic)) => std::panic::resume_unwind(panic),
            }
        })?;

        let w = |bytes: &[u8], at: u64| {
            out.write_all_at(bytes, at)
                .map_err(Error::io("writing the bundle"))
        };
        let mut header = self.table.header.clone();
        let shoff = layout.len - (sections.len() * SectionHeader::SIZE) as u64;
        header.shoff = shoff;
        header.shentsize = SectionHeader::SIZE as u16;
        header.shnum = sections.len() as u16;
        header.shstrndx = shstrndx as u16;
        let stub_end = usize::try_from(self.content_end).unwrap_or(self.stub.len());
        w(&header.to_bytes(), 0)?;
        w(&self.stub[crate::elf::FileHeader::SIZE..stub_end], 64)?;
        if let (Some(p), Some(b)) = (layout.icon, self.icon) {
            w(b, p.offset)?;
        }
        if let (Some(p), Some(b)) = (layout.desktop_entry, self.desktop_entry) {
            w(b, p.offset)?;
        }
        if let (Some(p), Some(d)) = (layout.digest, digest) {
            w(crate::digest_text(&d).as_bytes(), p.offset)?;
        }
        w(&names, sections[shstrndx as usize].offset)?;
        let mut table = Vec::with_capacity(sections.len() * SectionHeader::SIZE);
        for s in &sections {
            table.extend_from_slice(&s.to_bytes());
        }
        w(&table, shoff)?;
        Ok(layout)
    }
}

/// SHA-256 of the first `len` bytes of a file, read through a 1 MiB buffer.
fn hash_file(file: &File, len: u64) -> Result<[u8; 32], Error> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut done = 0;
    while done < len {
        let n = usize::try_from((len - done).min(CHUNK as u64)).unwrap_or(CHUNK);
        file.read_exact_at(&mut buf[..n], done).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                image_changed(file, len)
            } else {
                Error::Io {
                    what: "reading the image",
                    source: e,
                }
            }
        })?;
        hasher.update(&buf[..n]);
        done += n as u64;
    }
    Ok(hasher.finalize().into())
}

fn image_changed(file: &File, expected: u64) -> Error {
    Error::ImageChanged {
        expected,
        found: file.metadata().map_or(0, |m| m.len()),
    }
}

/// The next data extent of `file` at or after `from`, below `end`: `(start, end)`.
fn next_extent(file: &File, from: u64, end: u64) -> Result<Option<(u64, u64)>, Error> {
    let start = match rustix::fs::seek(file, SeekFrom::Data(from)) {
        Ok(s) => s,
        Err(Errno::NXIO) => return Ok(None),
        // No SEEK_DATA here: treat everything as data.
        Err(Errno::INVAL | Errno::OPNOTSUPP) => return Ok(Some((from, end))),
        Err(e) => {
            return Err(Error::Io {
                what: "looking for data in the image",
                source: e.into(),
            });
        }
    };
    if start >= end {
        return Ok(None);
    }
    let stop = match rustix::fs::seek(file, SeekFrom::Hole(start)) {
        Ok(e) => e.min(end),
        Err(_) => end,
    };
    Ok(Some((start, stop)))
}

/// Copies `len` bytes of `src` at `src_offset` to `out` at `out_offset`, leaving the holes
/// of the source unwritten (the caller sizes `out` first, so they read as zeros).
///
/// Data is copied with `copy_file_range(2)` where the kernel allows it (in the kernel, a
/// reflink on filesystems that share extents), else through a 1 MiB buffer. `progress` gets
/// `(bytes done, len)`.
///
/// # Errors
/// I/O errors; [`Error::ImageChanged`] when the source ends early.
pub fn copy_range(
    src: &File,
    src_offset: u64,
    len: u64,
    out: &File,
    out_offset: u64,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<(), Error> {
    let mut kernel_copy = true;
    let mut buf = Vec::new();
    let end = src_offset + len;
    let mut pos = src_offset;
    progress(0, len);
    while let Some((start, stop)) = next_extent(src, pos, end)? {
        let mut at = start;
        while at < stop {
            let want = (stop - at).min(COPY_CHUNK);
            let dest = out_offset + (at - src_offset);
            if kernel_copy {
                let mut off_in = at;
                let mut off_out = dest;
                match rustix::fs::copy_file_range(
                    src,
                    Some(&mut off_in),
                    out,
                    Some(&mut off_out),
                    usize::try_from(want).unwrap_or(usize::MAX),
                ) {
                    Ok(0) => return Err(image_changed(src, end)),
                    Ok(n) => {
                        at += n as u64;
                        progress(at - src_offset, len);
                        continue;
                    }
                    Err(
                        Errno::XDEV | Errno::INVAL | Errno::OPNOTSUPP | Errno::NOSYS | Errno::BADF,
                    ) => kernel_copy = false,
                    Err(e) => {
                        return Err(Error::Io {
                            what: "copying the image",
                            source: e.into(),
                        });
                    }
                }
            }
            if buf.is_empty() {
                buf = vec![0u8; CHUNK];
            }
            let n = usize::try_from(want.min(CHUNK as u64)).unwrap_or(CHUNK);
            src.read_exact_at(&mut buf[..n], at).map_err(|e| {
                if e.kind() == io::ErrorKind::UnexpectedEof {
                    image_changed(src, end)
                } else {
                    Error::Io {
                        what: "reading the image",
                        source: e,
                    }
                }
            })?;
            out.write_all_at(&buf[..n], dest)
                .map_err(Error::io("writing the image"))?;
            at += n as u64;
            progress(at - src_offset, len);
        }
        pos = stop;
    }
    progress(len, len);
    Ok(())
}
