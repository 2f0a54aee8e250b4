//! P4Info object ids: the most significant byte of every id says what kind of object it names
//! (P4Runtime spec, "Id allocation"; the `P4Ids.Prefix` enum of p4info.proto). The compiler uses
//! these to allocate ids, the switch and controller to check that an id names the right kind.

/// Prefix of action ids.
pub const ACTION: u8 = 0x01;
/// Prefix of table ids.
pub const TABLE: u8 = 0x02;
/// Prefix of parser value set ids.
pub const VALUE_SET: u8 = 0x03;
/// Prefix of controller header (packet-in / packet-out metadata) ids.
pub const CONTROLLER_HEADER: u8 = 0x04;
/// First prefix of the range reserved for PSA externs.
pub const PSA_EXTERNS_START: u8 = 0x10;
/// Prefix of action profile and action selector ids.
pub const ACTION_PROFILE: u8 = 0x11;
/// Prefix of indexed counter ids.
pub const COUNTER: u8 = 0x12;
/// Prefix of direct counter ids.
pub const DIRECT_COUNTER: u8 = 0x13;
/// Prefix of indexed meter ids.
pub const METER: u8 = 0x14;
/// Prefix of direct meter ids.
pub const DIRECT_METER: u8 = 0x15;
/// Prefix of register ids.
pub const REGISTER: u8 = 0x16;
/// Prefix of digest ids.
pub const DIGEST: u8 = 0x17;
/// First prefix of the range for architecture-specific externs.
pub const OTHER_EXTERNS_START: u8 = 0x80;

/// The kind byte of an id.
pub const fn prefix_of(id: u32) -> u8 {
    id.to_be_bytes()[0]
}

/// Builds an id from a kind prefix and the 24-bit rest; `None` if `suffix` does not fit 24 bits.
pub const fn compose(prefix: u8, suffix: u32) -> Option<u32> {
    if suffix > 0x00ff_ffff {
        return None;
    }
    Some(((prefix as u32) << 24) | suffix)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::p4rt::config::p4_ids::Prefix;

    #[test]
    fn constants_match_the_p4ids_enum_of_the_protos() {
        let pairs = [
            (ACTION, Prefix::Action),
            (TABLE, Prefix::Table),
            (VALUE_SET, Prefix::ValueSet),
            (CONTROLLER_HEADER, Prefix::ControllerHeader),
            (PSA_EXTERNS_START, Prefix::PsaExternsStart),
            (ACTION_PROFILE, Prefix::ActionProfile),
            (COUNTER, Prefix::Counter),
            (DIRECT_COUNTER, Prefix::DirectCounter),
            (METER, Prefix::Meter),
            (DIRECT_METER, Prefix::DirectMeter),
            (REGISTER, Prefix::Register),
            (DIGEST, Prefix::Digest),
            (OTHER_EXTERNS_START, Prefix::OtherExternsStart),
        ];
        for (constant, prefix) in pairs {
            assert_eq!(i32::from(constant), prefix as i32, "{prefix:?}");
        }
    }

    #[test]
    fn compose_and_split() {
        assert_eq!(compose(TABLE, 0x12_3456), Some(0x0212_3456));
        assert_eq!(compose(COUNTER, 0x0100_0000), None);
        assert_eq!(prefix_of(0x1312_3456), DIRECT_COUNTER);
        // Ids p4c allocated for the reference programs (ref2_ternary_counters.p4info.txtpb).
        assert_eq!(prefix_of(39914931), TABLE);
        assert_eq!(prefix_of(27758871), ACTION);
        assert_eq!(prefix_of(308286927), COUNTER);
        assert_eq!(prefix_of(334356845), DIRECT_COUNTER);
    }
}
