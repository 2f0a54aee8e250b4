//! `vmdep compile`: the P4_16 (v1model subset) compiler, structured like p4c:
//! front end (lexer, parser → [`ast`]), checks (names, types), back ends (bmv2 JSON, P4Info).
//!
//! Owns: P4 source in, bmv2 JSON and P4Info out, and the diagnostics for bad programs.
//! Must not touch: the switch, the controller or any network; it uses only `p4rt` (P4Info types).

pub mod ast;
pub mod bmv2;
pub mod builtins;
pub mod check;
pub mod control_plane;
pub mod diag;
pub mod hir;
pub mod lexer;
pub mod parser;

pub use diag::{Diagnostic, Diagnostics, Span};
pub use parser::parse;
