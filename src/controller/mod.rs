//! The controller: it turns the servers' sFlow samples into exact per-pair counts, one counting
//! entry per selected VM pair on the least-loaded switch of the pair's path.
//!
//! This module owns the controller's algorithmic core, which needs no network:
//!
//! - [`topology`]: the fabric description (switches, links, servers, VMs) read from a TOML file,
//!   validated, and a k-ary fat-tree generator;
//! - [`paths`]: destination-based shortest-path trees, each pair's switch path, and the `ipv4_lpm`
//!   entries that make packets really follow those paths;
//! - [`placement`]: which switch of its path counts each selected pair (greedy least-loaded, the
//!   method's rule; optimal min-max-load for a batch; naive first hop, for comparison);
//! - [`collector`]: the sFlow v5 collector, from datagrams to per-pair samples;
//! - [`estimate`]: the pre-analysis, from sampled counts to estimates, error bounds and the
//!   selection and release of pairs to measure;
//! - [`graph`]: the dependency graph over time, rendered as JSON and Graphviz DOT.
//!
//! its P4Runtime side:
//!
//! - [`rules`]: vmdep.p4's P4Runtime entries (routes, counting entries) built by name through the
//!   P4Info;
//! - [`session`]: one P4Runtime session per switch (the only part that talks to switches);
//!
//! its outputs:
//!
//! - [`api`]: the HTTP API (JSON, OpenAPI description) and [`metrics`], its Prometheus text;
//! - [`history`]: the measurement history in SQLite;
//!
//! and [`service`], the running controller: the tasks and the once-per-window loop that ties
//! them together (collector → estimate → placement → sessions → graph, mirror sets to hosts).
//!
//! It may use `p4rt`, `sflow`, `wire` and `hostlink` only: switches are reached over P4Runtime and
//! hosts over their protocols, never through `switch`, `host` or `compiler` types.

pub mod api;
pub mod collector;
pub mod estimate;
pub mod graph;
pub mod history;
pub mod metrics;
pub mod paths;
pub mod placement;
pub mod rules;
pub mod service;
pub mod session;
pub mod topology;

use std::fmt;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

/// A directed VM pair, named by the IPv4 addresses its packets carry: the key of `vm_pair`
/// entries (`hdr.ipv4.srcAddr`, `hdr.ipv4.dstAddr`) and of the pre-analysis. Ordered by source,
/// then destination, which gives every listing of pairs a deterministic order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct VmPair {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
}

impl VmPair {
    pub fn new(src: Ipv4Addr, dst: Ipv4Addr) -> Self {
        VmPair { src, dst }
    }
}

impl fmt::Display for VmPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}->{}", self.src, self.dst)
    }
}
