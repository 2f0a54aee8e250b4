//! What the control plane sees of a checked program: the tables, actions and externs that a
//! P4Info describes, with fully qualified names as p4c writes them. The checking pass fills
//! this; the P4Info back end turns it into protobuf. Keeping it separate lets the P4Info
//! back end be tested on its own and keeps protobuf out of the checker.

/// An annotation as P4Info carries it in `preamble.annotations`, e.g. `@noWarn("unused")`.
pub type AnnotationText = String;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ControlPlane {
    /// `v1model`.
    pub arch: String,
    pub tables: Vec<CpTable>,
    pub actions: Vec<CpAction>,
    pub counters: Vec<CpCounter>,
    pub direct_counters: Vec<CpDirectCounter>,
    pub registers: Vec<CpRegister>,
    pub digests: Vec<CpDigest>,
}

/// Names and ids common to every entity (P4Info `Preamble`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CpPreamble {
    /// Fully qualified, e.g. `MyIngress.vm_pair`, or the `@name` given in the source.
    pub name: String,
    /// Value of an `@id(N)` annotation, if any; otherwise the back end assigns one.
    pub explicit_id: Option<u32>,
    /// Annotations other than `@name`, `@id` and `@brief`, as source text.
    pub annotations: Vec<AnnotationText>,
    /// `@brief("...")`
    pub brief: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpMatchKind {
    Exact,
    Lpm,
    Ternary,
    Range,
    Optional,
}

#[derive(Clone, Debug, PartialEq)]
pub struct CpMatchField {
    /// As p4c writes it: the key expression's source form, e.g. `hdr.ipv4.srcAddr`, or `@name`.
    pub name: String,
    pub bitwidth: u32,
    pub match_kind: CpMatchKind,
    pub annotations: Vec<AnnotationText>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct CpActionRef {
    /// Fully qualified action name.
    pub action: String,
    /// `@tableonly` / `@defaultonly` become the P4Info scope.
    pub scope: CpActionScope,
    pub annotations: Vec<AnnotationText>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CpActionScope {
    #[default]
    TableAndDefault,
    TableOnly,
    DefaultOnly,
}

#[derive(Clone, Debug, PartialEq)]
pub struct CpTable {
    pub preamble: CpPreamble,
    pub match_fields: Vec<CpMatchField>,
    pub actions: Vec<CpActionRef>,
    /// Set when the default action is `const`.
    pub const_default_action: Option<String>,
    /// The default action and its arguments (values of the action's params, in order).
    pub initial_default_action: Option<(String, Vec<u128>)>,
    /// Fully qualified names of the direct counters attached (`counters = c;`).
    pub direct_counters: Vec<String>,
    pub size: u64,
    pub support_timeout: bool,
    /// Table has `const entries`.
    pub is_const_table: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct CpParam {
    pub name: String,
    pub bitwidth: u32,
    pub annotations: Vec<AnnotationText>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct CpAction {
    pub preamble: CpPreamble,
    pub params: Vec<CpParam>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpCounterUnit {
    Bytes,
    Packets,
    Both,
}

#[derive(Clone, Debug, PartialEq)]
pub struct CpCounter {
    pub preamble: CpPreamble,
    pub unit: CpCounterUnit,
    pub size: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct CpDirectCounter {
    pub preamble: CpPreamble,
    pub unit: CpCounterUnit,
    /// Fully qualified name of the table it is attached to.
    pub table: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct CpRegister {
    pub preamble: CpPreamble,
    /// Width of one cell (`register<bit<W>>`).
    pub bitwidth: u32,
    pub size: u64,
}

/// A `digest<T>(receiver, data)` call site: P4Info describes the struct type it sends.
#[derive(Clone, Debug, PartialEq)]
pub struct CpDigest {
    pub preamble: CpPreamble,
    /// The struct type's name and its fields (name, bitwidth), for `type_info`.
    pub struct_name: String,
    pub fields: Vec<(String, u32)>,
}
