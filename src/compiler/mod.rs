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
pub mod cp_build;
pub mod diag;
pub mod hir;
pub mod lexer;
pub mod p4info;
pub mod parser;

pub use diag::{Diagnostic, Diagnostics, Span};
pub use parser::parse;

/// What `vmdep compile` produces for one program.
#[derive(Clone, Debug)]
pub struct CompileOutput {
    /// bmv2 JSON for simple_switch, pretty-printed with a 2-space indent.
    pub bmv2_json: String,
    /// The control plane's view of the program, from which the P4Info is built.
    pub control_plane: control_plane::ControlPlane,
    /// The P4Runtime P4Info, with p4c's ids and names.
    pub p4info: crate::p4rt::config::P4Info,
}

impl CompileOutput {
    /// The P4Info in protobuf text format, as p4c writes `NAME.p4info.txtpb`.
    pub fn p4info_text(&self) -> String {
        p4info::p4info_text(&self.p4info)
    }

    /// The P4Info in protobuf binary format (`NAME.p4info.bin`).
    pub fn p4info_binary(&self) -> Vec<u8> {
        p4info::p4info_binary(&self.p4info)
    }
}

/// Stack for checking and lowering: both recurse over expressions as deep as the parser
/// allows, and a debug build's frames are large.
const PASS_STACK_BYTES: usize = 64 << 20;

/// Compiles a P4_16 v1model program: parse → check → lower to bmv2 JSON and the control plane.
/// `file_name` appears in the JSON's `source_info` and `program`.
pub fn compile(source: &str, file_name: &str) -> Result<CompileOutput, Diagnostics> {
    let ast = parse(source)?;
    std::thread::scope(|scope| {
        let worker = std::thread::Builder::new()
            .name("p4-check".to_string())
            .stack_size(PASS_STACK_BYTES)
            .spawn_scoped(scope, || {
                let hir = check::check(&ast)?;
                let json = bmv2::lower(&hir, file_name, source)?;
                let control_plane = cp_build::build(&hir);
                // The checker has already rejected what P4Info cannot express (duplicate
                // names, unknown actions); an error here is a bad `@id`, reported at `main`.
                let p4info = p4info::build_p4info(&control_plane).map_err(|e| {
                    Diagnostic::error(main_span(&ast), format!("cannot build the P4Info: {e}"))
                })?;
                let mut text = Vec::new();
                let fmt = serde_json::ser::PrettyFormatter::with_indent(b"  ");
                let mut ser = serde_json::Serializer::with_formatter(&mut text, fmt);
                serde::Serialize::serialize(&json, &mut ser).map_err(|e| {
                    Diagnostic::error(Span::default(), format!("cannot serialize the JSON: {e}"))
                })?;
                let mut bmv2_json = String::from_utf8(text).map_err(|e| {
                    Diagnostic::error(Span::default(), format!("JSON is not UTF-8: {e}"))
                })?;
                bmv2_json.push('\n');
                Ok(CompileOutput {
                    bmv2_json,
                    control_plane,
                    p4info,
                })
            })
            .map_err(|e| {
                Diagnostic::error(
                    Span::default(),
                    format!("cannot start the checker thread: {e}"),
                )
            })?;
        worker
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// Where `main` is instantiated: the place to report whole-program problems.
fn main_span(program: &ast::Program) -> Span {
    program
        .decls
        .iter()
        .find_map(|d| match &d.kind {
            ast::DeclKind::Instantiation(i) if i.name.name == "main" => Some(d.span),
            _ => None,
        })
        .unwrap_or_default()
}
