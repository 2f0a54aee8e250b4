//! Fills the [`ControlPlane`] model from a checked program: the tables applied by V1Switch's
//! ingress and egress, the actions they use, counters, direct counters, registers and
//! digests, named as p4c names them in P4Info.
//!
//! Owns: choosing what the control plane sees and its names. Must not touch: protobuf (the
//! P4Info back end) or bmv2 JSON.

use super::ast::{self, Annotation};
use super::control_plane::*;
use super::hir::{self, Ty};

/// Annotations that P4Info carries in `preamble.annotations` (not `@name`, `@id`, `@brief`).
fn annotations_text(anns: &[Annotation]) -> Vec<String> {
    anns.iter()
        .filter(|a| !matches!(a.name.name.as_str(), "name" | "id" | "brief"))
        .map(|a| {
            if a.args.is_empty() {
                format!("@{}", a.name.name)
            } else {
                let args: Vec<String> = a.args.iter().map(arg_text).collect();
                format!("@{}({})", a.name.name, args.join(", "))
            }
        })
        .collect()
}

fn arg_text(e: &ast::Expr) -> String {
    match &e.kind {
        ast::ExprKind::String(s) => format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"")),
        ast::ExprKind::Int { value, .. } => value.to_string(),
        ast::ExprKind::Bool(b) => b.to_string(),
        _ => super::check::expr_source(e),
    }
}

fn preamble(name: &str, anns: &[Annotation]) -> CpPreamble {
    CpPreamble {
        name: name.to_string(),
        explicit_id: ast::find_annotation(anns, "id")
            .and_then(|a| a.int_arg())
            .and_then(|v| u32::try_from(v).ok()),
        annotations: annotations_text(anns),
        brief: ast::find_annotation(anns, "brief").and_then(|a| a.string_arg().map(str::to_string)),
    }
}

fn unit(u: hir::CounterUnit) -> CpCounterUnit {
    match u {
        hir::CounterUnit::Packets => CpCounterUnit::Packets,
        hir::CounterUnit::Bytes => CpCounterUnit::Bytes,
        hir::CounterUnit::PacketsAndBytes => CpCounterUnit::Both,
    }
}

/// Tables applied in `stmts`, in source order.
fn applied(stmts: &[hir::Stmt], out: &mut Vec<usize>) {
    for s in stmts {
        match &s.kind {
            hir::StmtKind::Apply(t) => out.push(*t),
            hir::StmtKind::SwitchActionRun { table, cases } => {
                out.push(*table);
                for (_, b) in cases {
                    applied(b.as_deref().unwrap_or(&[]), out);
                }
            }
            hir::StmtKind::If(c, t, o) => {
                hit_tables(c, out);
                applied(t, out);
                applied(o, out);
            }
            hir::StmtKind::Block(b) => applied(b, out),
            _ => {}
        }
    }
}

fn hit_tables(e: &hir::Expr, out: &mut Vec<usize>) {
    match &e.kind {
        hir::ExprKind::TableHit(t, _) => out.push(*t),
        hir::ExprKind::Unary(_, x) => hit_tables(x, out),
        hir::ExprKind::Binary(_, a, b) => {
            hit_tables(a, out);
            hit_tables(b, out);
        }
        _ => {}
    }
}

/// Digest calls in `stmts` (and in the actions they call), as struct type indices.
fn digests(
    p: &hir::Program,
    stmts: &[hir::Stmt],
    out: &mut Vec<usize>,
    seen_actions: &mut Vec<usize>,
) {
    for s in stmts {
        match &s.kind {
            hir::StmtKind::Call(hir::Call::Digest { struct_ty, .. })
                if !out.contains(struct_ty) =>
            {
                out.push(*struct_ty);
            }
            hir::StmtKind::Call(hir::Call::Action { action, .. })
                if !seen_actions.contains(action) =>
            {
                seen_actions.push(*action);
                digests(p, &p.actions[*action].body, out, seen_actions);
            }
            hir::StmtKind::If(_, t, o) => {
                digests(p, t, out, seen_actions);
                digests(p, o, out, seen_actions);
            }
            hir::StmtKind::Block(b) => digests(p, b, out, seen_actions),
            hir::StmtKind::SwitchActionRun { cases, .. } => {
                for (_, b) in cases {
                    digests(p, b.as_deref().unwrap_or(&[]), out, seen_actions);
                }
            }
            _ => {}
        }
    }
}

/// The control plane's view of `p`.
pub fn build(p: &hir::Program) -> ControlPlane {
    let mut cp = ControlPlane {
        arch: "v1model".into(),
        ..ControlPlane::default()
    };
    let mut tables = Vec::new();
    for c in [p.main.ingress, p.main.egress] {
        applied(&p.controls[c].apply, &mut tables);
    }
    let mut actions: Vec<usize> = Vec::new();
    for &t in &tables {
        let table = &p.tables[t];
        let match_fields = table
            .keys
            .iter()
            .map(|k| CpMatchField {
                name: k.name.clone(),
                bitwidth: k.expr.ty.width().unwrap_or(32),
                match_kind: match k.match_kind {
                    hir::MatchKind::Exact => CpMatchKind::Exact,
                    hir::MatchKind::Lpm => CpMatchKind::Lpm,
                    hir::MatchKind::Ternary => CpMatchKind::Ternary,
                    hir::MatchKind::Range => CpMatchKind::Range,
                    hir::MatchKind::Optional => CpMatchKind::Optional,
                },
                annotations: annotations_text(&k.annotations),
            })
            .collect();
        let refs = table
            .actions
            .iter()
            .map(|a| {
                if !actions.contains(&a.action) {
                    actions.push(a.action);
                }
                let has = |n: &str| ast::find_annotation(&a.annotations, n).is_some();
                CpActionRef {
                    action: p.actions[a.action].name.clone(),
                    scope: if has("tableonly") {
                        CpActionScope::TableOnly
                    } else if has("defaultonly") {
                        CpActionScope::DefaultOnly
                    } else {
                        CpActionScope::TableAndDefault
                    },
                    annotations: annotations_text(
                        &a.annotations
                            .iter()
                            .filter(|x| {
                                !matches!(x.name.name.as_str(), "tableonly" | "defaultonly")
                            })
                            .cloned()
                            .collect::<Vec<_>>(),
                    ),
                }
            })
            .collect();
        let default = table
            .default_action
            .as_ref()
            .map(|(a, args, _)| (p.actions[*a].name.clone(), args.clone()));
        cp.tables.push(CpTable {
            preamble: preamble(&table.name, &table.annotations),
            match_fields,
            actions: refs,
            const_default_action: table
                .default_action
                .as_ref()
                .filter(|d| d.2)
                .map(|d| p.actions[d.0].name.clone()),
            initial_default_action: default,
            direct_counters: table
                .direct_counter
                .map(|x| vec![p.externs[x].name.clone()])
                .unwrap_or_default(),
            size: table.size.unwrap_or(1024),
            support_timeout: table.support_timeout,
            is_const_table: table.entries.is_some(),
        });
    }
    actions.sort_unstable();
    for a in actions {
        let action = &p.actions[a];
        let mut anns = annotations_text(&action.annotations);
        if action.name == super::builtins::NO_ACTION && a == 0 {
            anns.push("@noWarn(\"unused\")".into());
        }
        cp.actions.push(CpAction {
            preamble: CpPreamble {
                annotations: anns,
                ..preamble(&action.name, &action.annotations)
            },
            params: action
                .params
                .iter()
                .map(|x| CpParam {
                    name: x.name.clone(),
                    bitwidth: x.ty.width().unwrap_or(1),
                    annotations: annotations_text(&x.annotations),
                })
                .collect(),
        });
    }
    for x in &p.externs {
        let pre = preamble(&x.name, &x.annotations);
        match &x.kind {
            hir::ExternKind::Counter { size, unit: u } => cp.counters.push(CpCounter {
                preamble: pre,
                unit: unit(*u),
                size: *size,
            }),
            hir::ExternKind::DirectCounter { unit: u } => {
                if let Some(t) = x.bound_table.filter(|t| tables.contains(t)) {
                    cp.direct_counters.push(CpDirectCounter {
                        preamble: pre,
                        unit: unit(*u),
                        table: p.tables[t].name.clone(),
                    });
                }
            }
            hir::ExternKind::Register { width, size } => cp.registers.push(CpRegister {
                preamble: pre,
                bitwidth: *width,
                size: *size,
            }),
        }
    }
    let mut ds = Vec::new();
    let mut seen = Vec::new();
    for c in [p.main.ingress, p.main.egress] {
        digests(p, &p.controls[c].apply, &mut ds, &mut seen);
    }
    for t in &tables {
        for a in &p.tables[*t].actions {
            if !seen.contains(&a.action) {
                seen.push(a.action);
                digests(p, &p.actions[a.action].body, &mut ds, &mut seen);
            }
        }
    }
    for s in ds {
        let st = &p.structs[s];
        cp.digests.push(CpDigest {
            preamble: preamble(&st.name, &[]),
            struct_name: st.name.clone(),
            fields: st
                .fields
                .iter()
                .map(|(n, t)| {
                    (
                        n.clone(),
                        if *t == Ty::Bool {
                            1
                        } else {
                            t.width().unwrap_or(0)
                        },
                    )
                })
                .collect(),
        });
    }
    cp
}
