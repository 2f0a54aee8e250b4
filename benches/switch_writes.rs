//! P4Runtime table writes per second on `vmdep switch`: an in-process switch on 127.0.0.1:0 runs
//! p4/vmdep.p4 (VM_PAIR_SIZE = 16,384), a tonic client is its primary controller, and
//! `MyIngress.vm_pair` entries (two exact keys, count_pair, an idle timeout — what vmdep's
//! controller installs) are inserted, modified and deleted in Write requests of 1,000 updates,
//! 10,000 entries per round. One update per request is measured too, for the per-request cost.
//! Plain `main` (`cargo bench --bench switch_writes`); VMDEP_BENCH_ROUNDS sets the rounds (3).

use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use vmdep::p4rt::bytestring;
use vmdep::p4rt::v1::p4_runtime_client::P4RuntimeClient;
use vmdep::p4rt::v1::*;
use vmdep::p4rt::P4InfoIndex;
use vmdep::switch::runner::{self, SwitchOptions};

const DEVICE: u64 = 1;
const ENTRIES: u32 = 10_000;
const PER_REQUEST: usize = 1_000;

struct VmPair {
    table_id: u32,
    src_id: u32,
    dst_id: u32,
    count_pair: u32,
    no_action: u32,
}

impl VmPair {
    fn entry(&self, i: u32, action_id: u32) -> TableEntry {
        let exact = |field_id: u32, value: u32| FieldMatch {
            field_id,
            field_match_type: Some(field_match::FieldMatchType::Exact(field_match::Exact {
                value: bytestring::encode(u128::from(value), 32).expect("32-bit value"),
            })),
        };
        TableEntry {
            table_id: self.table_id,
            r#match: vec![
                exact(self.src_id, 0x0a00_0000 | i),
                exact(self.dst_id, 0x0b00_0000 | (i * 7 + 1)),
            ],
            action: Some(TableAction {
                r#type: Some(table_action::Type::Action(Action {
                    action_id,
                    params: vec![],
                })),
            }),
            idle_timeout_ns: 60_000_000_000,
            ..Default::default()
        }
    }
}

fn write_request(updates: Vec<Update>) -> WriteRequest {
    WriteRequest {
        device_id: DEVICE,
        election_id: Some(Uint128 { high: 0, low: 1 }),
        updates,
        atomicity: write_request::Atomicity::ContinueOnError as i32,
        ..Default::default()
    }
}

fn update(kind: update::Type, entry: TableEntry) -> Update {
    Update {
        r#type: kind as i32,
        entity: Some(Entity {
            entity: Some(entity::Entity::TableEntry(entry)),
        }),
    }
}

/// Writes entries `0..ENTRIES` with `kind`, PER_REQUEST per request; the time it took.
async fn phase(
    client: &mut P4RuntimeClient<Channel>,
    table: &VmPair,
    kind: update::Type,
    action_id: u32,
    per_request: usize,
    entries: u32,
) -> Duration {
    let ids: Vec<u32> = (0..entries).collect();
    // Requests are built before the clock starts: the switch's time is what is measured.
    let requests: Vec<WriteRequest> = ids
        .chunks(per_request)
        .map(|chunk| {
            write_request(
                chunk
                    .iter()
                    .map(|&i| update(kind, table.entry(i, action_id)))
                    .collect(),
            )
        })
        .collect();
    let start = Instant::now();
    for request in requests {
        client.write(request).await.expect("write");
    }
    start.elapsed()
}

fn main() {
    let rounds: u32 = std::env::var("VMDEP_BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let source = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/p4/vmdep.p4"))
        .expect("read p4/vmdep.p4");
    let compiled = vmdep::compiler::compile(&source, "vmdep.p4")
        .unwrap_or_else(|d| panic!("vmdep.p4 does not compile: {d}"));
    let index = P4InfoIndex::new(compiled.p4info.clone()).expect("index the P4Info");
    let table = index.table("MyIngress.vm_pair").unwrap();
    let id_of = |p: &Option<vmdep::p4rt::config::Preamble>| p.as_ref().unwrap().id;
    let vm_pair = VmPair {
        table_id: id_of(&table.preamble),
        src_id: index
            .match_field("MyIngress.vm_pair", "hdr.ipv4.srcAddr")
            .unwrap()
            .id,
        dst_id: index
            .match_field("MyIngress.vm_pair", "hdr.ipv4.dstAddr")
            .unwrap()
            .id,
        count_pair: id_of(&index.action("MyIngress.count_pair").unwrap().preamble),
        no_action: id_of(&index.action("NoAction").unwrap().preamble),
    };

    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    rt.block_on(async move {
        let running = runner::start(SwitchOptions::new(DEVICE, "127.0.0.1:0".parse().unwrap()))
            .await
            .expect("start the switch");
        let mut client = P4RuntimeClient::connect(format!("http://{}", running.grpc_addr))
            .await
            .expect("connect");
        // Become primary: one arbitration message, then wait for its answer.
        let (tx, rx) = mpsc::channel(4);
        tx.send(StreamMessageRequest {
            update: Some(stream_message_request::Update::Arbitration(
                MasterArbitrationUpdate {
                    device_id: DEVICE,
                    election_id: Some(Uint128 { high: 0, low: 1 }),
                    ..Default::default()
                },
            )),
        })
        .await
        .unwrap();
        let mut stream = client
            .stream_channel(ReceiverStream::new(rx))
            .await
            .expect("stream")
            .into_inner();
        stream.message().await.expect("arbitration answer");
        client
            .set_forwarding_pipeline_config(SetForwardingPipelineConfigRequest {
                device_id: DEVICE,
                election_id: Some(Uint128 { high: 0, low: 1 }),
                action: set_forwarding_pipeline_config_request::Action::VerifyAndCommit as i32,
                config: Some(ForwardingPipelineConfig {
                    p4info: Some(compiled.p4info.clone()),
                    p4_device_config: compiled.bmv2_json.into_bytes(),
                    cookie: None,
                }),
                ..Default::default()
            })
            .await
            .expect("set the pipeline");

        use update::Type::{Delete, Insert, Modify};
        let mut totals = [Duration::ZERO; 3];
        for _ in 0..rounds {
            for (total, (kind, action)) in totals.iter_mut().zip([
                (Insert, vm_pair.count_pair),
                (Modify, vm_pair.no_action),
                (Delete, vm_pair.count_pair),
            ]) {
                *total += phase(&mut client, &vm_pair, kind, action, PER_REQUEST, ENTRIES).await;
            }
        }
        let singles = 2_000;
        let one_insert = phase(
            &mut client,
            &vm_pair,
            Insert,
            vm_pair.count_pair,
            1,
            singles,
        )
        .await;
        let one_delete = phase(
            &mut client,
            &vm_pair,
            Delete,
            vm_pair.count_pair,
            1,
            singles,
        )
        .await;

        let per_second = |n: u32, d: Duration| f64::from(n) / d.as_secs_f64();
        let updates = ENTRIES * rounds;
        println!(
            "switch_writes MyIngress.vm_pair, {PER_REQUEST} updates per Write request, \
             {rounds} rounds of {ENTRIES} entries:"
        );
        for (name, total) in ["insert", "modify", "delete"].iter().zip(totals) {
            println!("  {name:<7} {:>10.0} updates/s", per_second(updates, total));
        }
        let all: Duration = totals.iter().sum();
        println!("  all     {:>10.0} updates/s", per_second(3 * updates, all));
        println!("one update per Write request ({singles} entries):");
        println!(
            "  insert  {:>10.0} updates/s",
            per_second(singles, one_insert)
        );
        println!(
            "  delete  {:>10.0} updates/s",
            per_second(singles, one_delete)
        );
        drop(stream);
        drop(tx);
        running.shutdown().await.expect("shutdown");
    });
}
