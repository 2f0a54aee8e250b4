use prost::Message;
use tonic::{Code, Status};

use super::worker::per_update_errors;
use super::*;
use crate::p4rt::rpc;
use crate::p4rt::v1::Error as P4Error;

fn count(packets: u64, bytes: u64) -> PairCount {
    PairCount { packets, bytes }
}

#[test]
fn totals_accumulate_deltas_and_count_resets() {
    let mut t = PairTracker::default();
    t.observe(count(3, 300));
    t.observe(count(5, 500));
    assert_eq!(
        t.totals,
        PairTotals {
            packets: 5,
            bytes: 500,
            resets: 0
        }
    );
    // The switch restarted: the counter is below the last reading and counts from zero.
    t.observe(count(2, 200));
    assert_eq!(
        t.totals,
        PairTotals {
            packets: 7,
            bytes: 700,
            resets: 1
        }
    );
    // Bytes alone going down is a reset too (never a negative delta).
    t.observe(count(4, 100));
    assert_eq!(
        t.totals,
        PairTotals {
            packets: 11,
            bytes: 800,
            resets: 2
        }
    );
    // An entry written again counts from zero, even if it already passed the old reading.
    t.restarted();
    t.observe(count(9, 900));
    assert_eq!(
        t.totals,
        PairTotals {
            packets: 20,
            bytes: 1700,
            resets: 3
        }
    );
    t.observe(count(9, 900));
    assert_eq!(t.totals.packets, 20);
}

proptest::proptest! {
    #[test]
    fn totals_never_go_backwards(readings in proptest::collection::vec((0u64..1000, 0u64..100_000), 0..50)) {
        let mut t = PairTracker::default();
        let mut before = t.totals;
        for (packets, bytes) in readings {
            t.observe(count(packets, bytes));
            proptest::prop_assert!(t.totals.packets >= before.packets);
            proptest::prop_assert!(t.totals.bytes >= before.bytes);
            proptest::prop_assert!(t.totals.resets >= before.resets);
            proptest::prop_assert!(t.totals.packets >= packets && t.totals.bytes >= bytes);
            before = t.totals;
        }
    }
}

fn batch_status(codes: &[(i32, &str)]) -> Status {
    let details = codes
        .iter()
        .map(|(code, message)| prost_types::Any {
            type_url: "type.googleapis.com/p4.v1.Error".to_string(),
            value: P4Error {
                canonical_code: *code,
                message: message.to_string(),
                ..P4Error::default()
            }
            .encode_to_vec(),
        })
        .collect();
    let status = rpc::Status {
        code: Code::Unknown as i32,
        message: "some failed".into(),
        details,
    };
    Status::with_details(Code::Unknown, "some failed", status.encode_to_vec().into())
}

#[test]
fn per_update_errors_are_decoded_from_the_status_details() {
    let status = batch_status(&[(0, ""), (Code::ResourceExhausted as i32, "table full")]);
    assert_eq!(
        per_update_errors(&status, 2),
        Some(vec![
            Ok(()),
            Err((Code::ResourceExhausted, "table full".to_string()))
        ])
    );
    // A count that does not match the batch, another code, or no details: the whole RPC failed.
    assert_eq!(per_update_errors(&status, 3), None);
    assert_eq!(
        per_update_errors(&Status::permission_denied("not primary"), 2),
        None
    );
    assert_eq!(per_update_errors(&Status::unknown("no details"), 1), None);
    let garbage = Status::with_details(Code::Unknown, "x", vec![0xff, 0xff].into());
    assert_eq!(per_update_errors(&garbage, 1), None);
}

#[test]
fn journal_keeps_up_to_its_limit() {
    let journal = WriteJournal::new(2);
    for device_id in 0..3 {
        journal.record(&WriteRequest {
            device_id,
            ..WriteRequest::default()
        });
    }
    assert_eq!(journal.requests().len(), 2);
    assert_eq!(journal.overflow(), 1);
    assert_eq!(journal.take()[1].device_id, 1);
    assert!(journal.requests().is_empty());
}
