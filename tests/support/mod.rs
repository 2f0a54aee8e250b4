//! Setup shared by the integration tests, included by each with `mod support;`. It owns test
//! scaffolding only (environment checks, processes, frames, peers); what it tests stays in the
//! test files.

// Each test crate compiles this whole module but uses only the helpers it needs.
#![allow(dead_code)]

pub mod env;
pub mod fabric;
pub mod frames;
pub mod labels;
pub mod logs;
pub mod netns;
pub mod p4rt;
pub mod process;
pub mod programs;
pub mod switch_process;
pub mod tshark;
pub mod xorshift;
