//! `vmdep demo`: the whole system on one machine. It wires every other part together (the
//! switches, the controller, the emulated hosts with DPI, the workload and its ground truth)
//! and nothing imports it.

pub mod fabric;
