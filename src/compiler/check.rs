//! Name resolution and type checking: turns the parser's [`ast::Program`] into the checked
//! [`hir::Program`], or into diagnostics that each point at the offending source and say in
//! one sentence what is wrong.
//!
//! Owns: scopes, types and widths, constant folding, the rules of tables, parser states,
//! extern calls and `main`. Must not touch: JSON or P4Info (the back ends read the HIR).

use std::collections::HashMap;

use super::ast::{self, Direction};
use super::builtins::{self, ExternType, Function, Role};
use super::diag::{Diagnostic, Diagnostics, Span};
use super::hir::{self, mask, BinOp, ExprKind, Ty, UnOp};

/// Checks a parsed program.
pub fn check(program: &ast::Program) -> Result<hir::Program, Diagnostics> {
    let mut c = Checker::new();
    c.program(program);
    if c.diags.is_empty() {
        if let Some(main) = c.main.take() {
            return Ok(c.finish(main));
        }
    }
    let mut diags = c.diags;
    diags.sort_by_key(|d| d.span.lo);
    Err(Diagnostics(diags))
}

/// A program-level name.
#[derive(Clone, Debug)]
enum Sym {
    Header(usize),
    Struct(usize),
    Enum(usize),
    Typedef(Ty),
    Extern(ExternType),
    Const(hir::Expr),
    Action(usize),
    Parser(usize),
    Control(usize),
    Function(Function),
    Package,
    ExternInst(usize),
    MatchKind,
}

/// A name declared inside a parser, control or action.
#[derive(Clone, Debug)]
enum Local {
    Param(usize),
    Var(usize),
    ActionParam(usize),
    Const(hir::Expr),
    Action(usize),
    Table(usize),
    ExternInst(usize),
    /// Declared, but its declaration had errors: uses stay quiet instead of cascading.
    Poisoned,
}

#[derive(Default)]
struct Ctx {
    /// Parameters of the enclosing parser or control.
    params: Vec<hir::BlockParam>,
    /// Parameters of the enclosing action, when checking an action body.
    action_params: Option<Vec<hir::ActionParam>>,
    in_parser: bool,
    /// `Ing.` inside control `Ing`; empty at top level.
    prefix: String,
}

struct Checker {
    diags: Vec<Diagnostic>,
    globals: HashMap<String, (Sym, Span)>,
    scopes: Vec<HashMap<String, (Local, Span)>>,
    ctx: Ctx,
    main: Option<hir::V1Switch>,
    headers: Vec<hir::HeaderType>,
    structs: Vec<hir::StructType>,
    enums: Vec<hir::EnumType>,
    errors: Vec<String>,
    vars: Vec<hir::Var>,
    actions: Vec<hir::Action>,
    action_owner: Vec<Option<usize>>,
    tables: Vec<hir::Table>,
    externs: Vec<hir::ExternInst>,
    parsers: Vec<hir::Parser>,
    controls: Vec<hir::Control>,
    /// The control being checked (its index-to-be in `controls`).
    current_control: Option<usize>,
    last_span: Span,
}

/// A name as written with an optional `@name("...")` override, qualified by `prefix`.
pub fn qualified_name(prefix: &str, name: &str, annotations: &[ast::Annotation]) -> String {
    match ast::find_annotation(annotations, "name").and_then(|a| a.string_arg()) {
        Some(n) if n.starts_with('.') => n[1..].to_string(),
        Some(n) => format!("{prefix}{n}"),
        None => format!("{prefix}{name}"),
    }
}

fn op_str(op: BinOp) -> &'static str {
    match op {
        BinOp::Mul => "*",
        BinOp::Div => "/",
        BinOp::Mod => "%",
        BinOp::Add => "+",
        BinOp::Sub => "-",
        BinOp::AddSat => "|+|",
        BinOp::SubSat => "|-|",
        BinOp::Shl => "<<",
        BinOp::Shr => ">>",
        BinOp::Lt => "<",
        BinOp::Le => "<=",
        BinOp::Gt => ">",
        BinOp::Ge => ">=",
        BinOp::Eq => "==",
        BinOp::Ne => "!=",
        BinOp::BitAnd => "&",
        BinOp::BitXor => "^",
        BinOp::BitOr => "|",
        BinOp::Concat => "++",
        BinOp::And => "&&",
        BinOp::Or => "||",
    }
}

impl Checker {
    fn new() -> Self {
        let mut c = Checker {
            diags: Vec::new(),
            globals: HashMap::new(),
            scopes: Vec::new(),
            ctx: Ctx::default(),
            main: None,
            headers: Vec::new(),
            structs: Vec::new(),
            enums: Vec::new(),
            errors: builtins::CORE_ERRORS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            vars: Vec::new(),
            actions: Vec::new(),
            action_owner: Vec::new(),
            tables: Vec::new(),
            externs: Vec::new(),
            parsers: Vec::new(),
            controls: Vec::new(),
            current_control: None,
            last_span: Span::default(),
        };
        let builtin = Span::default();
        // standard_metadata_t is struct 0.
        let fields = builtins::STANDARD_METADATA
            .iter()
            .map(|&(n, w)| {
                let ty = if n == builtins::STANDARD_METADATA_ERROR_FIELD {
                    Ty::Error
                } else {
                    Ty::Bit(w)
                };
                (n.to_string(), ty)
            })
            .collect();
        c.structs.push(hir::StructType {
            name: "standard_metadata_t".into(),
            fields,
            is_standard_metadata: true,
            span: builtin,
        });
        c.globals
            .insert("standard_metadata_t".into(), (Sym::Struct(0), builtin));
        for (name, members) in builtins::ENUMS {
            c.enums.push(hir::EnumType {
                name: name.to_string(),
                members: members
                    .iter()
                    .enumerate()
                    .map(|(i, m)| (m.to_string(), i as u128))
                    .collect(),
                underlying: None,
                builtin: true,
            });
            c.globals
                .insert(name.to_string(), (Sym::Enum(c.enums.len() - 1), builtin));
        }
        for (name, ext) in builtins::EXTERN_TYPES {
            c.globals
                .insert(name.to_string(), (Sym::Extern(*ext), builtin));
        }
        for (name, f) in builtins::FUNCTIONS {
            c.globals
                .insert(name.to_string(), (Sym::Function(*f), builtin));
        }
        for mk in builtins::MATCH_KINDS {
            c.globals.insert(mk.to_string(), (Sym::MatchKind, builtin));
        }
        c.globals
            .insert(builtins::V1SWITCH.into(), (Sym::Package, builtin));
        c.actions.push(hir::Action {
            name: builtins::NO_ACTION.into(),
            params: Vec::new(),
            body: Vec::new(),
            annotations: Vec::new(),
            span: builtin,
        });
        c.action_owner.push(None);
        c.globals
            .insert(builtins::NO_ACTION.into(), (Sym::Action(0), builtin));
        c
    }

    fn err(&mut self, span: Span, msg: impl Into<String>) {
        self.diags.push(Diagnostic::error(span, msg));
    }

    fn finish(self, main: hir::V1Switch) -> hir::Program {
        hir::Program {
            headers: self.headers,
            structs: self.structs,
            enums: self.enums,
            errors: self.errors,
            vars: self.vars,
            actions: self.actions,
            tables: self.tables,
            externs: self.externs,
            parsers: self.parsers,
            controls: self.controls,
            main,
            action_owner: self.action_owner,
        }
    }

    // ----- declarations -------------------------------------------------------------------

    fn declare_global(&mut self, name: &ast::Ident, sym: Sym) {
        if let Some((_, first)) = self.globals.get(&name.name) {
            let d = Diagnostic::error(
                name.span,
                format!("duplicate declaration of `{}`", name.name),
            );
            let d = if *first == Span::default() {
                Diagnostic {
                    message: format!(
                        "duplicate declaration of `{}`: core.p4 or v1model.p4 already declares it",
                        name.name
                    ),
                    ..d
                }
            } else {
                d.with_note(*first, "first declared here")
            };
            self.diags.push(d);
            return;
        }
        self.globals.insert(name.name.clone(), (sym, name.span));
    }

    fn declare_local(&mut self, name: &ast::Ident, local: Local) {
        let scope = self.scopes.last_mut().expect("a scope is open");
        if let Some((_, first)) = scope.get(&name.name) {
            let d = Diagnostic::error(
                name.span,
                format!("duplicate declaration of `{}`", name.name),
            )
            .with_note(*first, "first declared here");
            self.diags.push(d);
            return;
        }
        scope.insert(name.name.clone(), (local, name.span));
    }

    fn lookup_local(&self, name: &str) -> Option<Local> {
        self.scopes
            .iter()
            .rev()
            .find_map(|s| s.get(name).map(|(l, _)| l.clone()))
    }

    fn program(&mut self, p: &ast::Program) {
        for inc in &p.includes {
            let file = inc.path.trim_matches(|c| c == '<' || c == '>' || c == '"');
            if file != "core.p4" && file != "v1model.p4" {
                self.err(
                    inc.span,
                    format!(
                        "cannot include `{file}`: only <core.p4> and <v1model.p4> are available"
                    ),
                );
            }
        }
        let mut main_decl = None;
        for d in &p.decls {
            self.last_span = d.span;
            match &d.kind {
                ast::DeclKind::Const(cd) => {
                    if let Some(e) = self.const_decl(cd) {
                        self.declare_global(&cd.name, Sym::Const(e));
                    }
                }
                ast::DeclKind::Typedef { ty, name, .. } => {
                    if let Some(t) = self.resolve_type(ty) {
                        self.declare_global(name, Sym::Typedef(t));
                    }
                }
                ast::DeclKind::Header(h) => self.header_decl(h),
                ast::DeclKind::Struct(s) => self.struct_decl(s),
                ast::DeclKind::Enum {
                    name,
                    underlying,
                    members,
                    ..
                } => self.enum_decl(name, underlying.as_ref(), members),
                ast::DeclKind::Error { members } => {
                    for m in members {
                        if self.errors.contains(&m.name) {
                            self.err(m.span, format!("duplicate error `{}`", m.name));
                        } else {
                            self.errors.push(m.name.clone());
                        }
                    }
                }
                ast::DeclKind::MatchKind { members } => {
                    if let Some(m) = members.first() {
                        self.err(
                            m.span,
                            "declaring new match kinds is not supported by the bmv2 back end",
                        );
                    }
                }
                ast::DeclKind::Parser(pd) => {
                    let idx = self.parser_decl(pd);
                    self.declare_global(&pd.name, Sym::Parser(idx));
                }
                ast::DeclKind::Control(cd) => {
                    let idx = self.controls.len();
                    self.declare_global(&cd.name, Sym::Control(idx));
                    self.control_decl(cd);
                }
                ast::DeclKind::Action(ad) => {
                    self.scopes.clear();
                    self.ctx = Ctx::default();
                    if let Some(idx) = self.action_decl(ad, None) {
                        self.declare_global(&ad.name, Sym::Action(idx));
                    }
                }
                ast::DeclKind::Instantiation(inst) => {
                    if inst.name.name == "main" {
                        main_decl = Some(inst);
                    } else {
                        self.ctx = Ctx::default();
                        if let Some(idx) = self.extern_instance(inst) {
                            self.declare_global(&inst.name, Sym::ExternInst(idx));
                        }
                    }
                }
            }
        }
        match main_decl {
            Some(inst) => self.main = self.main_decl(inst),
            None => {
                let end = Span::new(self.last_span.hi as usize, self.last_span.hi as usize);
                self.err(end, "program has no `main`: declare `V1Switch(...) main;`");
            }
        }
    }

    fn const_decl(&mut self, cd: &ast::ConstDecl) -> Option<hir::Expr> {
        let ty = self.resolve_type(&cd.ty)?;
        let e = self.expect(&cd.value, &ty)?;
        if !is_const(&e) {
            self.err(
                cd.value.span,
                format!(
                    "the value of constant `{}` is not a compile-time constant",
                    cd.name.name
                ),
            );
            return None;
        }
        Some(e)
    }

    fn header_decl(&mut self, h: &ast::StructLike) {
        let mut fields = Vec::new();
        let mut ok = true;
        for f in &h.fields {
            match self.resolve_type(&f.ty) {
                Some(Ty::Bit(w)) => fields.push((f.name.name.clone(), w, false)),
                Some(Ty::Int(w)) => fields.push((f.name.name.clone(), w, true)),
                Some(Ty::Bool) => fields.push((f.name.name.clone(), 1, false)),
                Some(t) => {
                    let tn = self.ty_name(&t);
                    self.err(
                        f.ty.span,
                        format!("header field `{}` has type {tn}; header fields must be bit<W>, int<W> or bool", f.name.name),
                    );
                    ok = false;
                }
                None => ok = false,
            }
            if fields.iter().filter(|x| x.0 == f.name.name).count() > 1 {
                self.err(f.name.span, format!("duplicate field `{}`", f.name.name));
                ok = false;
            }
        }
        let width: u32 = fields.iter().map(|f| f.1).sum();
        if ok && !width.is_multiple_of(8) {
            self.err(
                h.name.span,
                format!(
                    "header `{}` is {width} bits long; bmv2 needs headers to be a whole number of bytes",
                    h.name.name
                ),
            );
        }
        self.headers.push(hir::HeaderType {
            name: h.name.name.clone(),
            fields,
            span: h.name.span,
        });
        self.declare_global(&h.name, Sym::Header(self.headers.len() - 1));
    }

    fn struct_decl(&mut self, s: &ast::StructLike) {
        let mut fields: Vec<(String, Ty)> = Vec::new();
        for f in &s.fields {
            if let Some(t) = self.resolve_type(&f.ty) {
                if !is_value_type(&t) {
                    let tn = self.ty_name(&t);
                    self.err(
                        f.ty.span,
                        format!("struct field `{}` cannot have type {tn}", f.name.name),
                    );
                    continue;
                }
                if fields.iter().any(|x| x.0 == f.name.name) {
                    self.err(f.name.span, format!("duplicate field `{}`", f.name.name));
                    continue;
                }
                fields.push((f.name.name.clone(), t));
            }
        }
        self.structs.push(hir::StructType {
            name: s.name.name.clone(),
            fields,
            is_standard_metadata: false,
            span: s.name.span,
        });
        self.declare_global(&s.name, Sym::Struct(self.structs.len() - 1));
    }

    fn enum_decl(
        &mut self,
        name: &ast::Ident,
        underlying: Option<&ast::TypeRef>,
        members: &[(ast::Ident, Option<ast::Expr>)],
    ) {
        let under = match underlying {
            Some(t) => match self.resolve_type(t) {
                Some(Ty::Bit(w)) => Some(w),
                Some(other) => {
                    let tn = self.ty_name(&other);
                    self.err(
                        t.span,
                        format!("an enum's underlying type must be bit<W>, not {tn}"),
                    );
                    return;
                }
                None => return,
            },
            None => None,
        };
        let mut out: Vec<(String, u128)> = Vec::new();
        for (i, (m, v)) in members.iter().enumerate() {
            if out.iter().any(|x| x.0 == m.name) {
                self.err(m.span, format!("duplicate enum member `{}`", m.name));
                continue;
            }
            let value = match (under, v) {
                (Some(w), Some(e)) => match self.const_value(e, &Ty::Bit(w)) {
                    Some(v) => v,
                    None => continue,
                },
                (Some(_), None) => {
                    self.err(
                        m.span,
                        format!("member `{}` of a serializable enum needs a value", m.name),
                    );
                    continue;
                }
                (None, Some(e)) => {
                    self.err(
                        e.span,
                        "members of an enum without an underlying type cannot have values",
                    );
                    continue;
                }
                (None, None) => i as u128,
            };
            out.push((m.name.clone(), value));
        }
        self.enums.push(hir::EnumType {
            name: name.name.clone(),
            members: out,
            underlying: under,
            builtin: false,
        });
        self.declare_global(name, Sym::Enum(self.enums.len() - 1));
    }

    // ----- types ----------------------------------------------------------------------------

    fn width(&mut self, w: &ast::Width, span: Span) -> Option<u32> {
        let w = match w {
            ast::Width::Lit(w) => *w as i128,
            ast::Width::Expr(e) => match self.expr(e, None)?.kind {
                ExprKind::InfInt(v) => v,
                ExprKind::Const(v) => v as i128,
                _ => {
                    self.err(e.span, "a width must be a compile-time constant");
                    return None;
                }
            },
        };
        if w <= 0 || w > 128 {
            self.err(
                span,
                format!("width {w} is not supported: widths must be between 1 and 128 bits"),
            );
            return None;
        }
        Some(w as u32)
    }

    fn resolve_type(&mut self, t: &ast::TypeRef) -> Option<Ty> {
        Some(match &t.kind {
            ast::TypeKind::Bool => Ty::Bool,
            ast::TypeKind::Bit(w) => Ty::Bit(self.width(w, t.span)?),
            ast::TypeKind::SignedInt(w) => Ty::Int(self.width(w, t.span)?),
            ast::TypeKind::Varbit(_) => {
                self.err(t.span, "varbit is not supported");
                return None;
            }
            ast::TypeKind::Int => Ty::InfInt,
            ast::TypeKind::String => Ty::String,
            ast::TypeKind::Error => Ty::Error,
            ast::TypeKind::MatchKind => Ty::Object(hir::ObjTy::MatchKind),
            ast::TypeKind::Void => Ty::Void,
            ast::TypeKind::DontCare => {
                self.err(t.span, "`_` is not a type here");
                return None;
            }
            ast::TypeKind::Tuple(_) => {
                self.err(t.span, "tuple types are not supported");
                return None;
            }
            ast::TypeKind::Stack { elem, size } => {
                let e = self.resolve_type(elem)?;
                let Ty::Header(h) = e else {
                    let tn = self.ty_name(&e);
                    self.err(
                        elem.span,
                        format!("a stack's elements must be headers, not {tn}"),
                    );
                    return None;
                };
                let n = self.const_value(size, &Ty::InfInt)?;
                if n == 0 || n > 1024 {
                    self.err(
                        size.span,
                        "a header stack's size must be between 1 and 1024",
                    );
                    return None;
                }
                Ty::Stack(h, n as u32)
            }
            ast::TypeKind::Named { name, args } => {
                let sym = self.globals.get(&name.name).map(|s| s.0.clone());
                let ty = match sym {
                    Some(Sym::Header(i)) => Ty::Header(i),
                    Some(Sym::Struct(i)) => Ty::Struct(i),
                    Some(Sym::Enum(i)) => Ty::Enum(i),
                    Some(Sym::Typedef(t)) => t,
                    Some(Sym::Extern(ExternType::PacketIn)) => Ty::Object(hir::ObjTy::PacketIn),
                    Some(Sym::Extern(ExternType::PacketOut)) => Ty::Object(hir::ObjTy::PacketOut),
                    Some(_) => {
                        self.err(
                            name.span,
                            format!("`{}` is not a type usable here", name.name),
                        );
                        return None;
                    }
                    None => {
                        self.err(name.span, format!("unknown type `{}`", name.name));
                        return None;
                    }
                };
                if !args.is_empty() {
                    self.err(t.span, format!("`{}` takes no type arguments", name.name));
                    return None;
                }
                ty
            }
        })
    }

    fn ty_name(&self, t: &Ty) -> String {
        match t {
            Ty::Bool => "bool".into(),
            Ty::Bit(w) => format!("bit<{w}>"),
            Ty::Int(w) => format!("int<{w}>"),
            Ty::InfInt => "int".into(),
            Ty::String => "string".into(),
            Ty::Error => "error".into(),
            Ty::Void => "void".into(),
            Ty::Header(i) => format!("header {}", self.headers[*i].name),
            Ty::Struct(i) => format!("struct {}", self.structs[*i].name),
            Ty::Stack(i, n) => format!("{}[{n}]", self.headers[*i].name),
            Ty::Enum(i) => format!("enum {}", self.enums[*i].name),
            Ty::List(ts) => format!(
                "list {{{}}}",
                ts.iter()
                    .map(|t| self.ty_name(t))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Ty::Object(o) => match o {
                hir::ObjTy::PacketIn => "packet_in".into(),
                hir::ObjTy::PacketOut => "packet_out".into(),
                hir::ObjTy::Table(t) => format!("table {}", self.tables[*t].name),
                hir::ObjTy::ApplyResult(_) => "a table apply result".into(),
                hir::ObjTy::Extern(x) => format!("extern instance {}", self.externs[*x].name),
                hir::ObjTy::MatchKind => "match_kind".into(),
            },
        }
    }

    // ----- blocks -----------------------------------------------------------------------------

    fn block_params(&mut self, params: &[ast::Param]) -> Vec<hir::BlockParam> {
        let mut out = Vec::new();
        for p in params {
            let Some(ty) = self.resolve_type(&p.ty) else {
                continue;
            };
            if p.direction.is_none() && !matches!(ty, Ty::Object(_)) {
                self.err(
                    p.span,
                    format!(
                        "constructor parameter `{}` is not supported; give it a direction",
                        p.name.name
                    ),
                );
            }
            self.declare_local(&p.name, Local::Param(out.len()));
            out.push(hir::BlockParam {
                name: p.name.name.clone(),
                ty,
                direction: p.direction,
                role: None,
            });
        }
        out
    }

    fn parser_decl(&mut self, pd: &ast::ParserDecl) -> usize {
        self.scopes = vec![HashMap::new()];
        self.ctx = Ctx {
            in_parser: true,
            prefix: format!("{}.", pd.name.name),
            ..Ctx::default()
        };
        let params = self.block_params(&pd.params);
        self.ctx.params = params.clone();
        let mut stmts_pre = Vec::new();
        for l in &pd.locals {
            match &l.kind {
                ast::LocalKind::Const(cd) => {
                    if let Some(e) = self.const_decl(cd) {
                        self.declare_local(&cd.name, Local::Const(e));
                    }
                }
                ast::LocalKind::Var(v) => stmts_pre.extend(self.var_decl(v, l.span)),
                _ => self.err(
                    l.span,
                    "only constants and variables may be declared in a parser (value sets and instances are not supported)",
                ),
            }
        }
        // State names form their own namespace, known before any state is checked.
        let mut names: HashMap<String, (usize, Span)> = HashMap::new();
        for (i, s) in pd.states.iter().enumerate() {
            if s.name.name == "accept" || s.name.name == "reject" {
                self.err(
                    s.name.span,
                    format!(
                        "`{}` is a built-in state and cannot be declared",
                        s.name.name
                    ),
                );
            } else if let Some((_, first)) = names.get(&s.name.name) {
                let d =
                    Diagnostic::error(s.name.span, format!("duplicate state `{}`", s.name.name))
                        .with_note(*first, "first declared here");
                self.diags.push(d);
            } else {
                names.insert(s.name.name.clone(), (i, s.name.span));
            }
        }
        let start = match names.get("start") {
            Some((i, _)) => *i,
            None => {
                self.err(
                    pd.name.span,
                    format!("parser `{}` has no `start` state", pd.name.name),
                );
                0
            }
        };
        let mut states = Vec::new();
        for s in &pd.states {
            self.scopes.push(HashMap::new());
            let mut stmts = if states.is_empty() {
                std::mem::take(&mut stmts_pre)
            } else {
                Vec::new()
            };
            for st in &s.stmts {
                stmts.extend(self.stmt(st));
            }
            let transition = self.transition(&s.transition, &names);
            self.scopes.pop();
            states.push(hir::State {
                name: s.name.name.clone(),
                stmts,
                transition: transition.unwrap_or(hir::Transition::Direct(hir::NextState::Reject)),
                span: s.span,
            });
        }
        // Initializers of parser locals run first, in the start state.
        if let Some(st) = states.get_mut(start) {
            if !stmts_pre.is_empty() {
                let mut pre = stmts_pre;
                pre.append(&mut st.stmts);
                st.stmts = pre;
            }
        }
        self.scopes.clear();
        self.parsers.push(hir::Parser {
            name: pd.name.name.clone(),
            params,
            start,
            states,
            span: pd.name.span,
        });
        self.parsers.len() - 1
    }

    fn next_state(
        &mut self,
        id: &ast::Ident,
        names: &HashMap<String, (usize, Span)>,
    ) -> Option<hir::NextState> {
        match id.name.as_str() {
            "accept" => Some(hir::NextState::Accept),
            "reject" => Some(hir::NextState::Reject),
            n => match names.get(n) {
                Some((i, _)) => Some(hir::NextState::State(*i)),
                None => {
                    self.err(id.span, format!("transition to unknown state `{n}`"));
                    None
                }
            },
        }
    }

    fn transition(
        &mut self,
        t: &ast::Transition,
        names: &HashMap<String, (usize, Span)>,
    ) -> Option<hir::Transition> {
        match t {
            ast::Transition::Direct(id) => {
                Some(hir::Transition::Direct(self.next_state(id, names)?))
            }
            ast::Transition::Select { exprs, cases, .. } => {
                let mut keys = Vec::new();
                for e in exprs {
                    let k = self.select_key(e)?;
                    keys.push(k);
                }
                let mut out = Vec::new();
                for c in cases {
                    let next = self.next_state(&c.next, names);
                    let kvs = if let [ast::Keyset::Default(_)] = c.keysets.as_slice() {
                        vec![hir::KeyValue::Any; keys.len()]
                    } else {
                        if c.keysets.len() != keys.len() {
                            self.err(
                                c.span,
                                format!(
                                    "this select case has {} keyset(s) but the select has {} key(s)",
                                    c.keysets.len(),
                                    keys.len()
                                ),
                            );
                            continue;
                        }
                        let mut kvs = Vec::new();
                        for (ks, k) in c.keysets.iter().zip(&keys) {
                            if let Some(v) = self.keyset(ks, &k.ty) {
                                if matches!(v, hir::KeyValue::Range(..)) {
                                    self.err(keyset_span(ks), "range keysets in select are not supported by the bmv2 back end");
                                }
                                kvs.push(v);
                            }
                        }
                        if kvs.len() != keys.len() {
                            continue;
                        }
                        kvs
                    };
                    if let Some(next) = next {
                        out.push((kvs, next, c.span));
                    }
                }
                Some(hir::Transition::Select { keys, cases: out })
            }
        }
    }

    fn select_key(&mut self, e: &ast::Expr) -> Option<hir::Expr> {
        let k = self.expr(e, None)?;
        match &k.ty {
            Ty::Bit(_) | Ty::Int(_) | Ty::Bool => Some(k),
            t => {
                let tn = self.ty_name(t);
                self.err(
                    e.span,
                    format!("a select key must be bit<W> or bool, not {tn}"),
                );
                None
            }
        }
    }

    /// A keyset (table entry or select case) as constants of the key's type.
    fn keyset(&mut self, ks: &ast::Keyset, ty: &Ty) -> Option<hir::KeyValue> {
        Some(match ks {
            ast::Keyset::Default(_) | ast::Keyset::DontCare(_) => hir::KeyValue::Any,
            ast::Keyset::Expr(e) => hir::KeyValue::Value(self.const_value(e, ty)?),
            ast::Keyset::Mask(v, m) => {
                hir::KeyValue::Mask(self.const_value(v, ty)?, self.const_value(m, ty)?)
            }
            ast::Keyset::Range(lo, hi) => {
                hir::KeyValue::Range(self.const_value(lo, ty)?, self.const_value(hi, ty)?)
            }
        })
    }

    fn control_decl(&mut self, cd: &ast::ControlDecl) {
        let idx = self.controls.len();
        self.current_control = Some(idx);
        self.scopes = vec![HashMap::new()];
        self.ctx = Ctx {
            prefix: format!("{}.", cd.name.name),
            ..Ctx::default()
        };
        let params = self.block_params(&cd.params);
        self.ctx.params = params.clone();
        let first_extern = self.externs.len();
        let mut apply = Vec::new();
        for l in &cd.locals {
            match &l.kind {
                ast::LocalKind::Const(c) => {
                    if let Some(e) = self.const_decl(c) {
                        self.declare_local(&c.name, Local::Const(e));
                    }
                }
                ast::LocalKind::Var(v) => apply.extend(self.var_decl(v, l.span)),
                ast::LocalKind::Instantiation(inst) => match self.extern_instance(inst) {
                    Some(x) => self.declare_local(&inst.name, Local::ExternInst(x)),
                    None => self.declare_local(&inst.name, Local::Poisoned),
                },
                ast::LocalKind::Action(ad) => {
                    if let Some(a) = self.action_decl(ad, Some(idx)) {
                        self.declare_local(&ad.name, Local::Action(a));
                    }
                }
                ast::LocalKind::Table(td) => match self.table_decl(td) {
                    Some(t) => self.declare_local(&td.name, Local::Table(t)),
                    None => self.declare_local(&td.name, Local::Poisoned),
                },
            }
        }
        apply.extend(self.block(&cd.apply));
        for x in first_extern..self.externs.len() {
            let e = &self.externs[x];
            if matches!(e.kind, hir::ExternKind::DirectCounter { .. }) && e.bound_table.is_none() {
                let (span, name) = (e.span, e.name.clone());
                self.err(span, format!("direct counter `{name}` is not attached to a table; add `counters = ...;` to one"));
            }
        }
        self.scopes.clear();
        self.current_control = None;
        self.controls.push(hir::Control {
            name: cd.name.name.clone(),
            params,
            apply,
            span: cd.name.span,
        });
    }

    fn var_decl(&mut self, v: &ast::VarDecl, span: Span) -> Option<hir::Stmt> {
        let ty = self.resolve_type(&v.ty)?;
        if !is_value_type(&ty) || ty == Ty::InfInt {
            let tn = self.ty_name(&ty);
            self.err(v.ty.span, format!("variables cannot have type {tn}"));
            return None;
        }
        let init = match &v.init {
            Some(e) => Some(self.expect(e, &ty)?),
            None => None,
        };
        let idx = self.vars.len();
        self.vars.push(hir::Var {
            name: v.name.name.clone(),
            ty: ty.clone(),
        });
        self.declare_local(&v.name, Local::Var(idx));
        init.map(|e| hir::Stmt {
            kind: hir::StmtKind::Assign(
                hir::Expr {
                    kind: ExprKind::Var(idx),
                    ty,
                    span: v.name.span,
                },
                e,
            ),
            span,
        })
    }

    fn extern_instance(&mut self, inst: &ast::Instantiation) -> Option<usize> {
        let ast::TypeKind::Named { name, args } = &inst.ty.kind else {
            self.err(inst.ty.span, "only extern objects can be instantiated here");
            return None;
        };
        let sym = self.globals.get(&name.name).map(|s| s.0.clone());
        let ext = match sym {
            Some(Sym::Extern(e)) => e,
            Some(Sym::Control(_)) | Some(Sym::Parser(_)) => {
                self.err(
                    inst_span(inst),
                    format!(
                        "instantiating `{}` inside another block is not supported",
                        name.name
                    ),
                );
                return None;
            }
            Some(_) => {
                self.err(name.span, format!("`{}` is not an extern type", name.name));
                return None;
            }
            None => {
                self.err(name.span, format!("unknown extern type `{}`", name.name));
                return None;
            }
        };
        let a: Vec<&ast::Expr> = inst.args.iter().map(|a| a.expr()).collect();
        let kind = match ext {
            ExternType::Counter => {
                if a.len() != 2 {
                    self.err(
                        inst_span(inst),
                        format!(
                            "counter takes 2 arguments (size, CounterType), found {}",
                            a.len()
                        ),
                    );
                    return None;
                }
                let size = self.const_value(a[0], &Ty::Bit(32))? as u64;
                let unit = self.counter_unit(a[1])?;
                hir::ExternKind::Counter { size, unit }
            }
            ExternType::DirectCounter => {
                if a.len() != 1 {
                    self.err(
                        inst_span(inst),
                        format!(
                            "direct_counter takes 1 argument (CounterType), found {}",
                            a.len()
                        ),
                    );
                    return None;
                }
                hir::ExternKind::DirectCounter {
                    unit: self.counter_unit(a[0])?,
                }
            }
            ExternType::Register => {
                let Some(t) = args.first() else {
                    self.err(
                        inst.ty.span,
                        "register needs its cell type: `register<bit<W>>`",
                    );
                    return None;
                };
                let width = match self.resolve_type(t)? {
                    Ty::Bit(w) | Ty::Int(w) => w,
                    other => {
                        let tn = self.ty_name(&other);
                        self.err(t.span, format!("register cells must be bit<W>, not {tn}"));
                        return None;
                    }
                };
                if a.len() != 1 {
                    self.err(
                        inst_span(inst),
                        format!("register takes 1 argument (size), found {}", a.len()),
                    );
                    return None;
                }
                let size = self.const_value(a[0], &Ty::Bit(32))? as u64;
                hir::ExternKind::Register { width, size }
            }
            ExternType::PacketIn | ExternType::PacketOut => {
                self.err(
                    inst_span(inst),
                    format!("`{}` cannot be instantiated by a program", name.name),
                );
                return None;
            }
            ExternType::Unsupported(n) => {
                self.err(
                    name.span,
                    format!("extern `{n}` is not supported by this compiler"),
                );
                return None;
            }
        };
        self.externs.push(hir::ExternInst {
            name: qualified_name(&self.ctx.prefix, &inst.name.name, &inst.annotations),
            kind,
            annotations: inst.annotations.clone(),
            span: inst.name.span,
            bound_table: None,
        });
        Some(self.externs.len() - 1)
    }

    fn counter_unit(&mut self, e: &ast::Expr) -> Option<hir::CounterUnit> {
        let ct = self.enum_index("CounterType");
        let v = self.expr(e, None)?;
        match v.kind {
            ExprKind::EnumConst(en, m) if en == ct => Some(match m {
                0 => hir::CounterUnit::Packets,
                1 => hir::CounterUnit::Bytes,
                _ => hir::CounterUnit::PacketsAndBytes,
            }),
            _ => {
                self.err(
                    e.span,
                    "expected a CounterType (packets, bytes or packets_and_bytes)",
                );
                None
            }
        }
    }

    fn enum_index(&self, name: &str) -> usize {
        self.enums
            .iter()
            .position(|e| e.builtin && e.name == name)
            .expect("built-in enum exists")
    }

    fn action_decl(&mut self, ad: &ast::ActionDecl, owner: Option<usize>) -> Option<usize> {
        self.scopes.push(HashMap::new());
        let mut params = Vec::new();
        let mut seen_data = false;
        for p in &ad.params {
            let Some(ty) = self.resolve_type(&p.ty) else {
                continue;
            };
            if p.direction.is_none() {
                seen_data = true;
                if !matches!(ty, Ty::Bit(_) | Ty::Int(_) | Ty::Bool) {
                    let tn = self.ty_name(&ty);
                    self.err(
                        p.ty.span,
                        format!(
                            "action data parameter `{}` must be bit<W>, int<W> or bool, not {tn}",
                            p.name.name
                        ),
                    );
                    continue;
                }
            } else if seen_data {
                self.err(
                    p.span,
                    "directional action parameters must come before action data parameters",
                );
            }
            self.declare_local(&p.name, Local::ActionParam(params.len()));
            params.push(hir::ActionParam {
                name: p.name.name.clone(),
                ty,
                direction: p.direction,
                annotations: p.annotations.clone(),
            });
        }
        let saved = self.ctx.action_params.replace(params.clone());
        let body = self.block(&ad.body);
        self.ctx.action_params = saved;
        self.scopes.pop();
        self.actions.push(hir::Action {
            name: qualified_name(&self.ctx.prefix, &ad.name.name, &ad.annotations),
            params,
            body,
            annotations: ad.annotations.clone(),
            span: ad.name.span,
        });
        self.action_owner.push(owner);
        Some(self.actions.len() - 1)
    }

    fn lookup_action(&mut self, id: &ast::Ident) -> Option<usize> {
        match self.lookup_local(&id.name) {
            Some(Local::Action(a)) => return Some(a),
            Some(Local::Poisoned) => return None,
            Some(_) => {
                self.err(id.span, format!("`{}` is not an action", id.name));
                return None;
            }
            None => {}
        }
        match self.globals.get(&id.name).map(|s| s.0.clone()) {
            Some(Sym::Action(a)) => Some(a),
            Some(_) => {
                self.err(id.span, format!("`{}` is not an action", id.name));
                None
            }
            None => {
                self.err(id.span, format!("unknown action `{}`", id.name));
                None
            }
        }
    }

    /// Checks the data arguments given to an action in a table (default action, entries).
    fn action_data_args(&mut self, r: &ast::ActionRef, action: usize) -> Option<Vec<u128>> {
        let params = self.actions[action].params.clone();
        let data: Vec<&hir::ActionParam> =
            params.iter().filter(|p| p.direction.is_none()).collect();
        if data.len() != params.len() {
            self.err(
                r.span,
                format!(
                    "action `{}` has directional parameters, which tables cannot supply",
                    r.name.name
                ),
            );
            return None;
        }
        let args = r.args.clone().unwrap_or_default();
        if args.len() != data.len() {
            self.err(
                r.span,
                format!(
                    "action `{}` takes {} argument(s) but {} were given",
                    r.name.name,
                    data.len(),
                    args.len()
                ),
            );
            return None;
        }
        let mut out = Vec::new();
        for (a, p) in args.iter().zip(&data) {
            out.push(self.const_value(a.expr(), &p.ty)?);
        }
        Some(out)
    }

    fn table_decl(&mut self, td: &ast::TableDecl) -> Option<usize> {
        let name = qualified_name(&self.ctx.prefix, &td.name.name, &td.annotations);
        let mut keys: Vec<hir::TableKey> = Vec::new();
        let mut actions: Vec<hir::TableActionRef> = Vec::new();
        let mut default_action = None;
        let mut entries_prop = None;
        let mut size = None;
        let mut direct_counter = None;
        let mut support_timeout = false;
        let mut seen: HashMap<&'static str, Span> = HashMap::new();
        let mut ok = true;
        let idx = self.tables.len();
        for p in &td.props {
            let pname: &'static str = match &p.kind {
                ast::TablePropertyKind::Key(_) => "key",
                ast::TablePropertyKind::Actions(_) => "actions",
                ast::TablePropertyKind::DefaultAction { .. } => "default_action",
                ast::TablePropertyKind::Entries { .. } => "entries",
                ast::TablePropertyKind::Other { name, .. } => match name.name.as_str() {
                    "size" => "size",
                    "counters" => "counters",
                    "support_timeout" => "support_timeout",
                    other => {
                        self.err(
                            name.span,
                            format!("table property `{other}` is not supported"),
                        );
                        ok = false;
                        continue;
                    }
                },
            };
            if let Some(first) = seen.get(pname) {
                let d = Diagnostic::error(p.span, format!("duplicate table property `{pname}`"))
                    .with_note(*first, "first declared here");
                self.diags.push(d);
                ok = false;
                continue;
            }
            seen.insert(pname, p.span);
            match &p.kind {
                ast::TablePropertyKind::Key(elems) => {
                    let mut lpm = 0;
                    for k in elems {
                        let Some(e) = self.expr(&k.expr, None) else {
                            ok = false;
                            continue;
                        };
                        if !matches!(
                            e.ty,
                            Ty::Bit(_) | Ty::Int(_) | Ty::Bool | Ty::Error | Ty::Enum(_)
                        ) {
                            let tn = self.ty_name(&e.ty);
                            self.err(
                                k.expr.span,
                                format!(
                                    "a table key must be bit<W>, bool, error or an enum, not {tn}"
                                ),
                            );
                            ok = false;
                            continue;
                        }
                        let mk = match k.match_kind.name.as_str() {
                            "exact" => hir::MatchKind::Exact,
                            "ternary" => hir::MatchKind::Ternary,
                            "lpm" => hir::MatchKind::Lpm,
                            "range" => hir::MatchKind::Range,
                            "optional" => hir::MatchKind::Optional,
                            "selector" => {
                                self.err(k.match_kind.span, "match kind `selector` is not supported (it needs an action selector)");
                                ok = false;
                                continue;
                            }
                            other => {
                                self.err(
                                    k.match_kind.span,
                                    format!("unknown match kind `{other}`"),
                                );
                                ok = false;
                                continue;
                            }
                        };
                        if mk == hir::MatchKind::Lpm {
                            lpm += 1;
                            if lpm > 1 {
                                self.err(k.span, "a table can have at most one lpm key");
                                ok = false;
                            }
                        }
                        let key_name = match ast::find_annotation(&k.annotations, "name")
                            .and_then(|a| a.string_arg())
                        {
                            Some(n) => n.to_string(),
                            None => expr_source(&k.expr),
                        };
                        keys.push(hir::TableKey {
                            expr: e,
                            name: key_name,
                            match_kind: mk,
                            annotations: k.annotations.clone(),
                        });
                    }
                }
                ast::TablePropertyKind::Actions(refs) => {
                    for r in refs {
                        let Some(a) = self.lookup_action(&r.name) else {
                            ok = false;
                            continue;
                        };
                        if matches!(&r.args, Some(args) if !args.is_empty()) {
                            self.err(r.span, "binding action arguments in a table's `actions` list is not supported");
                            ok = false;
                            continue;
                        }
                        if actions.iter().any(|x| x.action == a) {
                            self.err(
                                r.name.span,
                                format!("action `{}` is listed twice", r.name.name),
                            );
                            ok = false;
                            continue;
                        }
                        if self.actions[a].params.iter().any(|p| p.direction.is_some()) {
                            self.err(r.span, format!("action `{}` has directional parameters, which tables cannot supply", r.name.name));
                            ok = false;
                            continue;
                        }
                        actions.push(hir::TableActionRef {
                            action: a,
                            annotations: r.annotations.clone(),
                        });
                    }
                }
                ast::TablePropertyKind::DefaultAction { is_const, action } => {
                    default_action = Some((action.clone(), *is_const));
                }
                ast::TablePropertyKind::Entries { is_const, entries } => {
                    if !is_const {
                        self.err(p.span, "only `const entries` are supported");
                        ok = false;
                    } else {
                        entries_prop = Some(entries);
                    }
                }
                ast::TablePropertyKind::Other { name, value, .. } => match name.name.as_str() {
                    "size" => size = self.const_value(value, &Ty::InfInt).map(|v| v as u64),
                    "support_timeout" => match self.expr(value, Some(&Ty::Bool)) {
                        Some(hir::Expr {
                            kind: ExprKind::Bool(b),
                            ..
                        }) => support_timeout = b,
                        _ => {
                            self.err(value.span, "support_timeout must be `true` or `false`");
                            ok = false;
                        }
                    },
                    _ => {
                        // counters
                        let found = match &value.kind {
                            ast::ExprKind::Name(id) => match self.lookup_local(&id.name) {
                                Some(Local::ExternInst(x)) => Some(x),
                                _ => None,
                            },
                            _ => None,
                        };
                        match found {
                            Some(x)
                                if matches!(
                                    self.externs[x].kind,
                                    hir::ExternKind::DirectCounter { .. }
                                ) =>
                            {
                                if let Some(t) = self.externs[x].bound_table {
                                    let tn = self.tables[t].name.clone();
                                    self.err(value.span, format!("direct counter `{}` is already attached to table `{tn}`", self.externs[x].name));
                                    ok = false;
                                } else {
                                    self.externs[x].bound_table = Some(idx);
                                    direct_counter = Some(x);
                                }
                            }
                            _ => {
                                self.err(value.span, "`counters` must name a direct_counter declared in this control");
                                ok = false;
                            }
                        }
                    }
                },
            }
        }
        if !seen.contains_key("actions") {
            self.err(
                td.name.span,
                format!("table `{}` has no `actions` property", td.name.name),
            );
            ok = false;
        }
        let mut default = None;
        if let Some((r, is_const)) = default_action {
            if let Some(a) = self.lookup_action(&r.name) {
                if !actions.iter().any(|x| x.action == a) {
                    self.err(
                        r.name.span,
                        format!(
                            "default action `{}` is not in the table's `actions` list",
                            r.name.name
                        ),
                    );
                    ok = false;
                } else if let Some(args) = self.action_data_args(&r, a) {
                    default = Some((a, args, is_const));
                } else {
                    ok = false;
                }
            } else {
                ok = false;
            }
        }
        let mut entries = None;
        if let Some(es) = entries_prop {
            let mut out = Vec::new();
            for e in es {
                if e.keysets.len() != keys.len() {
                    self.err(
                        e.span,
                        format!(
                            "this entry has {} key value(s) but the table has {} key(s)",
                            e.keysets.len(),
                            keys.len()
                        ),
                    );
                    ok = false;
                    continue;
                }
                let mut kvs = Vec::new();
                for (ks, k) in e.keysets.iter().zip(&keys) {
                    let ty = k.expr.ty.clone();
                    if let Some(v) = self.keyset(ks, &ty) {
                        let fits = match (&v, k.match_kind) {
                            (hir::KeyValue::Any, hir::MatchKind::Exact) => false,
                            (
                                hir::KeyValue::Mask(..),
                                hir::MatchKind::Exact
                                | hir::MatchKind::Range
                                | hir::MatchKind::Optional,
                            ) => false,
                            (hir::KeyValue::Range(..), m) => m == hir::MatchKind::Range,
                            _ => true,
                        };
                        if !fits {
                            self.err(
                                keyset_span(ks),
                                format!(
                                    "this keyset does not fit a `{}` key",
                                    k.match_kind.as_str()
                                ),
                            );
                            ok = false;
                        }
                        kvs.push(v);
                    } else {
                        ok = false;
                    }
                }
                let Some(a) = self.lookup_action(&e.action.name) else {
                    ok = false;
                    continue;
                };
                if !actions.iter().any(|x| x.action == a) {
                    self.err(
                        e.action.name.span,
                        format!(
                            "action `{}` is not in the table's `actions` list",
                            e.action.name.name
                        ),
                    );
                    ok = false;
                    continue;
                }
                let Some(args) = self.action_data_args(&e.action, a) else {
                    ok = false;
                    continue;
                };
                let priority = match &e.priority {
                    Some(p) => self.const_value(p, &Ty::InfInt).map(|v| v as u64),
                    None => None,
                };
                out.push(hir::TableEntry {
                    keys: kvs,
                    action: a,
                    args,
                    priority,
                    span: e.span,
                });
            }
            let explicit = out.iter().filter(|e| e.priority.is_some()).count();
            if explicit != 0 && explicit != out.len() {
                let first = out
                    .iter()
                    .find(|e| e.priority.is_none())
                    .map_or(td.name.span, |e| e.span);
                self.err(first, "give every entry a `priority` or none: mixing explicit and implicit priorities is not supported");
                ok = false;
            }
            entries = Some(out);
        }
        if !ok {
            return None;
        }
        self.tables.push(hir::Table {
            name,
            keys,
            actions,
            default_action: default,
            entries,
            size,
            direct_counter,
            support_timeout,
            annotations: td.annotations.clone(),
            span: td.name.span,
        });
        Some(idx)
    }

    fn main_decl(&mut self, inst: &ast::Instantiation) -> Option<hir::V1Switch> {
        let pkg_ok = matches!(&inst.ty.kind, ast::TypeKind::Named { name, .. } if name.name == builtins::V1SWITCH);
        if !pkg_ok {
            self.err(
                inst.ty.span,
                "`main` must be a V1Switch (only the v1model architecture is supported)",
            );
            return None;
        }
        if inst.args.len() != builtins::V1SWITCH_BLOCKS.len() {
            self.err(
                inst_span(inst),
                format!(
                    "V1Switch takes {} arguments but {} were given",
                    builtins::V1SWITCH_BLOCKS.len(),
                    inst.args.len()
                ),
            );
            return None;
        }
        let mut idx = Vec::new();
        let mut headers_ty: Option<Ty> = None;
        let mut meta_ty: Option<Ty> = None;
        for (i, (arg, (what, is_parser, roles))) in
            inst.args.iter().zip(builtins::V1SWITCH_BLOCKS).enumerate()
        {
            let e = arg.expr();
            let callee = match &e.kind {
                ast::ExprKind::Call { callee, args, .. } if args.is_empty() => match &callee.kind {
                    ast::ExprKind::Name(id) => Some(id),
                    _ => None,
                },
                _ => None,
            };
            let Some(id) = callee else {
                self.err(
                    e.span,
                    format!(
                        "argument {} of V1Switch must instantiate a {what}, e.g. `MyBlock()`",
                        i + 1
                    ),
                );
                return None;
            };
            let sym = self.globals.get(&id.name).map(|s| s.0.clone());
            let (block, params) = match (sym, *is_parser) {
                (Some(Sym::Parser(p)), true) => (p, self.parsers[p].params.clone()),
                (Some(Sym::Control(c)), false) => (c, self.controls[c].params.clone()),
                (None, _) => {
                    self.err(id.span, format!("unknown parser or control `{}`", id.name));
                    return None;
                }
                (sym, _) => {
                    let is = match sym {
                        Some(Sym::Parser(_)) => "a parser",
                        Some(Sym::Control(_)) => "a control",
                        _ => "neither a parser nor a control",
                    };
                    self.err(
                        id.span,
                        format!(
                            "argument {} of V1Switch is the {what}, but `{}` is {is}",
                            i + 1,
                            id.name
                        ),
                    );
                    return None;
                }
            };
            if params.len() != roles.len() {
                self.err(
                    id.span,
                    format!(
                        "`{}` is used as the {what}, which takes {} parameters, but it has {}",
                        id.name,
                        roles.len(),
                        params.len()
                    ),
                );
                return None;
            }
            let mut hir_roles = Vec::new();
            for (p, role) in params.iter().zip(roles.iter()) {
                let good = match role {
                    Role::PacketIn => p.ty == Ty::Object(hir::ObjTy::PacketIn),
                    Role::PacketOut => p.ty == Ty::Object(hir::ObjTy::PacketOut),
                    Role::StdMeta => p.ty == Ty::Struct(0),
                    Role::Headers => match &headers_ty {
                        Some(t) => *t == p.ty,
                        None => {
                            let good = matches!(p.ty, Ty::Struct(_));
                            if good {
                                headers_ty = Some(p.ty.clone());
                            }
                            good
                        }
                    },
                    Role::Meta => match &meta_ty {
                        Some(t) => *t == p.ty,
                        None => {
                            let good = matches!(p.ty, Ty::Struct(_));
                            if good {
                                meta_ty = Some(p.ty.clone());
                            }
                            good
                        }
                    },
                };
                if !good {
                    let tn = self.ty_name(&p.ty);
                    let want = match role {
                        Role::PacketIn => "packet_in".to_string(),
                        Role::PacketOut => "packet_out".to_string(),
                        Role::StdMeta => "standard_metadata_t".to_string(),
                        Role::Headers => headers_ty
                            .as_ref()
                            .map_or("a struct of headers".into(), |t| self.ty_name(t)),
                        Role::Meta => meta_ty
                            .as_ref()
                            .map_or("a metadata struct".into(), |t| self.ty_name(t)),
                    };
                    self.err(id.span, format!("parameter `{}` of `{}` has type {tn}, but the {what} needs {want} there", p.name, id.name));
                    return None;
                }
                hir_roles.push(match role {
                    Role::PacketIn => hir::ParamRole::PacketIn,
                    Role::PacketOut => hir::ParamRole::PacketOut,
                    Role::Headers => hir::ParamRole::Headers,
                    Role::Meta => hir::ParamRole::Meta,
                    Role::StdMeta => hir::ParamRole::StandardMetadata,
                });
            }
            let target = if *is_parser {
                &mut self.parsers[block].params
            } else {
                &mut self.controls[block].params
            };
            for (p, r) in target.iter_mut().zip(hir_roles) {
                p.role = Some(r);
            }
            idx.push(block);
        }
        let (Some(headers_ty), Some(meta_ty)) = (headers_ty, meta_ty) else {
            return None;
        };
        if idx[2] == idx[3] {
            self.err(
                inst_span(inst),
                "ingress and egress must be different controls",
            );
            return None;
        }
        Some(hir::V1Switch {
            parser: idx[0],
            verify_checksum: idx[1],
            ingress: idx[2],
            egress: idx[3],
            compute_checksum: idx[4],
            deparser: idx[5],
            headers_ty,
            meta_ty,
        })
    }

    // ----- statements ---------------------------------------------------------------------------

    fn block(&mut self, b: &ast::Block) -> Vec<hir::Stmt> {
        self.scopes.push(HashMap::new());
        let mut out = Vec::new();
        for s in &b.stmts {
            out.extend(self.stmt(s));
        }
        self.scopes.pop();
        out
    }

    fn stmt(&mut self, s: &ast::Stmt) -> Option<hir::Stmt> {
        let kind = match &s.kind {
            ast::StmtKind::Assign { lhs, rhs } => {
                let l = self.expr(lhs, None)?;
                self.check_lvalue(&l)?;
                let r = self.expect(rhs, &l.ty)?;
                hir::StmtKind::Assign(l, r)
            }
            ast::StmtKind::Call(e) => {
                let ast::ExprKind::Call {
                    callee,
                    type_args,
                    args,
                } = &e.kind
                else {
                    self.err(e.span, "this expression is not a statement");
                    return None;
                };
                match self.call(callee, type_args, args, e.span, true)? {
                    CallResult::Stmt(k) => k,
                    CallResult::Value(_) => {
                        self.err(
                            e.span,
                            "the result of this call is unused; it is not a statement",
                        );
                        return None;
                    }
                }
            }
            ast::StmtKind::If {
                cond,
                then,
                otherwise,
            } => {
                if self.ctx.in_parser {
                    self.err(
                        s.span,
                        "`if` statements in parser states are not supported; use `select`",
                    );
                    return None;
                }
                let c = self.expect(cond, &Ty::Bool);
                let t = self.block(then);
                let o = match otherwise {
                    Some(st) => {
                        self.scopes.push(HashMap::new());
                        let r = self.stmt(st).map(|x| vec![x]).unwrap_or_default();
                        self.scopes.pop();
                        r
                    }
                    None => Vec::new(),
                };
                hir::StmtKind::If(c?, t, o)
            }
            ast::StmtKind::Block(b) => hir::StmtKind::Block(self.block(b)),
            ast::StmtKind::Switch { expr, cases } => self.switch(expr, cases, s.span)?,
            ast::StmtKind::Return(v) => {
                if let Some(v) = v {
                    self.err(v.span, "actions and controls cannot return a value");
                    return None;
                }
                if self.ctx.in_parser {
                    self.err(s.span, "`return` is not allowed in a parser");
                    return None;
                }
                hir::StmtKind::Return
            }
            ast::StmtKind::Exit => {
                if self.ctx.in_parser {
                    self.err(s.span, "`exit` is not allowed in a parser");
                    return None;
                }
                hir::StmtKind::Exit
            }
            ast::StmtKind::Var(v) => return self.var_decl(v, s.span),
            ast::StmtKind::Const(cd) => {
                if let Some(e) = self.const_decl(cd) {
                    self.declare_local(&cd.name, Local::Const(e));
                }
                return None;
            }
            ast::StmtKind::Empty => return None,
        };
        Some(hir::Stmt { kind, span: s.span })
    }

    fn switch(
        &mut self,
        expr: &ast::Expr,
        cases: &[ast::SwitchCase],
        span: Span,
    ) -> Option<hir::StmtKind> {
        if self.ctx.action_params.is_some() || self.ctx.in_parser {
            self.err(
                span,
                "`switch` is only supported in a control's apply block",
            );
            return None;
        }
        let table = match &expr.kind {
            ast::ExprKind::Member { base, member } if member.name == "action_run" => {
                match self.expr(base, None)?.ty {
                    Ty::Object(hir::ObjTy::ApplyResult(t)) => Some(t),
                    _ => None,
                }
            }
            _ => None,
        };
        let Some(table) = table else {
            self.err(
                expr.span,
                "only `switch (t.apply().action_run)` is supported",
            );
            return None;
        };
        let mut out: Vec<hir::SwitchCase> = Vec::new();
        let mut labels_seen: Vec<Option<usize>> = Vec::new();
        let mut pending: Vec<Option<usize>> = Vec::new();
        for c in cases {
            let label = match &c.label {
                ast::SwitchLabel::Default(_) => None,
                ast::SwitchLabel::Name(id) => {
                    let a = self.lookup_action(id)?;
                    if !self.tables[table].actions.iter().any(|x| x.action == a) {
                        let tn = self.tables[table].name.clone();
                        self.err(
                            id.span,
                            format!("`{}` is not an action of table `{tn}`", id.name),
                        );
                        return None;
                    }
                    Some(a)
                }
                ast::SwitchLabel::Expr(e) => {
                    self.err(e.span, "switch labels must be action names or `default`");
                    return None;
                }
            };
            if labels_seen.contains(&label) {
                self.err(c.span, "duplicate switch label");
                return None;
            }
            labels_seen.push(label);
            pending.push(label);
            if let Some(b) = &c.body {
                let body = self.block(b);
                out.push((std::mem::take(&mut pending), Some(body)));
            }
        }
        if !pending.is_empty() {
            out.push((pending, None));
        }
        Some(hir::StmtKind::SwitchActionRun { table, cases: out })
    }

    fn check_lvalue(&mut self, e: &hir::Expr) -> Option<()> {
        match &e.kind {
            ExprKind::Var(_) => Some(()),
            ExprKind::Param(i) => {
                let p = &self.ctx.params[*i];
                if matches!(p.direction, Some(Direction::In) | None) {
                    let n = p.name.clone();
                    self.err(
                        e.span,
                        format!("parameter `{n}` is read-only (it has direction `in`)"),
                    );
                    None
                } else {
                    Some(())
                }
            }
            ExprKind::ActionParam(i) => {
                let p = &self.ctx.action_params.as_ref().expect("in an action")[*i];
                if matches!(p.direction, Some(Direction::Out | Direction::InOut)) {
                    Some(())
                } else {
                    let n = p.name.clone();
                    self.err(e.span, format!("action parameter `{n}` is read-only"));
                    None
                }
            }
            ExprKind::Field(b, _) | ExprKind::StackElem(b, _) | ExprKind::Slice(b, _, _) => {
                self.check_lvalue(b)
            }
            _ => {
                self.err(e.span, "this expression cannot be assigned to");
                None
            }
        }
    }

    // ----- calls ----------------------------------------------------------------------------

    fn positional<'e>(&mut self, args: &'e [ast::Argument]) -> Option<Vec<&'e ast::Expr>> {
        let mut out = Vec::new();
        for a in args {
            match a {
                ast::Argument::Positional(e) => out.push(e),
                ast::Argument::Named(id, _) => {
                    self.err(id.span, "named arguments are not supported");
                    return None;
                }
            }
        }
        Some(out)
    }

    fn arity(&mut self, args: &[&ast::Expr], n: usize, what: &str, span: Span) -> Option<()> {
        if args.len() != n {
            self.err(
                span,
                format!("{what} takes {n} argument(s) but {} were given", args.len()),
            );
            return None;
        }
        Some(())
    }

    fn lvalue_of(&mut self, e: &ast::Expr, expected: Option<&Ty>) -> Option<hir::Expr> {
        let x = match expected {
            Some(t) => self.expect(e, t)?,
            None => self.expr(e, None)?,
        };
        self.check_lvalue(&x)?;
        Some(x)
    }

    fn enum_arg(&mut self, e: &ast::Expr, enum_name: &str) -> Option<usize> {
        let en = self.enum_index(enum_name);
        let v = self.expr(e, None)?;
        match v.kind {
            ExprKind::EnumConst(x, m) if x == en => Some(m),
            _ => {
                self.err(
                    e.span,
                    format!(
                        "expected a {enum_name} constant, e.g. `{enum_name}.{}`",
                        self.enums[en].members[0].0
                    ),
                );
                None
            }
        }
    }

    fn hash_algo(&mut self, e: &ast::Expr) -> Option<hir::HashAlgo> {
        let m = self.enum_arg(e, "HashAlgorithm")?;
        let name = self.enums[self.enum_index("HashAlgorithm")].members[m]
            .0
            .clone();
        Some(match name.as_str() {
            "crc32" => hir::HashAlgo::Crc32,
            "crc16" => hir::HashAlgo::Crc16,
            "csum16" => hir::HashAlgo::Csum16,
            "identity" => hir::HashAlgo::Identity,
            "xor16" => hir::HashAlgo::Xor16,
            "random" => hir::HashAlgo::Random,
            other => {
                self.err(e.span, format!("HashAlgorithm.{other} is not supported"));
                return None;
            }
        })
    }

    /// A list `{a, b}` (or a single expression) of bit/bool values for hash and checksum data.
    fn data_list(&mut self, e: &ast::Expr) -> Option<Vec<hir::Expr>> {
        let items: Vec<&ast::Expr> = match &e.kind {
            ast::ExprKind::List(xs) => xs.iter().collect(),
            _ => vec![e],
        };
        let mut out = Vec::new();
        for x in items {
            let v = self.expr(x, None)?;
            match v.ty {
                Ty::Bit(_) | Ty::Int(_) | Ty::Header(_) => out.push(v),
                Ty::Bool => out.push(v),
                _ => {
                    let tn = self.ty_name(&v.ty);
                    self.err(
                        x.span,
                        format!(
                            "{tn} cannot be hashed or checksummed; use bit<W> fields or headers"
                        ),
                    );
                    return None;
                }
            }
        }
        Some(out)
    }

    fn call(
        &mut self,
        callee: &ast::Expr,
        type_args: &[ast::TypeRef],
        args: &[ast::Argument],
        span: Span,
        as_stmt: bool,
    ) -> Option<CallResult> {
        let args = self.positional(args)?;
        match &callee.kind {
            ast::ExprKind::Name(id) => {
                if let Some(Local::Action(a)) = self.lookup_local(&id.name) {
                    return self.action_call(a, &args, span);
                }
                match self.lookup_local(&id.name) {
                    Some(Local::Poisoned) => return None,
                    Some(_) => {
                        self.err(
                            id.span,
                            format!("`{}` is not a function or action", id.name),
                        );
                        return None;
                    }
                    None => {}
                }
                match self.globals.get(&id.name).map(|s| s.0.clone()) {
                    Some(Sym::Action(a)) => self.action_call(a, &args, span),
                    Some(Sym::Function(f)) => self.function_call(f, id, type_args, &args, span),
                    Some(Sym::Parser(_)) | Some(Sym::Control(_)) => {
                        self.err(
                            callee.span,
                            format!("calling `{}` directly is not supported", id.name),
                        );
                        None
                    }
                    Some(_) => {
                        self.err(
                            id.span,
                            format!("`{}` is not a function or action", id.name),
                        );
                        None
                    }
                    None => {
                        self.err(id.span, format!("unknown function or action `{}`", id.name));
                        None
                    }
                }
            }
            ast::ExprKind::Member { base, member } => {
                let b = self.expr(base, None)?;
                let m = member.name.as_str();
                match b.ty.clone() {
                    Ty::Header(_) => match m {
                        "isValid" => {
                            self.arity(&args, 0, "isValid", span)?;
                            Some(CallResult::Value(hir::Expr {
                                kind: ExprKind::IsValid(Box::new(b)),
                                ty: Ty::Bool,
                                span,
                            }))
                        }
                        "setValid" | "setInvalid" => {
                            self.arity(&args, 0, m, span)?;
                            self.check_lvalue(&b)?;
                            if self.ctx.in_parser {
                                self.err(span, format!("`{m}` in a parser state is not supported"));
                                return None;
                            }
                            Some(CallResult::Stmt(hir::StmtKind::Call(if m == "setValid" {
                                hir::Call::SetValid(b)
                            } else {
                                hir::Call::SetInvalid(b)
                            })))
                        }
                        _ => {
                            self.err(member.span, format!("headers have no method `{m}`"));
                            None
                        }
                    },
                    Ty::Object(hir::ObjTy::PacketIn) => match m {
                        "extract" => {
                            if args.len() == 2 {
                                self.err(
                                    span,
                                    "extract with a variable-size field is not supported",
                                );
                                return None;
                            }
                            self.arity(&args, 1, "extract", span)?;
                            let h = self.lvalue_of(args[0], None)?;
                            if !matches!(h.ty, Ty::Header(_)) {
                                let tn = self.ty_name(&h.ty);
                                self.err(args[0].span, format!("extract needs a header, not {tn}"));
                                return None;
                            }
                            Some(CallResult::Stmt(hir::StmtKind::Call(hir::Call::Extract(h))))
                        }
                        "advance" => {
                            self.arity(&args, 1, "advance", span)?;
                            let n = self.expect(args[0], &Ty::Bit(32))?;
                            Some(CallResult::Stmt(hir::StmtKind::Call(hir::Call::Advance(n))))
                        }
                        "lookahead" => {
                            self.arity(&args, 0, "lookahead", span)?;
                            let w = match type_args.first().map(|t| self.resolve_type(t)) {
                                Some(Some(Ty::Bit(w))) => w,
                                _ => {
                                    self.err(span, "lookahead is supported with a bit<W> type argument only, e.g. `lookahead<bit<8>>()`");
                                    return None;
                                }
                            };
                            Some(CallResult::Value(hir::Expr {
                                kind: ExprKind::Lookahead(w),
                                ty: Ty::Bit(w),
                                span,
                            }))
                        }
                        _ => {
                            self.err(
                                member.span,
                                format!("packet_in has no supported method `{m}`"),
                            );
                            None
                        }
                    },
                    Ty::Object(hir::ObjTy::PacketOut) => {
                        if m != "emit" {
                            self.err(member.span, format!("packet_out has no method `{m}`"));
                            return None;
                        }
                        self.arity(&args, 1, "emit", span)?;
                        let h = self.expr(args[0], None)?;
                        if !matches!(h.ty, Ty::Header(_) | Ty::Struct(_) | Ty::Stack(..)) {
                            let tn = self.ty_name(&h.ty);
                            self.err(
                                args[0].span,
                                format!("emit needs a header or a struct of headers, not {tn}"),
                            );
                            return None;
                        }
                        Some(CallResult::Stmt(hir::StmtKind::Call(hir::Call::Emit(h))))
                    }
                    Ty::Object(hir::ObjTy::Table(t)) => {
                        if m != "apply" {
                            self.err(member.span, format!("tables have no method `{m}`"));
                            return None;
                        }
                        self.arity(&args, 0, "apply", span)?;
                        if self.ctx.action_params.is_some() {
                            self.err(span, "tables cannot be applied inside an action");
                            return None;
                        }
                        if as_stmt {
                            Some(CallResult::Stmt(hir::StmtKind::Apply(t)))
                        } else {
                            Some(CallResult::Value(hir::Expr {
                                kind: ExprKind::TableHit(t, true),
                                ty: Ty::Object(hir::ObjTy::ApplyResult(t)),
                                span,
                            }))
                        }
                    }
                    Ty::Object(hir::ObjTy::Extern(x)) => self.extern_method(x, member, &args, span),
                    Ty::Stack(..) => {
                        self.err(
                            member.span,
                            format!("header stack method `{m}` is not supported"),
                        );
                        None
                    }
                    t => {
                        let tn = self.ty_name(&t);
                        self.err(member.span, format!("{tn} has no method `{m}`"));
                        None
                    }
                }
            }
            _ => {
                self.err(callee.span, "this expression cannot be called");
                None
            }
        }
    }

    fn extern_method(
        &mut self,
        x: usize,
        member: &ast::Ident,
        args: &[&ast::Expr],
        span: Span,
    ) -> Option<CallResult> {
        let m = member.name.as_str();
        let kind = self.externs[x].kind.clone();
        let call = match (&kind, m) {
            (hir::ExternKind::Counter { .. }, "count") => {
                self.arity(args, 1, "count", span)?;
                hir::Call::Count {
                    counter: x,
                    index: self.expect(args[0], &Ty::Bit(32))?,
                }
            }
            (hir::ExternKind::DirectCounter { .. }, "count") => {
                self.arity(args, 0, "count", span)?;
                if self.ctx.action_params.is_none() {
                    self.err(
                        span,
                        "a direct counter can only be counted inside an action of its table",
                    );
                    return None;
                }
                hir::Call::DirectCount(x)
            }
            (hir::ExternKind::Register { width, .. }, "read") => {
                self.arity(args, 2, "read", span)?;
                let dst = self.lvalue_of(args[0], Some(&Ty::Bit(*width)))?;
                let index = self.expect(args[1], &Ty::Bit(32))?;
                hir::Call::RegisterRead {
                    register: x,
                    dst,
                    index,
                }
            }
            (hir::ExternKind::Register { width, .. }, "write") => {
                self.arity(args, 2, "write", span)?;
                let index = self.expect(args[0], &Ty::Bit(32))?;
                let value = self.expect(args[1], &Ty::Bit(*width))?;
                hir::Call::RegisterWrite {
                    register: x,
                    index,
                    value,
                }
            }
            _ => {
                let n = self.externs[x].name.clone();
                self.err(member.span, format!("`{n}` has no method `{m}`"));
                return None;
            }
        };
        if self.ctx.in_parser {
            self.err(span, "extern methods cannot be called in a parser state");
            return None;
        }
        Some(CallResult::Stmt(hir::StmtKind::Call(call)))
    }

    fn action_call(&mut self, a: usize, args: &[&ast::Expr], span: Span) -> Option<CallResult> {
        if self.ctx.in_parser {
            self.err(span, "actions cannot be called from a parser");
            return None;
        }
        let params = self.actions[a].params.clone();
        let name = self.actions[a].name.clone();
        if args.len() != params.len() {
            self.err(
                span,
                format!(
                    "action `{name}` takes {} argument(s) but {} were given",
                    params.len(),
                    args.len()
                ),
            );
            return None;
        }
        let mut out = Vec::new();
        for (arg, p) in args.iter().zip(&params) {
            let e = self.expect(arg, &p.ty)?;
            if matches!(p.direction, Some(Direction::Out | Direction::InOut)) {
                self.check_lvalue(&e)?;
            }
            out.push(e);
        }
        Some(CallResult::Stmt(hir::StmtKind::Call(hir::Call::Action {
            action: a,
            args: out,
        })))
    }

    fn function_call(
        &mut self,
        f: Function,
        id: &ast::Ident,
        type_args: &[ast::TypeRef],
        args: &[&ast::Expr],
        span: Span,
    ) -> Option<CallResult> {
        let in_parser_only = matches!(f, Function::Verify);
        if in_parser_only != self.ctx.in_parser {
            if in_parser_only {
                self.err(span, "`verify` can only be called in a parser state");
            } else {
                self.err(
                    span,
                    format!("`{}` cannot be called in a parser state", id.name),
                );
            }
            return None;
        }
        let call = match f {
            Function::MarkToDrop => {
                self.arity(args, 1, "mark_to_drop", span)?;
                hir::Call::MarkToDrop(self.lvalue_of(args[0], Some(&Ty::Struct(0)))?)
            }
            Function::Clone => {
                self.arity(args, 2, "clone", span)?;
                let k = self.enum_arg(args[0], "CloneType")?;
                hir::Call::Clone {
                    ingress_to_egress: k == 0,
                    session: self.expect(args[1], &Ty::Bit(32))?,
                }
            }
            Function::Digest => {
                self.arity(args, 2, "digest", span)?;
                let receiver = self.expect(args[0], &Ty::Bit(32))?;
                let declared = match type_args.first() {
                    Some(t) => Some(self.resolve_type(t)?),
                    None => None,
                };
                let (struct_ty, fields) = match (&args[1].kind, declared) {
                    (ast::ExprKind::List(items), Some(Ty::Struct(s))) => {
                        let ftys: Vec<Ty> =
                            self.structs[s].fields.iter().map(|f| f.1.clone()).collect();
                        if items.len() != ftys.len() {
                            let sn = self.structs[s].name.clone();
                            self.err(
                                args[1].span,
                                format!(
                                    "struct {sn} has {} field(s) but the list has {}",
                                    ftys.len(),
                                    items.len()
                                ),
                            );
                            return None;
                        }
                        let mut out = Vec::new();
                        for (it, t) in items.iter().zip(&ftys) {
                            out.push(self.expect(it, t)?);
                        }
                        (s, out)
                    }
                    (ast::ExprKind::List(_), _) => {
                        self.err(args[1].span, "digest of a list needs the struct type: `digest<my_digest_t>(1, {...})`");
                        return None;
                    }
                    (_, declared) => {
                        let v = self.expr(args[1], None)?;
                        let Ty::Struct(s) = v.ty else {
                            let tn = self.ty_name(&v.ty);
                            self.err(
                                args[1].span,
                                format!("digest data must be a struct, not {tn}"),
                            );
                            return None;
                        };
                        if declared.is_some_and(|d| d != Ty::Struct(s)) {
                            self.err(
                                args[1].span,
                                "digest data does not have the declared struct type",
                            );
                            return None;
                        }
                        let n = self.structs[s].fields.len();
                        let fields = (0..n)
                            .map(|i| hir::Expr {
                                kind: ExprKind::Field(Box::new(v.clone()), i),
                                ty: self.structs[s].fields[i].1.clone(),
                                span: v.span,
                            })
                            .collect();
                        (s, fields)
                    }
                };
                if fields
                    .iter()
                    .any(|f| !matches!(f.ty, Ty::Bit(_) | Ty::Int(_) | Ty::Bool))
                {
                    self.err(
                        args[1].span,
                        "digest struct fields must be bit<W>, int<W> or bool",
                    );
                    return None;
                }
                hir::Call::Digest {
                    receiver,
                    struct_ty,
                    fields,
                }
            }
            Function::Hash => {
                self.arity(args, 5, "hash", span)?;
                let dst = self.lvalue_of(args[0], None)?;
                let Ty::Bit(w) = dst.ty else {
                    self.err(
                        args[0].span,
                        "the hash result must be a bit<W> field or variable",
                    );
                    return None;
                };
                let algo = self.hash_algo(args[1])?;
                let base = self.expr(args[2], None)?;
                let base = self.coerce(base, &Ty::Bit(w), args[2].span, true)?;
                let data = self.data_list(args[3])?;
                let max = self.expr(args[4], None)?;
                let max = match max.ty {
                    Ty::InfInt => self.coerce(max, &Ty::Bit(32), args[4].span, false)?,
                    Ty::Bit(_) => max,
                    _ => {
                        self.err(args[4].span, "the hash max must be bit<W>");
                        return None;
                    }
                };
                if matches!(max.kind, ExprKind::Const(0)) {
                    self.err(args[4].span, "the hash max must not be 0");
                    return None;
                }
                hir::Call::Hash {
                    dst,
                    algo,
                    base,
                    data,
                    max,
                }
            }
            Function::VerifyChecksum
            | Function::UpdateChecksum
            | Function::VerifyChecksumWithPayload
            | Function::UpdateChecksumWithPayload => {
                self.arity(args, 4, &id.name, span)?;
                let cond = self.expect(args[0], &Ty::Bool)?;
                let data = self.data_list(args[1])?;
                let checksum = self.lvalue_of(args[2], None)?;
                if !matches!(checksum.ty, Ty::Bit(_)) {
                    self.err(args[2].span, "the checksum must be a bit<W> field");
                    return None;
                }
                let algo = self.hash_algo(args[3])?;
                if !matches!(
                    algo,
                    hir::HashAlgo::Csum16 | hir::HashAlgo::Crc16 | hir::HashAlgo::Crc32
                ) {
                    self.err(
                        args[3].span,
                        "checksums support csum16, crc16 and crc32 only",
                    );
                    return None;
                }
                hir::Call::Checksum {
                    verify: matches!(
                        f,
                        Function::VerifyChecksum | Function::VerifyChecksumWithPayload
                    ),
                    with_payload: matches!(
                        f,
                        Function::VerifyChecksumWithPayload | Function::UpdateChecksumWithPayload
                    ),
                    cond,
                    data,
                    checksum,
                    algo,
                }
            }
            Function::Verify => {
                self.arity(args, 2, "verify", span)?;
                let cond = self.expect(args[0], &Ty::Bool)?;
                let error = self.expect(args[1], &Ty::Error)?;
                hir::Call::Verify { cond, error }
            }
            Function::Random => {
                self.arity(args, 3, "random", span)?;
                let dst = self.lvalue_of(args[0], None)?;
                if !matches!(dst.ty, Ty::Bit(_)) {
                    self.err(args[0].span, "random's result must be bit<W>");
                    return None;
                }
                let lo = self.expect(args[1], &dst.ty)?;
                let hi = self.expect(args[2], &dst.ty)?;
                hir::Call::Random { dst, lo, hi }
            }
            Function::Truncate => {
                self.arity(args, 1, "truncate", span)?;
                hir::Call::Truncate(self.expect(args[0], &Ty::Bit(32))?)
            }
            Function::Unsupported(n) => {
                self.err(id.span, format!("`{n}` is not supported by this compiler"));
                return None;
            }
        };
        Some(CallResult::Stmt(hir::StmtKind::Call(call)))
    }

    // ----- expressions ------------------------------------------------------------------------

    /// Checks `e` and converts it to `ty`, reporting a mismatch.
    fn expect(&mut self, e: &ast::Expr, ty: &Ty) -> Option<hir::Expr> {
        let x = self.expr(e, Some(ty))?;
        self.coerce(x, ty, e.span, false)
    }

    /// Implicit conversions: an unsized integer takes the expected width (it must fit unless
    /// `truncate`, which casts use).
    fn coerce(&mut self, x: hir::Expr, ty: &Ty, span: Span, truncate: bool) -> Option<hir::Expr> {
        if x.ty == *ty {
            return Some(x);
        }
        if let ExprKind::InfInt(v) = x.kind {
            match ty {
                Ty::Bit(w) | Ty::Int(w) => {
                    let m = mask(*w);
                    let fits = match ty {
                        Ty::Bit(_) => v >= 0 && (v as u128) <= m,
                        _ => {
                            let half = (m >> 1) as i128;
                            v >= -half - 1 && v <= half
                        }
                    };
                    if !fits && !truncate {
                        let tn = self.ty_name(ty);
                        self.err(span, format!("value {v} does not fit in {tn}"));
                        return None;
                    }
                    return Some(hir::Expr {
                        kind: ExprKind::Const((v as u128) & m),
                        ty: ty.clone(),
                        span: x.span,
                    });
                }
                Ty::InfInt => return Some(x),
                _ => {}
            }
        }
        let (want, found) = (self.ty_name(ty), self.ty_name(&x.ty));
        let msg = match (ty, &x.ty) {
            (Ty::Bit(_), Ty::Bit(_)) | (Ty::Int(_), Ty::Int(_)) => {
                format!("width mismatch: expected {want}, found {found}; use a cast")
            }
            _ => format!("type mismatch: expected {want}, found {found}"),
        };
        self.err(span, msg);
        None
    }

    fn const_value(&mut self, e: &ast::Expr, ty: &Ty) -> Option<u128> {
        // Sizes, indices and widths (`int` contexts) take constants of any integer type.
        let x = if *ty == Ty::InfInt {
            let x = self.expr(e, None)?;
            if !matches!(x.ty, Ty::InfInt | Ty::Bit(_)) {
                let tn = self.ty_name(&x.ty);
                self.err(e.span, format!("expected an integer constant, found {tn}"));
                return None;
            }
            x
        } else {
            self.expect(e, ty)?
        };
        match x.kind {
            ExprKind::Const(v) => Some(v),
            ExprKind::InfInt(v) if v >= 0 => Some(v as u128),
            ExprKind::Bool(b) => Some(b as u128),
            ExprKind::ErrorConst(i) => Some(i as u128),
            ExprKind::EnumConst(en, m) => Some(self.enums[en].members[m].1),
            _ => {
                self.err(e.span, "expected a non-negative compile-time constant");
                None
            }
        }
    }

    fn name_expr(&mut self, id: &ast::Ident, span: Span) -> Option<hir::Expr> {
        let mk = |kind, ty| Some(hir::Expr { kind, ty, span });
        match self.lookup_local(&id.name) {
            Some(Local::Param(i)) => return mk(ExprKind::Param(i), self.ctx.params[i].ty.clone()),
            Some(Local::Var(i)) => return mk(ExprKind::Var(i), self.vars[i].ty.clone()),
            Some(Local::ActionParam(i)) => {
                let t = self.ctx.action_params.as_ref().expect("in an action")[i]
                    .ty
                    .clone();
                return mk(ExprKind::ActionParam(i), t);
            }
            Some(Local::Const(e)) => return Some(hir::Expr { span, ..e }),
            Some(Local::Table(t)) => {
                return mk(ExprKind::InfInt(0), Ty::Object(hir::ObjTy::Table(t)))
            }
            Some(Local::ExternInst(x)) => {
                return mk(ExprKind::InfInt(0), Ty::Object(hir::ObjTy::Extern(x)))
            }
            Some(Local::Action(_)) => {
                self.err(
                    span,
                    format!("action `{}` must be called: `{}()`", id.name, id.name),
                );
                return None;
            }
            Some(Local::Poisoned) => return None,
            None => {}
        }
        match self.globals.get(&id.name).map(|s| s.0.clone()) {
            Some(Sym::Const(e)) => Some(hir::Expr { span, ..e }),
            Some(Sym::ExternInst(x)) => mk(ExprKind::InfInt(0), Ty::Object(hir::ObjTy::Extern(x))),
            Some(
                Sym::Header(_) | Sym::Struct(_) | Sym::Enum(_) | Sym::Typedef(_) | Sym::Extern(_),
            ) => {
                self.err(span, format!("`{}` is a type, not a value", id.name));
                None
            }
            Some(_) => {
                self.err(span, format!("`{}` is not a value", id.name));
                None
            }
            None => {
                self.err(span, format!("unknown name `{}`", id.name));
                None
            }
        }
    }

    fn expr(&mut self, e: &ast::Expr, expected: Option<&Ty>) -> Option<hir::Expr> {
        let span = e.span;
        let mk = |kind, ty| Some(hir::Expr { kind, ty, span });
        match &e.kind {
            ast::ExprKind::Int {
                value,
                width,
                signed,
            } => {
                match width {
                    Some(w) => {
                        let ty = if *signed { Ty::Int(*w) } else { Ty::Bit(*w) };
                        if *w == 0 || *w > 128 {
                            self.err(span, format!("width {w} is not supported: widths must be between 1 and 128 bits"));
                            return None;
                        }
                        let fits = if *signed {
                            *value <= mask(*w) >> 1 || *value == (mask(*w) >> 1) + 1
                        } else {
                            *value <= mask(*w)
                        };
                        if !fits {
                            let tn = self.ty_name(&ty);
                            self.err(span, format!("value {value} does not fit in {tn}"));
                            return None;
                        }
                        mk(ExprKind::Const(*value), ty)
                    }
                    None => {
                        if *value > i128::MAX as u128 {
                            self.err(span, "this integer is too large");
                            return None;
                        }
                        mk(ExprKind::InfInt(*value as i128), Ty::InfInt)
                    }
                }
            }
            ast::ExprKind::Bool(b) => mk(ExprKind::Bool(*b), Ty::Bool),
            ast::ExprKind::String(_) => {
                self.err(span, "strings are only allowed in annotations");
                None
            }
            ast::ExprKind::Name(id) => self.name_expr(id, span),
            ast::ExprKind::Member { base, member } => {
                // `error.X` and `Enum.X` name constants.
                if let ast::ExprKind::Name(b) = &base.kind {
                    if self.lookup_local(&b.name).is_none() {
                        if b.name == "error" {
                            return match self.errors.iter().position(|x| *x == member.name) {
                                Some(i) => mk(ExprKind::ErrorConst(i), Ty::Error),
                                None => {
                                    self.err(
                                        member.span,
                                        format!("unknown error `{}`", member.name),
                                    );
                                    None
                                }
                            };
                        }
                        if let Some((Sym::Enum(en), _)) = self.globals.get(&b.name) {
                            let en = *en;
                            return match self.enums[en]
                                .members
                                .iter()
                                .position(|x| x.0 == member.name)
                            {
                                Some(i) => {
                                    let ty = Ty::Enum(en);
                                    mk(ExprKind::EnumConst(en, i), ty)
                                }
                                None => {
                                    let n = self.enums[en].name.clone();
                                    self.err(
                                        member.span,
                                        format!("enum {n} has no member `{}`", member.name),
                                    );
                                    None
                                }
                            };
                        }
                    }
                }
                let b = self.expr(base, None)?;
                self.member(b, member, span)
            }
            ast::ExprKind::Index { base, index } => {
                let b = self.expr(base, None)?;
                let Ty::Stack(h, n) = b.ty else {
                    let tn = self.ty_name(&b.ty);
                    self.err(
                        base.span,
                        format!("{tn} cannot be indexed; only header stacks can"),
                    );
                    return None;
                };
                let i = self.const_value(index, &Ty::InfInt)?;
                if i >= n as u128 {
                    self.err(
                        index.span,
                        format!("index {i} is out of bounds for a stack of size {n}"),
                    );
                    return None;
                }
                mk(ExprKind::StackElem(Box::new(b), i as u32), Ty::Header(h))
            }
            ast::ExprKind::Slice { base, hi, lo } => {
                let b = self.expr(base, None)?;
                let w = match b.ty {
                    Ty::Bit(w) | Ty::Int(w) => w,
                    _ => {
                        let tn = self.ty_name(&b.ty);
                        self.err(
                            base.span,
                            format!("{tn} cannot be sliced; only bit<W> and int<W> can"),
                        );
                        return None;
                    }
                };
                let h = self.const_value(hi, &Ty::InfInt)?;
                let l = self.const_value(lo, &Ty::InfInt)?;
                if h < l || h >= w as u128 {
                    self.err(
                        span,
                        format!("slice [{h}:{l}] is out of range for a {w}-bit value"),
                    );
                    return None;
                }
                let (h, l) = (h as u32, l as u32);
                let ty = Ty::Bit(h - l + 1);
                if let ExprKind::Const(v) = b.kind {
                    return mk(ExprKind::Const((v >> l) & mask(h - l + 1)), ty);
                }
                mk(ExprKind::Slice(Box::new(b), h, l), ty)
            }
            ast::ExprKind::Call {
                callee,
                type_args,
                args,
            } => match self.call(callee, type_args, args, span, false)? {
                CallResult::Value(v) => Some(v),
                CallResult::Stmt(_) => {
                    self.err(span, "this call returns no value");
                    None
                }
            },
            ast::ExprKind::Unary { op, expr } => {
                let x = self.expr(expr, expected)?;
                match op {
                    UnOp::Not => {
                        let x = self.coerce(x, &Ty::Bool, expr.span, false)?;
                        if let ExprKind::Bool(b) = x.kind {
                            return mk(ExprKind::Bool(!b), Ty::Bool);
                        }
                        mk(ExprKind::Unary(UnOp::Not, Box::new(x)), Ty::Bool)
                    }
                    UnOp::BitNot | UnOp::Neg => {
                        let ty = x.ty.clone();
                        match (&ty, &x.kind) {
                            (Ty::InfInt, ExprKind::InfInt(v)) => {
                                if *op == UnOp::BitNot {
                                    self.err(
                                        span,
                                        "`~` needs a sized operand; cast the constant to bit<W>",
                                    );
                                    return None;
                                }
                                mk(ExprKind::InfInt(-v), ty)
                            }
                            (Ty::Bit(w) | Ty::Int(w), ExprKind::Const(v)) => {
                                let r = if *op == UnOp::BitNot {
                                    !v
                                } else {
                                    v.wrapping_neg()
                                };
                                mk(ExprKind::Const(r & mask(*w)), ty)
                            }
                            (Ty::Bit(_) | Ty::Int(_), _) => {
                                mk(ExprKind::Unary(*op, Box::new(x)), ty)
                            }
                            _ => {
                                let tn = self.ty_name(&ty);
                                self.err(
                                    span,
                                    format!(
                                        "`{}` cannot be applied to {tn}",
                                        if *op == UnOp::Neg { "-" } else { "~" }
                                    ),
                                );
                                None
                            }
                        }
                    }
                }
            }
            ast::ExprKind::Binary { op, lhs, rhs } => self.binary(*op, lhs, rhs, span, expected),
            ast::ExprKind::Ternary {
                cond,
                then,
                otherwise,
            } => {
                let c = self.expect(cond, &Ty::Bool)?;
                let t = self.expr(then, expected)?;
                let o = self.expr(otherwise, expected)?;
                let (t, o) = self.unify(t, o, then.span, otherwise.span, "?:")?;
                if let ExprKind::Bool(b) = c.kind {
                    return Some(if b { t } else { o });
                }
                let ty = t.ty.clone();
                if ty == Ty::InfInt {
                    self.err(span, "the branches of `?:` need a width; cast one of them");
                    return None;
                }
                mk(ExprKind::Ternary(Box::new(c), Box::new(t), Box::new(o)), ty)
            }
            ast::ExprKind::Cast { ty, expr } => {
                let target = self.resolve_type(ty)?;
                let x = self.expr(expr, None)?;
                self.cast(x, target, span)
            }
            ast::ExprKind::List(items) => {
                let mut xs = Vec::new();
                for it in items {
                    xs.push(self.expr(it, None)?);
                }
                let tys = xs.iter().map(|x| x.ty.clone()).collect();
                mk(ExprKind::List(xs), Ty::List(tys))
            }
            ast::ExprKind::DontCare => {
                self.err(span, "`_` is not supported here");
                None
            }
        }
    }

    fn member(&mut self, b: hir::Expr, member: &ast::Ident, span: Span) -> Option<hir::Expr> {
        let mk = |kind, ty| Some(hir::Expr { kind, ty, span });
        match b.ty.clone() {
            Ty::Header(h) => match self.headers[h].field(&member.name) {
                Some((i, w, signed)) => {
                    let ty = if signed { Ty::Int(w) } else { Ty::Bit(w) };
                    mk(ExprKind::Field(Box::new(b), i), ty)
                }
                None => {
                    let hn = self.headers[h].name.clone();
                    if matches!(member.name.as_str(), "isValid" | "setValid" | "setInvalid") {
                        self.err(
                            member.span,
                            format!(
                                "method `{}` must be called: `{}()`",
                                member.name, member.name
                            ),
                        );
                    } else {
                        self.err(
                            member.span,
                            format!("header {hn} has no field `{}`", member.name),
                        );
                    }
                    None
                }
            },
            Ty::Struct(s) => match self.structs[s]
                .fields
                .iter()
                .position(|f| f.0 == member.name)
            {
                Some(i) => {
                    let ty = self.structs[s].fields[i].1.clone();
                    mk(ExprKind::Field(Box::new(b), i), ty)
                }
                None => {
                    let sn = self.structs[s].name.clone();
                    self.err(
                        member.span,
                        format!("struct {sn} has no field `{}`", member.name),
                    );
                    None
                }
            },
            Ty::Stack(_, n) if member.name == "size" => mk(ExprKind::InfInt(n as i128), Ty::InfInt),
            Ty::Stack(..) => {
                self.err(
                    member.span,
                    format!("header stack member `{}` is not supported", member.name),
                );
                None
            }
            Ty::Object(hir::ObjTy::ApplyResult(t)) => match member.name.as_str() {
                "hit" => mk(ExprKind::TableHit(t, true), Ty::Bool),
                "miss" => mk(ExprKind::TableHit(t, false), Ty::Bool),
                "action_run" => {
                    self.err(
                        member.span,
                        "`action_run` can only be used as the expression of a switch",
                    );
                    None
                }
                other => {
                    self.err(
                        member.span,
                        format!("a table apply result has no member `{other}`"),
                    );
                    None
                }
            },
            t => {
                let tn = self.ty_name(&t);
                self.err(member.span, format!("{tn} has no member `{}`", member.name));
                None
            }
        }
    }

    fn unify(
        &mut self,
        a: hir::Expr,
        b: hir::Expr,
        sa: Span,
        sb: Span,
        op: &str,
    ) -> Option<(hir::Expr, hir::Expr)> {
        if a.ty == b.ty {
            return Some((a, b));
        }
        if a.ty == Ty::InfInt {
            let t = b.ty.clone();
            return Some((self.coerce(a, &t, sa, false)?, b));
        }
        if b.ty == Ty::InfInt {
            let t = a.ty.clone();
            return Some((a, self.coerce(b, &t, sb, false)?));
        }
        let (ta, tb) = (self.ty_name(&a.ty), self.ty_name(&b.ty));
        let msg = match (&a.ty, &b.ty) {
            (Ty::Bit(_), Ty::Bit(_)) | (Ty::Int(_), Ty::Int(_)) => {
                format!("width mismatch: the operands of `{op}` are {ta} and {tb}; use a cast")
            }
            _ => format!("type mismatch: the operands of `{op}` are {ta} and {tb}"),
        };
        self.err(sa.to(sb), msg);
        None
    }

    fn binary(
        &mut self,
        op: BinOp,
        lhs: &ast::Expr,
        rhs: &ast::Expr,
        span: Span,
        expected: Option<&Ty>,
    ) -> Option<hir::Expr> {
        let mk = |kind, ty| Some(hir::Expr { kind, ty, span });
        let os = op_str(op);
        match op {
            BinOp::And | BinOp::Or => {
                let l = self.expect(lhs, &Ty::Bool)?;
                let r = self.expect(rhs, &Ty::Bool)?;
                if let (ExprKind::Bool(a), ExprKind::Bool(b)) = (&l.kind, &r.kind) {
                    return mk(
                        ExprKind::Bool(if op == BinOp::And { *a && *b } else { *a || *b }),
                        Ty::Bool,
                    );
                }
                mk(ExprKind::Binary(op, Box::new(l), Box::new(r)), Ty::Bool)
            }
            BinOp::Concat => {
                let l = self.expr(lhs, None)?;
                let r = self.expr(rhs, None)?;
                let (Ty::Bit(a) | Ty::Int(a), Ty::Bit(b) | Ty::Int(b)) =
                    (l.ty.clone(), r.ty.clone())
                else {
                    self.err(
                        span,
                        "both operands of `++` must be sized bit<W> values; cast unsized constants",
                    );
                    return None;
                };
                if a + b > 128 {
                    self.err(span, "the result of `++` would be wider than 128 bits");
                    return None;
                }
                let ty = Ty::Bit(a + b);
                if let (ExprKind::Const(x), ExprKind::Const(y)) = (&l.kind, &r.kind) {
                    return mk(ExprKind::Const((x << b) | y), ty);
                }
                mk(ExprKind::Concat(Box::new(l), Box::new(r)), ty)
            }
            BinOp::Shl | BinOp::Shr => {
                let l = self.expr(lhs, expected)?;
                let r = self.expr(rhs, None)?;
                if !matches!(l.ty, Ty::Bit(_) | Ty::Int(_) | Ty::InfInt) {
                    let tn = self.ty_name(&l.ty);
                    self.err(lhs.span, format!("`{os}` cannot shift {tn}"));
                    return None;
                }
                let amount = match (&r.ty, &r.kind) {
                    (Ty::InfInt, ExprKind::InfInt(v)) if *v >= 0 => Some(*v as u128),
                    (Ty::Bit(_), ExprKind::Const(v)) => Some(*v),
                    (Ty::Bit(_), _) => None,
                    _ => {
                        self.err(rhs.span, "a shift amount must be unsigned");
                        return None;
                    }
                };
                match (&l.kind, amount) {
                    (ExprKind::InfInt(v), Some(n)) => {
                        let n = n.min(127) as u32;
                        let r = if op == BinOp::Shl {
                            v.checked_shl(n)
                        } else {
                            Some(v >> n)
                        };
                        match r {
                            Some(r) => mk(ExprKind::InfInt(r), Ty::InfInt),
                            None => {
                                self.err(span, "constant overflow");
                                None
                            }
                        }
                    }
                    (ExprKind::InfInt(_), None) => {
                        self.err(lhs.span, "shifting an unsized constant by a run-time amount needs a width; cast the constant");
                        None
                    }
                    (ExprKind::Const(v), Some(n)) => {
                        let w = l.ty.width().unwrap_or(128);
                        let r = if n >= 128 {
                            0
                        } else if op == BinOp::Shl {
                            v << n
                        } else {
                            v >> n
                        };
                        mk(ExprKind::Const(r & mask(w)), l.ty.clone())
                    }
                    _ => {
                        let ty = l.ty.clone();
                        let r = if r.ty == Ty::InfInt {
                            self.coerce(r, &Ty::Bit(8), rhs.span, true)?
                        } else {
                            r
                        };
                        mk(ExprKind::Binary(op, Box::new(l), Box::new(r)), ty)
                    }
                }
            }
            _ => {
                let l = self.expr(lhs, expected)?;
                let r = self.expr(rhs, expected)?;
                let (l, r) = self.unify(l, r, lhs.span, rhs.span, os)?;
                let ty = l.ty.clone();
                let is_cmp = matches!(
                    op,
                    BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge | BinOp::Eq | BinOp::Ne
                );
                let numeric = matches!(ty, Ty::Bit(_) | Ty::Int(_) | Ty::InfInt);
                let ok = if matches!(op, BinOp::Eq | BinOp::Ne) {
                    numeric || matches!(ty, Ty::Bool | Ty::Error | Ty::Enum(_))
                } else {
                    numeric
                };
                if !ok {
                    let tn = self.ty_name(&ty);
                    self.err(span, format!("`{os}` cannot be applied to {tn}"));
                    return None;
                }
                if matches!(op, BinOp::AddSat | BinOp::SubSat) {
                    self.err(span, format!("saturating `{os}` is not supported"));
                    return None;
                }
                let rty = if is_cmp { Ty::Bool } else { ty.clone() };
                if let Some(v) = fold(op, &l, &r) {
                    return match v {
                        Folded::Int(v) => mk(ExprKind::InfInt(v), rty),
                        Folded::Bits(v) => mk(ExprKind::Const(v), rty),
                        Folded::Bool(b) => mk(ExprKind::Bool(b), Ty::Bool),
                        Folded::Error(m) => {
                            self.err(span, m);
                            None
                        }
                    };
                }
                if ty == Ty::InfInt {
                    self.err(
                        span,
                        "this expression needs a width; cast a constant to bit<W>",
                    );
                    return None;
                }
                mk(ExprKind::Binary(op, Box::new(l), Box::new(r)), rty)
            }
        }
    }

    fn cast(&mut self, x: hir::Expr, target: Ty, span: Span) -> Option<hir::Expr> {
        let mk = |kind, ty| Some(hir::Expr { kind, ty, span });
        if x.ty == target {
            return Some(hir::Expr { span, ..x });
        }
        match (&x.ty, &target) {
            (Ty::InfInt, Ty::Bit(_) | Ty::Int(_)) => {
                let e = self.coerce(x, &target, span, true)?;
                Some(hir::Expr { span, ..e })
            }
            (Ty::Bit(_) | Ty::Int(_), Ty::Bit(w) | Ty::Int(w)) => {
                if let ExprKind::Const(v) = x.kind {
                    let from = x.ty.width().unwrap_or(128);
                    // Sign-extend int<W> sources.
                    let v =
                        if matches!(x.ty, Ty::Int(_)) && from < 128 && (v >> (from - 1)) & 1 == 1 {
                            v | !mask(from)
                        } else {
                            v
                        };
                    return mk(ExprKind::Const(v & mask(*w)), target);
                }
                mk(ExprKind::Cast(Box::new(x)), target)
            }
            (Ty::Bool, Ty::Bit(1)) => match x.kind {
                ExprKind::Bool(b) => mk(ExprKind::Const(b as u128), target),
                _ => mk(ExprKind::Cast(Box::new(x)), target),
            },
            (Ty::Bit(1), Ty::Bool) => match x.kind {
                ExprKind::Const(v) => mk(ExprKind::Bool(v == 1), target),
                _ => mk(ExprKind::Cast(Box::new(x)), target),
            },
            (Ty::Enum(en), Ty::Bit(w)) if self.enums[*en].underlying == Some(*w) => match x.kind {
                ExprKind::EnumConst(e, m) => {
                    mk(ExprKind::Const(self.enums[e].members[m].1), target)
                }
                _ => mk(ExprKind::Cast(Box::new(x)), target),
            },
            _ => {
                let (a, b) = (self.ty_name(&x.ty), self.ty_name(&target));
                self.err(span, format!("cannot cast {a} to {b}"));
                None
            }
        }
    }
}

enum CallResult {
    Stmt(hir::StmtKind),
    Value(hir::Expr),
}

enum Folded {
    Int(i128),
    Bits(u128),
    Bool(bool),
    Error(String),
}

fn is_const(e: &hir::Expr) -> bool {
    matches!(
        e.kind,
        ExprKind::Const(_)
            | ExprKind::InfInt(_)
            | ExprKind::Bool(_)
            | ExprKind::ErrorConst(_)
            | ExprKind::EnumConst(..)
    )
}

fn is_value_type(t: &Ty) -> bool {
    matches!(
        t,
        Ty::Bool
            | Ty::Bit(_)
            | Ty::Int(_)
            | Ty::InfInt
            | Ty::Error
            | Ty::Header(_)
            | Ty::Struct(_)
            | Ty::Stack(..)
            | Ty::Enum(_)
    )
}

/// Folds a binary operation on two constants of the same (already unified) type.
fn fold(op: BinOp, l: &hir::Expr, r: &hir::Expr) -> Option<Folded> {
    use std::cmp::Ordering;
    let cmp = |o: Ordering| match op {
        BinOp::Lt => Some(o == Ordering::Less),
        BinOp::Le => Some(o != Ordering::Greater),
        BinOp::Gt => Some(o == Ordering::Greater),
        BinOp::Ge => Some(o != Ordering::Less),
        BinOp::Eq => Some(o == Ordering::Equal),
        BinOp::Ne => Some(o != Ordering::Equal),
        _ => None,
    };
    match (&l.kind, &r.kind) {
        (ExprKind::InfInt(a), ExprKind::InfInt(b)) => {
            if let Some(c) = cmp(a.cmp(b)) {
                return Some(Folded::Bool(c));
            }
            let v = match op {
                BinOp::Add => a.checked_add(*b),
                BinOp::Sub => a.checked_sub(*b),
                BinOp::Mul => a.checked_mul(*b),
                BinOp::Div | BinOp::Mod if *b == 0 => {
                    return Some(Folded::Error("division by zero".into()))
                }
                BinOp::Div => a.checked_div(*b),
                BinOp::Mod => a.checked_rem(*b),
                BinOp::BitAnd => Some(a & b),
                BinOp::BitOr => Some(a | b),
                BinOp::BitXor => Some(a ^ b),
                _ => return None,
            };
            Some(v.map_or(Folded::Error("constant overflow".into()), Folded::Int))
        }
        (ExprKind::Const(a), ExprKind::Const(b)) if matches!(l.ty, Ty::Bit(_)) => {
            let w = l.ty.width().unwrap_or(128);
            if let Some(c) = cmp(a.cmp(b)) {
                return Some(Folded::Bool(c));
            }
            let v = match op {
                BinOp::Add => a.wrapping_add(*b),
                BinOp::Sub => a.wrapping_sub(*b),
                BinOp::Mul => a.wrapping_mul(*b),
                BinOp::Div | BinOp::Mod if *b == 0 => {
                    return Some(Folded::Error("division by zero".into()))
                }
                BinOp::Div => a / b,
                BinOp::Mod => a % b,
                BinOp::BitAnd => a & b,
                BinOp::BitOr => a | b,
                BinOp::BitXor => a ^ b,
                _ => return None,
            };
            Some(Folded::Bits(v & mask(w)))
        }
        (ExprKind::Bool(a), ExprKind::Bool(b)) => match op {
            BinOp::Eq => Some(Folded::Bool(a == b)),
            BinOp::Ne => Some(Folded::Bool(a != b)),
            _ => None,
        },
        (ExprKind::ErrorConst(a), ExprKind::ErrorConst(b)) => cmp(a.cmp(b)).map(Folded::Bool),
        _ => None,
    }
}

fn keyset_span(ks: &ast::Keyset) -> Span {
    match ks {
        ast::Keyset::Default(s) | ast::Keyset::DontCare(s) => *s,
        ast::Keyset::Expr(e) => e.span,
        ast::Keyset::Mask(a, b) | ast::Keyset::Range(a, b) => a.span.to(b.span),
    }
}

/// The source form of a key expression, as p4c names match fields: `h.ip.src`, `h.ip.isValid()`.
pub fn expr_source(e: &ast::Expr) -> String {
    match &e.kind {
        ast::ExprKind::Name(id) => id.name.clone(),
        ast::ExprKind::Member { base, member } => format!("{}.{}", expr_source(base), member.name),
        ast::ExprKind::Index { base, index } => {
            format!("{}[{}]", expr_source(base), expr_source(index))
        }
        ast::ExprKind::Slice { base, hi, lo } => {
            format!(
                "{}[{}:{}]",
                expr_source(base),
                expr_source(hi),
                expr_source(lo)
            )
        }
        ast::ExprKind::Call { callee, args, .. } if args.is_empty() => {
            format!("{}()", expr_source(callee))
        }
        ast::ExprKind::Int { value, .. } => value.to_string(),
        _ => "key".to_string(),
    }
}

fn inst_span(i: &ast::Instantiation) -> Span {
    i.ty.span.to(i.name.span)
}
