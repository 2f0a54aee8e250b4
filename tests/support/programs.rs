//! The P4 programs the tests compile: p4c's four reference programs
//! (tests/fixtures/p4c-reference) and vmdep.p4, as sources and as what a controller pushes.

use vmdep::controller::session::PipelineBundle;

/// p4c's reference programs, ref1 to ref4.
pub const REFERENCE_P4: [&str; 4] = [
    include_str!("../fixtures/p4c-reference/ref1_lpm_checksum.p4"),
    include_str!("../fixtures/p4c-reference/ref2_ternary_counters.p4"),
    include_str!("../fixtures/p4c-reference/ref3_register_clone_hash.p4"),
    include_str!("../fixtures/p4c-reference/ref4_parser_range.p4"),
];

pub const VMDEP_P4: &str = include_str!("../../p4/vmdep.p4");

/// `source` (vmdep.p4 or a variant of it) compiled into what the controller pushes.
pub fn compiled_pipeline(source: &str) -> PipelineBundle {
    let out = vmdep::compiler::compile(source, "vmdep.p4").expect("vmdep.p4 compiles");
    PipelineBundle {
        p4info: out.p4info,
        device_config: out.bmv2_json.into_bytes(),
    }
}

/// vmdep.p4 with its `vm_pair` table holding `size` entries.
pub fn vmdep_p4_with_pair_table_size(size: u32) -> String {
    let default = "const bit<32> VM_PAIR_SIZE = 16384;";
    assert!(
        VMDEP_P4.contains(default),
        "vmdep.p4 changed its table size line"
    );
    VMDEP_P4.replace(default, &format!("const bit<32> VM_PAIR_SIZE = {size};"))
}
