//! What `#include <core.p4>` and `#include <v1model.p4>` declare, as tables the checker
//! seeds its scopes with: the core errors and match kinds, `standard_metadata_t`, the
//! architecture's enums, externs and functions. The includes are never read from disk.
//!
//! Owns: the facts of the core and v1model libraries. Must not touch: checking logic.

/// core.p4's errors, in declaration order (their bmv2 values are their positions).
pub const CORE_ERRORS: &[&str] = &[
    "NoError",
    "PacketTooShort",
    "NoMatch",
    "StackOutOfBounds",
    "HeaderTooShort",
    "ParserTimeout",
    "ParserInvalidArgument",
];

/// core.p4 `match_kind { exact, ternary, lpm }` and v1model's `{ range, optional, selector }`.
pub const MATCH_KINDS: &[&str] = &["exact", "ternary", "lpm", "range", "optional", "selector"];

/// v1model's `standard_metadata_t`: (field, width). `parser_error` is of type `error`
/// (32 bits in bmv2); every other field is `bit<W>`.
pub const STANDARD_METADATA: &[(&str, u32)] = &[
    ("ingress_port", 9),
    ("egress_spec", 9),
    ("egress_port", 9),
    ("instance_type", 32),
    ("packet_length", 32),
    ("enq_timestamp", 32),
    ("enq_qdepth", 19),
    ("deq_timedelta", 32),
    ("deq_qdepth", 19),
    ("ingress_global_timestamp", 48),
    ("egress_global_timestamp", 48),
    ("mcast_grp", 16),
    ("egress_rid", 16),
    ("checksum_error", 1),
    ("parser_error", 32),
    ("priority", 3),
];

/// The field of `standard_metadata_t` whose type is `error`.
pub const STANDARD_METADATA_ERROR_FIELD: &str = "parser_error";

/// v1model's enums (plain enums; the checker numbers members by position).
pub const ENUMS: &[(&str, &[&str])] = &[
    ("CounterType", &["packets", "bytes", "packets_and_bytes"]),
    ("MeterType", &["packets", "bytes"]),
    (
        "HashAlgorithm",
        &[
            "crc32",
            "crc32_custom",
            "crc16",
            "crc16_custom",
            "random",
            "identity",
            "csum16",
            "xor16",
        ],
    ),
    ("CloneType", &["I2E", "E2E"]),
];

/// Extern object types a program may instantiate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExternType {
    PacketIn,
    PacketOut,
    Counter,
    DirectCounter,
    Register,
    /// Declared by v1model but not supported by this compiler (named in the diagnostic).
    Unsupported(&'static str),
}

pub const EXTERN_TYPES: &[(&str, ExternType)] = &[
    ("packet_in", ExternType::PacketIn),
    ("packet_out", ExternType::PacketOut),
    ("counter", ExternType::Counter),
    ("direct_counter", ExternType::DirectCounter),
    ("register", ExternType::Register),
    ("meter", ExternType::Unsupported("meter")),
    ("direct_meter", ExternType::Unsupported("direct_meter")),
    ("action_profile", ExternType::Unsupported("action_profile")),
    (
        "action_selector",
        ExternType::Unsupported("action_selector"),
    ),
    ("Checksum16", ExternType::Unsupported("Checksum16")),
];

/// Free functions of core.p4 and v1model.p4.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Function {
    MarkToDrop,
    Clone,
    Digest,
    Hash,
    VerifyChecksum,
    UpdateChecksum,
    VerifyChecksumWithPayload,
    UpdateChecksumWithPayload,
    Verify,
    Random,
    Truncate,
    /// Declared but not supported (named in the diagnostic).
    Unsupported(&'static str),
}

pub const FUNCTIONS: &[(&str, Function)] = &[
    ("mark_to_drop", Function::MarkToDrop),
    ("clone", Function::Clone),
    ("digest", Function::Digest),
    ("hash", Function::Hash),
    ("verify_checksum", Function::VerifyChecksum),
    ("update_checksum", Function::UpdateChecksum),
    (
        "verify_checksum_with_payload",
        Function::VerifyChecksumWithPayload,
    ),
    (
        "update_checksum_with_payload",
        Function::UpdateChecksumWithPayload,
    ),
    ("verify", Function::Verify),
    ("random", Function::Random),
    ("truncate", Function::Truncate),
    (
        "clone_preserving_field_list",
        Function::Unsupported("clone_preserving_field_list"),
    ),
    ("clone3", Function::Unsupported("clone3")),
    ("resubmit", Function::Unsupported("resubmit")),
    (
        "resubmit_preserving_field_list",
        Function::Unsupported("resubmit_preserving_field_list"),
    ),
    ("recirculate", Function::Unsupported("recirculate")),
    (
        "recirculate_preserving_field_list",
        Function::Unsupported("recirculate_preserving_field_list"),
    ),
    ("assert", Function::Unsupported("assert")),
    ("assume", Function::Unsupported("assume")),
    ("log_msg", Function::Unsupported("log_msg")),
    ("static_assert", Function::Unsupported("static_assert")),
];

/// The package `main` must instantiate, and the kind of block each argument must be.
pub const V1SWITCH: &str = "V1Switch";

/// The six V1Switch arguments: (role description, is a parser, parameter roles).
pub const V1SWITCH_BLOCKS: &[(&str, bool, &[Role])] = &[
    (
        "parser",
        true,
        &[Role::PacketIn, Role::Headers, Role::Meta, Role::StdMeta],
    ),
    (
        "checksum verification control",
        false,
        &[Role::Headers, Role::Meta],
    ),
    (
        "ingress control",
        false,
        &[Role::Headers, Role::Meta, Role::StdMeta],
    ),
    (
        "egress control",
        false,
        &[Role::Headers, Role::Meta, Role::StdMeta],
    ),
    (
        "checksum computation control",
        false,
        &[Role::Headers, Role::Meta],
    ),
    ("deparser", false, &[Role::PacketOut, Role::Headers]),
];

/// What a block parameter must be, per V1Switch's declaration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    PacketIn,
    PacketOut,
    Headers,
    Meta,
    StdMeta,
}

/// core.p4's `action NoAction() {}`, annotated `@noWarn("unused")`.
pub const NO_ACTION: &str = "NoAction";

/// bmv2's `field_aliases` that simple_switch expects for v1model (as p4c writes them).
pub const FIELD_ALIASES: &[(&str, &str)] = &[
    ("queueing_metadata.enq_timestamp", "enq_timestamp"),
    ("queueing_metadata.enq_qdepth", "enq_qdepth"),
    ("queueing_metadata.deq_timedelta", "deq_timedelta"),
    ("queueing_metadata.deq_qdepth", "deq_qdepth"),
    (
        "intrinsic_metadata.ingress_global_timestamp",
        "ingress_global_timestamp",
    ),
    (
        "intrinsic_metadata.egress_global_timestamp",
        "egress_global_timestamp",
    ),
    ("intrinsic_metadata.mcast_grp", "mcast_grp"),
    ("intrinsic_metadata.egress_rid", "egress_rid"),
    ("intrinsic_metadata.priority", "priority"),
];
