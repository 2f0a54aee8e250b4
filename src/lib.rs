//! vmdep measures the communication dependencies between virtual machines in a data center
//! with P4 switches: hosts sample VM traffic (sFlow), the controller picks the VM pairs worth
//! an exact count and installs one counting entry per pair on the least-loaded switch of its
//! path (P4Runtime), and the counts and DPI labels become a dependency graph.
//!
//! Data flow, module by module (ARCHITECTURE.md in the project's shared notes has the map):
//!
//! ```text
//!  VM frames ─► host (vswitch) ──sFlow v5 (sflow)──► controller::collector ─► controller::estimate
//!    (wire)       │  ▲ mirror set (hostlink)                                     │ selected pairs
//!                 ▼  │                                                           ▼
//!               dpi ─┴─labels, local counts (hostlink)─►  controller::service ─► controller::paths
//!                 │                                        │          ▲          controller::placement
//!  uplink (UDP wire / veth)                                │          │ counts, idle timeouts
//!                 ▼                                        ▼          │
//!             switch ×N ◄──P4Runtime (p4rt): routes, vm_pair entries── controller::session
//!    (bmv2 JSON of p4/vmdep.p4, built by compiler)         │
//!                                                          ▼
//!                                  controller::graph ─► graph.json / graph.dot
//! ```
//!
//! Boundaries: [`p4rt`] (P4Runtime types and helpers), [`wire`] (packet headers), [`sflow`]
//! (sFlow v5) and [`hostlink`] (the server ↔ controller link) are leaves that import no other
//! part. [`compiler`] uses only `p4rt`; [`switch`] uses `p4rt` and never the compiler;
//! [`controller`] uses `p4rt`, `sflow`, `wire` and `hostlink` and reaches switches only over
//! P4Runtime; [`host`] (an emulated server) and [`dpi`] (deep packet inspection of mirrored
//! frames) use the codecs and `hostlink`, and the host reads the topology file; [`demo`] wires
//! everything together and nothing imports it.

pub mod compiler;
pub mod controller;
pub mod demo;
pub mod dpi;
pub mod host;
pub mod hostlink;
pub mod p4rt;
pub mod sflow;
pub mod switch;
pub mod wire;
