//! Controller headers of packet I/O (P4Runtime spec, "Packet I/O" and `ControllerPacketMetadata`):
//! the `packet_out` header a PacketOut's metadata becomes in front of the frame injected on the
//! CPU port, and the `packet_in` header stripped from a frame the data plane sends to the CPU
//! port, as bmv2 does. Fields are packed most significant bit first, in P4Info order, and the
//! header is padded to whole bytes.
//!
//! Owns only this encoding; it does not know ports, streams or the data plane.

use thiserror::Error;

use crate::p4rt::bytestring;
use crate::p4rt::config::ControllerPacketMetadata;
use crate::p4rt::v1::PacketMetadata;

/// A P4Info controller header this switch cannot carry.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ControllerHeaderError {
    #[error(
        "controller header `{header}`, field `{field}`: bitwidth {bitwidth} is not in 1..=128"
    )]
    Width {
        header: String,
        field: String,
        bitwidth: i32,
    },
}

/// PacketOut metadata that does not match the P4Info (the PacketOut is dropped).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MetadataError {
    #[error("metadata id {0} is not a field of the packet_out header")]
    Unknown(u32),
    #[error("metadata `{0}` is given twice")]
    Duplicate(String),
    #[error("metadata `{0}` is missing")]
    Missing(String),
    #[error("metadata `{name}`: {source}")]
    Value {
        name: String,
        source: bytestring::BytestringError,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct HeaderField {
    id: u32,
    name: String,
    bitwidth: u32,
}

/// The layout of one controller header (`packet_in` or `packet_out`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControllerHeader {
    fields: Vec<HeaderField>,
}

impl ControllerHeader {
    pub fn from_p4info(cpm: &ControllerPacketMetadata) -> Result<Self, ControllerHeaderError> {
        let header = cpm
            .preamble
            .as_ref()
            .map(|p| p.name.clone())
            .unwrap_or_default();
        let fields = cpm
            .metadata
            .iter()
            .map(|m| match u32::try_from(m.bitwidth) {
                Ok(bitwidth @ 1..=128) => Ok(HeaderField {
                    id: m.id,
                    name: m.name.clone(),
                    bitwidth,
                }),
                _ => Err(ControllerHeaderError::Width {
                    header: header.clone(),
                    field: m.name.clone(),
                    bitwidth: m.bitwidth,
                }),
            })
            .collect::<Result<_, _>>()?;
        Ok(ControllerHeader { fields })
    }

    /// The header's size on the wire, in bytes.
    pub fn byte_len(&self) -> usize {
        let bits: usize = self.fields.iter().map(|f| f.bitwidth as usize).sum();
        bits.div_ceil(8)
    }

    /// Appends the header built from `metadata` (exactly one value per field) to `out`.
    pub fn encode(
        &self,
        metadata: &[PacketMetadata],
        out: &mut Vec<u8>,
    ) -> Result<(), MetadataError> {
        let mut values: Vec<Option<u128>> = vec![None; self.fields.len()];
        for m in metadata {
            let position = self
                .fields
                .iter()
                .position(|f| f.id == m.metadata_id)
                .ok_or(MetadataError::Unknown(m.metadata_id))?;
            let field = &self.fields[position];
            if values[position].is_some() {
                return Err(MetadataError::Duplicate(field.name.clone()));
            }
            let value = bytestring::decode(&m.value, field.bitwidth).map_err(|source| {
                MetadataError::Value {
                    name: field.name.clone(),
                    source,
                }
            })?;
            values[position] = Some(value);
        }
        let start = out.len();
        out.resize(start + self.byte_len(), 0);
        let mut bit = 0usize;
        for (field, value) in self.fields.iter().zip(values) {
            let value = value.ok_or_else(|| MetadataError::Missing(field.name.clone()))?;
            for i in (0..field.bitwidth).rev() {
                if (value >> i) & 1 == 1 {
                    out[start + bit / 8] |= 0x80 >> (bit % 8);
                }
                bit += 1;
            }
        }
        Ok(())
    }

    /// Splits a frame into the header's metadata and the rest; `None` if the frame is shorter
    /// than the header.
    pub fn decode<'a>(&self, frame: &'a [u8]) -> Option<(Vec<PacketMetadata>, &'a [u8])> {
        let len = self.byte_len();
        if frame.len() < len {
            return None;
        }
        let mut bit = 0usize;
        let metadata = self
            .fields
            .iter()
            .map(|field| {
                let mut value = 0u128;
                for _ in 0..field.bitwidth {
                    let set = frame[bit / 8] & (0x80 >> (bit % 8)) != 0;
                    value = (value << 1) | u128::from(set);
                    bit += 1;
                }
                PacketMetadata {
                    metadata_id: field.id,
                    // The width was checked to be 1..=128 and the value has that many bits.
                    value: bytestring::encode(value, field.bitwidth).unwrap_or_default(),
                }
            })
            .collect();
        Some((metadata, &frame[len..]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::p4rt::config::controller_packet_metadata::Metadata;
    use crate::p4rt::config::Preamble;
    use proptest::prelude::*;

    fn header(widths: &[i32]) -> ControllerHeader {
        ControllerHeader::from_p4info(&ControllerPacketMetadata {
            preamble: Some(Preamble {
                name: "packet_out".into(),
                ..Default::default()
            }),
            metadata: widths
                .iter()
                .enumerate()
                .map(|(i, &w)| Metadata {
                    id: i as u32 + 1,
                    name: format!("f{}", i + 1),
                    bitwidth: w,
                    ..Default::default()
                })
                .collect(),
        })
        .unwrap()
    }

    fn meta(id: u32, value: &[u8]) -> PacketMetadata {
        PacketMetadata {
            metadata_id: id,
            value: value.to_vec(),
        }
    }

    #[test]
    fn packs_fields_msb_first_and_pads_to_bytes() {
        // bmv2's usual packet_out: bit<9> egress_port, bit<7> padding.
        let h = header(&[9, 7]);
        assert_eq!(h.byte_len(), 2);
        let mut out = vec![0xaa];
        h.encode(&[meta(2, &[0]), meta(1, &[0x01, 0x02])], &mut out)
            .unwrap();
        // 0x102 in 9 bits = 1_0000_0010, then seven zero bits.
        assert_eq!(out, vec![0xaa, 0x81, 0x00]);
        let (decoded, rest) = h.decode(&[0x81, 0x00, 0xee]).unwrap();
        assert_eq!(decoded, vec![meta(1, &[0x01, 0x02]), meta(2, &[0x00])]);
        assert_eq!(rest, &[0xee]);
        assert_eq!(h.decode(&[0x81]), None);
        assert_eq!(header(&[3]).byte_len(), 1);
    }

    #[test]
    fn metadata_must_match_the_p4info() {
        let h = header(&[9, 7]);
        let mut out = Vec::new();
        assert_eq!(
            h.encode(&[meta(1, &[1])], &mut out),
            Err(MetadataError::Missing("f2".into()))
        );
        assert_eq!(
            h.encode(&[meta(3, &[1])], &mut out),
            Err(MetadataError::Unknown(3))
        );
        assert_eq!(
            h.encode(&[meta(1, &[1]), meta(1, &[1])], &mut out),
            Err(MetadataError::Duplicate("f1".into()))
        );
        assert!(matches!(
            h.encode(&[meta(1, &[0x02, 0x00]), meta(2, &[0])], &mut out),
            Err(MetadataError::Value { .. })
        ));
        assert!(ControllerHeader::from_p4info(&ControllerPacketMetadata {
            metadata: vec![Metadata {
                bitwidth: 0,
                ..Default::default()
            }],
            ..Default::default()
        })
        .is_err());
    }

    proptest! {
        #[test]
        fn encode_then_decode_round_trips(
            widths in proptest::collection::vec(1i32..=128, 1..6),
            seed in any::<u128>(),
            payload in proptest::collection::vec(any::<u8>(), 0..8),
        ) {
            let h = header(&widths);
            let metadata: Vec<_> = widths
                .iter()
                .enumerate()
                .map(|(i, &w)| {
                    let v = seed.rotate_left(i as u32 * 7) & crate::switch::pipeline::width_mask(w as u32);
                    meta(i as u32 + 1, &bytestring::encode(v, w as u32).unwrap())
                })
                .collect();
            let mut frame = Vec::new();
            h.encode(&metadata, &mut frame).unwrap();
            prop_assert_eq!(frame.len(), h.byte_len());
            frame.extend_from_slice(&payload);
            let (decoded, rest) = h.decode(&frame).unwrap();
            prop_assert_eq!(decoded, metadata);
            prop_assert_eq!(rest, payload.as_slice());
        }

        #[test]
        fn decode_never_panics(widths in proptest::collection::vec(1i32..=128, 0..5), frame in proptest::collection::vec(any::<u8>(), 0..40)) {
            let h = header(&widths);
            let decoded = h.decode(&frame);
            prop_assert_eq!(decoded.is_some(), frame.len() >= h.byte_len());
        }
    }
}
