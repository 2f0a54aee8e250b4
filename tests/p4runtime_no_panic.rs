//! The P4Runtime server's Write and Read handlers take any decodable request without panicking:
//! mutants of valid requests (bytes overwritten, inserted, removed) and random bytes, decoded
//! with prost and fed to a switch running ref2 (the same harness as fuzz/'s p4runtime targets).
//! After every Write, a wildcard read of all tables and counters must still succeed. Writes run
//! with the debug log on, which describes every update.

#[path = "support/p4runtime_harness.rs"]
mod harness;

use proptest::prelude::*;
use prost::Message;

use vmdep::p4rt::v1::{ReadRequest, WriteRequest};

/// Applies (position, byte, kind) edits: 0 overwrites, 1 inserts, 2 removes a byte.
fn mutate(mut bytes: Vec<u8>, edits: &[(u16, u8, u8)]) -> Vec<u8> {
    for &(at, byte, kind) in edits {
        let len = bytes.len();
        match kind {
            0 if len > 0 => bytes[usize::from(at) % len] = byte,
            1 => bytes.insert(usize::from(at) % (len + 1), byte),
            2 if len > 0 => {
                bytes.remove(usize::from(at) % len);
            }
            _ => {}
        }
    }
    bytes
}

fn edits() -> impl Strategy<Value = Vec<(u16, u8, u8)>> {
    prop::collection::vec((any::<u16>(), any::<u8>(), 0..3u8), 0..6)
}

fn write(bytes: &[u8], keep_header: bool) {
    if let Ok(mut request) = WriteRequest::decode(bytes) {
        harness::aim_write(&mut request, keep_header);
        // With the debug log on, so that each update is also described for it (what `vmdep
        // switch -L debug` logs), from whatever the request holds.
        let debug_log = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_writer(std::io::sink)
            .finish();
        tracing::subscriber::with_default(debug_log, || {
            harness::write_then_read_all(&harness::ref2_service(), &request)
        });
    }
}

fn read(bytes: &[u8], keep_header: bool) {
    if let Ok(mut request) = ReadRequest::decode(bytes) {
        harness::aim_read(&mut request, keep_header);
        let service = harness::ref2_service();
        harness::populate(&service);
        if let Ok(messages) = service.handle_read(&request) {
            // Each message is an answer or the batch's error status; both are fine.
            assert!(!messages.is_empty());
        }
    }
}

#[test]
fn the_seeds_are_valid_requests() {
    let service = harness::ref2_service();
    harness::populate(&service);
    let answered: Vec<bool> = harness::read_seeds()
        .iter()
        .map(|seed| {
            let request = ReadRequest::decode(seed.as_slice()).unwrap();
            let messages = service.handle_read(&request).unwrap();
            messages.iter().all(Result::is_ok)
        })
        .collect();
    // Only the deliberately wrong last one (a counter id as a table id) fails.
    assert_eq!(answered, [true, true, true, true, true, false]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn mutated_writes_never_panic(
        seed in 0..harness::write_seeds().len(),
        edits in edits(),
        keep_header in any::<bool>(),
    ) {
        write(&mutate(harness::write_seeds()[seed].clone(), &edits), keep_header);
    }

    #[test]
    fn random_write_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        write(&bytes, false);
    }

    #[test]
    fn mutated_reads_never_panic(
        seed in 0..harness::read_seeds().len(),
        edits in edits(),
        keep_header in any::<bool>(),
    ) {
        read(&mutate(harness::read_seeds()[seed].clone(), &edits), keep_header);
    }

    #[test]
    fn random_read_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        read(&bytes, false);
    }
}
