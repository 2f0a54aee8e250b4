//! vmdep measures the communication dependencies between virtual machines in a data center
//! with P4 switches: hosts sample VM traffic (sFlow), the controller picks the VM pairs worth
//! an exact count and installs one counting entry per pair on the least-loaded switch of its
//! path (P4Runtime), and the counts and DPI labels become a dependency graph.
//!
//! Data flow, module by module (see ARCHITECTURE.md in the project's shared notes):
//!
//! ```text
//! p4/vmdep.p4 ──compiler──► bmv2 JSON + P4Info ──(P4Runtime: p4rt)──► switch ×N
//!                                                                      ▲ vm_pair entries,
//! VM frames (wire) ──sampled──► sFlow v5 (sflow) ──► controller ────────┘ counter reads
//!                                                    (estimate → paths → placement)
//! ```
//!
//! Leaves: [`p4rt`] (P4Runtime types and helpers), [`wire`] (packet headers) and [`sflow`]
//! (sFlow v5) import no other part. [`compiler`] uses only `p4rt`; [`switch`] uses `p4rt` and
//! never the compiler; [`controller`] uses `p4rt` and `sflow` and reaches switches only over
//! P4Runtime. [`hostlink`] (servers' exact same-server counts and DPI labels in, mirror
//! requests out) is a leaf protocol module like `sflow`.

pub mod compiler;
pub mod controller;
pub mod demo;
pub mod hostlink;
pub mod p4rt;
pub mod sflow;
pub mod switch;
pub mod wire;
