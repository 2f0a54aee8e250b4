//! `vmdep switch`'s core: a bmv2-compatible (v1model, simple_switch) software switch.
//!
//! - [`json`] reads bmv2's JSON pipeline format;
//! - [`pipeline`] compiles it once, when a pipeline is set, into indices and small expression trees
//!   (nothing is looked up by name per packet) and refuses what this switch does not implement;
//!   [`field_use`] then marks the header fields the program never names, which the parser skips;
//! - [`table`] holds a table's entries and finds the one a key matches ([`length_trie`] gives an
//!   IPv4-like lpm table the longest matching length in one to three array reads);
//! - [`dataplane`] holds the switch state (table entries, counters, registers, clone sessions,
//!   statistics), processes frames and offers the runtime API the P4Runtime server sits on;
//! - [`p4runtime`] is that server (P4Runtime 1.4 over gRPC), [`ports`] the port backends (UDP
//!   wires, Linux interfaces, in-process channels), [`capture`] their pcap files (`--pcap`) and
//!   [`runner`] starts and stops the whole switch.
//!
//! This module loads pipelines, it never builds them (no use of the compiler), and it knows
//! nothing of the controller.

pub mod capture;
pub mod dataplane;
pub mod field_use;
pub mod hash;
pub mod json;
pub mod length_trie;
pub mod p4runtime;
pub mod pipeline;
pub mod ports;
pub mod runner;
pub mod stf;
pub mod table;

pub use dataplane::{Outputs, Stats, Switch};
pub use pipeline::{LoadError, Program};
pub use table::{ActionCall, CounterValue, EntryKey, MatchValue, RuntimeError, TableEntry};
