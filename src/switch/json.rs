//! The bmv2 JSON pipeline format (bmv2's docs/JSON_format.md, version 2.x) as serde types, read the
//! way p4c really writes it. This module only models and parses the text: it resolves nothing and
//! decides nothing about support (that is `pipeline`'s job). Keys the switch never reads are
//! ignored; a missing required key is an error that names its path in the document.

use serde::Deserialize;

/// The document could not be read as bmv2 JSON.
#[derive(Debug, thiserror::Error)]
#[error("bmv2 JSON: at `{path}`: {message}")]
pub struct JsonError {
    /// Where in the document, e.g. `pipelines[0].tables[2].key[0].target`.
    pub path: String,
    pub message: String,
}

/// Parses a bmv2 JSON document.
pub fn parse(text: &str) -> Result<Bmv2Json, JsonError> {
    let mut de = serde_json::Deserializer::from_str(text);
    let doc: Bmv2Json = serde_path_to_error::deserialize(&mut de).map_err(|e| JsonError {
        path: e.path().to_string(),
        message: e.inner().to_string(),
    })?;
    de.end().map_err(|e| JsonError {
        path: ".".into(),
        message: e.to_string(),
    })?;
    Ok(doc)
}

/// The root object.
#[derive(Debug, Clone, Deserialize)]
pub struct Bmv2Json {
    pub header_types: Vec<HeaderType>,
    pub headers: Vec<HeaderInstance>,
    #[serde(default)]
    pub header_stacks: Vec<serde_json::Value>,
    #[serde(default)]
    pub header_union_types: Vec<serde_json::Value>,
    #[serde(default)]
    pub header_unions: Vec<serde_json::Value>,
    #[serde(default)]
    pub header_union_stacks: Vec<serde_json::Value>,
    #[serde(default)]
    pub field_lists: Vec<FieldList>,
    #[serde(default)]
    pub errors: Vec<(String, u32)>,
    pub parsers: Vec<Parser>,
    #[serde(default)]
    pub parse_vsets: Vec<serde_json::Value>,
    pub deparsers: Vec<Deparser>,
    #[serde(default)]
    pub meter_arrays: Vec<MeterArray>,
    #[serde(default)]
    pub counter_arrays: Vec<CounterArray>,
    #[serde(default)]
    pub register_arrays: Vec<RegisterArray>,
    #[serde(default)]
    pub calculations: Vec<Calculation>,
    #[serde(default)]
    pub learn_lists: Vec<serde_json::Value>,
    pub actions: Vec<Action>,
    pub pipelines: Vec<Pipeline>,
    #[serde(default)]
    pub checksums: Vec<Checksum>,
    #[serde(default)]
    pub extern_instances: Vec<ExternInstance>,
    #[serde(default)]
    pub field_aliases: Vec<serde_json::Value>,
    #[serde(rename = "__meta__")]
    pub meta: Option<Meta>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Meta {
    pub version: (u32, u32),
    pub compiler: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct HeaderType {
    pub name: String,
    pub id: i64,
    pub fields: Vec<FieldSpec>,
}

/// A field of a header type: `[name, width]` or `[name, width, signed]`; width `"*"` is varbit.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum FieldSpec {
    Signed(String, FieldWidth, bool),
    Plain(String, FieldWidth),
}

impl FieldSpec {
    pub fn name(&self) -> &str {
        match self {
            FieldSpec::Signed(n, _, _) | FieldSpec::Plain(n, _) => n,
        }
    }
    pub fn width(&self) -> &FieldWidth {
        match self {
            FieldSpec::Signed(_, w, _) | FieldSpec::Plain(_, w) => w,
        }
    }
    pub fn signed(&self) -> bool {
        matches!(self, FieldSpec::Signed(_, _, true))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum FieldWidth {
    Bits(u32),
    /// `"*"`: a variable-length field.
    Variable(String),
}

#[derive(Debug, Clone, Deserialize)]
pub struct HeaderInstance {
    pub name: String,
    pub id: i64,
    pub header_type: String,
    pub metadata: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct FieldList {
    pub id: i64,
    pub name: String,
    #[serde(default)]
    pub elements: Vec<Operand>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Parser {
    pub name: String,
    pub id: i64,
    pub init_state: String,
    pub parse_states: Vec<ParseState>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ParseState {
    pub name: String,
    pub id: i64,
    pub parser_ops: Vec<ParserOp>,
    pub transitions: Vec<Transition>,
    #[serde(default)]
    pub transition_key: Vec<Operand>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ParserOp {
    pub op: String,
    pub parameters: Vec<ParserParam>,
}

/// A parser op argument: a type-value object, or (for `primitive`) a nested primitive call.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ParserParam {
    Operand(Operand),
    Primitive(Primitive),
}

#[derive(Debug, Clone, Deserialize)]
pub struct Transition {
    /// `default`, `hexstr` or `parse_vset`.
    #[serde(rename = "type", default = "default_transition_type")]
    pub kind: String,
    pub value: Option<String>,
    #[serde(default)]
    pub mask: Option<String>,
    pub next_state: Option<String>,
}

fn default_transition_type() -> String {
    "hexstr".into()
}

#[derive(Debug, Clone, Deserialize)]
pub struct Deparser {
    pub name: String,
    pub id: i64,
    pub order: Vec<String>,
    #[serde(default)]
    pub primitives: Vec<Primitive>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct MeterArray {
    pub name: String,
    pub id: i64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CounterArray {
    pub name: String,
    pub id: i64,
    #[serde(default)]
    pub size: u64,
    pub is_direct: bool,
    #[serde(default)]
    pub binding: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RegisterArray {
    pub name: String,
    pub id: i64,
    pub size: u64,
    pub bitwidth: u32,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Calculation {
    pub name: String,
    pub id: i64,
    pub algo: String,
    pub input: Vec<CalculationInput>,
}

/// One input of a calculation; `bitwidth` accompanies `hexstr` constants.
#[derive(Debug, Clone, Deserialize)]
pub struct CalculationInput {
    #[serde(flatten)]
    pub operand: Operand,
    #[serde(default)]
    pub bitwidth: Option<u32>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Action {
    pub name: String,
    pub id: i64,
    pub runtime_data: Vec<RuntimeParam>,
    pub primitives: Vec<Primitive>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RuntimeParam {
    pub name: String,
    pub bitwidth: u32,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Primitive {
    pub op: String,
    pub parameters: Vec<Operand>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Pipeline {
    pub name: String,
    pub id: i64,
    pub init_table: Option<String>,
    pub tables: Vec<Table>,
    #[serde(default)]
    pub action_profiles: Vec<serde_json::Value>,
    #[serde(default)]
    pub conditionals: Vec<Conditional>,
    #[serde(default)]
    pub action_calls: Vec<serde_json::Value>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Table {
    pub name: String,
    pub id: i64,
    pub key: Vec<TableKey>,
    pub match_type: String,
    /// `simple`, `indirect` or `indirect_ws`.
    #[serde(rename = "type", default = "default_table_type")]
    pub kind: String,
    pub max_size: u64,
    #[serde(default)]
    pub with_counters: bool,
    #[serde(default)]
    pub support_timeout: bool,
    #[serde(default)]
    pub direct_meters: Option<String>,
    pub action_ids: Vec<i64>,
    #[serde(default)]
    pub actions: Vec<String>,
    #[serde(default)]
    pub base_default_next: Option<String>,
    pub next_tables: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub default_entry: Option<DefaultEntry>,
    #[serde(default)]
    pub entries: Vec<ConstEntry>,
}

fn default_table_type() -> String {
    "simple".into()
}

#[derive(Debug, Clone, Deserialize)]
pub struct TableKey {
    pub match_type: String,
    #[serde(default)]
    pub name: Option<String>,
    /// `[header, field]`, or a header name for `valid`.
    pub target: serde_json::Value,
    #[serde(default)]
    pub mask: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DefaultEntry {
    pub action_id: i64,
    #[serde(default)]
    pub action_const: bool,
    #[serde(default)]
    pub action_data: Vec<String>,
    #[serde(default)]
    pub action_entry_const: bool,
}

/// An entry given in the JSON (`const entries`).
#[derive(Debug, Clone, Deserialize)]
pub struct ConstEntry {
    pub match_key: Vec<ConstKey>,
    pub action_entry: ActionEntry,
    #[serde(default)]
    pub priority: Option<i64>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ConstKey {
    pub match_type: String,
    #[serde(default)]
    pub key: Option<serde_json::Value>,
    #[serde(default)]
    pub mask: Option<String>,
    #[serde(default)]
    pub prefix_length: Option<u32>,
    #[serde(default)]
    pub start: Option<String>,
    #[serde(default)]
    pub end: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ActionEntry {
    pub action_id: i64,
    #[serde(default)]
    pub action_data: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Conditional {
    pub name: String,
    pub id: i64,
    pub expression: Operand,
    pub true_next: Option<String>,
    pub false_next: Option<String>,
    #[serde(default)]
    pub source_info: Option<SourceInfo>,
}

/// Where in the P4 source an object comes from; the switch keeps the fragment for its logs.
#[derive(Debug, Clone, Deserialize)]
pub struct SourceInfo {
    #[serde(default)]
    pub source_fragment: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Checksum {
    pub name: String,
    pub id: i64,
    pub target: (String, String),
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    pub calculation: String,
    #[serde(default = "yes")]
    pub verify: bool,
    #[serde(default = "yes")]
    pub update: bool,
    #[serde(default)]
    pub if_cond: Option<Operand>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
pub struct ExternInstance {
    pub name: String,
    pub id: i64,
    #[serde(rename = "type")]
    pub kind: String,
}

/// bmv2's "type value object": `{"type": ..., "value": ...}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
pub enum Operand {
    Field(String, String),
    Hexstr(String),
    Bool(bool),
    Header(String),
    HeaderStack(String),
    StackField(String, String),
    /// Either an operation or, as p4c writes primitive arguments, another wrapped expression.
    Expression(Box<ExpressionValue>),
    RuntimeData(usize),
    Local(usize),
    Calculation(String),
    CounterArray(String),
    RegisterArray(String),
    MeterArray(String),
    Extern(String),
    String(String),
    /// `[bit offset, bit width]`, parser only.
    Lookahead(u32, u32),
    /// Extraction target of `extract` (parser only).
    Regular(String),
    Stack(String),
    Payload(serde_json::Value),
    ParametersVector(Vec<Operand>),
    /// Anything else (unions, union stacks, registers as values, ...): refused by the loader.
    #[serde(other)]
    Other,
}

impl Operand {
    /// The JSON `type` tag, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Operand::Field(..) => "field",
            Operand::Hexstr(_) => "hexstr",
            Operand::Bool(_) => "bool",
            Operand::Header(_) => "header",
            Operand::HeaderStack(_) => "header_stack",
            Operand::StackField(..) => "stack_field",
            Operand::Expression(_) => "expression",
            Operand::RuntimeData(_) => "runtime_data",
            Operand::Local(_) => "local",
            Operand::Calculation(_) => "calculation",
            Operand::CounterArray(_) => "counter_array",
            Operand::RegisterArray(_) => "register_array",
            Operand::MeterArray(_) => "meter_array",
            Operand::Extern(_) => "extern",
            Operand::String(_) => "string",
            Operand::Lookahead(..) => "lookahead",
            Operand::Regular(_) => "regular",
            Operand::Stack(_) => "stack",
            Operand::Payload(_) => "payload",
            Operand::ParametersVector(_) => "parameters_vector",
            Operand::Other => "unsupported operand type",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ExpressionValue {
    Op(OpNode),
    Wrapped(Operand),
}

/// `{"op": ..., "left": ..., "right": ..., "cond": ...}`.
#[derive(Debug, Clone, Deserialize)]
pub struct OpNode {
    pub op: String,
    #[serde(default)]
    pub left: Option<Operand>,
    #[serde(default)]
    pub right: Option<Operand>,
    #[serde(default)]
    pub cond: Option<Operand>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(name: &str) -> String {
        let path = format!(
            "{}/tests/fixtures/p4c-reference/p4c-out/{name}.json",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(path).expect("fixture")
    }

    #[test]
    fn reads_every_p4c_reference_program() {
        for name in [
            "ref1_lpm_checksum",
            "ref2_ternary_counters",
            "ref3_register_clone_hash",
            "ref4_parser_range",
        ] {
            let doc = parse(&reference(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(doc.pipelines.len(), 2, "{name}");
            assert_eq!(doc.meta.as_ref().map(|m| m.version.0), Some(2));
        }
    }

    #[test]
    fn missing_required_key_names_its_path() {
        let mut v: serde_json::Value =
            serde_json::from_str(&reference("ref1_lpm_checksum")).unwrap();
        v["pipelines"][0]["tables"][2]
            .as_object_mut()
            .unwrap()
            .remove("max_size");
        let err = parse(&v.to_string()).unwrap_err();
        assert_eq!(err.path, "pipelines[0].tables[2]");
        assert!(err.message.contains("max_size"), "{err}");
    }

    #[test]
    fn malformed_text_is_an_error() {
        assert!(parse("{").is_err());
        assert!(parse("[]").is_err());
        assert!(parse("").is_err());
    }
}
