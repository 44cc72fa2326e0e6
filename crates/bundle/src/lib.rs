//! The glick bundle's ELF layout: write and read its sections.
//!
//! A bundle is the runtime stub (a static ELF executable) with non-allocated `SHT_PROGBITS`
//! sections added, found through the section header table alone:
//!
//! | section | content |
//! |---|---|
//! | [`IMAGE`] `.glick.image` | the ext2 image, file offset aligned to [`IMAGE_ALIGN`] |
//! | [`ICON`] `.xdg.icon.48` | a 48×48 PNG (optional) |
//! | [`DESKTOP`] `.xdg.desktop` | a freedesktop desktop entry, UTF-8 (optional) |
//! | [`DIGEST`] `.glick.digest` | `sha256:<64 lowercase hex digits>\n` of the image |
//!
//! [`Writer`] makes a bundle from a stub and an image file, streaming the image (memory stays
//! flat whatever its size) into byte-identical output for identical input. [`Bundle::open`]
//! reads the layout of a bundle — only the ELF header, section headers and section names —
//! and checks every part against the file before anything trusts it. Glick 1's layout, where
//! `.glick.image` is an *allocated* section inside a `PT_LOAD` segment, is read as well.
//! [`note`] is the ELF note that identifies the runtime within the first 4 KiB of a bundle,
//! and [`desktop_entry`] checks desktop entries against the Desktop Entry Specification.
//!
//! Any `e_machine` is accepted when reading: the section table is the same for every
//! architecture, so a bundle whose runtime is for another machine can still be taken apart.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let file = std::fs::File::open("app.glick")?;
//! let bundle = glick_bundle::Bundle::open(&file)?;
//! println!("image at {} ({} bytes)", bundle.image().offset, bundle.image().size);
//! # Ok(()) }
//! ```
//!
//! # Errors
//! Every function returns [`Error`]; each way a file can fail to be a bundle (not an ELF, not
//! 64-bit little-endian, truncated, no image, a section past the end of the file, overlapping
//! sections, an empty image, …) has its own variant with a one-line message.

#![forbid(unsafe_code)]

pub mod desktop_entry;
pub mod elf;
mod error;
pub mod note;
mod read;
mod table;
mod write;

pub use error::Error;
pub use read::{Bundle, MAX_SMALL_PART, Part, SectionInfo, Verification};
pub use table::Source;
pub use write::{Layout, Writer, copy_range};

/// Name of the image section.
pub const IMAGE: &str = ".glick.image";
/// Name of the icon section.
pub const ICON: &str = ".xdg.icon.48";
/// Name of the desktop-entry section.
pub const DESKTOP: &str = ".xdg.desktop";
/// Name of the digest section.
pub const DIGEST: &str = ".glick.digest";
/// The image's file offset is a multiple of this (so it can be mmapped and loop-mounted).
pub const IMAGE_ALIGN: u64 = 4096;
/// Length of the digest section: `"sha256:"`, 64 hex digits, `"\n"`.
pub const DIGEST_LEN: usize = 7 + 64 + 1;

/// The digest section's text for a SHA-256 value.
pub fn digest_text(digest: &[u8; 32]) -> String {
    format!("sha256:{}\n", hex(digest))
}

/// Lowercase hexadecimal.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Decodes the digest section's text.
///
/// # Errors
/// [`Error::BadDigest`] unless it is exactly what [`digest_text`] writes.
pub fn parse_digest(text: &[u8]) -> Result<[u8; 32], Error> {
    let hexdigits = text
        .strip_prefix(b"sha256:")
        .and_then(|t| t.strip_suffix(b"\n"))
        .filter(|h| h.len() == 64)
        .ok_or(Error::BadDigest)?;
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        _ => Err(Error::BadDigest),
    };
    let mut out = [0u8; 32];
    for (i, pair) in hexdigits.chunks_exact(2).enumerate() {
        out[i] = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_text_round_trip() {
        let d: [u8; 32] = std::array::from_fn(|i| (i * 37) as u8);
        let t = digest_text(&d);
        assert_eq!(t.len(), DIGEST_LEN);
        assert_eq!(parse_digest(t.as_bytes()).expect("own text parses"), d);
        assert!(parse_digest(t.to_uppercase().as_bytes()).is_err());
        assert!(parse_digest(&t.as_bytes()[..DIGEST_LEN - 1]).is_err());
        assert!(parse_digest(b"md5:00\n").is_err());
    }
}
