//! The bmv2 back end: lowers a checked program to the JSON that bmv2's simple_switch loads
//! (bmv2 docs/JSON_format.md, version 2.23), following p4c's conventions: header instances
//! named after struct fields, metadata and locals as fields of a `scalars` header, fully
//! qualified table and action names, straight-line code wrapped in `tbl_*` tables with one
//! constant default action, conditionals named `node_N`.
//!
//! Owns: storage layout, expression and primitive encoding, the control-flow graph of
//! pipelines, parser states, checksums, deparser order. Must not touch: names or types (the
//! checker resolved them) or P4Info.

use std::collections::{HashMap, HashSet};

use serde_json::{json, Value};

use super::builtins;
use super::diag::{line_col, Diagnostic, Diagnostics, Span};
use super::hir::{self, mask, BinOp, ExprKind, ParamRole, Ty, UnOp};

/// Lowers `p` to bmv2 JSON. `source` and `file_name` feed `source_info`.
pub fn lower(p: &hir::Program, file_name: &str, source: &str) -> Result<Value, Diagnostics> {
    let mut l = Lowering::new(p, file_name, source);
    l.run();
    if l.diags.is_empty() {
        Ok(l.finish())
    } else {
        Err(Diagnostics(l.diags))
    }
}

/// Where a value of the program lives in bmv2.
#[derive(Clone, Debug)]
enum Place {
    /// A field: (header instance, field name).
    Field(String, String),
    Header(String),
    /// A header stack's element instances.
    Stack(Vec<String>),
    /// A struct, field by field.
    Struct(Vec<Place>),
    /// Action data (index into `runtime_data`).
    RuntimeData(usize),
}

/// A lowered data value: a leaf type-value object, or an expression node `{op, left, right}`.
#[derive(Clone, Debug)]
enum V {
    Leaf(Value),
    Op(Value),
}

/// How an action's parameters are bound while its body is lowered.
#[derive(Clone)]
enum Binding {
    RuntimeData(usize),
    /// A direct call's argument, evaluated in the caller's environment.
    Arg(hir::Expr, Env),
}

#[derive(Clone, Default)]
struct Env(std::rc::Rc<Vec<Binding>>);

/// Primitives of the action being built, with pending `return` jumps per inlined action.
struct ActionBuf {
    prims: Vec<Value>,
    /// Indices of `_jump` primitives to patch to the end of each open (inlined) action body.
    returns: Vec<Vec<usize>>,
}

struct Lowering<'a> {
    p: &'a hir::Program,
    file_name: &'a str,
    source: &'a str,
    diags: Vec<Diagnostic>,
    // storage
    scalars: Vec<(String, u32, bool)>,
    names: HashSet<String>,
    headers: Vec<Value>,
    stacks: Vec<Value>,
    headers_place: Option<Place>,
    meta_place: Option<Place>,
    var_places: HashMap<usize, Place>,
    // output
    actions: Vec<Value>,
    /// JSON id of each program action used by a table.
    action_ids: HashMap<usize, usize>,
    tables: Vec<Value>,
    conditionals: Vec<Value>,
    calculations: Vec<Value>,
    checksums: Vec<Value>,
    learn_lists: Vec<Value>,
    /// Struct type → (learn list id, temporaries holding its fields).
    digests: HashMap<usize, (usize, Vec<String>)>,
    need_clone_field_list: bool,
    table_names: HashSet<String>,
    /// Program tables already placed in a pipeline.
    placed: HashSet<usize>,
    node_counter: usize,
    /// The block whose parameters expressions refer to.
    block_params: Vec<hir::BlockParam>,
    lowered: Lowered,
}

/// A hexstring of `v` padded to whole bytes of `w` bits, as p4c writes them.
fn hex(v: u128, w: u32) -> String {
    let digits = (w.max(1).div_ceil(8) * 2) as usize;
    format!("0x{:0digits$x}", v & mask(w))
}

fn hexstr(v: u128, w: u32) -> Value {
    json!({"type": "hexstr", "value": hex(v, w)})
}

fn op(o: &str, left: Option<Value>, right: Value) -> V {
    V::Op(json!({"op": o, "left": left, "right": right}))
}

impl V {
    /// As an operand inside an expression node (action data becomes `local`).
    fn operand(self) -> Value {
        match self {
            V::Leaf(v) if v["type"] == "runtime_data" => {
                json!({"type": "local", "value": v["value"]})
            }
            V::Leaf(v) => v,
            V::Op(o) => json!({"type": "expression", "value": o}),
        }
    }
    /// As a primitive parameter (expressions are wrapped twice, as p4c does).
    fn param(self) -> Value {
        match self {
            V::Leaf(v) => v,
            V::Op(o) => json!({"type": "expression", "value": {"type": "expression", "value": o}}),
        }
    }
}

impl<'a> Lowering<'a> {
    fn new(p: &'a hir::Program, file_name: &'a str, source: &'a str) -> Self {
        Lowering {
            p,
            file_name,
            source,
            diags: Vec::new(),
            scalars: Vec::new(),
            names: ["scalars", "standard_metadata"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            headers: Vec::new(),
            stacks: Vec::new(),
            headers_place: None,
            meta_place: None,
            var_places: HashMap::new(),
            actions: Vec::new(),
            action_ids: HashMap::new(),
            tables: Vec::new(),
            conditionals: Vec::new(),
            calculations: Vec::new(),
            checksums: Vec::new(),
            learn_lists: Vec::new(),
            digests: HashMap::new(),
            need_clone_field_list: false,
            table_names: HashSet::new(),
            placed: HashSet::new(),
            node_counter: 0,
            block_params: Vec::new(),
            lowered: Lowered::default(),
        }
    }

    fn err(&mut self, span: Span, msg: impl Into<String>) {
        self.diags.push(Diagnostic::error(span, msg));
    }

    fn source_info(&self, span: Span) -> Value {
        let (line, col, _) = line_col(self.source, span.lo);
        let text = self
            .source
            .get(span.lo as usize..(span.hi as usize).min(self.source.len()))
            .unwrap_or("");
        let mut lines = text.lines();
        let first = lines.next().unwrap_or("").trim_end();
        let fragment = if lines.next().is_some() {
            format!("{first} ...")
        } else {
            first.to_string()
        };
        // p4c counts columns from 0.
        json!({"filename": self.file_name, "line": line, "column": col - 1, "source_fragment": fragment})
    }

    // ----- storage ------------------------------------------------------------------------

    fn unique(&mut self, base: &str) -> String {
        if self.names.insert(base.to_string()) {
            return base.to_string();
        }
        (0..)
            .map(|i| format!("{base}_{i}"))
            .find(|n| self.names.insert(n.clone()))
            .expect("an unused name exists")
    }

    fn scalar(&mut self, name: &str, w: u32, signed: bool) -> Place {
        let n = self.unique(name);
        self.scalars.push((n.clone(), w, signed));
        Place::Field("scalars".into(), n)
    }

    fn header_instance(&mut self, name: &str, h: usize, metadata: bool) -> String {
        let n = self.unique(name);
        let id = self.headers.len() + 2;
        self.headers.push(json!({
            "name": n, "id": id, "header_type": self.p.headers[h].name,
            "metadata": metadata, "pi_omit": true
        }));
        n
    }

    /// Allocates storage for a value of type `ty`. Scalars are named `scalar_name`, header
    /// instances `inst_name`.
    fn alloc(&mut self, ty: &Ty, scalar_name: &str, inst_name: &str) -> Place {
        match ty {
            Ty::Bool => self.scalar(scalar_name, 1, false),
            Ty::Bit(w) => self.scalar(scalar_name, *w, false),
            Ty::Int(w) => self.scalar(scalar_name, *w, true),
            Ty::Error => self.scalar(scalar_name, 32, false),
            Ty::Enum(e) => {
                let w = self.p.enums[*e].underlying.unwrap_or(32);
                self.scalar(scalar_name, w, false)
            }
            Ty::Header(h) => Place::Header(self.header_instance(inst_name, *h, false)),
            Ty::Stack(h, n) => {
                let name = self.unique(inst_name);
                let elems: Vec<String> = (0..*n)
                    .map(|i| self.header_instance(&format!("{name}[{i}]"), *h, false))
                    .collect();
                let ids: Vec<Value> = elems
                    .iter()
                    .map(|e| {
                        self.headers
                            .iter()
                            .find(|x| x["name"] == *e)
                            .map_or(Value::Null, |x| x["id"].clone())
                    })
                    .collect();
                let id = self.stacks.len();
                self.stacks.push(json!({
                    "name": name, "id": id, "header_type": self.p.headers[*h].name, "header_ids": ids
                }));
                Place::Stack(elems)
            }
            Ty::Struct(s) if self.p.structs[*s].is_standard_metadata => Place::Struct(
                builtins::STANDARD_METADATA
                    .iter()
                    .map(|(f, _)| Place::Field("standard_metadata".into(), f.to_string()))
                    .collect(),
            ),
            Ty::Struct(s) => {
                let st = &self.p.structs[*s];
                let fields = st.fields.clone();
                let inst_prefix = if inst_name.is_empty() {
                    String::new()
                } else {
                    format!("{inst_name}_")
                };
                Place::Struct(
                    fields
                        .iter()
                        .map(|(f, t)| {
                            self.alloc(
                                t,
                                &format!("{scalar_name}.{f}"),
                                &format!("{inst_prefix}{f}"),
                            )
                        })
                        .collect(),
                )
            }
            // The checker only lets value types reach storage.
            _ => Place::Struct(Vec::new()),
        }
    }

    fn var_place(&mut self, v: usize) -> Place {
        if let Some(p) = self.var_places.get(&v) {
            return p.clone();
        }
        let var = &self.p.vars[v];
        let (name, ty) = (var.name.clone(), var.ty.clone());
        let place = self.alloc(&ty, &name, &name);
        self.var_places.insert(v, place.clone());
        place
    }

    fn temp(&mut self, w: u32) -> Place {
        self.scalar("tmp", w, false)
    }

    // ----- expressions -----------------------------------------------------------------------

    fn place(&mut self, e: &hir::Expr, env: &Env) -> Option<Place> {
        match &e.kind {
            ExprKind::Param(i) => match self.block_params[*i].role {
                Some(ParamRole::Headers) => self.headers_place.clone(),
                Some(ParamRole::Meta) => self.meta_place.clone(),
                Some(ParamRole::StandardMetadata) => Some(self.alloc(&Ty::Struct(0), "", "")),
                _ => None,
            },
            ExprKind::Var(v) => Some(self.var_place(*v)),
            ExprKind::ActionParam(i) => match env.0.get(*i)? {
                Binding::RuntimeData(r) => Some(Place::RuntimeData(*r)),
                Binding::Arg(a, outer) => {
                    let (a, outer) = (a.clone(), outer.clone());
                    self.place(&a, &outer)
                }
            },
            ExprKind::Field(b, i) => {
                let bt = b.ty.clone();
                match self.place(b, env)? {
                    Place::Struct(fs) => fs.get(*i).cloned(),
                    Place::Header(inst) => {
                        let Ty::Header(h) = bt else { return None };
                        Some(Place::Field(inst, self.p.headers[h].fields[*i].0.clone()))
                    }
                    _ => None,
                }
            }
            ExprKind::StackElem(b, i) => match self.place(b, env)? {
                Place::Stack(elems) => elems.get(*i as usize).cloned().map(Place::Header),
                _ => None,
            },
            _ => None,
        }
    }

    fn field_leaf(p: &Place) -> Option<Value> {
        match p {
            Place::Field(h, f) => Some(json!({"type": "field", "value": [h, f]})),
            Place::RuntimeData(i) => Some(json!({"type": "runtime_data", "value": i})),
            _ => None,
        }
    }

    fn unsupported(&mut self, span: Span, what: &str) -> Option<V> {
        self.err(
            span,
            format!("{what} is not supported by the bmv2 back end"),
        );
        None
    }

    /// Wraps an arithmetic result back into the width of `ty`.
    fn wrap(v: V, ty: &Ty) -> V {
        match ty {
            Ty::Int(w) => op(
                "two_comp_mod",
                Some(v.operand()),
                json!({"type": "hexstr", "value": format!("0x{w:x}")}),
            ),
            t => op(
                "&",
                Some(v.operand()),
                hexstr(mask(t.width().unwrap_or(128)), t.width().unwrap_or(128)),
            ),
        }
    }

    fn const_leaf(v: u128, ty: &Ty) -> Value {
        match ty {
            Ty::Int(w) if *w < 128 && (v >> (w - 1)) & 1 == 1 => {
                let neg = (!v & mask(*w)) + 1;
                json!({"type": "hexstr", "value": format!("-{}", hex(neg, *w))})
            }
            t => hexstr(v, t.width().unwrap_or(32)),
        }
    }

    /// A data (non-boolean) value.
    fn data(&mut self, e: &hir::Expr, env: &Env) -> Option<V> {
        let ty = &e.ty;
        match &e.kind {
            ExprKind::Const(v) => Some(V::Leaf(Self::const_leaf(*v, ty))),
            ExprKind::InfInt(v) => Some(V::Leaf(if *v < 0 {
                json!({"type": "hexstr", "value": format!("-0x{:x}", v.unsigned_abs())})
            } else {
                json!({"type": "hexstr", "value": format!("0x{:x}", v)})
            })),
            ExprKind::ErrorConst(i) => Some(V::Leaf(
                json!({"type": "hexstr", "value": format!("0x{i:x}")}),
            )),
            ExprKind::EnumConst(en, m) => {
                let en = &self.p.enums[*en];
                Some(V::Leaf(hexstr(
                    en.members[*m].1,
                    en.underlying.unwrap_or(32),
                )))
            }
            ExprKind::Param(_)
            | ExprKind::Var(_)
            | ExprKind::ActionParam(_)
            | ExprKind::Field(..)
            | ExprKind::StackElem(..) => {
                let p = self.place(e, env)?;
                match Self::field_leaf(&p) {
                    Some(l) => Some(V::Leaf(l)),
                    None => self.unsupported(e.span, "using a header or struct as a value here"),
                }
            }
            ExprKind::Bool(_) | ExprKind::IsValid(_) | ExprKind::TableHit(..) => {
                let b = self.boolean(e, env)?;
                Some(op("b2d", None, b))
            }
            ExprKind::Binary(o, l, r) if ty == &Ty::Bool => {
                let _ = (o, l, r);
                let b = self.boolean(e, env)?;
                Some(op("b2d", None, b))
            }
            ExprKind::Unary(UnOp::Not, _) => {
                let b = self.boolean(e, env)?;
                Some(op("b2d", None, b))
            }
            ExprKind::Binary(o, l, r) => {
                let a = self.data(l, env)?;
                let b = self.data(r, env)?;
                let w = ty.width().unwrap_or(128);
                Some(match o {
                    BinOp::Add => Self::wrap(op("+", Some(a.operand()), b.operand()), ty),
                    BinOp::Mul => Self::wrap(op("*", Some(a.operand()), b.operand()), ty),
                    BinOp::Sub => {
                        // a - b == a + (2^W - b): no negative intermediate values.
                        let neg = match &r.kind {
                            ExprKind::Const(c) => V::Leaf(hexstr((mask(w) - c + 1) & mask(w), w)),
                            _ => op(
                                "-",
                                Some(
                                    json!({"type": "hexstr", "value": format!("0x{:x}", u128::from(w < 128) << w.min(127))}),
                                ),
                                b.operand(),
                            ),
                        };
                        if matches!(ty, Ty::Int(_)) {
                            Self::wrap(op("-", Some(a.operand()), self.data(r, env)?.operand()), ty)
                        } else {
                            Self::wrap(op("+", Some(a.operand()), neg.operand()), ty)
                        }
                    }
                    BinOp::Div => op("/", Some(a.operand()), b.operand()),
                    BinOp::Mod => op("%", Some(a.operand()), b.operand()),
                    BinOp::BitAnd => op("&", Some(a.operand()), b.operand()),
                    BinOp::BitOr => op("|", Some(a.operand()), b.operand()),
                    BinOp::BitXor => op("^", Some(a.operand()), b.operand()),
                    BinOp::Shl => Self::wrap(op("<<", Some(a.operand()), b.operand()), ty),
                    BinOp::Shr => op(">>", Some(a.operand()), b.operand()),
                    _ => return self.unsupported(e.span, "this operator"),
                })
            }
            ExprKind::Unary(UnOp::BitNot, x) => {
                let a = self.data(x, env)?;
                Some(Self::wrap(op("~", None, a.operand()), ty))
            }
            ExprKind::Unary(UnOp::Neg, x) => {
                let a = self.data(x, env)?;
                Some(Self::wrap(op("-", Some(hexstr(0, 8)), a.operand()), ty))
            }
            ExprKind::Slice(b, hi, lo) => {
                let a = self.data(b, env)?;
                let shifted = if *lo == 0 {
                    a
                } else {
                    op(">>", Some(a.operand()), hexstr(*lo as u128, 8))
                };
                Some(op(
                    "&",
                    Some(shifted.operand()),
                    hexstr(mask(hi - lo + 1), hi - lo + 1),
                ))
            }
            ExprKind::Concat(a, b) => {
                let (wa, wb) = (a.ty.width().unwrap_or(0), b.ty.width().unwrap_or(0));
                let x = self.unsigned(a, env)?;
                let y = self.unsigned(b, env)?;
                let hi = op("<<", Some(x.operand()), hexstr(wb as u128, 8));
                let hi = op("&", Some(hi.operand()), hexstr(mask(wa + wb), wa + wb));
                Some(op("|", Some(hi.operand()), y.operand()))
            }
            ExprKind::Cast(x) => {
                let from = x.ty.clone();
                match (&from, ty) {
                    (Ty::Bool, _) => {
                        let b = self.boolean(x, env)?;
                        Some(op("b2d", None, b))
                    }
                    (Ty::Bit(a), Ty::Bit(b)) if b >= a => self.data(x, env),
                    (Ty::Bit(_) | Ty::Int(_), Ty::Bit(b)) => {
                        let v = self.data(x, env)?;
                        Some(op("&", Some(v.operand()), hexstr(mask(*b), *b)))
                    }
                    (Ty::Bit(_) | Ty::Int(_), Ty::Int(_)) => {
                        let v = self.data(x, env)?;
                        Some(Self::wrap(v, ty))
                    }
                    (Ty::Enum(_), _) => self.data(x, env),
                    _ => self.unsupported(e.span, "this cast"),
                }
            }
            ExprKind::Ternary(c, t, o) => {
                let cond = self.boolean(c, env)?;
                let a = self.data(t, env)?;
                let b = self.data(o, env)?;
                Some(V::Op(
                    json!({"op": "?", "left": a.operand(), "right": b.operand(), "cond": cond}),
                ))
            }
            ExprKind::Lookahead(_) => self.unsupported(e.span, "lookahead outside a select key"),
            ExprKind::List(_) => self.unsupported(e.span, "a list expression here"),
        }
    }

    /// A data value read as unsigned (int<W> operands of `++` are masked first).
    fn unsigned(&mut self, e: &hir::Expr, env: &Env) -> Option<V> {
        let v = self.data(e, env)?;
        match e.ty {
            Ty::Int(w) => Some(op("&", Some(v.operand()), hexstr(mask(w), w))),
            _ => Some(v),
        }
    }

    /// A boolean expression, as an operand object (`{"type": "expression"|"bool", ...}`).
    fn boolean(&mut self, e: &hir::Expr, env: &Env) -> Option<Value> {
        let expr = |v: V| v.operand();
        match &e.kind {
            ExprKind::Bool(b) => Some(json!({"type": "bool", "value": b})),
            ExprKind::IsValid(h) => match self.place(h, env)? {
                Place::Header(inst) => Some(expr(op("d2b", None, json!({"type": "field", "value": [inst, "$valid$"]})))),
                _ => self.unsupported(e.span, "isValid() on this expression").map(|v| v.operand()),
            },
            ExprKind::Unary(UnOp::Not, x) => {
                let b = self.boolean(x, env)?;
                Some(expr(op("not", None, b)))
            }
            ExprKind::Binary(o @ (BinOp::And | BinOp::Or), l, r) => {
                let a = self.boolean(l, env)?;
                let b = self.boolean(r, env)?;
                Some(expr(op(if *o == BinOp::And { "and" } else { "or" }, Some(a), b)))
            }
            ExprKind::Binary(o, l, r) => {
                let s = match o {
                    BinOp::Eq => "==",
                    BinOp::Ne => "!=",
                    BinOp::Lt => "<",
                    BinOp::Le => "<=",
                    BinOp::Gt => ">",
                    BinOp::Ge => ">=",
                    _ => return self.unsupported(e.span, "this boolean operator").map(|v| v.operand()),
                };
                if l.ty == Ty::Bool {
                    let a = self.boolean(l, env)?;
                    let b = self.boolean(r, env)?;
                    let a = op("b2d", None, a).operand();
                    let b = op("b2d", None, b).operand();
                    return Some(expr(op(s, Some(a), b)));
                }
                let a = self.data(l, env)?;
                let b = self.data(r, env)?;
                Some(expr(op(s, Some(a.operand()), b.operand())))
            }
            ExprKind::Cast(x) => {
                let v = self.data(x, env)?;
                Some(expr(op("d2b", None, v.operand())))
            }
            ExprKind::Ternary(c, t, o) => {
                let cond = self.boolean(c, env)?;
                let a = self.boolean(t, env)?;
                let b = self.boolean(o, env)?;
                Some(expr(V::Op(json!({"op": "?", "left": a, "right": b, "cond": cond}))))
            }
            ExprKind::TableHit(..) => self
                .unsupported(e.span, "`t.apply().hit` inside a larger expression (use it as the whole `if` condition)")
                .map(|v| v.operand()),
            _ => {
                // Boolean variables and fields are stored as bit<1>.
                let v = self.data(e, env)?;
                Some(expr(op("d2b", None, v.operand())))
            }
        }
    }

    // ----- primitives ------------------------------------------------------------------------

    fn prim(&self, buf: &mut ActionBuf, name: &str, params: Vec<Value>, span: Span) {
        buf.prims
            .push(json!({"op": name, "parameters": params, "source_info": self.source_info(span)}));
    }

    /// A value usable directly as a primitive argument (field, constant or action data);
    /// anything else is computed into a temporary first.
    fn simple_arg(&mut self, e: &hir::Expr, env: &Env, buf: &mut ActionBuf) -> Option<Value> {
        match self.data(e, env)? {
            V::Leaf(l) => Some(l),
            v @ V::Op(_) => {
                let w = e.ty.width().unwrap_or(32);
                let t = self.temp(w);
                let leaf = Self::field_leaf(&t).expect("temporaries are fields");
                self.prim(buf, "assign", vec![leaf.clone(), v.param()], e.span);
                Some(leaf)
            }
        }
    }

    fn assign(
        &mut self,
        lhs: &hir::Expr,
        rhs: &hir::Expr,
        env: &Env,
        buf: &mut ActionBuf,
        span: Span,
    ) -> Option<()> {
        if let ExprKind::Slice(base, hi, lo) = &lhs.kind {
            // base = (base & ~(m << lo)) | ((rhs << lo) & (m << lo))
            let w = base.ty.width().unwrap_or(128);
            let field_mask = mask(hi - lo + 1) << lo;
            let cur = self.data(base, env)?;
            let val = self.data(rhs, env)?;
            let keep = op("&", Some(cur.operand()), hexstr(!field_mask & mask(w), w));
            let shifted = op("<<", Some(val.operand()), hexstr(*lo as u128, 8));
            let new = op("&", Some(shifted.operand()), hexstr(field_mask, w));
            let v = op("|", Some(keep.operand()), new.operand());
            let dst = self.place(base, env)?;
            let Some(d) = Self::field_leaf(&dst) else {
                self.unsupported(span, "assigning to a slice of this expression");
                return None;
            };
            self.prim(buf, "assign", vec![d, v.param()], span);
            return Some(());
        }
        let dst = self.place(lhs, env)?;
        self.assign_place(dst, rhs, env, buf, span)
    }

    fn assign_place(
        &mut self,
        dst: Place,
        rhs: &hir::Expr,
        env: &Env,
        buf: &mut ActionBuf,
        span: Span,
    ) -> Option<()> {
        match dst {
            Place::Field(..) => {
                let d = Self::field_leaf(&dst).expect("a field");
                let v = self.data(rhs, env)?;
                self.prim(buf, "assign", vec![d, v.param()], span);
            }
            Place::Header(h) => {
                let Some(Place::Header(src)) = self.place(rhs, env) else {
                    self.unsupported(span, "assigning this expression to a header");
                    return None;
                };
                self.prim(
                    buf,
                    "assign_header",
                    vec![
                        json!({"type": "header", "value": h}),
                        json!({"type": "header", "value": src}),
                    ],
                    span,
                );
            }
            Place::Struct(fields) => {
                let src = self.place(rhs, env);
                let Some(Place::Struct(src)) = src else {
                    self.unsupported(span, "assigning this expression to a struct");
                    return None;
                };
                for (d, s) in fields.into_iter().zip(src) {
                    self.copy_place(d, s, buf, span)?;
                }
            }
            Place::Stack(..) | Place::RuntimeData(_) => {
                self.unsupported(span, "assigning to this expression");
                return None;
            }
        }
        Some(())
    }

    fn copy_place(&mut self, d: Place, s: Place, buf: &mut ActionBuf, span: Span) -> Option<()> {
        match (d, s) {
            (d @ Place::Field(..), s @ (Place::Field(..) | Place::RuntimeData(_))) => {
                let (d, s) = (Self::field_leaf(&d)?, Self::field_leaf(&s)?);
                self.prim(buf, "assign", vec![d, s], span);
            }
            (Place::Header(d), Place::Header(s)) => {
                self.prim(
                    buf,
                    "assign_header",
                    vec![
                        json!({"type": "header", "value": d}),
                        json!({"type": "header", "value": s}),
                    ],
                    span,
                );
            }
            (Place::Struct(d), Place::Struct(s)) => {
                for (a, b) in d.into_iter().zip(s) {
                    self.copy_place(a, b, buf, span)?;
                }
            }
            (Place::Stack(d), Place::Stack(s)) => {
                for (a, b) in d.into_iter().zip(s) {
                    self.copy_place(Place::Header(a), Place::Header(b), buf, span)?;
                }
            }
            _ => {
                self.unsupported(span, "this assignment");
                return None;
            }
        }
        Some(())
    }

    fn header_arg(&mut self, e: &hir::Expr, env: &Env) -> Option<Value> {
        match self.place(e, env) {
            Some(Place::Header(h)) => Some(json!({"type": "header", "value": h})),
            _ => {
                self.unsupported(e.span, "this header expression");
                None
            }
        }
    }

    fn field_dst(&mut self, e: &hir::Expr, env: &Env) -> Option<Value> {
        let p = self.place(e, env);
        match p.as_ref().and_then(Self::field_leaf) {
            Some(l) if matches!(p, Some(Place::Field(..))) => Some(l),
            _ => {
                self.unsupported(e.span, "writing an extern's result to this expression");
                None
            }
        }
    }

    /// Calculation inputs for hash and checksum data.
    fn calc_inputs(
        &mut self,
        data: &[hir::Expr],
        env: &Env,
        mut buf: Option<&mut ActionBuf>,
    ) -> Option<Vec<Value>> {
        let mut out = Vec::new();
        for d in data {
            if let Some(Place::Header(h)) = self.place(d, env) {
                out.push(json!({"type": "header", "value": h}));
                continue;
            }
            match self.data(d, env)? {
                V::Leaf(l) if l["type"] == "field" => out.push(l),
                V::Leaf(l) if l["type"] == "hexstr" => {
                    let w = d.ty.width().unwrap_or(32);
                    out.push(json!({"type": "hexstr", "value": l["value"], "bitwidth": w}));
                }
                v => match buf.as_deref_mut() {
                    Some(b) => {
                        let t = self.temp(d.ty.width().unwrap_or(32));
                        let leaf = Self::field_leaf(&t).expect("a field");
                        self.prim(b, "assign", vec![leaf.clone(), v.param()], d.span);
                        out.push(leaf);
                    }
                    None => {
                        self.unsupported(d.span, "a computed value in checksum data (use fields)");
                        return None;
                    }
                },
            }
        }
        Some(out)
    }

    fn add_calculation(
        &mut self,
        algo: hir::HashAlgo,
        input: Vec<Value>,
        span: Option<Span>,
    ) -> String {
        let name = if self.calculations.is_empty() {
            "calc".to_string()
        } else {
            format!("calc_{}", self.calculations.len() - 1)
        };
        let mut c = json!({"name": name, "id": self.calculations.len()});
        if let Some(s) = span {
            c["source_info"] = self.source_info(s);
        }
        c["algo"] = json!(algo.bmv2_name());
        c["input"] = json!(input);
        self.calculations.push(c);
        name
    }

    fn call(&mut self, c: &hir::Call, env: &Env, buf: &mut ActionBuf, span: Span) -> Option<()> {
        match c {
            hir::Call::SetValid(h) => {
                let a = self.header_arg(h, env)?;
                self.prim(buf, "add_header", vec![a], span);
            }
            hir::Call::SetInvalid(h) => {
                let a = self.header_arg(h, env)?;
                self.prim(buf, "remove_header", vec![a], span);
            }
            hir::Call::MarkToDrop(_) => {
                self.prim(
                    buf,
                    "mark_to_drop",
                    vec![json!({"type": "header", "value": "standard_metadata"})],
                    span,
                );
            }
            hir::Call::Count { counter, index } => {
                let i = self.simple_arg(index, env, buf)?;
                let name = self.p.externs[*counter].name.clone();
                self.prim(
                    buf,
                    "count",
                    vec![json!({"type": "counter_array", "value": name}), i],
                    span,
                );
            }
            hir::Call::DirectCount(_) => {}
            hir::Call::RegisterRead {
                register,
                dst,
                index,
            } => {
                let i = self.simple_arg(index, env, buf)?;
                let d = self.field_dst(dst, env)?;
                let name = self.p.externs[*register].name.clone();
                self.prim(
                    buf,
                    "register_read",
                    vec![d, json!({"type": "register_array", "value": name}), i],
                    span,
                );
            }
            hir::Call::RegisterWrite {
                register,
                index,
                value,
            } => {
                let i = self.simple_arg(index, env, buf)?;
                let v = self.simple_arg(value, env, buf)?;
                let name = self.p.externs[*register].name.clone();
                self.prim(
                    buf,
                    "register_write",
                    vec![json!({"type": "register_array", "value": name}), i, v],
                    span,
                );
            }
            hir::Call::Clone {
                ingress_to_egress,
                session,
            } => {
                let s = self.simple_arg(session, env, buf)?;
                self.need_clone_field_list = true;
                let opname = if *ingress_to_egress {
                    "clone_ingress_pkt_to_egress"
                } else {
                    "clone_egress_pkt_to_egress"
                };
                self.prim(
                    buf,
                    opname,
                    vec![s, json!({"type": "hexstr", "value": "0x1"})],
                    span,
                );
            }
            hir::Call::Hash {
                dst,
                algo,
                base,
                data,
                max,
            } => {
                let input = self.calc_inputs(data, env, Some(buf))?;
                let b = self.simple_arg(base, env, buf)?;
                let m = self.simple_arg(max, env, buf)?;
                let d = self.field_dst(dst, env)?;
                let calc = self.add_calculation(*algo, input, None);
                self.prim(
                    buf,
                    "modify_field_with_hash_based_offset",
                    vec![d, b, json!({"type": "calculation", "value": calc}), m],
                    span,
                );
            }
            hir::Call::Digest {
                receiver,
                struct_ty,
                fields,
            } => {
                let (id, temps) = match self.digests.get(struct_ty) {
                    Some(x) => x.clone(),
                    None => {
                        let st = &self.p.structs[*struct_ty];
                        let sname = st.name.clone();
                        let fdefs = st.fields.clone();
                        let temps: Vec<String> = fdefs
                            .iter()
                            .map(|(f, t)| {
                                match self.scalar(
                                    &format!("{sname}.{f}"),
                                    t.width().unwrap_or(1),
                                    false,
                                ) {
                                    Place::Field(_, n) => n,
                                    _ => unreachable!("scalars are fields"),
                                }
                            })
                            .collect();
                        let id = self.learn_lists.len() + 1;
                        let elements: Vec<Value> = temps
                            .iter()
                            .map(|t| json!({"type": "field", "value": ["scalars", t]}))
                            .collect();
                        self.learn_lists.push(json!({"id": id, "name": sname, "source_info": self.source_info(span), "elements": elements}));
                        self.digests.insert(*struct_ty, (id, temps.clone()));
                        (id, temps)
                    }
                };
                for (f, t) in fields.iter().zip(&temps) {
                    let v = self.data(f, env)?;
                    self.prim(
                        buf,
                        "assign",
                        vec![json!({"type": "field", "value": ["scalars", t]}), v.param()],
                        f.span,
                    );
                }
                let r = self.simple_arg(receiver, env, buf)?;
                self.prim(
                    buf,
                    "generate_digest",
                    vec![r, json!({"type": "hexstr", "value": format!("0x{id:x}")})],
                    span,
                );
            }
            hir::Call::Random { dst, lo, hi } => {
                let l = self.simple_arg(lo, env, buf)?;
                let h = self.simple_arg(hi, env, buf)?;
                let d = self.field_dst(dst, env)?;
                self.prim(buf, "modify_field_rng_uniform", vec![d, l, h], span);
            }
            hir::Call::Truncate(n) => {
                let v = self.simple_arg(n, env, buf)?;
                self.prim(buf, "truncate", vec![v], span);
            }
            hir::Call::Action { action, args } => {
                let a = &self.p.actions[*action];
                let bindings = args
                    .iter()
                    .map(|x| Binding::Arg(x.clone(), env.clone()))
                    .collect();
                let body = a.body.clone();
                let inner = Env(std::rc::Rc::new(bindings));
                buf.returns.push(Vec::new());
                self.action_stmts(&body, &inner, buf)?;
                let end = buf.prims.len();
                for j in buf.returns.pop().unwrap_or_default() {
                    buf.prims[j]["parameters"][0] = hexstr(end as u128, 32);
                }
            }
            hir::Call::Checksum { .. } => {
                self.err(span, "verify_checksum and update_checksum are only supported in V1Switch's checksum controls");
                return None;
            }
            hir::Call::Extract(_)
            | hir::Call::Advance(_)
            | hir::Call::Emit(_)
            | hir::Call::Verify { .. } => {
                self.unsupported(span, "this call outside a parser or deparser");
                return None;
            }
        }
        Some(())
    }

    /// Lowers statements of an action body (or of straight-line control code) into `buf`.
    fn action_stmts(&mut self, stmts: &[hir::Stmt], env: &Env, buf: &mut ActionBuf) -> Option<()> {
        for s in stmts {
            match &s.kind {
                hir::StmtKind::Assign(l, r) => self.assign(l, r, env, buf, s.span)?,
                hir::StmtKind::Call(c) => self.call(c, env, buf, s.span)?,
                hir::StmtKind::Block(b) => self.action_stmts(b, env, buf)?,
                hir::StmtKind::If(c, t, o) => {
                    let cond = self.boolean(c, env)?;
                    let cond = op("b2d", None, cond).param();
                    let jz = buf.prims.len();
                    self.prim(buf, "_jump_if_zero", vec![cond, hexstr(0, 32)], s.span);
                    self.action_stmts(t, env, buf)?;
                    if o.is_empty() {
                        buf.prims[jz]["parameters"][1] = hexstr(buf.prims.len() as u128, 32);
                    } else {
                        let j = buf.prims.len();
                        self.prim(buf, "_jump", vec![hexstr(0, 32)], s.span);
                        buf.prims[jz]["parameters"][1] = hexstr(buf.prims.len() as u128, 32);
                        self.action_stmts(o, env, buf)?;
                        buf.prims[j]["parameters"][0] = hexstr(buf.prims.len() as u128, 32);
                    }
                }
                hir::StmtKind::Return | hir::StmtKind::Exit => {
                    if s.kind == hir::StmtKind::Exit {
                        self.prim(buf, "exit", vec![], s.span);
                    }
                    let j = buf.prims.len();
                    self.prim(buf, "_jump", vec![hexstr(0, 32)], s.span);
                    match buf.returns.last_mut() {
                        Some(r) => r.push(j),
                        None => unreachable!("action bodies open a return scope"),
                    }
                    // Anything after is unreachable.
                    return Some(());
                }
                hir::StmtKind::Apply(_) | hir::StmtKind::SwitchActionRun { .. } => {
                    self.unsupported(s.span, "applying a table here");
                    return None;
                }
            }
        }
        Some(())
    }

    /// Emits a program action for table use (once) and returns its JSON id.
    fn table_action(&mut self, a: usize) -> Option<usize> {
        if let Some(id) = self.action_ids.get(&a) {
            return Some(*id);
        }
        let id = self.emit_action(a)?;
        self.action_ids.insert(a, id);
        Some(id)
    }

    /// Lowers program action `a` (its parameters as runtime data) into a new JSON action and
    /// returns its JSON id. Tables share one copy (`table_action`); a direct call outside a
    /// table gets its own copy, as p4c does.
    fn emit_action(&mut self, a: usize) -> Option<usize> {
        let action = &self.p.actions[a];
        let (name, params, body) = (
            action.name.clone(),
            action.params.clone(),
            action.body.clone(),
        );
        let env = Env(std::rc::Rc::new(
            (0..params.len()).map(Binding::RuntimeData).collect(),
        ));
        let mut buf = ActionBuf {
            prims: Vec::new(),
            returns: vec![Vec::new()],
        };
        self.action_stmts(&body, &env, &mut buf)?;
        let prims = Self::finish_buf(buf);
        let id = self.actions.len();
        let runtime_data: Vec<Value> = params
            .iter()
            .map(|p| json!({"name": p.name, "bitwidth": p.ty.width().unwrap_or(1)}))
            .collect();
        self.actions.push(
            json!({"name": name, "id": id, "runtime_data": runtime_data, "primitives": prims}),
        );
        Some(id)
    }

    fn finish_buf(mut buf: ActionBuf) -> Vec<Value> {
        let end = buf.prims.len();
        for j in buf.returns.pop().unwrap_or_default() {
            buf.prims[j]["parameters"][0] = hexstr(end as u128, 32);
        }
        // A trailing jump to the end is a no-op.
        while buf.prims.last().is_some_and(|p| {
            p["op"] == "_jump" && p["parameters"][0] == hexstr(buf.prims.len() as u128, 32)
        }) {
            buf.prims.pop();
        }
        buf.prims
    }

    // ----- control flow --------------------------------------------------------------------

    fn stem(&self) -> String {
        let base = self.file_name.rsplit('/').next().unwrap_or(self.file_name);
        let base = base.strip_suffix(".p4").unwrap_or(base);
        base.chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect()
    }

    fn node_name(&mut self) -> String {
        loop {
            let n = format!("node_{}", self.node_counter);
            self.node_counter += 1;
            if self.names.insert(n.clone()) {
                return n;
            }
        }
    }

    /// Wraps straight-line statements into a one-action table, as p4c does.
    fn straight_line(&mut self, stmts: &[&hir::Stmt], next: Option<String>) -> Option<String> {
        let first = stmts[0];
        let span = stmts.iter().fold(first.span, |s, x| s.to(x.span));
        // A single call of an action with constant arguments keeps the action's name.
        if let [hir::Stmt {
            kind: hir::StmtKind::Call(hir::Call::Action { action, args }),
            ..
        }] = stmts
        {
            let a = &self.p.actions[*action];
            let consts: Option<Vec<u128>> = args
                .iter()
                .map(|x| match x.kind {
                    ExprKind::Const(v) => Some(v),
                    ExprKind::Bool(b) => Some(b as u128),
                    _ => None,
                })
                .collect();
            if let (Some(vals), true) = (consts, a.params.iter().all(|p| p.direction.is_none())) {
                let short = a.name.rsplit('.').next().unwrap_or(&a.name).to_string();
                let name = a.name.clone();
                let data: Vec<Value> = vals
                    .iter()
                    .zip(&a.params)
                    .map(|(v, p)| json!(hex(*v, p.ty.width().unwrap_or(1))))
                    .collect();
                let id = self.emit_action(*action)?;
                return Some(self.const_table(
                    &format!("tbl_{short}"),
                    &name,
                    id,
                    data,
                    next,
                    first.span,
                ));
            }
        }
        let (line, _, _) = line_col(self.source, first.span.lo);
        let aname = format!("{}{line}", self.stem());
        let mut buf = ActionBuf {
            prims: Vec::new(),
            returns: vec![Vec::new()],
        };
        let env = Env::default();
        for s in stmts {
            self.action_stmts(std::slice::from_ref(*s), &env, &mut buf)?;
        }
        let prims = Self::finish_buf(buf);
        let id = self.actions.len();
        self.actions
            .push(json!({"name": aname, "id": id, "runtime_data": [], "primitives": prims}));
        Some(self.const_table(&format!("tbl_{aname}"), &aname, id, Vec::new(), next, span))
    }

    fn const_table(
        &mut self,
        name: &str,
        action: &str,
        id: usize,
        data: Vec<Value>,
        next: Option<String>,
        span: Span,
    ) -> String {
        let name = self.unique(name);
        self.table_names.insert(name.clone());
        let tid = self.tables.len();
        self.tables.push(json!({
            "name": name, "id": tid, "source_info": self.source_info(span),
            "key": [], "match_type": "exact", "type": "simple", "max_size": 1024,
            "with_counters": false, "support_timeout": false, "direct_meters": null,
            "action_ids": [id], "actions": [action],
            "base_default_next": next, "next_tables": {action: next},
            "default_entry": {"action_id": id, "action_const": true, "action_data": data, "action_entry_const": true}
        }));
        name
    }

    fn key_target(&mut self, k: &hir::TableKey) -> Option<Value> {
        let env = Env::default();
        if let ExprKind::IsValid(h) = &k.expr.kind {
            if let Some(Place::Header(inst)) = self.place(h, &env) {
                return Some(json!([inst, "$valid$"]));
            }
        }
        match self.place(&k.expr, &env) {
            Some(Place::Field(h, f)) => Some(json!([h, f])),
            _ => {
                self.err(k.expr.span, "table keys must be fields or `isValid()`; computed keys are not supported by the bmv2 back end");
                None
            }
        }
    }

    fn key_value(
        kv: &hir::KeyValue,
        mk: hir::MatchKind,
        w: u32,
        span: Span,
        diags: &mut Vec<Diagnostic>,
    ) -> Value {
        use hir::KeyValue as K;
        use hir::MatchKind as M;
        match (mk, kv) {
            (M::Exact, K::Value(v)) => json!({"match_type": "exact", "key": hex(*v, w)}),
            (M::Lpm, K::Value(v)) => {
                json!({"match_type": "lpm", "key": hex(*v, w), "prefix_length": w})
            }
            (M::Lpm, K::Any) => json!({"match_type": "lpm", "key": hex(0, w), "prefix_length": 0}),
            (M::Lpm, K::Mask(v, m)) => {
                let len = m.count_ones();
                if *m != (mask(len) << (w - len)) & mask(w) {
                    diags.push(Diagnostic::error(
                        span,
                        "an lpm key's mask must be a prefix (leading ones)",
                    ));
                }
                json!({"match_type": "lpm", "key": hex(v & m, w), "prefix_length": len})
            }
            (M::Ternary | M::Optional, K::Value(v)) => {
                json!({"match_type": "ternary", "key": hex(*v, w), "mask": hex(mask(w), w)})
            }
            (M::Ternary | M::Optional, K::Any) => {
                json!({"match_type": "ternary", "key": hex(0, w), "mask": hex(0, w)})
            }
            (M::Ternary, K::Mask(v, m)) => {
                json!({"match_type": "ternary", "key": hex(v & m, w), "mask": hex(*m, w)})
            }
            (M::Range, K::Value(v)) => {
                json!({"match_type": "range", "start": hex(*v, w), "end": hex(*v, w)})
            }
            (M::Range, K::Range(lo, hi)) => {
                json!({"match_type": "range", "start": hex(*lo, w), "end": hex(*hi, w)})
            }
            (M::Range, K::Any) => {
                json!({"match_type": "range", "start": hex(0, w), "end": hex(mask(w), w)})
            }
            _ => {
                diags.push(Diagnostic::error(
                    span,
                    "this keyset does not fit the key's match kind",
                ));
                Value::Null
            }
        }
    }

    /// Places a program table in the pipeline; `next` maps each action (or hit/miss) onward.
    fn user_table(&mut self, t: usize, next: NextMap, span: Span) -> Option<String> {
        let table = &self.p.tables[t];
        if !self.placed.insert(t) {
            self.err(
                span,
                format!(
                    "table `{}` is applied more than once; bmv2 allows one application per table",
                    table.name
                ),
            );
            return None;
        }
        let name = table.name.clone();
        self.names.insert(name.clone());
        let mut keys = Vec::new();
        for k in &table.keys {
            let target = self.key_target(k)?;
            let mt = match k.match_kind {
                hir::MatchKind::Optional => "ternary",
                m => m.as_str(),
            };
            keys.push(json!({"match_type": mt, "name": k.name, "target": target, "mask": null}));
        }
        let kinds: Vec<hir::MatchKind> = table.keys.iter().map(|k| k.match_kind).collect();
        let match_type = if kinds.contains(&hir::MatchKind::Range) {
            "range"
        } else if kinds
            .iter()
            .any(|k| matches!(k, hir::MatchKind::Ternary | hir::MatchKind::Optional))
        {
            "ternary"
        } else if kinds.contains(&hir::MatchKind::Lpm) {
            "lpm"
        } else {
            "exact"
        };
        let mut ids = Vec::new();
        let mut names = Vec::new();
        for a in &table.actions {
            ids.push(self.table_action(a.action)?);
            names.push(self.p.actions[a.action].name.clone());
        }
        let next_tables: serde_json::Map<String, Value> = match &next {
            NextMap::Actions(per_action, _) => table
                .actions
                .iter()
                .map(|a| {
                    (
                        self.p.actions[a.action].name.clone(),
                        json!(per_action.get(&a.action).cloned().flatten()),
                    )
                })
                .collect(),
            NextMap::HitMiss(hit, miss) => [
                ("__HIT__".to_string(), json!(hit)),
                ("__MISS__".to_string(), json!(miss)),
            ]
            .into_iter()
            .collect(),
        };
        let base_default_next = match &next {
            NextMap::Actions(_, d) => d.clone(),
            NextMap::HitMiss(_, miss) => miss.clone(),
        };
        let tid = self.tables.len();
        let mut j = json!({
            "name": name, "id": tid, "source_info": self.source_info(table.span),
            "key": keys, "match_type": match_type, "type": "simple",
            "max_size": table.size.unwrap_or(1024),
            "with_counters": table.direct_counter.is_some(),
            "support_timeout": table.support_timeout,
            "direct_meters": null,
            "action_ids": ids, "actions": names,
            "base_default_next": base_default_next,
            "next_tables": next_tables,
        });
        if let Some((a, args, is_const)) = &table.default_action {
            let id = self.table_action(*a)?;
            let data: Vec<Value> = args
                .iter()
                .zip(&self.p.actions[*a].params)
                .map(|(v, p)| json!(hex(*v, p.ty.width().unwrap_or(1))))
                .collect();
            j["default_entry"] = json!({"action_id": id, "action_const": is_const, "action_data": data, "action_entry_const": is_const});
        }
        if let Some(entries) = &table.entries {
            let mut out = Vec::new();
            let max_prio = entries.iter().filter_map(|e| e.priority).max();
            for (i, e) in entries.iter().enumerate() {
                let mut mk = Vec::new();
                for (kv, k) in e.keys.iter().zip(&table.keys) {
                    let w = k.expr.ty.width().unwrap_or(32);
                    mk.push(Self::key_value(
                        kv,
                        k.match_kind,
                        w,
                        e.span,
                        &mut self.diags,
                    ));
                }
                let id = self.table_action(e.action)?;
                let data: Vec<Value> = e
                    .args
                    .iter()
                    .zip(&self.p.actions[e.action].params)
                    .map(|(v, p)| json!(hex(*v, p.ty.width().unwrap_or(1))))
                    .collect();
                // bmv2: a lower number wins. Without explicit priorities, earlier entries win;
                // with them, a larger P4 priority wins.
                let prio = match (e.priority, max_prio) {
                    (Some(p), Some(m)) => m - p + 1,
                    _ => i as u64 + 1,
                };
                out.push(json!({
                    "source_info": self.source_info(e.span),
                    "match_key": mk,
                    "action_entry": {"action_id": id, "action_data": data},
                    "priority": prio
                }));
            }
            j["entries"] = json!(out);
        }
        self.tables.push(j);
        Some(name)
    }

    /// Lowers control statements into pipeline nodes, returning the entry node.
    fn control_stmts(
        &mut self,
        stmts: &[hir::Stmt],
        next: Option<String>,
    ) -> Option<Option<String>> {
        // Flatten blocks; cut at return/exit (what follows is unreachable).
        let mut flat: Vec<&hir::Stmt> = Vec::new();
        let mut next = next;
        fn flatten<'s>(stmts: &'s [hir::Stmt], out: &mut Vec<&'s hir::Stmt>) -> bool {
            for s in stmts {
                match &s.kind {
                    hir::StmtKind::Block(b) => {
                        if flatten(b, out) {
                            return true;
                        }
                    }
                    hir::StmtKind::Return => return true,
                    hir::StmtKind::Exit => {
                        out.push(s);
                        return true;
                    }
                    _ => out.push(s),
                }
            }
            false
        }
        if flatten(stmts, &mut flat) {
            next = None;
        }
        // Group straight-line statements.
        let mut items: Vec<Vec<&hir::Stmt>> = Vec::new();
        for s in flat {
            let simple = matches!(
                s.kind,
                hir::StmtKind::Assign(..) | hir::StmtKind::Call(_) | hir::StmtKind::Exit
            );
            match items.last_mut() {
                Some(run)
                    if simple
                        && run.iter().all(|x| {
                            matches!(
                                x.kind,
                                hir::StmtKind::Assign(..)
                                    | hir::StmtKind::Call(_)
                                    | hir::StmtKind::Exit
                            )
                        }) =>
                {
                    run.push(s)
                }
                _ => items.push(vec![s]),
            }
        }
        let env = Env::default();
        for item in items.iter().rev() {
            let s = item[0];
            next = match &s.kind {
                hir::StmtKind::Assign(..) | hir::StmtKind::Call(_) | hir::StmtKind::Exit => {
                    // Direct-counter counts outside actions lower to nothing; skip empty runs.
                    let run: Vec<&hir::Stmt> = item
                        .iter()
                        .copied()
                        .filter(|x| {
                            !matches!(x.kind, hir::StmtKind::Call(hir::Call::DirectCount(_)))
                        })
                        .collect();
                    if run.is_empty() {
                        next
                    } else {
                        Some(self.straight_line(&run, next)?)
                    }
                }
                hir::StmtKind::Apply(t) => {
                    let per = self.p.tables[*t]
                        .actions
                        .iter()
                        .map(|a| (a.action, next.clone()))
                        .collect();
                    Some(self.user_table(*t, NextMap::Actions(per, next.clone()), s.span)?)
                }
                hir::StmtKind::SwitchActionRun { table, cases } => {
                    let mut per: HashMap<usize, Option<String>> = HashMap::new();
                    let mut default_next = next.clone();
                    for (labels, body) in cases {
                        let target = match body {
                            Some(b) => self.control_stmts(b, next.clone())?,
                            None => next.clone(),
                        };
                        for l in labels {
                            match l {
                                Some(a) => {
                                    per.insert(*a, target.clone());
                                }
                                None => default_next = target.clone(),
                            }
                        }
                    }
                    for a in &self.p.tables[*table].actions {
                        per.entry(a.action).or_insert_with(|| default_next.clone());
                    }
                    Some(self.user_table(*table, NextMap::Actions(per, default_next), s.span)?)
                }
                hir::StmtKind::If(c, t, o) => {
                    let (mut c, mut t, mut o) = (c, t, o);
                    let mut negated = false;
                    while let ExprKind::Unary(UnOp::Not, inner) = &c.kind {
                        negated = !negated;
                        c = inner;
                    }
                    if negated {
                        std::mem::swap(&mut t, &mut o);
                    }
                    match &c.kind {
                        ExprKind::Bool(b) => {
                            let branch = if *b { t } else { o };
                            self.control_stmts(branch, next.clone())?
                        }
                        ExprKind::TableHit(table, hit) => {
                            let a = self.control_stmts(t, next.clone())?;
                            let b = self.control_stmts(o, next.clone())?;
                            let (h, m) = if *hit { (a, b) } else { (b, a) };
                            Some(self.user_table(*table, NextMap::HitMiss(h, m), s.span)?)
                        }
                        _ => {
                            let a = self.control_stmts(t, next.clone())?;
                            let b = self.control_stmts(o, next.clone())?;
                            let cond = self.boolean(c, &env)?;
                            let expression = match cond {
                                v if v["type"] == "expression" => v,
                                v => op("d2b", None, op("b2d", None, v).operand()).operand(),
                            };
                            let name = self.node_name();
                            let id = self.conditionals.len();
                            self.conditionals.push(json!({
                                "name": name, "id": id, "source_info": self.source_info(c.span),
                                "expression": expression, "true_next": a, "false_next": b
                            }));
                            Some(name)
                        }
                    }
                }
                hir::StmtKind::Block(_) | hir::StmtKind::Return => unreachable!("flattened"),
            };
        }
        Some(next)
    }

    fn pipeline(&mut self, name: &str, id: usize, control: usize) -> Option<Value> {
        let c = &self.p.controls[control];
        self.block_params = c.params.clone();
        let (apply, span) = (c.apply.clone(), c.span);
        let first_table = self.tables.len();
        let first_cond = self.conditionals.len();
        let init = self.control_stmts(&apply, None)?;
        let tables: Vec<Value> = self.tables[first_table..].to_vec();
        let conds: Vec<Value> = self.conditionals[first_cond..].to_vec();
        Some(json!({
            "name": name, "id": id, "source_info": self.source_info(span),
            "init_table": init, "tables": tables, "action_profiles": [], "conditionals": conds
        }))
    }

    // ----- parser, checksums, deparser ------------------------------------------------------

    fn parser(&mut self) -> Option<Value> {
        let pr = &self.p.parsers[self.p.main.parser];
        self.block_params = pr.params.clone();
        let states = pr.states.clone();
        let start = states[pr.start].name.clone();
        let mut out = Vec::new();
        let env = Env::default();
        for (i, st) in states.iter().enumerate() {
            let mut ops = Vec::new();
            for s in &st.stmts {
                self.parser_stmt(s, &env, &mut ops)?;
            }
            let name_of = |n: &hir::NextState| match n {
                hir::NextState::State(j) => json!(states[*j].name),
                // bmv2 has no reject state: the parser stops, keeping any error set so far.
                hir::NextState::Accept | hir::NextState::Reject => Value::Null,
            };
            let (key, transitions) = match &st.transition {
                hir::Transition::Direct(n) => (
                    Vec::new(),
                    vec![
                        json!({"type": "default", "value": null, "mask": null, "next_state": name_of(n)}),
                    ],
                ),
                hir::Transition::Select { keys, cases } => {
                    let mut key = Vec::new();
                    for k in keys {
                        key.push(self.select_key(k, &env, &mut ops)?);
                    }
                    let widths: Vec<u32> = keys.iter().map(|k| k.ty.width().unwrap_or(1)).collect();
                    let mut ts = Vec::new();
                    for (kvs, next, span) in cases {
                        if kvs.iter().all(|k| matches!(k, hir::KeyValue::Any)) {
                            ts.push(json!({"type": "default", "value": null, "mask": null, "next_state": name_of(next)}));
                            continue;
                        }
                        let mut value = String::from("0x");
                        let mut m = String::from("0x");
                        let mut masked = false;
                        for (kv, w) in kvs.iter().zip(&widths) {
                            let (v, mk) = match kv {
                                hir::KeyValue::Value(v) => (*v, mask(*w)),
                                hir::KeyValue::Mask(v, mk) => {
                                    masked = true;
                                    (v & mk, *mk)
                                }
                                hir::KeyValue::Any => {
                                    masked = true;
                                    (0, 0)
                                }
                                hir::KeyValue::Range(..) => {
                                    self.unsupported(*span, "a range in select");
                                    return None;
                                }
                            };
                            value.push_str(&hex(v, *w)[2..]);
                            m.push_str(&hex(mk, *w)[2..]);
                        }
                        ts.push(json!({"type": "hexstr", "value": value, "mask": if masked { json!(m) } else { Value::Null }, "next_state": name_of(next)}));
                    }
                    (key, ts)
                }
            };
            out.push(json!({"name": st.name, "id": i, "parser_ops": ops, "transitions": transitions, "transition_key": key}));
        }
        Some(json!([{"name": "parser", "id": 0, "init_state": start, "parse_states": out}]))
    }

    fn select_key(&mut self, k: &hir::Expr, env: &Env, ops: &mut Vec<Value>) -> Option<Value> {
        if let ExprKind::Lookahead(w) = k.kind {
            return Some(json!({"type": "lookahead", "value": [0, w]}));
        }
        if let ExprKind::IsValid(h) = &k.kind {
            if let Some(Place::Header(inst)) = self.place(h, env) {
                return Some(json!({"type": "field", "value": [inst, "$valid$"]}));
            }
        }
        match self.data(k, env)? {
            V::Leaf(l) if l["type"] == "field" => Some(l),
            v => {
                // Computed keys go through a temporary, set just before the transition.
                let t = self.temp(k.ty.width().unwrap_or(1));
                let leaf = Self::field_leaf(&t).expect("a field");
                ops.push(json!({"parameters": [leaf.clone(), v.param()], "op": "set"}));
                Some(leaf)
            }
        }
    }

    fn parser_stmt(&mut self, s: &hir::Stmt, env: &Env, ops: &mut Vec<Value>) -> Option<()> {
        match &s.kind {
            hir::StmtKind::Call(hir::Call::Extract(h)) => match self.place(h, env) {
                Some(Place::Header(inst)) => ops.push(
                    json!({"parameters": [{"type": "regular", "value": inst}], "op": "extract"}),
                ),
                _ => {
                    self.unsupported(h.span, "extracting into this expression");
                    return None;
                }
            },
            hir::StmtKind::Call(hir::Call::Advance(n)) => {
                let v = self.data(n, env)?;
                ops.push(json!({"parameters": [v.param()], "op": "advance"}));
            }
            hir::StmtKind::Call(hir::Call::Verify { cond, error }) => {
                let c = self.boolean(cond, env)?;
                let c = if c["type"] == "expression" {
                    c["value"].clone()
                } else {
                    op("d2b", None, op("b2d", None, c).operand()).operand()["value"].clone()
                };
                let e = self.data(error, env)?;
                ops.push(json!({"parameters": [{"type": "expression", "value": c}, e.param()], "op": "verify"}));
            }
            hir::StmtKind::Assign(l, r) => {
                let mut buf = ActionBuf {
                    prims: Vec::new(),
                    returns: vec![Vec::new()],
                };
                self.assign(l, r, env, &mut buf, s.span)?;
                for p in buf.prims {
                    match p["op"].as_str() {
                        Some("assign") => ops.push(json!({"parameters": p["parameters"], "op": "set"})),
                        _ => ops.push(json!({"parameters": [{"op": p["op"], "parameters": p["parameters"]}], "op": "primitive"})),
                    }
                }
            }
            hir::StmtKind::Block(b) => {
                for x in b {
                    self.parser_stmt(x, env, ops)?;
                }
            }
            _ => {
                self.unsupported(s.span, "this statement in a parser state");
                return None;
            }
        }
        Some(())
    }

    fn checksum_control(&mut self, control: usize, verify: bool) -> Option<()> {
        let c = &self.p.controls[control];
        self.block_params = c.params.clone();
        let apply = c.apply.clone();
        let env = Env::default();
        let mut stmts: Vec<&hir::Stmt> = Vec::new();
        fn flat<'s>(s: &'s [hir::Stmt], out: &mut Vec<&'s hir::Stmt>) {
            for x in s {
                match &x.kind {
                    hir::StmtKind::Block(b) => flat(b, out),
                    _ => out.push(x),
                }
            }
        }
        flat(&apply, &mut stmts);
        for s in stmts {
            let hir::StmtKind::Call(hir::Call::Checksum {
                verify: v,
                with_payload,
                cond,
                data,
                checksum,
                algo,
            }) = &s.kind
            else {
                let what = if verify {
                    "verify_checksum"
                } else {
                    "update_checksum"
                };
                self.err(
                    s.span,
                    format!("only {what} calls are supported in this checksum control"),
                );
                return None;
            };
            if *v != verify {
                let what = if verify {
                    "verify_checksum"
                } else {
                    "update_checksum"
                };
                self.err(
                    s.span,
                    format!("only {what} calls are supported in this checksum control"),
                );
                return None;
            }
            let mut input = self.calc_inputs(data, &env, None)?;
            if *with_payload {
                input.push(json!({"type": "payload", "value": null}));
            }
            let calc = self.add_calculation(*algo, input, Some(s.span));
            let target = match self.place(checksum, &env) {
                Some(Place::Field(h, f)) => json!([h, f]),
                _ => {
                    self.unsupported(checksum.span, "this checksum target");
                    return None;
                }
            };
            let if_cond = match &cond.kind {
                ExprKind::Bool(true) => Value::Null,
                _ => {
                    let b = self.boolean(cond, &env)?;
                    if b["type"] == "expression" {
                        b
                    } else {
                        op("d2b", None, op("b2d", None, b).operand()).operand()
                    }
                }
            };
            let name = if self.checksums.is_empty() {
                "cksum".to_string()
            } else {
                format!("cksum_{}", self.checksums.len() - 1)
            };
            let id = self.checksums.len();
            self.checksums.push(json!({
                "name": name, "id": id, "source_info": self.source_info(s.span),
                "target": target, "type": "generic", "calculation": calc,
                "verify": verify, "update": !verify, "if_cond": if_cond
            }));
        }
        Some(())
    }

    fn deparser(&mut self) -> Option<Value> {
        let c = &self.p.controls[self.p.main.deparser];
        self.block_params = c.params.clone();
        let (apply, span) = (c.apply.clone(), c.span);
        let env = Env::default();
        let mut order = Vec::new();
        fn headers_of(p: Place, out: &mut Vec<String>) {
            match p {
                Place::Header(h) => out.push(h),
                Place::Stack(elems) => out.extend(elems),
                Place::Struct(fs) => fs.into_iter().for_each(|f| headers_of(f, out)),
                Place::Field(..) | Place::RuntimeData(_) => {}
            }
        }
        let mut stack: Vec<&hir::Stmt> = apply.iter().rev().collect();
        while let Some(s) = stack.pop() {
            match &s.kind {
                hir::StmtKind::Block(b) => stack.extend(b.iter().rev()),
                hir::StmtKind::Call(hir::Call::Emit(e)) => match self.place(e, &env) {
                    Some(p) => headers_of(p, &mut order),
                    None => {
                        self.unsupported(e.span, "emitting this expression");
                        return None;
                    }
                },
                _ => {
                    self.err(s.span, "a deparser may only emit headers (`pkt.emit(h.x);`); other statements are not supported");
                    return None;
                }
            }
        }
        Some(
            json!([{"name": "deparser", "id": 0, "source_info": self.source_info(span), "order": order, "primitives": []}]),
        )
    }

    // ----- the whole program ------------------------------------------------------------------

    fn run(&mut self) {
        let main = &self.p.main;
        let (hty, mty) = (main.headers_ty.clone(), main.meta_ty.clone());
        let mname = match &mty {
            Ty::Struct(s) => self.p.structs[*s].name.clone(),
            _ => String::new(),
        };
        let hname = match &hty {
            Ty::Struct(s) => self.p.structs[*s].name.clone(),
            _ => String::new(),
        };
        self.headers_place = Some(self.alloc(&hty, &hname, ""));
        self.meta_place = Some(self.alloc(&mty, &mname, ""));
        let parsers = self.parser();
        let (vc, cc) = (self.p.main.verify_checksum, self.p.main.compute_checksum);
        let ok_vc = self.checksum_control(vc, true);
        let ok_cc = self.checksum_control(cc, false);
        let ingress = self.pipeline("ingress", 0, self.p.main.ingress);
        let egress = self.pipeline("egress", 1, self.p.main.egress);
        let deparsers = self.deparser();
        if let (Some(parsers), Some(()), Some(()), Some(ingress), Some(egress), Some(deparsers)) =
            (parsers, ok_vc, ok_cc, ingress, egress, deparsers)
        {
            self.lowered = Lowered {
                parsers,
                deparsers,
                pipelines: json!([ingress, egress]),
            };
        }
    }

    fn finish(self) -> Value {
        let mut header_types = Vec::new();
        let mut fields: Vec<Value> = self
            .scalars
            .iter()
            .map(|(n, w, s)| json!([n, w, s]))
            .collect();
        let total: u32 = self.scalars.iter().map(|s| s.1).sum();
        if !total.is_multiple_of(8) {
            fields.push(json!(["_padding_0", 8 - total % 8, false]));
        }
        header_types.push(json!({"name": "scalars_0", "id": 0, "fields": fields}));
        let mut sm: Vec<Value> = builtins::STANDARD_METADATA
            .iter()
            .map(|(n, w)| json!([n, w, false]))
            .collect();
        let smw: u32 = builtins::STANDARD_METADATA.iter().map(|f| f.1).sum();
        if !smw.is_multiple_of(8) {
            sm.push(json!(["_padding", 8 - smw % 8, false]));
        }
        header_types.push(json!({"name": "standard_metadata", "id": 1, "fields": sm}));
        for (i, h) in self.p.headers.iter().enumerate() {
            let fs: Vec<Value> = h.fields.iter().map(|(n, w, s)| json!([n, w, s])).collect();
            header_types.push(json!({"name": h.name, "id": i + 2, "fields": fs}));
        }
        let mut headers = vec![
            json!({"name": "scalars", "id": 0, "header_type": "scalars_0", "metadata": true, "pi_omit": true}),
            json!({"name": "standard_metadata", "id": 1, "header_type": "standard_metadata", "metadata": true, "pi_omit": true}),
        ];
        headers.extend(self.headers.iter().cloned());
        let errors: Vec<Value> = self
            .p
            .errors
            .iter()
            .enumerate()
            .map(|(i, e)| json!([e, i]))
            .collect();
        let enums: Vec<Value> = self
            .p
            .enums
            .iter()
            .filter(|e| !e.builtin)
            .map(|e| json!({"name": e.name, "entries": e.members.iter().map(|(n, v)| json!([n, v])).collect::<Vec<_>>()}))
            .collect();
        let mut counters = Vec::new();
        let mut registers = Vec::new();
        for x in &self.p.externs {
            match &x.kind {
                hir::ExternKind::Counter { size, .. } => counters.push(json!({
                    "name": x.name, "id": counters.len(), "source_info": self.source_info(x.span),
                    "size": size, "is_direct": false
                })),
                hir::ExternKind::DirectCounter { .. } => {
                    if let Some(t) = x.bound_table {
                        counters.push(json!({
                            "name": x.name, "id": counters.len(), "is_direct": true,
                            "binding": self.p.tables[t].name, "source_info": self.source_info(x.span)
                        }));
                    }
                }
                hir::ExternKind::Register { width, size } => registers.push(json!({
                    "name": x.name, "id": registers.len(), "source_info": self.source_info(x.span),
                    "size": size, "bitwidth": width
                })),
            }
        }
        let field_lists = if self.need_clone_field_list {
            json!([{"id": 1, "name": "fl", "elements": []}])
        } else {
            json!([])
        };
        let aliases: Vec<Value> = builtins::FIELD_ALIASES
            .iter()
            .map(|(a, f)| json!([a, ["standard_metadata", f]]))
            .collect();
        let program = format!(
            "{}.p4i",
            self.file_name
                .rsplit('/')
                .next()
                .unwrap_or(self.file_name)
                .trim_end_matches(".p4")
        );
        let l = self.lowered;
        json!({
            "header_types": header_types,
            "headers": headers,
            "header_stacks": self.stacks,
            "header_union_types": [],
            "header_unions": [],
            "header_union_stacks": [],
            "field_lists": field_lists,
            "errors": errors,
            "enums": enums,
            "parsers": l.parsers,
            "parse_vsets": [],
            "deparsers": l.deparsers,
            "meter_arrays": [],
            "counter_arrays": counters,
            "register_arrays": registers,
            "calculations": self.calculations,
            "learn_lists": self.learn_lists,
            "actions": self.actions,
            "pipelines": l.pipelines,
            "checksums": self.checksums,
            "force_arith": [],
            "extern_instances": [],
            "field_aliases": aliases,
            "program": program,
            "__meta__": {"version": [2, 23], "compiler": "vmdep"}
        })
    }
}

/// Where a table's actions lead.
enum NextMap {
    /// Per action (program action index), and the default next.
    Actions(HashMap<usize, Option<String>>, Option<String>),
    /// `if (t.apply().hit)`: (hit, miss).
    HitMiss(Option<String>, Option<String>),
}

#[derive(Default)]
struct Lowered {
    parsers: Value,
    deparsers: Value,
    pipelines: Value,
}
