//! Tiny checked little-endian field helpers: reading past the end of the input is an error,
//! never a panic; writing past the end of the output is a bug in the caller and is ignored.

use crate::error::{Corrupt, Error};

/// `b[off..off + N]`, or a [`Corrupt::Truncated`] error naming `what`.
fn field<const N: usize>(b: &[u8], off: usize, what: &'static str) -> Result<[u8; N], Error> {
    off.checked_add(N)
        .and_then(|end| b.get(off..end))
        .and_then(|s| <[u8; N]>::try_from(s).ok())
        .ok_or(Error::Corrupt(Corrupt::Truncated {
            what,
            len: b.len(),
            needed: off.saturating_add(N),
        }))
}

pub(crate) fn u8_at(b: &[u8], off: usize, what: &'static str) -> Result<u8, Error> {
    Ok(field::<1>(b, off, what)?[0])
}

pub(crate) fn le16(b: &[u8], off: usize, what: &'static str) -> Result<u16, Error> {
    Ok(u16::from_le_bytes(field(b, off, what)?))
}

pub(crate) fn le32(b: &[u8], off: usize, what: &'static str) -> Result<u32, Error> {
    Ok(u32::from_le_bytes(field(b, off, what)?))
}

pub(crate) fn array<const N: usize>(
    b: &[u8],
    off: usize,
    what: &'static str,
) -> Result<[u8; N], Error> {
    field(b, off, what)
}

/// Copies `v` to `out[off..]` if it fits.
pub(crate) fn put(out: &mut [u8], off: usize, v: &[u8]) {
    if let Some(dst) = off
        .checked_add(v.len())
        .and_then(|end| out.get_mut(off..end))
    {
        dst.copy_from_slice(v);
    }
}

pub(crate) fn put16(out: &mut [u8], off: usize, v: u16) {
    put(out, off, &v.to_le_bytes());
}

pub(crate) fn put32(out: &mut [u8], off: usize, v: u32) {
    put(out, off, &v.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_input_is_an_error_not_a_panic() {
        let b = [1u8, 2, 3];
        assert_eq!(le16(&b, 1, "x").expect("fits"), 0x0302);
        assert!(le32(&b, 0, "x").is_err());
        assert!(le16(&b, usize::MAX, "x").is_err());
        assert!(u8_at(&b, 3, "x").is_err());
    }

    #[test]
    fn writes_that_do_not_fit_are_dropped() {
        let mut out = [0u8; 3];
        put32(&mut out, 0, 0xffff_ffff);
        assert_eq!(out, [0; 3]);
        put16(&mut out, usize::MAX, 1);
        put16(&mut out, 1, 0x0201);
        assert_eq!(out, [0, 1, 2]);
    }
}
