//! The ELF note that marks this executable as a glick runtime, and so every bundle made
//! from it (the bytes are `glick_bundle::note::NOTE`, where the layout is documented).
//!
//! `.note.*` sections are `SHT_NOTE`; the linker keeps them (notes are never garbage
//! collected) and puts them right after the program headers, inside the first 4 KiB of
//! the file, where shared-mime-info's magic and `glick_bundle::note::find` look.

/// `Elf64_Nhdr` + name + descriptor, 4-byte aligned as notes must be.
#[repr(C, align(4))]
struct Note([u8; 24]);

#[used]
#[unsafe(link_section = ".note.glick")]
static GLICK_NOTE: Note = Note(glick_bundle::note::NOTE);
