//! The P4Runtime Write and Read handlers without gRPC, over a switch running p4c's
//! ref2_ternary_counters with its controller primary: what fuzz/fuzz_targets/p4runtime_{write,read}.rs
//! and tests/p4runtime_no_panic.rs feed arbitrary requests to. Included by path from both.

use std::collections::HashMap;
use std::sync::Arc;

use prost::Message;
use tokio::sync::watch;

use vmdep::p4rt::p4info_from_text;
use vmdep::p4rt::v1::*;
use vmdep::switch::p4runtime::device::Device;
use vmdep::switch::p4runtime::P4RuntimeService;

pub const DEVICE: u64 = 1;
const ELECTION: u64 = 7;
const STREAM: u64 = 1;

const REF2_JSON: &str =
    include_str!("../fixtures/p4c-reference/p4c-out/ref2_ternary_counters.json");
const REF2_P4INFO: &str =
    include_str!("../fixtures/p4c-reference/p4c-out/ref2_ternary_counters.p4info.txtpb");

// ref2's P4Info ids (tests/fixtures/p4c-reference/p4c-out/ref2_ternary_counters.p4info.txtpb).
const ACL: u32 = 39914931;
const FLOWS: u32 = 47522922;
const PERMIT: u32 = 27758871;
const TRACK: u32 = 20157751;
const PER_PORT: u32 = 308286927;
const ACL_HITS: u32 = 334356845;

/// The service, its switch running ref2 and election id ELECTION primary; one per input, so a
/// failing input replays alone.
pub fn ref2_service() -> P4RuntimeService {
    let device = Arc::new(Device::new(DEVICE, Some(255), HashMap::new(), None));
    device
        .sessions()
        .arbitration
        .update(STREAM, Some(u128::from(ELECTION)))
        .expect("first controller");
    // The service outlives the sender: nothing here waits for shutdown.
    let (_stop, shutdown) = watch::channel(false);
    let service = P4RuntimeService::new(device, shutdown);
    service
        .handle_set_pipeline(SetForwardingPipelineConfigRequest {
            device_id: DEVICE,
            election_id: Some(election()),
            action: set_forwarding_pipeline_config_request::Action::VerifyAndCommit as i32,
            config: Some(ForwardingPipelineConfig {
                p4info: Some(p4info_from_text(REF2_P4INFO).expect("ref2 P4Info")),
                p4_device_config: REF2_JSON.as_bytes().to_vec(),
                cookie: None,
            }),
            ..Default::default()
        })
        .expect("ref2 loads");
    service
}

fn election() -> Uint128 {
    Uint128 {
        high: 0,
        low: ELECTION,
    }
}

/// Points a request at this switch as its primary unless `keep_header`, so that most inputs
/// get past the device and arbitration checks into the entity code.
pub fn aim_write(request: &mut WriteRequest, keep_header: bool) {
    if !keep_header {
        request.device_id = DEVICE;
        request.election_id = Some(election());
        request.role.clear();
        #[allow(deprecated)]
        {
            request.role_id = 0;
        }
        request.atomicity = write_request::Atomicity::ContinueOnError as i32;
    }
}

pub fn aim_read(request: &mut ReadRequest, keep_header: bool) {
    if !keep_header {
        request.device_id = DEVICE;
        request.role.clear();
    }
}

/// Runs a Write; whatever it answers, the switch must still answer a wildcard read of every
/// table and counter consistently (no panic, no poisoned state).
pub fn write_then_read_all(service: &P4RuntimeService, request: &WriteRequest) {
    let _ = service.handle_write(request);
    let all = ReadRequest {
        device_id: DEVICE,
        entities: vec![
            entity(entity::Entity::TableEntry(TableEntry::default())),
            entity(entity::Entity::DirectCounterEntry(
                DirectCounterEntry::default(),
            )),
            entity(entity::Entity::CounterEntry(CounterEntry::default())),
        ],
        ..Default::default()
    };
    let messages = service
        .handle_read(&all)
        .expect("a wildcard read of a loaded pipeline is accepted");
    for message in messages {
        message.expect("every wildcard read succeeds");
    }
}

fn entity(e: entity::Entity) -> Entity {
    Entity { entity: Some(e) }
}

fn exact(field_id: u32, value: &[u8]) -> FieldMatch {
    FieldMatch {
        field_id,
        field_match_type: Some(field_match::FieldMatchType::Exact(field_match::Exact {
            value: value.to_vec(),
        })),
    }
}

fn ternary(field_id: u32, value: &[u8], mask: &[u8]) -> FieldMatch {
    FieldMatch {
        field_id,
        field_match_type: Some(field_match::FieldMatchType::Ternary(field_match::Ternary {
            value: value.to_vec(),
            mask: mask.to_vec(),
        })),
    }
}

fn action(action_id: u32, params: Vec<action::Param>) -> Option<TableAction> {
    Some(TableAction {
        r#type: Some(table_action::Type::Action(Action { action_id, params })),
    })
}

fn acl_entry() -> TableEntry {
    TableEntry {
        table_id: ACL,
        r#match: vec![
            ternary(1, &[10, 0, 0, 0], &[255, 0, 0, 0]),
            ternary(3, &[0, 53], &[255, 255]),
        ],
        action: action(
            PERMIT,
            vec![action::Param {
                param_id: 1,
                value: vec![1],
            }],
        ),
        priority: 10,
        ..Default::default()
    }
}

fn flow_entry() -> TableEntry {
    TableEntry {
        table_id: FLOWS,
        r#match: vec![exact(1, &[10, 0, 0, 1]), exact(2, &[192, 0, 2, 7])],
        action: action(TRACK, vec![]),
        ..Default::default()
    }
}

/// Valid encoded Write requests: starting points for mutation.
pub fn write_seeds() -> Vec<Vec<u8>> {
    let update = |kind: update::Type, e: entity::Entity| Update {
        r#type: kind as i32,
        entity: Some(entity(e)),
    };
    let request = |updates: Vec<Update>| {
        let mut r = WriteRequest {
            updates,
            ..Default::default()
        };
        aim_write(&mut r, false);
        r.encode_to_vec()
    };
    vec![
        request(vec![
            update(
                update::Type::Insert,
                entity::Entity::TableEntry(acl_entry()),
            ),
            update(
                update::Type::Insert,
                entity::Entity::TableEntry(flow_entry()),
            ),
        ]),
        request(vec![update(
            update::Type::Modify,
            entity::Entity::DirectCounterEntry(DirectCounterEntry {
                table_entry: Some(acl_entry()),
                data: Some(CounterData {
                    byte_count: 100,
                    packet_count: 2,
                }),
            }),
        )]),
        request(vec![update(
            update::Type::Modify,
            entity::Entity::CounterEntry(CounterEntry {
                counter_id: PER_PORT,
                index: Some(Index { index: 3 }),
                data: Some(CounterData {
                    byte_count: 64,
                    packet_count: 1,
                }),
            }),
        )]),
        request(vec![update(
            update::Type::Modify,
            entity::Entity::TableEntry(TableEntry {
                table_id: FLOWS,
                is_default_action: true,
                action: action(TRACK, vec![]),
                ..Default::default()
            }),
        )]),
    ]
}

/// Valid encoded Read requests: starting points for mutation.
pub fn read_seeds() -> Vec<Vec<u8>> {
    let request = |entities: Vec<Entity>| {
        ReadRequest {
            device_id: DEVICE,
            entities,
            ..Default::default()
        }
        .encode_to_vec()
    };
    vec![
        request(vec![entity(entity::Entity::TableEntry(TableEntry {
            table_id: ACL,
            ..Default::default()
        }))]),
        request(vec![entity(entity::Entity::TableEntry(flow_entry()))]),
        request(vec![entity(entity::Entity::DirectCounterEntry(
            DirectCounterEntry {
                table_entry: Some(TableEntry {
                    table_id: ACL,
                    ..Default::default()
                }),
                data: None,
            },
        ))]),
        request(vec![entity(entity::Entity::CounterEntry(CounterEntry {
            counter_id: PER_PORT,
            index: Some(Index { index: 0 }),
            data: None,
        }))]),
        // Table 0: the direct counters of every table.
        request(vec![entity(entity::Entity::DirectCounterEntry(
            DirectCounterEntry {
                table_entry: Some(TableEntry {
                    table_id: 0,
                    ..Default::default()
                }),
                data: None,
            },
        ))]),
        // Wrong on purpose: a counter's id where a table's belongs.
        request(vec![entity(entity::Entity::TableEntry(TableEntry {
            table_id: ACL_HITS,
            ..Default::default()
        }))]),
    ]
}

/// Fills the switch with the seed writes, so reads have entries to find.
pub fn populate(service: &P4RuntimeService) {
    for seed in write_seeds() {
        let request = WriteRequest::decode(seed.as_slice()).expect("seed decodes");
        service.handle_write(&request).expect("seed write succeeds");
    }
}
