//! The syntax tree of a P4_16 program, as the parser produces it: names unresolved, types
//! unchecked, every node carrying the span it came from so later passes can point at it.

use super::diag::Span;

#[derive(Clone, Debug, PartialEq)]
pub struct Ident {
    pub name: String,
    pub span: Span,
}

/// `@name`, `@name("x")`, `@id(7)`, `@hidden`, `@brief("...")` ...
#[derive(Clone, Debug, PartialEq)]
pub struct Annotation {
    pub name: Ident,
    /// Arguments when they parse as expressions; empty for `@hidden`.
    pub args: Vec<Expr>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Program {
    /// `#include <core.p4>` / `<v1model.p4>` seen; they are built in, not read from disk.
    pub includes: Vec<Include>,
    pub decls: Vec<Decl>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Include {
    pub path: String,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Decl {
    pub kind: DeclKind,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum DeclKind {
    Const(ConstDecl),
    /// `typedef T name;` (`newtype: false`) or `type T name;` (`newtype: true`).
    Typedef {
        annotations: Vec<Annotation>,
        ty: TypeRef,
        name: Ident,
        newtype: bool,
    },
    Header(StructLike),
    Struct(StructLike),
    Enum {
        annotations: Vec<Annotation>,
        name: Ident,
        /// `enum bit<8> E { A = 1 }` has one; plain enums do not.
        underlying: Option<TypeRef>,
        members: Vec<(Ident, Option<Expr>)>,
    },
    /// `error { A, B }`: extends the single global error type.
    Error {
        members: Vec<Ident>,
    },
    /// `match_kind { a, b }`
    MatchKind {
        members: Vec<Ident>,
    },
    Parser(ParserDecl),
    Control(ControlDecl),
    Action(ActionDecl),
    /// `Type(args) name;`, e.g. `V1Switch(P(), ...) main;` or a top-level extern instance.
    Instantiation(Instantiation),
}

#[derive(Clone, Debug, PartialEq)]
pub struct ConstDecl {
    pub annotations: Vec<Annotation>,
    pub ty: TypeRef,
    pub name: Ident,
    pub value: Expr,
}

/// A header or struct body.
#[derive(Clone, Debug, PartialEq)]
pub struct StructLike {
    pub annotations: Vec<Annotation>,
    pub name: Ident,
    pub fields: Vec<Field>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Field {
    pub annotations: Vec<Annotation>,
    pub ty: TypeRef,
    pub name: Ident,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct TypeRef {
    pub kind: TypeKind,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum TypeKind {
    Bool,
    /// `bit<W>`; `bit` alone is `bit<1>`.
    Bit(Width),
    /// `int<W>`
    SignedInt(Width),
    /// `varbit<W>`
    Varbit(Width),
    /// `int`: arbitrary precision, compile time only.
    Int,
    String,
    Error,
    MatchKind,
    Void,
    /// `_` as a type argument.
    DontCare,
    /// A named type with optional type arguments: `packet_in`, `register<bit<32>>`.
    Named {
        name: Ident,
        args: Vec<TypeRef>,
    },
    /// `T[n]`: header stack.
    Stack {
        elem: Box<TypeRef>,
        size: Box<Expr>,
    },
    /// `tuple<A, B>`
    Tuple(Vec<TypeRef>),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Width {
    Lit(u32),
    /// `bit<(EXPR)>`
    Expr(Box<Expr>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    In,
    Out,
    InOut,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Param {
    pub annotations: Vec<Annotation>,
    /// `None` is directionless (action data for actions, constructor params otherwise).
    pub direction: Option<Direction>,
    pub ty: TypeRef,
    pub name: Ident,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ParserDecl {
    pub annotations: Vec<Annotation>,
    pub name: Ident,
    pub params: Vec<Param>,
    /// Local variables, constants and extern instances.
    pub locals: Vec<Local>,
    pub states: Vec<ParserState>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ControlDecl {
    pub annotations: Vec<Annotation>,
    pub name: Ident,
    pub params: Vec<Param>,
    pub locals: Vec<Local>,
    pub apply: Block,
}

/// A declaration inside a parser or control, before its states or apply block.
#[derive(Clone, Debug, PartialEq)]
pub struct Local {
    pub kind: LocalKind,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum LocalKind {
    Const(ConstDecl),
    Var(VarDecl),
    Instantiation(Instantiation),
    Action(ActionDecl),
    Table(TableDecl),
}

#[derive(Clone, Debug, PartialEq)]
pub struct VarDecl {
    pub annotations: Vec<Annotation>,
    pub ty: TypeRef,
    pub name: Ident,
    pub init: Option<Expr>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Instantiation {
    pub annotations: Vec<Annotation>,
    pub ty: TypeRef,
    pub args: Vec<Argument>,
    pub name: Ident,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ActionDecl {
    pub annotations: Vec<Annotation>,
    pub name: Ident,
    pub params: Vec<Param>,
    pub body: Block,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ParserState {
    pub annotations: Vec<Annotation>,
    pub name: Ident,
    pub stmts: Vec<Stmt>,
    pub transition: Transition,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Transition {
    /// `transition next;` (`accept` and `reject` are names too).
    Direct(Ident),
    Select {
        exprs: Vec<Expr>,
        cases: Vec<SelectCase>,
        span: Span,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct SelectCase {
    /// One keyset per select expression (a tuple keyset `(a, b)` gives several).
    pub keysets: Vec<Keyset>,
    pub next: Ident,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Keyset {
    Default(Span),
    DontCare(Span),
    Expr(Expr),
    /// `value &&& mask`
    Mask(Expr, Expr),
    /// `low .. high`
    Range(Expr, Expr),
}

#[derive(Clone, Debug, PartialEq)]
pub struct TableDecl {
    pub annotations: Vec<Annotation>,
    pub name: Ident,
    pub props: Vec<TableProperty>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct TableProperty {
    pub kind: TablePropertyKind,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum TablePropertyKind {
    Key(Vec<KeyElement>),
    Actions(Vec<ActionRef>),
    DefaultAction {
        is_const: bool,
        action: ActionRef,
    },
    Entries {
        is_const: bool,
        entries: Vec<Entry>,
    },
    /// `size = N;`, `counters = c;`, `support_timeout = true;`, `implementation = ...;`
    Other {
        is_const: bool,
        name: Ident,
        value: Expr,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct KeyElement {
    pub annotations: Vec<Annotation>,
    pub expr: Expr,
    pub match_kind: Ident,
    pub span: Span,
}

/// An action named in a table: `a`, `a(args)` in `actions`, `default_action` and entries.
#[derive(Clone, Debug, PartialEq)]
pub struct ActionRef {
    pub annotations: Vec<Annotation>,
    pub name: Ident,
    /// `None` when written without parentheses.
    pub args: Option<Vec<Argument>>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub annotations: Vec<Annotation>,
    pub keysets: Vec<Keyset>,
    pub action: ActionRef,
    /// `priority = N: ...` (P4_16 1.2.2+).
    pub priority: Option<Expr>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Block {
    pub stmts: Vec<Stmt>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Stmt {
    pub kind: StmtKind,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum StmtKind {
    Assign {
        lhs: Expr,
        rhs: Expr,
    },
    /// A method or function call used as a statement.
    Call(Expr),
    If {
        cond: Expr,
        then: Block,
        /// A block, or an `else if`'s `If` statement.
        otherwise: Option<Box<Stmt>>,
    },
    Block(Block),
    Switch {
        expr: Expr,
        cases: Vec<SwitchCase>,
    },
    Return(Option<Expr>),
    Exit,
    Var(VarDecl),
    Const(ConstDecl),
    Empty,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SwitchCase {
    pub label: SwitchLabel,
    /// `None` falls through to the next case (`a: b: { ... }`).
    pub body: Option<Block>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum SwitchLabel {
    Default(Span),
    Name(Ident),
    Expr(Expr),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ExprKind {
    /// `5`, `0x0800`, `8w5`, `16s3`, `0b101`; `width` is set for width-prefixed literals.
    Int {
        value: u128,
        width: Option<u32>,
        signed: bool,
    },
    Bool(bool),
    String(String),
    Name(Ident),
    /// `base.member`: field access, method reference, `Enum.Member`, `error.X`.
    Member {
        base: Box<Expr>,
        member: Ident,
    },
    /// `stack[i]`
    Index {
        base: Box<Expr>,
        index: Box<Expr>,
    },
    /// `e[hi:lo]`
    Slice {
        base: Box<Expr>,
        hi: Box<Expr>,
        lo: Box<Expr>,
    },
    Call {
        callee: Box<Expr>,
        type_args: Vec<TypeRef>,
        args: Vec<Argument>,
    },
    Unary {
        op: UnOp,
        expr: Box<Expr>,
    },
    Binary {
        op: BinOp,
        lhs: Box<Expr>,
        rhs: Box<Expr>,
    },
    Ternary {
        cond: Box<Expr>,
        then: Box<Expr>,
        otherwise: Box<Expr>,
    },
    Cast {
        ty: TypeRef,
        expr: Box<Expr>,
    },
    /// `{ a, b }`: a list (tuple) expression, e.g. checksum and hash data.
    List(Vec<Expr>),
    /// `_`
    DontCare,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Argument {
    Positional(Expr),
    /// `name = expr`
    Named(Ident, Expr),
}

impl Argument {
    pub fn expr(&self) -> &Expr {
        match self {
            Argument::Positional(e) | Argument::Named(_, e) => e,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnOp {
    /// `-`
    Neg,
    /// `!`
    Not,
    /// `~`
    BitNot,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    Mul,
    Div,
    Mod,
    Add,
    Sub,
    /// `|+|`
    AddSat,
    /// `|-|`
    SubSat,
    Shl,
    Shr,
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
    BitAnd,
    BitXor,
    BitOr,
    /// `++`
    Concat,
    And,
    Or,
}

impl Annotation {
    /// The single string argument of `@name("x")`-style annotations.
    pub fn string_arg(&self) -> Option<&str> {
        match self.args.as_slice() {
            [Expr {
                kind: ExprKind::String(s),
                ..
            }] => Some(s),
            _ => None,
        }
    }

    /// The single integer argument of `@id(7)`-style annotations.
    pub fn int_arg(&self) -> Option<u128> {
        match self.args.as_slice() {
            [Expr {
                kind: ExprKind::Int { value, .. },
                ..
            }] => Some(*value),
            _ => None,
        }
    }
}

/// Finds an annotation by name, e.g. `find_annotation(&t.annotations, "name")`.
pub fn find_annotation<'a>(annotations: &'a [Annotation], name: &str) -> Option<&'a Annotation> {
    annotations.iter().find(|a| a.name.name == name)
}
