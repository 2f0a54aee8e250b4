//! Fuzzes the P4Runtime Read handler: the input (after one flags byte) is decoded with prost as
//! a ReadRequest and read from a switch running ref2 with a few entries and counter values
//! written; the handler must answer, never panic. Unless the flags' low bit is set, the request
//! is aimed at the switch's device id. `cargo +nightly fuzz run p4runtime_read`.
#![no_main]

// Shared with the other p4runtime target and tests/p4runtime_no_panic.rs; each uses part of it.
#[allow(dead_code)]
#[path = "../../tests/support/p4runtime_harness.rs"]
mod harness;

use libfuzzer_sys::fuzz_target;
use prost::Message;
use vmdep::p4rt::v1::ReadRequest;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, bytes)) = data.split_first() else {
        return;
    };
    if let Ok(mut request) = ReadRequest::decode(bytes) {
        harness::aim_read(&mut request, flags & 1 == 1);
        let service = harness::ref2_service();
        harness::populate(&service);
        if let Ok(messages) = service.handle_read(&request) {
            assert!(!messages.is_empty());
        }
    }
});
