//! The hash and checksum algorithms bmv2 offers to `calculations` (checksums and
//! `modify_field_with_hash_based_offset`). Pure functions over bytes; nothing else.

/// An algorithm named by a calculation's `algo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashAlgo {
    /// CRC-16/ARC: polynomial 0x8005 reflected, init 0, no final xor (bmv2's `crc16`).
    Crc16,
    /// CRC-32/ISO-HDLC: polynomial 0x04C11DB7 reflected, init and final xor 0xFFFFFFFF.
    Crc32,
    /// The Internet checksum (RFC 1071): ones' complement of the ones' complement sum.
    Csum16,
    /// XOR of the big-endian 16-bit words.
    Xor16,
    /// The input itself, as a big-endian integer (its last 8 bytes).
    Identity,
}

impl HashAlgo {
    /// The algorithm bmv2 calls `name`, if this switch has it.
    pub fn from_bmv2_name(name: &str) -> Option<HashAlgo> {
        Some(match name {
            "crc16" => HashAlgo::Crc16,
            "crc32" => HashAlgo::Crc32,
            "csum16" => HashAlgo::Csum16,
            "xor16" => HashAlgo::Xor16,
            "identity" => HashAlgo::Identity,
            _ => return None,
        })
    }

    pub fn compute(self, data: &[u8]) -> u64 {
        match self {
            HashAlgo::Crc16 => u64::from(crc16_arc(data)),
            HashAlgo::Crc32 => u64::from(crc32(data)),
            HashAlgo::Csum16 => u64::from(csum16(data)),
            HashAlgo::Xor16 => u64::from(xor16(data)),
            HashAlgo::Identity => data.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)),
        }
    }
}

/// CRC-16/ARC, bit by bit over the reflected polynomial (0xA001).
pub fn crc16_arc(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in data {
        crc ^= u16::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xA001
            } else {
                crc >> 1
            };
        }
    }
    crc
}

/// CRC-32 (the Ethernet/zlib one), reflected polynomial 0xEDB88320.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc: u32 = 0xFFFF_FFFF;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// The Internet checksum; an odd trailing byte is padded with a zero byte.
pub fn csum16(data: &[u8]) -> u16 {
    let mut sum: u64 = 0;
    let mut chunks = data.chunks_exact(2);
    for pair in &mut chunks {
        sum += u64::from(u16::from_be_bytes([pair[0], pair[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u64::from(u16::from_be_bytes([*last, 0]));
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    !(sum as u16)
}

/// XOR of the 16-bit words; an odd trailing byte is padded with a zero byte.
pub fn xor16(data: &[u8]) -> u16 {
    data.chunks(2).fold(0u16, |acc, c| {
        acc ^ u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc16_arc_check_value() {
        // The catalogue check value of CRC-16/ARC over "123456789".
        assert_eq!(crc16_arc(b"123456789"), 0xBB3D);
        assert_eq!(crc16_arc(b""), 0);
    }

    #[test]
    fn crc16_of_reference3_addresses() {
        // ref3's STF: crc16 of {10.0.0.1, 10.0.0.2} lands in udp.checksum as 0xa63f.
        assert_eq!(crc16_arc(&[10, 0, 0, 1, 10, 0, 0, 2]), 0xa63f);
    }

    #[test]
    fn crc32_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn csum16_of_an_ipv4_header() {
        // A classic example header with its checksum field zeroed: the checksum is 0xB861.
        let header = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(csum16(&header), 0xB861);
        // Summing a header that carries its correct checksum gives zero.
        let mut with = header;
        with[10] = 0xB8;
        with[11] = 0x61;
        assert_eq!(csum16(&with), 0);
        assert_eq!(csum16(&[0x01]), !0x0100);
    }

    #[test]
    fn xor16_and_identity() {
        assert_eq!(xor16(&[0x12, 0x34, 0x56, 0x78]), 0x1234 ^ 0x5678);
        assert_eq!(HashAlgo::Identity.compute(&[0x01, 0x02]), 0x0102);
    }
}
