//! `vmdep switch`'s P4Runtime server, in process on 127.0.0.1:0, driven by a tonic client:
//! arbitration, pipeline config, Write/Read with the spec's error codes and per-update details,
//! packets through in-process ports with direct and indexed counters, idle-timeout notifications.

use std::time::Duration;

use prost::Message;
use tonic::transport::Channel;
use tonic::Code;

use vmdep::p4rt::config::P4Info;
use vmdep::p4rt::v1::p4_runtime_client::P4RuntimeClient;
use vmdep::p4rt::v1::*;
use vmdep::p4rt::{rpc, P4InfoIndex};
use vmdep::switch::runner::{start, RunningSwitch, SwitchOptions};

mod support;

use support::frames::{from_hex, REF2_STF_FRAMES};
use support::p4rt::{arbitration, p4c_pipeline, set_pipeline_request, uint128, Controller};

const DEVICE: u64 = 1;
const WAIT: Duration = Duration::from_secs(5);

async fn switch_with_ports(ports: &[u32]) -> (RunningSwitch, P4RuntimeClient<Channel>) {
    let mut options = SwitchOptions::new(DEVICE, "127.0.0.1:0".parse().unwrap());
    options.channel_ports = ports.to_vec();
    options.idle_scan_interval = Duration::from_millis(10);
    let running = start(options).await.unwrap();
    let client = P4RuntimeClient::connect(format!("http://{}", running.grpc_addr))
        .await
        .unwrap();
    (running, client)
}

const OK: i32 = Code::Ok as i32;

fn config(p4info: P4Info, json: Vec<u8>, cookie: u64) -> ForwardingPipelineConfig {
    ForwardingPipelineConfig {
        p4info: Some(p4info),
        p4_device_config: json,
        cookie: Some(forwarding_pipeline_config::Cookie { cookie }),
    }
}

use set_forwarding_pipeline_config_request::Action as SetAction;

/// A switch running ref2 with `election_id` 10 as primary.
async fn ref2_switch(
    ports: &[u32],
) -> (
    RunningSwitch,
    P4RuntimeClient<Channel>,
    Controller,
    P4InfoIndex,
) {
    let (running, mut client) = switch_with_ports(ports).await;
    let (primary, code) = Controller::join(&mut client, DEVICE, 10).await;
    assert_eq!(code, OK);
    let (p4info, json) = p4c_pipeline("ref2_ternary_counters");
    client
        .set_forwarding_pipeline_config(set_pipeline_request(
            DEVICE,
            10,
            SetAction::VerifyAndCommit,
            Some(config(p4info.clone(), json, 7)),
        ))
        .await
        .unwrap();
    (running, client, primary, P4InfoIndex::new(p4info).unwrap())
}

fn ternary(id: u32, value: &[u8], mask: &[u8]) -> FieldMatch {
    FieldMatch {
        field_id: id,
        field_match_type: Some(field_match::FieldMatchType::Ternary(field_match::Ternary {
            value: value.to_vec(),
            mask: mask.to_vec(),
        })),
    }
}

fn exact(id: u32, value: &[u8]) -> FieldMatch {
    FieldMatch {
        field_id: id,
        field_match_type: Some(field_match::FieldMatchType::Exact(field_match::Exact {
            value: value.to_vec(),
        })),
    }
}

fn action(id: u32, params: &[(u32, &[u8])]) -> Option<TableAction> {
    Some(TableAction {
        r#type: Some(table_action::Type::Action(Action {
            action_id: id,
            params: params
                .iter()
                .map(|(param_id, value)| action::Param {
                    param_id: *param_id,
                    value: value.to_vec(),
                })
                .collect(),
        })),
    })
}

fn id(p: Option<&vmdep::p4rt::config::Preamble>) -> u32 {
    p.unwrap().id
}

struct Ids {
    acl: u32,
    flows: u32,
    permit: u32,
    deny: u32,
    track: u32,
    per_port: u32,
}

fn ids(index: &P4InfoIndex) -> Ids {
    Ids {
        acl: id(index.table("Ing.acl").unwrap().preamble.as_ref()),
        flows: id(index.table("Ing.flows").unwrap().preamble.as_ref()),
        permit: id(index.action("Ing.permit").unwrap().preamble.as_ref()),
        deny: id(index.action("Ing.deny").unwrap().preamble.as_ref()),
        track: id(index.action("Ing.track").unwrap().preamble.as_ref()),
        per_port: id(index.counter("Ing.per_port").unwrap().preamble.as_ref()),
    }
}

fn update(kind: update::Type, entity: entity::Entity) -> Update {
    Update {
        r#type: kind as i32,
        entity: Some(Entity {
            entity: Some(entity),
        }),
    }
}

fn table_update(kind: update::Type, entry: TableEntry) -> Update {
    update(kind, entity::Entity::TableEntry(entry))
}

async fn write(
    client: &mut P4RuntimeClient<Channel>,
    election_id: u64,
    updates: Vec<Update>,
) -> Result<(), tonic::Status> {
    client
        .write(WriteRequest {
            device_id: DEVICE,
            election_id: Some(uint128(election_id)),
            updates,
            ..Default::default()
        })
        .await
        .map(|_| ())
}

/// The per-update codes of a failed batch (UNKNOWN with one p4.v1.Error per update).
fn update_codes(status: &tonic::Status) -> Vec<(Code, String)> {
    assert_eq!(status.code(), Code::Unknown, "{status:?}");
    let details = rpc::Status::decode(status.details()).unwrap();
    assert_eq!(details.code, Code::Unknown as i32);
    details
        .details
        .iter()
        .map(|any| {
            assert_eq!(any.type_url, "type.googleapis.com/p4.v1.Error");
            let e = Error::decode(any.value.as_slice()).unwrap();
            (Code::from(e.canonical_code), e.message)
        })
        .collect()
}

async fn read(
    client: &mut P4RuntimeClient<Channel>,
    entities: Vec<entity::Entity>,
) -> Result<Vec<entity::Entity>, tonic::Status> {
    let mut stream = client
        .read(ReadRequest {
            device_id: DEVICE,
            entities: entities
                .into_iter()
                .map(|e| Entity { entity: Some(e) })
                .collect(),
            ..Default::default()
        })
        .await?
        .into_inner();
    let mut out = Vec::new();
    while let Some(response) = stream.message().await? {
        out.extend(response.entities.into_iter().filter_map(|e| e.entity));
    }
    Ok(out)
}

#[tokio::test]
async fn arbitration_primary_backups_and_changes() {
    let (running, mut client) = switch_with_ports(&[]).await;
    let (mut c1, code) = Controller::join(&mut client, DEVICE, 5).await;
    assert_eq!(code, OK);
    let (mut c2, code) = Controller::join(&mut client, DEVICE, 3).await;
    assert_eq!(code, Code::AlreadyExists as i32);

    // A higher id takes over: both hear of it.
    let (c3, code) = Controller::join(&mut client, DEVICE, 9).await;
    assert_eq!(code, OK);
    assert_eq!(c1.arbitration_code().await, Code::AlreadyExists as i32);
    assert_eq!(c2.arbitration_code().await, Code::AlreadyExists as i32);

    // A live controller's election id cannot be reused; a wrong device or a named role ends the stream.
    let mut dup = Controller::open(&mut client).await;
    dup.tx.send(arbitration(DEVICE, 5)).await.unwrap();
    assert_eq!(dup.next().await.unwrap_err().code(), Code::InvalidArgument);
    let mut wrong = Controller::open(&mut client).await;
    wrong.tx.send(arbitration(DEVICE + 1, 20)).await.unwrap();
    assert_eq!(wrong.next().await.unwrap_err().code(), Code::NotFound);
    let mut named = Controller::open(&mut client).await;
    let mut request = arbitration(DEVICE, 30);
    if let Some(stream_message_request::Update::Arbitration(a)) = &mut request.update {
        a.role = Some(Role {
            name: "sdn".into(),
            ..Default::default()
        });
    }
    named.tx.send(request).await.unwrap();
    let status = named.next().await.unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented);
    assert!(status.message().contains("default role"), "{status:?}");
    // A live controller may not change device.
    c2.tx.send(arbitration(DEVICE + 1, 3)).await.unwrap();
    assert_eq!(
        c2.next().await.unwrap_err().code(),
        Code::FailedPrecondition
    );

    // Only the primary may write or set the pipeline.
    let (p4info, json) = p4c_pipeline("ref2_ternary_counters");
    let denied = client
        .set_forwarding_pipeline_config(set_pipeline_request(
            DEVICE,
            5,
            SetAction::VerifyAndCommit,
            Some(config(p4info, json, 1)),
        ))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert_eq!(
        write(&mut client, 5, vec![]).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    // The primary is past the permission check and stops at the missing pipeline.
    assert_eq!(
        write(&mut client, 9, vec![]).await.unwrap_err().code(),
        Code::FailedPrecondition
    );

    // The primary's stream closes: no primary, and the remaining controller hears NOT_FOUND.
    drop(c3);
    assert_eq!(c1.arbitration_code().await, Code::NotFound as i32);
    assert_eq!(
        write(&mut client, 9, vec![]).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    // It becomes primary only with an id at least as high as the highest ever seen.
    c1.tx.send(arbitration(DEVICE, 9)).await.unwrap();
    assert_eq!(c1.arbitration_code().await, OK);

    let caps = client
        .capabilities(CapabilitiesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(caps.p4runtime_api_version, "1.4.1");
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn pipeline_config_actions_and_validation() {
    let (running, mut client) = switch_with_ports(&[]).await;
    let (_primary, _) = Controller::join(&mut client, DEVICE, 1).await;
    let get = |t: get_forwarding_pipeline_config_request::ResponseType| {
        GetForwardingPipelineConfigRequest {
            device_id: DEVICE,
            response_type: t as i32,
        }
    };
    use get_forwarding_pipeline_config_request::ResponseType as R;
    let none = client
        .get_forwarding_pipeline_config(get(R::All))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(none.config, None);

    let (p4info2, json2) = p4c_pipeline("ref2_ternary_counters");
    let (p4info1, json1) = p4c_pipeline("ref1_lpm_checksum");
    let set = |action, cfg| set_pipeline_request(DEVICE, 1, action, cfg);
    // Configs that cannot be realized.
    for (bad, needle) in [
        (config(p4info1.clone(), json2.clone(), 1), "does not match"),
        (
            config(p4info2.clone(), b"{ not json".to_vec(), 1),
            "cannot load",
        ),
        (config(p4info2.clone(), Vec::new(), 1), "p4_device_config"),
        (
            ForwardingPipelineConfig {
                p4info: None,
                ..config(p4info2.clone(), json2.clone(), 1)
            },
            "no P4Info",
        ),
    ] {
        let status = client
            .set_forwarding_pipeline_config(set(SetAction::VerifyAndCommit, Some(bad)))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains(needle), "{status:?}");
    }
    let status = client
        .set_forwarding_pipeline_config(set(SetAction::Commit, None))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let status = client
        .set_forwarding_pipeline_config(set(SetAction::Unspecified, None))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);

    // VERIFY changes nothing; VERIFY_AND_SAVE + COMMIT loads.
    client
        .set_forwarding_pipeline_config(set(
            SetAction::Verify,
            Some(config(p4info2.clone(), json2.clone(), 3)),
        ))
        .await
        .unwrap();
    let after_verify = client
        .get_forwarding_pipeline_config(get(R::All))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(after_verify.config, None);
    client
        .set_forwarding_pipeline_config(set(
            SetAction::VerifyAndSave,
            Some(config(p4info1.clone(), json1.clone(), 4)),
        ))
        .await
        .unwrap();
    client
        .set_forwarding_pipeline_config(set(SetAction::Commit, None))
        .await
        .unwrap();
    let cookie = client
        .get_forwarding_pipeline_config(get(R::CookieOnly))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        cookie.config,
        Some(ForwardingPipelineConfig {
            cookie: Some(forwarding_pipeline_config::Cookie { cookie: 4 }),
            ..Default::default()
        })
    );

    // RECONCILE_AND_COMMIT keeps the state of the same pipeline, refuses a different one.
    client
        .set_forwarding_pipeline_config(set(
            SetAction::VerifyAndCommit,
            Some(config(p4info2.clone(), json2.clone(), 5)),
        ))
        .await
        .unwrap();
    let index = P4InfoIndex::new(p4info2.clone()).unwrap();
    let ids = ids(&index);
    let flow = TableEntry {
        table_id: ids.flows,
        r#match: vec![exact(1, &[10, 0, 0, 1]), exact(2, &[192, 0, 2, 7])],
        action: action(ids.track, &[]),
        ..Default::default()
    };
    write(
        &mut client,
        1,
        vec![table_update(update::Type::Insert, flow.clone())],
    )
    .await
    .unwrap();
    client
        .set_forwarding_pipeline_config(set(
            SetAction::ReconcileAndCommit,
            Some(config(p4info2.clone(), json2.clone(), 6)),
        ))
        .await
        .unwrap();
    let all = read(
        &mut client,
        vec![entity::Entity::TableEntry(TableEntry::default())],
    )
    .await
    .unwrap();
    assert_eq!(all, vec![entity::Entity::TableEntry(flow)]);
    let status = client
        .set_forwarding_pipeline_config(set(
            SetAction::ReconcileAndCommit,
            Some(config(p4info1.clone(), json1.clone(), 7)),
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);

    let p4info_only = client
        .get_forwarding_pipeline_config(get(R::P4infoAndCookie))
        .await
        .unwrap()
        .into_inner();
    let c = p4info_only.config.unwrap();
    assert_eq!(
        (
            c.p4info,
            c.p4_device_config.is_empty(),
            c.cookie.unwrap().cookie
        ),
        (Some(p4info2.clone()), true, 6)
    );
    let device_only = client
        .get_forwarding_pipeline_config(get(R::DeviceConfigAndCookie))
        .await
        .unwrap()
        .into_inner();
    let c = device_only.config.unwrap();
    assert_eq!((c.p4info, c.p4_device_config), (None, json2.clone()));
    let all = client
        .get_forwarding_pipeline_config(get(R::All))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.config, Some(config(p4info2, json2, 6)));

    let wrong_device = client
        .get_forwarding_pipeline_config(GetForwardingPipelineConfigRequest {
            device_id: DEVICE + 1,
            response_type: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(wrong_device.code(), Code::NotFound);
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn write_and_read_entries_with_per_update_errors() {
    let (running, mut client, _primary, index) = ref2_switch(&[]).await;
    let ids = ids(&index);
    let acl_entry = |priority: i32, src: &[u8], mask: &[u8]| TableEntry {
        table_id: ids.acl,
        r#match: vec![ternary(1, src, mask)],
        action: action(ids.permit, &[(1, &[0x01])]),
        priority,
        ..Default::default()
    };
    let good = TableEntry {
        metadata: b"cookie".to_vec(),
        ..acl_entry(10, &[0x0a, 0, 0, 0], &[0xff, 0, 0, 0])
    };
    use update::Type::{Delete, Insert, Modify};
    let batch = vec![
        table_update(Insert, good.clone()),
        table_update(Insert, good.clone()),
        // Value bits outside the mask.
        table_update(Insert, acl_entry(11, &[0x0a, 0, 0, 1], &[0xff, 0, 0, 0])),
        // Ternary tables need a priority.
        table_update(Insert, acl_entry(0, &[0x0b, 0, 0, 0], &[0xff, 0, 0, 0])),
        // Not an action of this table.
        table_update(
            Insert,
            TableEntry {
                action: action(ids.track, &[]),
                ..acl_entry(12, &[0x0c, 0, 0, 0], &[0xff, 0, 0, 0])
            },
        ),
        // A missing parameter, and a value wider than bit<9>.
        table_update(
            Insert,
            TableEntry {
                action: action(ids.permit, &[]),
                ..acl_entry(13, &[0x0d, 0, 0, 0], &[0xff, 0, 0, 0])
            },
        ),
        table_update(
            Insert,
            TableEntry {
                action: action(ids.permit, &[(1, &[0x02, 0x00])]),
                ..acl_entry(14, &[0x0e, 0, 0, 0], &[0xff, 0, 0, 0])
            },
        ),
        table_update(Delete, acl_entry(15, &[0x0f, 0, 0, 0], &[0xff, 0, 0, 0])),
        // The default action of acl is const.
        table_update(
            Modify,
            TableEntry {
                table_id: ids.acl,
                is_default_action: true,
                action: action(ids.deny, &[]),
                ..Default::default()
            },
        ),
        // A value too wide for the 32-bit field, and an unknown table.
        table_update(
            Insert,
            acl_entry(16, &[0x01, 0, 0, 0, 0], &[0xff, 0, 0, 0, 0]),
        ),
        table_update(
            Insert,
            TableEntry {
                table_id: 0x0200_0001,
                ..good.clone()
            },
        ),
        // Idle timeouts need a table that supports them.
        table_update(
            Insert,
            TableEntry {
                idle_timeout_ns: 1_000_000,
                ..acl_entry(17, &[0x11, 0, 0, 0], &[0xff, 0, 0, 0])
            },
        ),
        // Exact fields cannot be omitted.
        table_update(
            Insert,
            TableEntry {
                table_id: ids.flows,
                r#match: vec![exact(1, &[1])],
                action: action(ids.track, &[]),
                ..Default::default()
            },
        ),
        update(
            Insert,
            entity::Entity::PacketReplicationEngineEntry(PacketReplicationEngineEntry {
                r#type: Some(packet_replication_engine_entry::Type::CloneSessionEntry(
                    CloneSessionEntry::default(),
                )),
            }),
        ),
        update(
            Insert,
            entity::Entity::ActionProfileMember(ActionProfileMember::default()),
        ),
        update(
            Insert,
            entity::Entity::CounterEntry(CounterEntry {
                counter_id: ids.per_port,
                ..Default::default()
            }),
        ),
        Update {
            r#type: 0,
            entity: None,
        },
    ];
    let status = write(&mut client, 10, batch).await.unwrap_err();
    let codes: Vec<Code> = update_codes(&status).into_iter().map(|(c, _)| c).collect();
    assert_eq!(
        codes,
        vec![
            Code::Ok,
            Code::AlreadyExists,
            Code::InvalidArgument,
            Code::InvalidArgument,
            Code::InvalidArgument,
            Code::InvalidArgument,
            Code::InvalidArgument,
            Code::NotFound,
            Code::PermissionDenied,
            Code::InvalidArgument,
            Code::NotFound,
            Code::InvalidArgument,
            Code::InvalidArgument,
            Code::InvalidArgument,
            Code::Unimplemented,
            Code::InvalidArgument,
            Code::InvalidArgument,
        ]
    );
    let messages = update_codes(&status);
    assert!(
        messages[2].1.contains("outside the mask"),
        "{:?}",
        messages[2]
    );
    assert!(
        messages[5].1.contains("`port` is missing"),
        "{:?}",
        messages[5]
    );

    // Read back: canonical byte strings (the padded mask comes back as written, the value too),
    // the metadata, and the counter when asked for.
    let entries = read(
        &mut client,
        vec![entity::Entity::TableEntry(TableEntry {
            table_id: ids.acl,
            counter_data: Some(CounterData::default()),
            ..Default::default()
        })],
    )
    .await
    .unwrap();
    let expected = TableEntry {
        counter_data: Some(CounterData::default()),
        ..good.clone()
    };
    assert_eq!(entries, vec![entity::Entity::TableEntry(expected)]);
    // Non-canonical input is accepted and read back canonical.
    let padded = TableEntry {
        table_id: ids.flows,
        r#match: vec![exact(1, &[0, 0, 0, 0, 5]), exact(2, &[0, 7])],
        action: action(ids.track, &[]),
        ..Default::default()
    };
    write(&mut client, 10, vec![table_update(Insert, padded)])
        .await
        .unwrap();
    let flows = read(
        &mut client,
        vec![entity::Entity::TableEntry(TableEntry {
            table_id: ids.flows,
            ..Default::default()
        })],
    )
    .await
    .unwrap();
    let entity::Entity::TableEntry(flow) = &flows[0] else {
        panic!()
    };
    assert_eq!(flow.r#match, vec![exact(1, &[5]), exact(2, &[7])]);

    // MODIFY keeps the key and replaces the action; the default entry reads back.
    write(
        &mut client,
        10,
        vec![table_update(
            Modify,
            TableEntry {
                action: action(ids.deny, &[]),
                ..good.clone()
            },
        )],
    )
    .await
    .unwrap();
    let one = read(
        &mut client,
        vec![entity::Entity::TableEntry(TableEntry {
            table_id: ids.acl,
            r#match: good.r#match.clone(),
            priority: 10,
            ..Default::default()
        })],
    )
    .await
    .unwrap();
    let entity::Entity::TableEntry(modified) = &one[0] else {
        panic!()
    };
    assert_eq!(modified.action, action(ids.deny, &[]));
    let default = read(
        &mut client,
        vec![entity::Entity::TableEntry(TableEntry {
            table_id: ids.acl,
            is_default_action: true,
            ..Default::default()
        })],
    )
    .await
    .unwrap();
    let entity::Entity::TableEntry(default) = &default[0] else {
        panic!()
    };
    assert_eq!(
        (default.is_default_action, &default.action),
        (true, &action(ids.deny, &[]))
    );

    // Read errors come per request, after the entities that could be read.
    let mut stream = client
        .read(ReadRequest {
            device_id: DEVICE,
            entities: vec![
                Entity {
                    entity: Some(entity::Entity::TableEntry(TableEntry {
                        table_id: ids.acl,
                        ..Default::default()
                    })),
                },
                Entity {
                    entity: Some(entity::Entity::CounterEntry(CounterEntry {
                        counter_id: ids.per_port,
                        index: Some(Index { index: 8 }),
                        ..Default::default()
                    })),
                },
                Entity { entity: None },
            ],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let first = stream.message().await.unwrap().unwrap();
    assert_eq!(first.entities.len(), 1);
    let status = stream.message().await.unwrap_err();
    let codes: Vec<Code> = update_codes(&status).into_iter().map(|(c, _)| c).collect();
    assert_eq!(
        codes,
        vec![Code::Ok, Code::OutOfRange, Code::InvalidArgument]
    );

    // Clone sessions: insert, read, modify, delete.
    let session = |id: u32, port: &[u8]| CloneSessionEntry {
        session_id: id,
        replicas: vec![Replica {
            port_kind: Some(replica::PortKind::Port(port.to_vec())),
            instance: 1,
        }],
        ..Default::default()
    };
    let pre = |s: CloneSessionEntry| {
        entity::Entity::PacketReplicationEngineEntry(PacketReplicationEngineEntry {
            r#type: Some(packet_replication_engine_entry::Type::CloneSessionEntry(s)),
        })
    };
    write(&mut client, 10, vec![update(Insert, pre(session(5, &[3])))])
        .await
        .unwrap();
    let status = write(
        &mut client,
        10,
        vec![
            update(Insert, pre(session(5, &[3]))),
            update(Modify, pre(session(6, &[3]))),
        ],
    )
    .await
    .unwrap_err();
    let codes: Vec<Code> = update_codes(&status).into_iter().map(|(c, _)| c).collect();
    assert_eq!(codes, vec![Code::AlreadyExists, Code::NotFound]);
    write(&mut client, 10, vec![update(Modify, pre(session(5, &[4])))])
        .await
        .unwrap();
    assert_eq!(
        read(&mut client, vec![pre(session(0, &[]))]).await.unwrap(),
        vec![pre(session(5, &[4]))]
    );
    write(&mut client, 10, vec![update(Delete, pre(session(5, &[])))])
        .await
        .unwrap();
    assert_eq!(
        read(&mut client, vec![pre(session(0, &[]))]).await.unwrap(),
        vec![]
    );

    // The table is full after `size` entries: RESOURCE_EXHAUSTED.
    let fill: Vec<Update> = (0..256u32)
        .map(|i| {
            table_update(
                Insert,
                acl_entry(
                    100,
                    &(0x0b00_0000 + i).to_be_bytes(),
                    &[0xff, 0xff, 0xff, 0xff],
                ),
            )
        })
        .collect();
    let status = write(&mut client, 10, fill).await.unwrap_err();
    let codes = update_codes(&status);
    assert_eq!(codes.iter().filter(|(c, _)| *c == Code::Ok).count(), 255);
    assert_eq!(codes[255].0, Code::ResourceExhausted);

    let wrong_role = client
        .write(WriteRequest {
            device_id: DEVICE,
            role: "sdn".into(),
            election_id: Some(uint128(10)),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(wrong_role.code(), Code::NotFound);
    let atomic = client
        .write(WriteRequest {
            device_id: DEVICE,
            election_id: Some(uint128(10)),
            atomicity: write_request::Atomicity::DataplaneAtomic as i32,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(atomic.code(), Code::Unimplemented);
    running.shutdown().await.unwrap();
}

/// ref2's STF test over P4Runtime: its entries, its six frames through port 0, its counters.
#[tokio::test]
async fn frames_through_ports_and_counters() {
    let (mut running, mut client, _primary, index) = ref2_switch(&[0, 1, 2]).await;
    let ids = ids(&index);
    use update::Type::Insert;
    let e10 = TableEntry {
        table_id: ids.acl,
        r#match: vec![
            ternary(1, &[0x0a, 0, 0, 0], &[0xff, 0, 0, 0]),
            ternary(3, &[0x35], &[0xff, 0xff]),
        ],
        action: action(ids.permit, &[(1, &[1])]),
        priority: 10,
        ..Default::default()
    };
    let e20 = TableEntry {
        table_id: ids.acl,
        r#match: vec![ternary(1, &[0x0a, 0, 0, 0x42], &[0xff, 0xff, 0xff, 0xff])],
        action: action(ids.deny, &[]),
        priority: 20,
        ..Default::default()
    };
    let e5 = TableEntry {
        table_id: ids.acl,
        r#match: vec![ternary(2, &[0xc0, 0, 2, 0], &[0xff, 0xff, 0xff, 0])],
        action: action(ids.permit, &[(1, &[2])]),
        priority: 5,
        ..Default::default()
    };
    let f1 = TableEntry {
        table_id: ids.flows,
        r#match: vec![exact(1, &[0x0a, 0, 0, 1]), exact(2, &[0xc0, 0, 2, 7])],
        action: action(ids.track, &[]),
        ..Default::default()
    };
    write(
        &mut client,
        10,
        [&e10, &e20, &e5, &f1]
            .into_iter()
            .map(|e| table_update(Insert, e.clone()))
            .collect(),
    )
    .await
    .unwrap();

    let port0 = running.channel_ports.get(&0).unwrap().to_switch.clone();
    for (hex, _) in &REF2_STF_FRAMES {
        port0.send(from_hex(hex)).await.unwrap();
    }
    for want in [1u32, 2] {
        let expected: Vec<Vec<u8>> = REF2_STF_FRAMES
            .iter()
            .filter(|(_, out)| *out == Some(want))
            .map(|(h, _)| from_hex(h))
            .collect();
        let port = running.channel_ports.get_mut(&want).unwrap();
        for e in expected {
            let got = tokio::time::timeout(WAIT, port.from_switch.recv())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(got, e);
        }
    }
    // The last frame (dropped) may still be in flight: wait until port 0's counter has all six.
    let per_port = |index| {
        entity::Entity::CounterEntry(CounterEntry {
            counter_id: ids.per_port,
            index: Some(Index { index }),
            ..Default::default()
        })
    };
    let deadline = tokio::time::Instant::now() + WAIT;
    let counter = loop {
        let got = read(&mut client, vec![per_port(0)]).await.unwrap();
        let entity::Entity::CounterEntry(c) = &got[0] else {
            panic!()
        };
        let data = c.data.unwrap();
        if data.packet_count == 6 || tokio::time::Instant::now() > deadline {
            break data;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(
        counter,
        CounterData {
            packet_count: 6,
            byte_count: 288
        }
    );

    let direct = |e: &TableEntry| {
        entity::Entity::DirectCounterEntry(DirectCounterEntry {
            table_entry: Some(e.clone()),
            data: None,
        })
    };
    let counts = read(
        &mut client,
        vec![direct(&e10), direct(&e20), direct(&e5), direct(&f1)],
    )
    .await
    .unwrap();
    let counts: Vec<CounterData> = counts
        .iter()
        .map(|e| match e {
            entity::Entity::DirectCounterEntry(d) => d.data.unwrap(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        counts,
        vec![
            CounterData {
                packet_count: 2,
                byte_count: 96
            },
            CounterData {
                packet_count: 2,
                byte_count: 96
            },
            CounterData {
                packet_count: 1,
                byte_count: 48
            },
            CounterData {
                packet_count: 2,
                byte_count: 96
            },
        ]
    );
    // Counters are writable (MODIFY), indexed ones per cell or all at once.
    write(
        &mut client,
        10,
        vec![
            update(
                update::Type::Modify,
                entity::Entity::DirectCounterEntry(DirectCounterEntry {
                    table_entry: Some(e10.clone()),
                    data: Some(CounterData::default()),
                }),
            ),
            update(
                update::Type::Modify,
                entity::Entity::CounterEntry(CounterEntry {
                    counter_id: ids.per_port,
                    index: None,
                    data: Some(CounterData {
                        packet_count: 1,
                        byte_count: 2,
                    }),
                }),
            ),
        ],
    )
    .await
    .unwrap();
    let after = read(
        &mut client,
        vec![
            direct(&e10),
            entity::Entity::CounterEntry(CounterEntry {
                counter_id: ids.per_port,
                ..Default::default()
            }),
        ],
    )
    .await
    .unwrap();
    assert_eq!(after.len(), 1 + 8);
    let entity::Entity::DirectCounterEntry(d) = &after[0] else {
        panic!()
    };
    assert_eq!(d.data, Some(CounterData::default()));
    for cell in &after[1..] {
        let entity::Entity::CounterEntry(c) = cell else {
            panic!()
        };
        assert_eq!(
            c.data,
            Some(CounterData {
                packet_count: 1,
                byte_count: 2
            })
        );
    }
    running.shutdown().await.unwrap();
}

/// The default entry of a table with a direct counter has a counter cell of its own, which counts
/// the frames that missed; it is read and written like an entry's (DirectCounterEntry or a
/// TableEntry with counter_data), and resetting the default entry resets it.
#[tokio::test]
async fn default_entries_count_misses_in_their_direct_counter() {
    let (mut running, mut client, _primary, index) = ref2_switch(&[0, 1]).await;
    let ids = ids(&index);
    let no_action = id(index.action("NoAction").unwrap().preamble.as_ref());
    use update::Type::{Insert, Modify};
    let e10 = TableEntry {
        table_id: ids.acl,
        r#match: vec![
            ternary(1, &[0x0a, 0, 0, 0], &[0xff, 0, 0, 0]),
            ternary(3, &[0x35], &[0xff, 0xff]),
        ],
        action: action(ids.permit, &[(1, &[1])]),
        priority: 10,
        ..Default::default()
    };
    let f1 = TableEntry {
        table_id: ids.flows,
        r#match: vec![exact(1, &[0x0a, 0, 0, 1]), exact(2, &[0xc0, 0, 2, 7])],
        action: action(ids.track, &[]),
        ..Default::default()
    };
    write(
        &mut client,
        10,
        vec![table_update(Insert, e10.clone()), table_update(Insert, f1)],
    )
    .await
    .unwrap();
    // To port 1 by e10 (a flows miss); denied by acl's default but counted by f1; both miss.
    let to_port_1 = from_hex("00000000000100000000000208004500002200010000401100000a0000010808080804d20035000e0000010101010101");
    let by_f1 = from_hex("00000000000100000000000208004500002200010000401100000a000001c000020704d20050000e0000010101010101");
    let neither = from_hex("0000000000010000000000020800450000220001000040110000ac1000010808040404d20035000e0000010101010101");
    let port0 = running.channel_ports.get(&0).unwrap().to_switch.clone();
    for f in [&to_port_1, &by_f1, &neither] {
        port0.send(f.clone()).await.unwrap();
    }
    let port1 = running.channel_ports.get_mut(&1).unwrap();
    let got = tokio::time::timeout(WAIT, port1.from_switch.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, to_port_1);
    let default_of = |table_id: u32| TableEntry {
        table_id,
        is_default_action: true,
        ..Default::default()
    };
    let direct = |e: TableEntry| {
        entity::Entity::DirectCounterEntry(DirectCounterEntry {
            table_entry: Some(e),
            data: None,
        })
    };
    let counts = |entities: &[entity::Entity]| -> Vec<(u32, bool, i64, i64)> {
        entities
            .iter()
            .map(|e| match e {
                entity::Entity::DirectCounterEntry(d) => {
                    let t = d.table_entry.as_ref().unwrap();
                    let c = d.data.unwrap();
                    (
                        t.table_id,
                        t.is_default_action,
                        c.packet_count,
                        c.byte_count,
                    )
                }
                other => panic!("{other:?}"),
            })
            .collect()
    };
    // The dropped frames may still be in flight: wait until flows' default has both misses.
    let deadline = tokio::time::Instant::now() + WAIT;
    let defaults = loop {
        let got = read(&mut client, vec![direct(default_of(0))])
            .await
            .unwrap();
        let got = counts(&got);
        if got.iter().all(|c| c.2 == 2) || tokio::time::Instant::now() > deadline {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    // A wildcard over tables: each table's default entry, and only that.
    assert_eq!(
        defaults,
        vec![(ids.acl, true, 2, 96), (ids.flows, true, 2, 96)]
    );
    // A table's direct counters without is_default_action: its entries, not the default one.
    let acl_entries = read(
        &mut client,
        vec![direct(TableEntry {
            table_id: ids.acl,
            ..Default::default()
        })],
    )
    .await
    .unwrap();
    assert_eq!(counts(&acl_entries), vec![(ids.acl, false, 1, 48)]);
    // The default entry read as a TableEntry, with its counter.
    let acl_default = read(
        &mut client,
        vec![entity::Entity::TableEntry(TableEntry {
            counter_data: Some(CounterData::default()),
            ..default_of(ids.acl)
        })],
    )
    .await
    .unwrap();
    let entity::Entity::TableEntry(acl_default) = &acl_default[0] else {
        panic!()
    };
    assert!(acl_default.is_default_action);
    assert_eq!(
        acl_default.counter_data,
        Some(CounterData {
            packet_count: 2,
            byte_count: 96
        })
    );

    // Written: through DirectCounterEntry (allowed although acl's default action is const), and
    // with the default entry's action through TableEntry.counter_data.
    let set = |packet_count, byte_count| {
        Some(CounterData {
            packet_count,
            byte_count,
        })
    };
    write(
        &mut client,
        10,
        vec![
            update(
                Modify,
                entity::Entity::DirectCounterEntry(DirectCounterEntry {
                    table_entry: Some(default_of(ids.acl)),
                    data: set(5, 500),
                }),
            ),
            table_update(
                Modify,
                TableEntry {
                    action: action(ids.track, &[]),
                    counter_data: set(7, 700),
                    ..default_of(ids.flows)
                },
            ),
        ],
    )
    .await
    .unwrap();
    // The next miss counts on from the written value.
    port0.send(neither.clone()).await.unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    let after = loop {
        let got = read(
            &mut client,
            vec![direct(default_of(ids.acl)), direct(default_of(ids.flows))],
        )
        .await
        .unwrap();
        let got = counts(&got);
        if got[0].2 == 6 || tokio::time::Instant::now() > deadline {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(
        after,
        vec![(ids.acl, true, 6, 548), (ids.flows, true, 8, 748)]
    );
    // Resetting the default entry (MODIFY without an action) resets its counter too.
    write(
        &mut client,
        10,
        vec![table_update(Modify, default_of(ids.flows))],
    )
    .await
    .unwrap();
    let flows_default = read(
        &mut client,
        vec![entity::Entity::TableEntry(TableEntry {
            counter_data: Some(CounterData::default()),
            ..default_of(ids.flows)
        })],
    )
    .await
    .unwrap();
    let entity::Entity::TableEntry(flows_default) = &flows_default[0] else {
        panic!()
    };
    assert_eq!(flows_default.action, action(no_action, &[]));
    assert_eq!(flows_default.counter_data, Some(CounterData::default()));

    // The default entry has no match and priority 0; counters are only modified.
    let status = write(
        &mut client,
        10,
        vec![
            update(
                Modify,
                entity::Entity::DirectCounterEntry(DirectCounterEntry {
                    table_entry: Some(TableEntry {
                        r#match: e10.r#match.clone(),
                        ..default_of(ids.acl)
                    }),
                    data: set(1, 1),
                }),
            ),
            update(
                Insert,
                entity::Entity::DirectCounterEntry(DirectCounterEntry {
                    table_entry: Some(default_of(ids.acl)),
                    data: set(1, 1),
                }),
            ),
            update(
                Modify,
                entity::Entity::DirectCounterEntry(DirectCounterEntry {
                    table_entry: Some(default_of(ids.acl)),
                    data: set(-1, 1),
                }),
            ),
        ],
    )
    .await
    .unwrap_err();
    let codes: Vec<Code> = update_codes(&status).into_iter().map(|(c, _)| c).collect();
    assert_eq!(codes, vec![Code::InvalidArgument; 3]);
    let bad_read = read(
        &mut client,
        vec![direct(TableEntry {
            priority: 3,
            ..default_of(ids.acl)
        })],
    )
    .await
    .unwrap_err();
    let codes: Vec<Code> = update_codes(&bad_read)
        .into_iter()
        .map(|(c, _)| c)
        .collect();
    assert_eq!(codes, vec![Code::InvalidArgument]);
    let unchanged = read(&mut client, vec![direct(default_of(ids.acl))])
        .await
        .unwrap();
    assert_eq!(counts(&unchanged), vec![(ids.acl, true, 6, 548)]);
    running.shutdown().await.unwrap();
}

/// A clone session's `packet_length_bytes` cuts its copies (not the original) to that length;
/// 0 leaves them whole; it reads back as written.
#[tokio::test]
async fn clone_sessions_cut_their_copies_to_packet_length_bytes() {
    let (mut running, mut client) = switch_with_ports(&[0, 1, 4]).await;
    let (_primary, code) = Controller::join(&mut client, DEVICE, 10).await;
    assert_eq!(code, OK);
    let (p4info, json) = p4c_pipeline("ref3_register_clone_hash");
    client
        .set_forwarding_pipeline_config(set_pipeline_request(
            DEVICE,
            10,
            SetAction::VerifyAndCommit,
            Some(config(p4info, json, 1)),
        ))
        .await
        .unwrap();
    let session = |packet_length_bytes: i32| {
        entity::Entity::PacketReplicationEngineEntry(PacketReplicationEngineEntry {
            r#type: Some(packet_replication_engine_entry::Type::CloneSessionEntry(
                CloneSessionEntry {
                    session_id: 5,
                    replicas: vec![Replica {
                        port_kind: Some(replica::PortKind::Port(vec![4])),
                        instance: 0,
                    }],
                    packet_length_bytes,
                    ..Default::default()
                },
            )),
        })
    };
    use update::Type::{Insert, Modify};
    write(&mut client, 10, vec![update(Insert, session(20))])
        .await
        .unwrap();
    assert_eq!(
        read(&mut client, vec![session(0)]).await.unwrap(),
        vec![session(20)]
    );
    // UDP to port 9: ref3 clones it to session 5 and sends the original to port 1.
    let sent = from_hex("00000000000100000000000208004500002200010000401100000a0000010808080804d20009000e0000010101010101");
    let port0 = running.channel_ports.get(&0).unwrap().to_switch.clone();
    port0.send(sent.clone()).await.unwrap();
    assert_eq!(receive(&mut running, 1).await.len(), sent.len());
    let copy = receive(&mut running, 4).await;
    assert_eq!(copy.len(), 20);
    // The copy is the clone (egress marks it broadcast), cut.
    assert_eq!(copy[..6], [0xff; 6]);
    assert_eq!(copy[6..], sent[6..20]);

    // A negative length is refused; 0 leaves copies whole.
    let status = write(&mut client, 10, vec![update(Modify, session(-1))])
        .await
        .unwrap_err();
    let codes: Vec<Code> = update_codes(&status).into_iter().map(|(c, _)| c).collect();
    assert_eq!(codes, vec![Code::InvalidArgument]);
    write(&mut client, 10, vec![update(Modify, session(0))])
        .await
        .unwrap();
    port0.send(sent.clone()).await.unwrap();
    assert_eq!(receive(&mut running, 1).await.len(), sent.len());
    assert_eq!(receive(&mut running, 4).await.len(), sent.len());
    running.shutdown().await.unwrap();
}

/// The next frame the switch sends out of in-process port `port`.
async fn receive(running: &mut RunningSwitch, port: u32) -> Vec<u8> {
    let rx = &mut running.channel_ports.get_mut(&port).unwrap().from_switch;
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .unwrap()
        .unwrap()
}

/// The next stream message, which must be an idle-timeout notification.
async fn idle_notification(primary: &mut Controller) -> IdleTimeoutNotification {
    match primary.next().await.unwrap().update {
        Some(stream_message_response::Update::IdleTimeoutNotification(n)) => n,
        other => panic!("expected an idle timeout notification, got {other:?}"),
    }
}

#[tokio::test]
async fn idle_timeout_notifies_once_per_idle_period_never_while_hit_and_keeps_the_entry() {
    // The TTL is many scan intervals (10 ms) long, so a notification per scan would show.
    const TTL: Duration = Duration::from_millis(150);
    let (running, mut client, mut primary, index) = ref2_switch(&[0, 1]).await;
    let ids = ids(&index);
    let flow = TableEntry {
        table_id: ids.flows,
        r#match: vec![exact(1, &[0x0a, 0, 0, 1]), exact(2, &[0xc0, 0, 2, 7])],
        action: action(ids.track, &[]),
        idle_timeout_ns: TTL.as_nanos() as i64,
        metadata: b"pair-1".to_vec(),
        ..Default::default()
    };
    write(
        &mut client,
        10,
        vec![table_update(update::Type::Insert, flow.clone())],
    )
    .await
    .unwrap();
    let started = std::time::Instant::now();
    let expected = TableEntry {
        action: None,
        ..flow.clone()
    };
    let mut notes = Vec::new();
    for _ in 0..3 {
        let note = idle_notification(&mut primary).await;
        assert_eq!(note.table_entry, vec![expected.clone()]);
        notes.push(note.timestamp);
    }
    assert!(
        started.elapsed() >= TTL * 3 - TTL / 4,
        "{:?}",
        started.elapsed()
    );
    // One notification per TTL while idle: each is a full TTL (less the scanner's jitter between
    // its switch clock and its timestamp) after the one before, not one per scan.
    for pair in notes.windows(2) {
        let gap = Duration::from_nanos((pair[1] - pair[0]) as u64);
        assert!(gap >= TTL - TTL / 5, "notifications {gap:?} apart");
    }

    // Hit every TTL/6 for 3 TTLs: no notification. Then idle again: notified after a TTL.
    let hit = from_hex("00000000000100000000000208004500002200010000401100000a000001c000020704d20050000e0000010101010101");
    let port = running.channel_ports.get(&0).unwrap();
    let hitting = std::time::Instant::now();
    let mut hits = 0;
    let mut last_hit = hitting;
    while hitting.elapsed() < TTL * 3 {
        last_hit = std::time::Instant::now();
        port.to_switch.send(hit.clone()).await.unwrap();
        hits += 1;
        let quiet = tokio::time::timeout(TTL / 6, primary.rx.message()).await;
        assert!(
            quiet.is_err(),
            "a message while the entry is hit: {quiet:?}"
        );
    }
    let again = idle_notification(&mut primary).await;
    assert!(last_hit.elapsed() >= TTL, "{:?}", last_hit.elapsed());
    assert_eq!(again.table_entry, vec![expected]);

    // The entry stays until the controller deletes it, and reports its time since the last hit
    // (which the notifications do not reset) and its direct counter (one per hit).
    let read_back = read(
        &mut client,
        vec![entity::Entity::TableEntry(TableEntry {
            table_id: ids.flows,
            time_since_last_hit: Some(table_entry::IdleTimeout::default()),
            counter_data: Some(CounterData::default()),
            ..Default::default()
        })],
    )
    .await
    .unwrap();
    let entity::Entity::TableEntry(e) = &read_back[0] else {
        panic!()
    };
    assert!(e.time_since_last_hit.unwrap().elapsed_ns >= TTL.as_nanos() as i64);
    assert_eq!(e.idle_timeout_ns, TTL.as_nanos() as i64);
    assert_eq!(e.counter_data.as_ref().unwrap().packet_count, hits);
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn packet_out_enters_on_the_cpu_port_and_packet_in_reaches_the_primary() {
    let mut options = SwitchOptions::new(DEVICE, "127.0.0.1:0".parse().unwrap());
    options.channel_ports = vec![0, 1];
    options.cpu_port = Some(255);
    let mut running = start(options).await.unwrap();
    let mut client = P4RuntimeClient::connect(format!("http://{}", running.grpc_addr))
        .await
        .unwrap();
    let (mut primary, code) = Controller::join(&mut client, DEVICE, 10).await;
    assert_eq!(code, OK);
    let (mut backup, code) = Controller::join(&mut client, DEVICE, 2).await;
    assert_eq!(code, Code::AlreadyExists as i32);
    let (p4info, json) = p4c_pipeline("ref2_ternary_counters");
    let ids = ids(&P4InfoIndex::new(p4info.clone()).unwrap());
    client
        .set_forwarding_pipeline_config(set_pipeline_request(
            DEVICE,
            10,
            SetAction::VerifyAndCommit,
            Some(config(p4info, json, 1)),
        ))
        .await
        .unwrap();
    // UDP to port 53 from 10/8 goes to port 1; to 192.0.2.0/24 goes to the CPU port.
    let to_port1 = TableEntry {
        table_id: ids.acl,
        r#match: vec![ternary(3, &[0x35], &[0xff, 0xff])],
        action: action(ids.permit, &[(1, &[1])]),
        priority: 10,
        ..Default::default()
    };
    let to_cpu = TableEntry {
        table_id: ids.acl,
        r#match: vec![ternary(2, &[0xc0, 0, 2, 0], &[0xff, 0xff, 0xff, 0])],
        action: action(ids.permit, &[(1, &[0x00, 0xff])]),
        priority: 5,
        ..Default::default()
    };
    use update::Type::Insert;
    write(
        &mut client,
        10,
        vec![table_update(Insert, to_port1), table_update(Insert, to_cpu)],
    )
    .await
    .unwrap();

    let dns = from_hex("00000000000100000000000208004500002200010000401100000a0000010808080804d20035000e0000010101010101");
    let packet_out = |payload: Vec<u8>| StreamMessageRequest {
        update: Some(stream_message_request::Update::Packet(PacketOut {
            payload,
            metadata: vec![],
        })),
    };
    // A backup may not send packets: a stream error, and nothing comes out.
    backup.tx.send(packet_out(dns.clone())).await.unwrap();
    match backup.next().await.unwrap().update {
        Some(stream_message_response::Update::Error(e)) => {
            assert_eq!(e.canonical_code, Code::PermissionDenied as i32);
            assert!(matches!(
                e.details,
                Some(stream_error::Details::PacketOut(_))
            ));
        }
        other => panic!("expected a stream error, got {other:?}"),
    }
    // The primary's packet enters the pipeline on the CPU port and is forwarded to port 1.
    primary.tx.send(packet_out(dns.clone())).await.unwrap();
    let port1 = running.channel_ports.get_mut(&1).unwrap();
    let out = tokio::time::timeout(WAIT, port1.from_switch.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(out, dns);

    // A frame the program sends to the CPU port becomes a PacketIn for the primary only.
    let to_doc = from_hex("00000000000100000000000208004500002200010000401100000a000001c000020704d20050000e0000010101010101");
    running.channel_ports[&0]
        .to_switch
        .send(to_doc.clone())
        .await
        .unwrap();
    match primary.next().await.unwrap().update {
        Some(stream_message_response::Update::Packet(p)) => {
            assert_eq!((p.payload, p.metadata), (to_doc, vec![]));
        }
        other => panic!("expected a packet-in, got {other:?}"),
    }
    let quiet = tokio::time::timeout(Duration::from_millis(100), backup.rx.message()).await;
    assert!(quiet.is_err(), "the backup got {quiet:?}");
    running.shutdown().await.unwrap();
}

// Only the write half is used here.
#[allow(dead_code)]
#[path = "support/p4runtime_harness.rs"]
mod harness;

/// With the debug log on (`-L debug`), each Write update is logged in P4Info's names, with the
/// key and action as the controller sent them, and the error when it failed (bmv2 logs its
/// table writes too): ref2's seed writes, then one insert again.
#[test]
fn writes_are_logged_in_p4info_names() {
    let service = harness::ref2_service();
    let text = support::logs::debug_log_of(|| {
        harness::populate(&service);
        let again = WriteRequest::decode(harness::write_seeds()[0].as_slice()).unwrap();
        assert!(service.handle_write(&again).is_err());
    });
    insta::assert_snapshot!(text);
}
