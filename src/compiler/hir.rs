//! The checked program: every name resolved to an index, every expression typed, constants
//! folded. The checker ([`super::check`]) builds it; the back ends ([`super::bmv2`],
//! [`super::cp_build`]) read it and never look at the AST's names again.
//!
//! Entities live in flat, program-wide vectors (actions, tables, externs, variables) so the
//! back ends can refer to them by index; each remembers the block that declared it.

use super::diag::Span;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Ty {
    Bool,
    /// `bit<W>`
    Bit(u32),
    /// `int<W>` (two's complement)
    Int(u32),
    /// Arbitrary-precision compile-time integer (unsized literals, `int` constants).
    InfInt,
    String,
    Error,
    Void,
    Header(usize),
    Struct(usize),
    /// A header stack: element header type and size.
    Stack(usize, u32),
    Enum(usize),
    /// `{ a, b }` list expressions (checksum, hash and digest data).
    List(Vec<Ty>),
    /// Non-value objects: `packet_in`, tables, extern instances ...
    Object(ObjTy),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ObjTy {
    PacketIn,
    PacketOut,
    Table(usize),
    /// The result of `t.apply()`.
    ApplyResult(usize),
    Extern(usize),
    MatchKind,
}

impl Ty {
    /// Width in bits of a scalar type, if it has one.
    pub fn width(&self) -> Option<u32> {
        match self {
            Ty::Bool => Some(1),
            Ty::Bit(w) | Ty::Int(w) => Some(*w),
            Ty::Error => Some(32),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct HeaderType {
    pub name: String,
    /// (name, width, signed)
    pub fields: Vec<(String, u32, bool)>,
    pub span: Span,
}

impl HeaderType {
    pub fn field(&self, name: &str) -> Option<(usize, u32, bool)> {
        self.fields
            .iter()
            .position(|f| f.0 == name)
            .map(|i| (i, self.fields[i].1, self.fields[i].2))
    }
    pub fn width(&self) -> u32 {
        self.fields.iter().map(|f| f.1).sum()
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct StructType {
    pub name: String,
    pub fields: Vec<(String, Ty)>,
    /// v1model's `standard_metadata_t`: lowered to the `standard_metadata` instance.
    pub is_standard_metadata: bool,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct EnumType {
    pub name: String,
    pub members: Vec<(String, u128)>,
    /// `enum bit<W> E`: serializable with this width.
    pub underlying: Option<u32>,
    /// Declared by core.p4/v1model.p4 (not written to the JSON `enums`).
    pub builtin: bool,
}

/// What a parser's or control's parameter stands for in the v1model architecture.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamRole {
    PacketIn,
    PacketOut,
    Headers,
    Meta,
    StandardMetadata,
}

#[derive(Clone, Debug, PartialEq)]
pub struct BlockParam {
    pub name: String,
    pub ty: Ty,
    pub direction: Option<crate::compiler::ast::Direction>,
    /// Set once `main` binds the block into V1Switch; `None` for blocks `main` does not use.
    pub role: Option<ParamRole>,
}

/// A variable of a parser, control or action (including `apply` block and action locals).
#[derive(Clone, Debug, PartialEq)]
pub struct Var {
    pub name: String,
    pub ty: Ty,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CounterUnit {
    Packets,
    Bytes,
    PacketsAndBytes,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ExternKind {
    Counter { size: u64, unit: CounterUnit },
    DirectCounter { unit: CounterUnit },
    Register { width: u32, size: u64 },
}

#[derive(Clone, Debug, PartialEq)]
pub struct ExternInst {
    /// Fully qualified: `Ing.per_port`.
    pub name: String,
    pub kind: ExternKind,
    pub annotations: Vec<crate::compiler::ast::Annotation>,
    pub span: Span,
    /// For direct counters: the table they are attached to (`counters = c;`).
    pub bound_table: Option<usize>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ActionParam {
    pub name: String,
    pub ty: Ty,
    /// `None`: action data, supplied by the control plane.
    pub direction: Option<crate::compiler::ast::Direction>,
    pub annotations: Vec<crate::compiler::ast::Annotation>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Action {
    /// Fully qualified: `Ing.drop`, or `NoAction`.
    pub name: String,
    pub params: Vec<ActionParam>,
    pub body: Vec<Stmt>,
    pub annotations: Vec<crate::compiler::ast::Annotation>,
    pub span: Span,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatchKind {
    Exact,
    Ternary,
    Lpm,
    Range,
    Optional,
}

impl MatchKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MatchKind::Exact => "exact",
            MatchKind::Ternary => "ternary",
            MatchKind::Lpm => "lpm",
            MatchKind::Range => "range",
            MatchKind::Optional => "optional",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct TableKey {
    pub expr: Expr,
    /// As the source writes it (`h.ip.src`), or its `@name`.
    pub name: String,
    pub match_kind: MatchKind,
    pub annotations: Vec<crate::compiler::ast::Annotation>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct TableActionRef {
    pub action: usize,
    pub annotations: Vec<crate::compiler::ast::Annotation>,
}

/// A keyset of a `const entries` entry or a `select` case, evaluated at the key's width.
#[derive(Clone, Debug, PartialEq)]
pub enum KeyValue {
    /// `default` or `_`
    Any,
    Value(u128),
    Mask(u128, u128),
    Range(u128, u128),
}

#[derive(Clone, Debug, PartialEq)]
pub struct TableEntry {
    pub keys: Vec<KeyValue>,
    pub action: usize,
    /// Values of the action's data parameters.
    pub args: Vec<u128>,
    pub priority: Option<u64>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Table {
    /// Fully qualified: `Ing.acl`.
    pub name: String,
    pub keys: Vec<TableKey>,
    pub actions: Vec<TableActionRef>,
    /// (action, data args, is_const)
    pub default_action: Option<(usize, Vec<u128>, bool)>,
    pub entries: Option<Vec<TableEntry>>,
    pub size: Option<u64>,
    pub direct_counter: Option<usize>,
    pub support_timeout: bool,
    pub annotations: Vec<crate::compiler::ast::Annotation>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Expr {
    pub kind: ExprKind,
    pub ty: Ty,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ExprKind {
    /// A sized constant (`ty` is `bit<W>`/`int<W>`/`bool`-free), two's complement in W bits.
    Const(u128),
    /// An unsized compile-time integer.
    InfInt(i128),
    Bool(bool),
    /// Index into the enclosing block's parameters.
    Param(usize),
    /// Index into [`Program::vars`].
    Var(usize),
    /// Index into the enclosing action's parameters.
    ActionParam(usize),
    /// Field `idx` of a struct or header value.
    Field(Box<Expr>, usize),
    /// `stack[i]` with a constant index.
    StackElem(Box<Expr>, u32),
    Slice(Box<Expr>, u32, u32),
    Unary(UnOp, Box<Expr>),
    Binary(BinOp, Box<Expr>, Box<Expr>),
    Ternary(Box<Expr>, Box<Expr>, Box<Expr>),
    Cast(Box<Expr>),
    Concat(Box<Expr>, Box<Expr>),
    IsValid(Box<Expr>),
    /// `error.X`: index into [`Program::errors`].
    ErrorConst(usize),
    /// (enum, member)
    EnumConst(usize, usize),
    List(Vec<Expr>),
    /// `t.apply().hit` (true) / `.miss` (false)
    TableHit(usize, bool),
    /// `pkt.lookahead<T>()` in a select key: bit width.
    Lookahead(u32),
}

pub use super::ast::{BinOp, UnOp};

#[derive(Clone, Debug, PartialEq)]
pub struct Stmt {
    pub kind: StmtKind,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum StmtKind {
    Assign(Expr, Expr),
    Call(Call),
    /// `t.apply();`
    Apply(usize),
    If(Expr, Vec<Stmt>, Vec<Stmt>),
    /// `switch (t.apply().action_run) { ... }`: cases are (labels, body); a label of `None`
    /// is `default`; an empty body with no statements falls through to the next case.
    SwitchActionRun {
        table: usize,
        cases: Vec<SwitchCase>,
    },
    Block(Vec<Stmt>),
    Return,
    Exit,
}

/// A switch case: its labels (`None` is `default`) and body; `None` falls through.
pub type SwitchCase = (Vec<Option<usize>>, Option<Vec<Stmt>>);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HashAlgo {
    Crc32,
    Crc16,
    Csum16,
    Identity,
    Xor16,
    Random,
}

impl HashAlgo {
    pub fn bmv2_name(self) -> &'static str {
        match self {
            HashAlgo::Crc32 => "crc32",
            HashAlgo::Crc16 => "crc16",
            HashAlgo::Csum16 => "csum16",
            HashAlgo::Identity => "identity",
            HashAlgo::Xor16 => "xor16",
            HashAlgo::Random => "random",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Call {
    Extract(Expr),
    Advance(Expr),
    Emit(Expr),
    SetValid(Expr),
    SetInvalid(Expr),
    MarkToDrop(Expr),
    Count {
        counter: usize,
        index: Expr,
    },
    /// `direct_counter.count()`: bmv2 counts direct counters by itself, so this lowers to nothing.
    DirectCount(usize),
    RegisterRead {
        register: usize,
        dst: Expr,
        index: Expr,
    },
    RegisterWrite {
        register: usize,
        index: Expr,
        value: Expr,
    },
    Clone {
        ingress_to_egress: bool,
        session: Expr,
    },
    Hash {
        dst: Expr,
        algo: HashAlgo,
        base: Expr,
        data: Vec<Expr>,
        max: Expr,
    },
    Digest {
        receiver: Expr,
        /// Struct type the digest carries.
        struct_ty: usize,
        /// One expression per struct field.
        fields: Vec<Expr>,
    },
    Checksum {
        verify: bool,
        with_payload: bool,
        cond: Expr,
        data: Vec<Expr>,
        checksum: Expr,
        algo: HashAlgo,
    },
    Verify {
        cond: Expr,
        error: Expr,
    },
    Random {
        dst: Expr,
        lo: Expr,
        hi: Expr,
    },
    Truncate(Expr),
    /// A direct action call: arguments bind the action's parameters in order.
    Action {
        action: usize,
        args: Vec<Expr>,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub enum NextState {
    Accept,
    Reject,
    State(usize),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Transition {
    Direct(NextState),
    Select {
        keys: Vec<Expr>,
        /// One keyset per key, and the next state.
        cases: Vec<(Vec<KeyValue>, NextState, Span)>,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct State {
    pub name: String,
    pub stmts: Vec<Stmt>,
    pub transition: Transition,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Parser {
    pub name: String,
    pub params: Vec<BlockParam>,
    /// Index of `start` in `states`.
    pub start: usize,
    pub states: Vec<State>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Control {
    pub name: String,
    pub params: Vec<BlockParam>,
    pub apply: Vec<Stmt>,
    pub span: Span,
}

/// The six blocks of `V1Switch(...) main`, as indices into parsers/controls.
#[derive(Clone, Debug, PartialEq)]
pub struct V1Switch {
    pub parser: usize,
    pub verify_checksum: usize,
    pub ingress: usize,
    pub egress: usize,
    pub compute_checksum: usize,
    pub deparser: usize,
    /// The headers and metadata struct types (H and M).
    pub headers_ty: Ty,
    pub meta_ty: Ty,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Program {
    pub headers: Vec<HeaderType>,
    pub structs: Vec<StructType>,
    pub enums: Vec<EnumType>,
    pub errors: Vec<String>,
    pub vars: Vec<Var>,
    pub actions: Vec<Action>,
    pub tables: Vec<Table>,
    pub externs: Vec<ExternInst>,
    pub parsers: Vec<Parser>,
    pub controls: Vec<Control>,
    pub main: V1Switch,
    /// Actions owned by each control (index into `controls`) — they may read its parameters.
    pub action_owner: Vec<Option<usize>>,
}

/// The values a `bit<w>` holds: the low `w` bits set (all 128 for `w` ≥ 128).
pub fn mask(w: u32) -> u128 {
    if w >= 128 {
        u128::MAX
    } else {
        (1u128 << w) - 1
    }
}
