//! P4Runtime byte strings for unsigned `bit<W>` values (P4Runtime spec, "Bytestrings").
//!
//! A value travels big-endian in a `bytes` field. A receiver accepts any length as long as the
//! value fits the P4Info bitwidth (leading zero bytes are fine); an empty string is never valid.
//! The canonical form, which every sender should use, is the shortest string holding the value:
//! no leading zero bytes, and zero as the single byte `0x00`.

use thiserror::Error;

/// Why a byte string is not a valid value of its bitwidth.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BytestringError {
    #[error("empty byte string: P4Runtime values need at least one byte")]
    Empty,
    #[error("value needs {needed} bits but the field is {bitwidth} bits wide")]
    DoesNotFit { needed: u64, bitwidth: u32 },
    #[error("a {bitwidth}-bit value does not fit in 128 bits")]
    WiderThan128 { bitwidth: u32 },
}

/// Number of bits from the most significant set bit down (0 for zero).
fn significant_bits(bytes: &[u8]) -> u64 {
    match bytes.iter().position(|&b| b != 0) {
        None => 0,
        Some(first) => {
            let rest = (bytes.len() - first - 1) as u64;
            rest * 8 + u64::from(8 - bytes[first].leading_zeros())
        }
    }
}

/// Checks that `bytes` encodes a value that fits `bitwidth` bits.
pub fn validate(bytes: &[u8], bitwidth: u32) -> Result<(), BytestringError> {
    if bytes.is_empty() {
        return Err(BytestringError::Empty);
    }
    let needed = significant_bits(bytes);
    if needed > u64::from(bitwidth) {
        return Err(BytestringError::DoesNotFit { needed, bitwidth });
    }
    Ok(())
}

/// Validates `bytes` and returns its canonical form (leading zero bytes removed).
pub fn canonicalize(bytes: &[u8], bitwidth: u32) -> Result<Vec<u8>, BytestringError> {
    validate(bytes, bitwidth)?;
    let first = bytes
        .iter()
        .position(|&b| b != 0)
        .unwrap_or(bytes.len() - 1);
    Ok(bytes[first..].to_vec())
}

/// Validates `bytes` and returns it padded with leading zeros to exactly ceil(bitwidth / 8)
/// bytes (at least one), the fixed-width form a data plane stores.
pub fn to_padded(bytes: &[u8], bitwidth: u32) -> Result<Vec<u8>, BytestringError> {
    let canonical = canonicalize(bytes, bitwidth)?;
    let width = (bitwidth as usize).div_ceil(8).max(1);
    // validate() guarantees the canonical value fits in `width` bytes: no underflow.
    let mut padded = vec![0; width - canonical.len()];
    padded.extend_from_slice(&canonical);
    Ok(padded)
}

/// Encodes `value` as the canonical byte string of a `bit<bitwidth>` field.
pub fn encode(value: u128, bitwidth: u32) -> Result<Vec<u8>, BytestringError> {
    let needed = u64::from(128 - value.leading_zeros());
    if needed > u64::from(bitwidth) {
        return Err(BytestringError::DoesNotFit { needed, bitwidth });
    }
    let bytes = value.to_be_bytes();
    let first = bytes
        .iter()
        .position(|&b| b != 0)
        .unwrap_or(bytes.len() - 1);
    Ok(bytes[first..].to_vec())
}

/// Decodes a byte string (canonical or padded) of a `bit<bitwidth>` field, with bitwidth ≤ 128.
pub fn decode(bytes: &[u8], bitwidth: u32) -> Result<u128, BytestringError> {
    if bitwidth > 128 {
        return Err(BytestringError::WiderThan128 { bitwidth });
    }
    validate(bytes, bitwidth)?;
    // Fits in 128 bits, so only the last 16 bytes can be non-zero.
    let tail = &bytes[bytes.len().saturating_sub(16)..];
    Ok(tail
        .iter()
        .fold(0u128, |acc, &b| (acc << 8) | u128::from(b)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn canonical_examples() {
        assert_eq!(encode(0, 9).unwrap(), vec![0x00]);
        assert_eq!(encode(5, 9).unwrap(), vec![0x05]);
        assert_eq!(encode(0x1ff, 9).unwrap(), vec![0x01, 0xff]);
        assert_eq!(
            encode(0x0a00_0001, 32).unwrap(),
            vec![0x0a, 0x00, 0x00, 0x01]
        );
        assert_eq!(encode(0x100, 32).unwrap(), vec![0x01, 0x00]);
        assert_eq!(encode(u128::MAX, 128).unwrap(), vec![0xff; 16]);
        assert_eq!(encode(0, 0).unwrap(), vec![0x00]);
    }

    #[test]
    fn values_that_do_not_fit_are_rejected() {
        assert_eq!(
            encode(0x200, 9),
            Err(BytestringError::DoesNotFit {
                needed: 10,
                bitwidth: 9
            })
        );
        assert_eq!(
            validate(&[0x01, 0x00, 0x00], 16),
            Err(BytestringError::DoesNotFit {
                needed: 17,
                bitwidth: 16
            })
        );
        assert_eq!(validate(&[], 8), Err(BytestringError::Empty));
        assert_eq!(decode(&[], 8), Err(BytestringError::Empty));
        assert_eq!(
            decode(&[1], 129),
            Err(BytestringError::WiderThan128 { bitwidth: 129 })
        );
        assert_eq!(
            encode(1, 0),
            Err(BytestringError::DoesNotFit {
                needed: 1,
                bitwidth: 0
            })
        );
    }

    #[test]
    fn padded_and_long_strings_are_accepted() {
        assert_eq!(decode(&[0x00, 0x05], 9).unwrap(), 5);
        assert_eq!(decode(&[0, 0, 0, 0, 0x01, 0xff], 9).unwrap(), 0x1ff);
        assert_eq!(canonicalize(&[0, 0, 0], 8).unwrap(), vec![0]);
        assert_eq!(canonicalize(&[0, 0x80], 8).unwrap(), vec![0x80]);
        assert_eq!(to_padded(&[0x05], 9).unwrap(), vec![0x00, 0x05]);
        assert_eq!(to_padded(&[0, 0, 0, 0x05], 9).unwrap(), vec![0x00, 0x05]);
        assert_eq!(to_padded(&[0x00], 48).unwrap(), vec![0; 6]);
        assert_eq!(to_padded(&[0x00], 0).unwrap(), vec![0]);
    }

    proptest! {
        #[test]
        fn encode_decode_round_trip(value: u128, extra in 0u32..40) {
            let bitwidth = (128 - value.leading_zeros()) + extra;
            let bytes = encode(value, bitwidth).unwrap();
            prop_assert!(bytes.len() == 1 || bytes[0] != 0, "not canonical: {:?}", bytes);
            if bitwidth <= 128 {
                prop_assert_eq!(decode(&bytes, bitwidth).unwrap(), value);
            }
            prop_assert_eq!(canonicalize(&bytes, bitwidth).unwrap(), bytes.clone());
            let padded = to_padded(&bytes, bitwidth).unwrap();
            prop_assert_eq!(padded.len(), (bitwidth as usize).div_ceil(8).max(1));
            prop_assert_eq!(canonicalize(&padded, bitwidth).unwrap(), bytes);
        }

        #[test]
        fn arbitrary_bytes_never_panic_and_agree(bytes in proptest::collection::vec(any::<u8>(), 0..24), bitwidth in 0u32..200) {
            let valid = validate(&bytes, bitwidth);
            match decode(&bytes, bitwidth) {
                Ok(value) => {
                    prop_assert!(valid.is_ok());
                    prop_assert_eq!(encode(value, bitwidth).unwrap(), canonicalize(&bytes, bitwidth).unwrap());
                }
                Err(BytestringError::WiderThan128 { .. }) => prop_assert!(bitwidth > 128),
                Err(err) => prop_assert_eq!(valid, Err(err)),
            }
            if let Ok(canonical) = canonicalize(&bytes, bitwidth) {
                prop_assert!(canonical.len() <= bytes.len());
                prop_assert!(canonical.len() == 1 || canonical[0] != 0);
                prop_assert_eq!(to_padded(&canonical, bitwidth).unwrap(), to_padded(&bytes, bitwidth).unwrap());
            }
        }
    }
}
