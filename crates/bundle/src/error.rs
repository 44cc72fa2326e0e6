//! The crate's error type.

use std::fmt;
use std::io;

/// Why a bundle (or a stub) could not be read or a bundle could not be written.
///
/// I/O failures are kept apart from malformed input; each malformed-input case has its own
/// variant so that tools can tell "not a bundle" from "damaged bundle".
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing failed; `what` says which step.
    Io {
        /// The step, e.g. "reading the section header table".
        what: &'static str,
        /// The underlying error.
        source: io::Error,
    },
    /// The file does not start with `\x7fELF`.
    NotElf,
    /// The file is ELF, but not 64-bit little-endian.
    NotElf64Le {
        /// `e_ident[EI_CLASS]` (1 = 32-bit, 2 = 64-bit).
        class: u8,
        /// `e_ident[EI_DATA]` (1 = little-endian, 2 = big-endian).
        data: u8,
    },
    /// A structure the file needs ends after the end of the file.
    Truncated {
        /// The structure, e.g. "section header table".
        what: &'static str,
        /// One past its last byte.
        end: u64,
        /// The file's length.
        file_len: u64,
    },
    /// The ELF file has no section header table, so no sections can be found.
    NoSectionTable,
    /// The section header table itself is malformed.
    BadSectionTable(&'static str),
    /// A section's name offset lies outside the section-name string table.
    BadSectionName {
        /// Index of the section.
        index: u32,
    },
    /// There is no `.glick.image` section.
    NoImage,
    /// Two sections have the same glick name.
    DuplicateSection(&'static str),
    /// A glick section is `SHT_NOBITS` or otherwise has no bytes in the file.
    NoBits(&'static str),
    /// A section's bytes extend past the end of the file.
    SectionPastEof {
        /// The section's name.
        name: &'static str,
        /// `sh_offset`
        offset: u64,
        /// `sh_size`
        size: u64,
        /// The file's length.
        file_len: u64,
    },
    /// Two parts of the bundle claim the same bytes.
    Overlap {
        /// One part.
        first: String,
        /// The other.
        second: String,
    },
    /// The image section has no bytes.
    EmptyImage,
    /// `.glick.digest` is not `sha256:` followed by 64 lowercase hex digits and a newline.
    BadDigest,
    /// A section is larger than this crate is willing to load into memory.
    TooLarge {
        /// The section's name.
        name: &'static str,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The runtime given to the writer already carries glick sections (it is a bundle).
    StubIsBundle(&'static str),
    /// The runtime has so many sections that adding ours needs extended numbering.
    TooManySections(u64),
    /// The image changed size while it was being copied.
    ImageChanged {
        /// The size it had when the copy started.
        expected: u64,
        /// What was found.
        found: u64,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { what, source } => write!(f, "{what}: {source}"),
            Error::NotElf => f.write_str("not an ELF file"),
            Error::NotElf64Le { class, data } => {
                let bits = match class {
                    1 => "32-bit",
                    2 => "64-bit",
                    _ => "unknown-class",
                };
                let order = match data {
                    1 => "little-endian",
                    2 => "big-endian",
                    _ => "unknown-byte-order",
                };
                write!(
                    f,
                    "a {bits} {order} ELF file; glick bundles are 64-bit little-endian"
                )
            }
            Error::Truncated {
                what,
                end,
                file_len,
            } => write!(
                f,
                "truncated: the {what} ends at byte {end} but the file has only {file_len} bytes"
            ),
            Error::NoSectionTable => {
                f.write_str("an ELF file without a section header table, not a glick bundle")
            }
            Error::BadSectionTable(why) => write!(f, "bad ELF section header table: {why}"),
            Error::BadSectionName { index } => write!(
                f,
                "bad ELF section header table: section {index}'s name lies outside the section name table"
            ),
            Error::NoImage => {
                f.write_str("an ELF file without a .glick.image section, not a glick bundle")
            }
            Error::DuplicateSection(name) => write!(f, "more than one {name} section"),
            Error::NoBits(name) => write!(f, "section {name} has no bytes in the file"),
            Error::SectionPastEof {
                name,
                offset,
                size,
                file_len,
            } => write!(
                f,
                "section {name} (bytes {offset}..{}) extends past the end of the file ({file_len} bytes): truncated bundle?",
                offset.saturating_add(*size)
            ),
            Error::Overlap { first, second } => write!(f, "{first} and {second} overlap"),
            Error::EmptyImage => f.write_str("the .glick.image section is empty (0 bytes)"),
            Error::BadDigest => f.write_str(
                "section .glick.digest is not \"sha256:\" followed by 64 hex digits and a newline",
            ),
            Error::TooLarge { name, size, limit } => write!(
                f,
                "section {name} is {size} bytes, more than the {limit} bytes accepted"
            ),
            Error::StubIsBundle(name) => write!(
                f,
                "the runtime already has a {name} section: it is a bundle, not a runtime"
            ),
            Error::TooManySections(n) => write!(
                f,
                "the runtime has {n} sections, too many to add glick's (extended numbering is not written)"
            ),
            Error::ImageChanged { expected, found } => write!(
                f,
                "the image changed while it was copied (expected {expected} bytes, found {found})"
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Io { source, .. } => source,
            other => io::Error::new(io::ErrorKind::InvalidData, other),
        }
    }
}

impl Error {
    /// Wraps an I/O error with the step that failed.
    pub(crate) fn io(what: &'static str) -> impl FnOnce(io::Error) -> Error {
        move |source| Error::Io { what, source }
    }
}
