//! The end-to-end demonstration (`vmdep demo`): the reference topology, a workload with known
//! ground truth, and the run that wires switches, hosts with DPI and the controller together so
//! their measurements can be compared with that truth. [`emulated`] runs it all in one process
//! over loopback; [`netns`] builds the real thing (network namespaces, Open vSwitch) as root,
//! and [`netns_run`] runs the demo in it, the workload over the VMs' own kernel sockets;
//! [`processes`] runs every part as its own process (`vmdep demo --processes`).
//!
//! `demo` sits at the top of the module graph: it may use every other part of vmdep, and nothing
//! imports it (only the CLI).

pub mod emulated;
pub mod fabric;
pub mod netns;
pub mod netns_run;
pub mod processes;
pub mod workload;
