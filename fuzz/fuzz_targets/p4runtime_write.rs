//! Fuzzes the P4Runtime Write handler: the input (after one flags byte) is decoded with prost as
//! a WriteRequest and written to a switch running ref2; the handler must answer, never panic,
//! and the switch must still read back all its tables and counters afterwards. Unless the flags'
//! low bit is set, the request is aimed at the switch as its primary (device and election id)
//! so it reaches the entity code. `cargo +nightly fuzz run p4runtime_write`.
#![no_main]

// Shared with the other p4runtime target and tests/p4runtime_no_panic.rs; each uses part of it.
#[allow(dead_code)]
#[path = "../../tests/support/p4runtime_harness.rs"]
mod harness;

use libfuzzer_sys::fuzz_target;
use prost::Message;
use vmdep::p4rt::v1::WriteRequest;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, bytes)) = data.split_first() else {
        return;
    };
    if let Ok(mut request) = WriteRequest::decode(bytes) {
        harness::aim_write(&mut request, flags & 1 == 1);
        harness::write_then_read_all(&harness::ref2_service(), &request);
    }
});
