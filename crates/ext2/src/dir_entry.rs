//! Directory entries (`struct ext2_dir_entry_2`): variable-length records packed into the
//! directory's blocks, each `rec_len` bytes long; a record never crosses a block.

use crate::error::Corrupt;
use crate::inode::FileType;
use crate::units::InodeNo;

/// The longest name a directory entry can hold.
pub const NAME_MAX: usize = 255;

/// The size of a record's fixed header (inode, rec_len, name_len, file_type).
pub const HEADER_SIZE: usize = 8;

/// One entry of a directory, as [`crate::Ext2::read_dir`] yields it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// The inode the name points at.
    pub ino: InodeNo,
    /// The name: any bytes but `/` and NUL, 1 to 255 of them.
    pub name: Vec<u8>,
    /// The type recorded in the entry (`filetype` feature), `None` when not recorded.
    pub file_type: Option<FileType>,
    /// The byte offset in the directory of the record after this one: pass it to
    /// `read_dir` to continue after this entry.
    pub next_offset: u64,
}

/// One entry of a directory, borrowed from the block it is in: what
/// [`crate::ReadDir::next_borrowed`] yields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirEntryRef<'a> {
    /// The inode the name points at.
    pub ino: InodeNo,
    /// The name: any bytes but `/` and NUL, 1 to 255 of them.
    pub name: &'a [u8],
    /// The type recorded in the entry (`filetype` feature), `None` when not recorded.
    pub file_type: Option<FileType>,
    /// The byte offset in the directory of the record after this one.
    pub next_offset: u64,
}

impl DirEntryRef<'_> {
    /// The entry with its own copy of the name.
    #[must_use]
    pub fn to_owned(&self) -> DirEntry {
        DirEntry {
            ino: self.ino,
            name: self.name.to_vec(),
            file_type: self.file_type,
            next_offset: self.next_offset,
        }
    }
}

/// The record length a name of `name_len` bytes needs: 8 + `name_len`, rounded up to 4.
#[must_use]
pub fn rec_len_for(name_len: usize) -> usize {
    (HEADER_SIZE + name_len + 3) & !3
}

/// Writes one record at the start of `buf`: header, then the name. The bytes between the
/// name and `rec_len` are left as they are.
///
/// # Panics
///
/// When `name` is longer than 255 bytes or `buf` is shorter than `8 + name.len()`: both are
/// bugs in the caller.
pub fn encode(buf: &mut [u8], ino: u32, rec_len: u16, name: &[u8], file_type: u8) {
    assert!(
        name.len() <= NAME_MAX,
        "directory entry name longer than 255 bytes"
    );
    let name_len = name.len() as u8;
    buf[0..4].copy_from_slice(&ino.to_le_bytes());
    buf[4..6].copy_from_slice(&rec_len.to_le_bytes());
    buf[6] = name_len;
    buf[7] = file_type;
    buf[HEADER_SIZE..HEADER_SIZE + name.len()].copy_from_slice(name);
}

/// One record as found in a directory block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Record<'a> {
    /// 0 for an unused record.
    pub(crate) ino: u32,
    pub(crate) rec_len: usize,
    pub(crate) name: &'a [u8],
    /// The raw `file_type` byte (0 when the `filetype` feature is off).
    pub(crate) file_type: u8,
}

/// Parses and checks the record at `off` in a directory `block` (checks as the kernel's
/// `ext2_check_page`): the record lies inside the block, `rec_len` is a multiple of 4 large
/// enough for the name, and a used record has a name without `/` or NUL and an inode number
/// in `1..=inodes_count`.
pub(crate) fn parse_record(
    block: &[u8],
    off: usize,
    has_filetype: bool,
    inodes_count: u32,
) -> Result<Record<'_>, &'static str> {
    let header = off
        .checked_add(HEADER_SIZE)
        .and_then(|end| block.get(off..end))
        .ok_or("record header crosses the end of the block")?;
    let ino = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    let raw_rec_len = u16::from_le_bytes([header[4], header[5]]);
    // 64 KiB blocks store a whole-block record length of 65536 as 65535.
    let rec_len = if raw_rec_len == u16::MAX && block.len() == 65536 {
        65536
    } else {
        usize::from(raw_rec_len)
    };
    // Without `filetype` the kernel still reads name_len as one byte; the other is zero.
    let name_len = usize::from(header[6]);
    let file_type = if has_filetype { header[7] } else { 0 };
    if rec_len < rec_len_for(1) {
        return Err("rec_len smaller than the smallest record");
    }
    if rec_len % 4 != 0 {
        return Err("rec_len not a multiple of 4");
    }
    if rec_len < rec_len_for(name_len) {
        return Err("name_len too large for rec_len");
    }
    let end = off
        .checked_add(rec_len)
        .filter(|&end| end <= block.len())
        .ok_or("rec_len past the end of the block")?;
    let name = &block[off + HEADER_SIZE..off + HEADER_SIZE + name_len.min(end - off - HEADER_SIZE)];
    if ino != 0 {
        if ino > inodes_count {
            return Err("inode number past s_inodes_count");
        }
        if name.is_empty() {
            return Err("empty name");
        }
        if name.iter().any(|&b| b == b'/' || b == 0) {
            return Err("name contains '/' or NUL");
        }
    }
    Ok(Record {
        ino,
        rec_len,
        name,
        file_type,
    })
}

/// A corrupt-record error for the record at `offset` of directory `dir`.
pub(crate) fn corrupt(dir: InodeNo, offset: u64, reason: &'static str) -> Corrupt {
    Corrupt::DirEntry {
        dir,
        offset,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_image::mke2fs;

    #[test]
    fn record_lengths() {
        assert_eq!(rec_len_for(0), 8);
        assert_eq!(rec_len_for(1), 12);
        assert_eq!(rec_len_for(4), 12);
        assert_eq!(rec_len_for(5), 16);
        assert_eq!(rec_len_for(255), 264);
    }

    /// The root directory block of a fresh image: ".", "..", "lost+found".
    fn root_block() -> Vec<u8> {
        let img = mke2fs(&["-t", "ext2", "-b", "1024"], 2048, None);
        let gd = crate::block_group::GroupDesc::from_bytes(&img[2048..2080]).expect("gd");
        let at = usize::try_from(gd.inode_table).expect("small") * 1024 + 256; // inode 2
        let root = crate::inode::Inode::from_bytes(&img[at..at + 128]).expect("inode");
        let b = usize::try_from(root.block[0]).expect("small") * 1024;
        img[b..b + 1024].to_vec()
    }

    fn names(block: &[u8]) -> Vec<(u32, Vec<u8>, u8)> {
        let mut off = 0;
        let mut out = Vec::new();
        while off < block.len() {
            let r = parse_record(block, off, true, 1000).expect("valid");
            out.push((r.ino, r.name.to_vec(), r.file_type));
            off += r.rec_len;
        }
        out
    }

    #[test]
    fn parses_a_real_directory_block() {
        let block = root_block();
        assert_eq!(
            names(&block),
            [
                (2, b".".to_vec(), 2),
                (2, b"..".to_vec(), 2),
                (11, b"lost+found".to_vec(), 2)
            ]
        );
    }

    #[test]
    fn encode_writes_what_parse_reads() {
        let block = root_block();
        let mut mine = vec![0u8; 1024];
        encode(&mut mine[0..], 2, 12, b".", 2);
        encode(&mut mine[12..], 2, 12, b"..", 2);
        encode(&mut mine[24..], 11, 1000, b"lost+found", 2);
        assert_eq!(names(&mine), names(&block));
        assert_eq!(mine[..34], block[..34]);
    }

    #[test]
    fn one_change_at_a_time() {
        let good = root_block();
        fn at(b: &[u8], off: usize) -> Result<Record<'_>, &'static str> {
            parse_record(b, off, true, 1000)
        }
        let mut b = good.clone();
        b[4..6].copy_from_slice(&0u16.to_le_bytes());
        assert_eq!(at(&b, 0), Err("rec_len smaller than the smallest record"));
        let mut b = good.clone();
        b[4..6].copy_from_slice(&14u16.to_le_bytes());
        assert_eq!(at(&b, 0), Err("rec_len not a multiple of 4"));
        let mut b = good.clone();
        b[28..30].copy_from_slice(&1004u16.to_le_bytes());
        assert_eq!(at(&b, 24), Err("rec_len past the end of the block"));
        let mut b = good.clone();
        b[6] = 5; // "." with name_len 5 needs 16 bytes
        assert_eq!(at(&b, 0), Err("name_len too large for rec_len"));
        let mut b = good.clone();
        b[24..28].copy_from_slice(&1001u32.to_le_bytes());
        assert_eq!(at(&b, 24), Err("inode number past s_inodes_count"));
        let mut b = good.clone();
        b[8] = b'/';
        assert_eq!(at(&b, 0), Err("name contains '/' or NUL"));
        let mut b = good.clone();
        b[6] = 0;
        assert_eq!(at(&b, 0), Err("empty name"));
        assert_eq!(
            at(&good, 1020),
            Err("record header crosses the end of the block")
        );
        assert_eq!(
            at(&good, usize::MAX),
            Err("record header crosses the end of the block")
        );
        // unused records (inode 0) may hold anything in their name
        let mut b = good;
        b[0..4].copy_from_slice(&0u32.to_le_bytes());
        b[8] = 0;
        assert_eq!(at(&b, 0).expect("unused").ino, 0);
    }

    #[test]
    fn without_filetype_the_type_byte_is_ignored() {
        let mut b = vec![0u8; 1024];
        encode(&mut b, 2, 1024, b".", 2);
        let r = parse_record(&b, 0, false, 10).expect("valid");
        assert_eq!((r.name, r.file_type), (&b"."[..], 0));
    }
}
