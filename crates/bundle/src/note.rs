//! The ELF note that identifies a glick runtime, and therefore a bundle.
//!
//! The stub carries it in an allocated `.note.glick` section (`SHT_NOTE`), which the linker
//! places among the first bytes of the file, well inside the first 4 KiB. Nothing is written
//! at ELF byte 8 (`e_ident[EI_ABIVERSION]`) as AppImage does: that breaks ld.so, qemu-binfmt
//! and FEX. A file manager's shared-mime-info magic matches [`MARKER`] anywhere in
//! `0..`[`SEARCH_LIMIT`]; readers use [`find`].
//!
//! Layout (`Elf64_Nhdr`, then name and descriptor, each padded to 4 bytes):
//!
//! | bytes | field | value |
//! |---|---|---|
//! | 0..4 | `n_namesz` | 6 |
//! | 4..8 | `n_descsz` | 4 |
//! | 8..12 | `n_type` | [`TYPE`] = 1 (`GLICK_FORMAT`) |
//! | 12..20 | name | `"glick\0"` + 2 bytes padding |
//! | 20..24 | desc | [`FORMAT_VERSION`], u32 little-endian |
//!
//! `stub/src/note.rs` spells out the same 24 bytes; a test checks they agree.

/// The note's owner name, NUL included (`n_namesz` counts the NUL).
pub const NAME: &[u8] = b"glick\0";
/// `n_type` of the note: the descriptor holds the bundle format version.
pub const TYPE: u32 = 1;
/// The bundle format version this crate writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Name of the section holding the note in the stub.
pub const SECTION: &str = ".note.glick";
/// The note is looked for in the first this-many bytes of a file.
pub const SEARCH_LIMIT: usize = 4096;

/// The complete note as it appears in the stub (24 bytes, 4-byte aligned in the file).
pub const NOTE: [u8; 24] = [
    6, 0, 0, 0, // n_namesz
    4, 0, 0, 0, // n_descsz
    1, 0, 0, 0, // n_type = TYPE
    b'g', b'l', b'i', b'c', b'k', 0, 0, 0, // "glick\0" + padding
    1, 0, 0, 0, // FORMAT_VERSION
];

/// The version-independent head of the note (header and name): what shared-mime-info's
/// magic and [`find`] match.
pub const MARKER: [u8; 20] = [
    6, 0, 0, 0, 4, 0, 0, 0, 1, 0, 0, 0, b'g', b'l', b'i', b'c', b'k', 0, 0, 0,
];

/// Finds the glick note in the first bytes of a file (at most [`SEARCH_LIMIT`] are looked
/// at); returns its file offset and the format version it declares.
pub fn find(head: &[u8]) -> Option<(usize, u32)> {
    let head = &head[..head.len().min(SEARCH_LIMIT)];
    // Notes are 4-byte aligned in the file.
    (0..head.len().saturating_sub(NOTE.len() - 1))
        .step_by(4)
        .find(|&at| head[at..at + MARKER.len()] == MARKER)
        .map(|at| {
            let d = &head[at + MARKER.len()..at + NOTE.len()];
            (at, u32::from_le_bytes([d[0], d[1], d[2], d[3]]))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn note_is_consistent() {
        assert_eq!(&NOTE[..MARKER.len()], &MARKER);
        assert_eq!(NOTE[0] as usize, NAME.len());
        assert_eq!(&NOTE[12..18], NAME);
        assert_eq!(NOTE[8..12], TYPE.to_le_bytes());
        assert_eq!(NOTE[20..24], FORMAT_VERSION.to_le_bytes());
    }

    #[test]
    fn finds_aligned_note_only() {
        let mut head = vec![0u8; 4096];
        head[0x2a0..0x2a0 + 24].copy_from_slice(&NOTE);
        assert_eq!(find(&head), Some((0x2a0, 1)));
        let mut odd = vec![0u8; 4096];
        odd[0x2a1..0x2a1 + 24].copy_from_slice(&NOTE);
        assert_eq!(find(&odd), None);
        let mut late = vec![0u8; 8192];
        late[4096..4096 + 24].copy_from_slice(&NOTE);
        assert_eq!(find(&late), None);
        assert_eq!(find(&NOTE), Some((0, 1)));
        assert_eq!(find(&NOTE[..23]), None);
    }
}
