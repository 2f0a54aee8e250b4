//! `vmdep demo`: the reference topology brought to life, with workloads whose dependencies are
//! known. It wires the other parts together (switches, hosts, controller); nothing imports it.

pub mod netns;
