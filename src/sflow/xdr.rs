//! The XDR (RFC 4506) pieces sFlow uses: big-endian 32- and 64-bit integers and variable-length
//! opaque data padded with zeros to a multiple of 4 bytes.

use super::{Result, SflowError};

/// Reads XDR items from the front of a byte slice, naming the structure on truncation.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Reader { rest: bytes }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    pub(crate) fn remaining(&self) -> usize {
        self.rest.len()
    }

    /// The unread bytes, consuming them.
    pub(crate) fn take_rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.rest)
    }

    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32> {
        let (head, rest) = self
            .rest
            .split_first_chunk::<4>()
            .ok_or(SflowError::Truncated(what))?;
        self.rest = rest;
        Ok(u32::from_be_bytes(*head))
    }

    pub(crate) fn u64(&mut self, what: &'static str) -> Result<u64> {
        let (head, rest) = self
            .rest
            .split_first_chunk::<8>()
            .ok_or(SflowError::Truncated(what))?;
        self.rest = rest;
        Ok(u64::from_be_bytes(*head))
    }

    pub(crate) fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N]> {
        let (head, rest) = self
            .rest
            .split_first_chunk::<N>()
            .ok_or(SflowError::Truncated(what))?;
        self.rest = rest;
        Ok(*head)
    }

    /// Variable-length opaque data: a length, the bytes, then padding to a multiple of 4.
    pub(crate) fn opaque(&mut self, what: &'static str) -> Result<&'a [u8]> {
        let len = self.u32(what)? as usize;
        let padded = len
            .checked_add(padding(len))
            .ok_or(SflowError::Truncated(what))?;
        if padded > self.rest.len() {
            return Err(SflowError::Truncated(what));
        }
        let (data, rest) = self.rest.split_at(padded);
        self.rest = rest;
        Ok(&data[..len])
    }
}

/// Bytes of padding after `len` bytes of opaque data.
pub(crate) fn padding(len: usize) -> usize {
    (4 - len % 4) % 4
}

pub(crate) fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

pub(crate) fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// Writes opaque data whose bytes `body` appends: a length placeholder, the body, the real length
/// patched in, then padding.
pub(crate) fn put_opaque_with(
    out: &mut Vec<u8>,
    what: &'static str,
    body: impl FnOnce(&mut Vec<u8>) -> Result<()>,
) -> Result<()> {
    let at = out.len();
    put_u32(out, 0);
    body(out)?;
    let len = out.len() - at - 4;
    let len32 = u32::try_from(len).map_err(|_| SflowError::Unencodable(what))?;
    out[at..at + 4].copy_from_slice(&len32.to_be_bytes());
    out.resize(out.len() + padding(len), 0);
    Ok(())
}

pub(crate) fn put_opaque(out: &mut Vec<u8>, what: &'static str, data: &[u8]) -> Result<()> {
    put_opaque_with(out, what, |o| {
        o.extend_from_slice(data);
        Ok(())
    })
}

/// The length of an array as XDR's 32-bit count.
pub(crate) fn count(len: usize, what: &'static str) -> Result<u32> {
    u32::try_from(len).map_err(|_| SflowError::Unencodable(what))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opaque_is_padded_and_checked() {
        let mut out = Vec::new();
        put_opaque(&mut out, "t", &[1, 2, 3, 4, 5]).unwrap();
        assert_eq!(out, [0, 0, 0, 5, 1, 2, 3, 4, 5, 0, 0, 0]);
        let mut r = Reader::new(&out);
        assert_eq!(r.opaque("t").unwrap(), &[1, 2, 3, 4, 5]);
        assert!(r.is_empty());
        // Without its padding the opaque is truncated.
        assert_eq!(
            Reader::new(&out[..9]).opaque("t").unwrap_err(),
            SflowError::Truncated("t")
        );
        // A length near u32::MAX must not overflow.
        assert!(Reader::new(&[0xff, 0xff, 0xff, 0xff, 0])
            .opaque("t")
            .is_err());
    }
}
