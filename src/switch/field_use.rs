//! Which packet-header fields a loaded program names, so that the parser can skip extracting the
//! others: a field that nothing reads or writes travels from the frame to the frame sent as bytes
//! (the deparser copies the header's bytes as extracted and patches in only written fields), so
//! its value is never needed. This module only marks fields (`HeaderLayout::lazy`), when the
//! pipeline is loaded; the data plane extracts what is marked and, for the one reader that may
//! see a skipped field (a checksum computed from field values instead of header bytes), reads
//! the skipped fields from the frame first.
//!
//! Each part of a [`Program`] is taken apart here without `..`, so a new part that holds field
//! references does not compile until this module decides what it reads.

use super::pipeline::{
    Action, CalcInput, Checksum, Conditional, Control, Expr, FieldRef, KeyField, KeySource,
    LazyFields, ParseState, ParserOp, Primitive, Program, SelectKeyPart, Table,
};

/// The fields of the program's packet headers, by slot: named by some part of the program
/// other than the parser's extracts, the deparser and the byte-summed checksums' inputs.
struct Named {
    slots: Vec<bool>,
}

impl Named {
    fn field(&mut self, f: &FieldRef) {
        if let Some(s) = self.slots.get_mut(f.slot as usize) {
            *s = true;
        }
    }

    /// Every field of header `h` (named as a whole: copied, say).
    fn header(&mut self, p: &Program, h: u32) {
        if let Some(layout) = p.headers.get(h as usize) {
            let first = layout.first_slot as usize;
            for s in self.slots.iter_mut().skip(first).take(layout.fields.len()) {
                *s = true;
            }
        }
    }

    fn expr(&mut self, e: &Expr) {
        match e {
            Expr::Field(f) => self.field(f),
            Expr::Const(_) | Expr::Valid(_) | Expr::Param(_) | Expr::Lookahead { .. } => {}
            Expr::Unary(_, a) => self.expr(a),
            Expr::Binary(_, a, b) => {
                self.expr(a);
                self.expr(b);
            }
            Expr::Cond(c, a, b) => {
                self.expr(c);
                self.expr(a);
                self.expr(b);
            }
        }
    }

    fn calculation_inputs(&mut self, p: &Program, calc: usize) {
        for input in p.calculations.get(calc).map_or(&[][..], |c| &c.inputs) {
            match input {
                CalcInput::Field(f) => self.field(f),
                CalcInput::Const { .. } => {}
            }
        }
    }

    fn primitive(&mut self, p: &Program, prim: &Primitive) {
        match prim {
            Primitive::Assign { dst, src } => {
                self.field(dst);
                self.expr(src);
            }
            Primitive::AssignHeader { dst, src } => {
                self.header(p, *dst);
                self.header(p, *src);
            }
            Primitive::SetValid(_)
            | Primitive::SetInvalid(_)
            | Primitive::MarkToDrop
            | Primitive::Exit
            | Primitive::Jump(_) => {}
            Primitive::Count { counter: _, index } => self.expr(index),
            Primitive::RegisterRead {
                dst,
                register: _,
                index,
            } => {
                self.field(dst);
                self.expr(index);
            }
            Primitive::RegisterWrite {
                register: _,
                index,
                value,
            } => {
                self.expr(index);
                self.expr(value);
            }
            // A hash reads its inputs' values: they are never left to the bytes.
            Primitive::HashOffset {
                dst,
                base,
                calculation,
                size,
            } => {
                self.field(dst);
                self.expr(base);
                self.expr(size);
                self.calculation_inputs(p, *calculation);
            }
            Primitive::CloneI2E {
                session,
                field_list,
            } => {
                self.expr(session);
                if let Some(list) = field_list.and_then(|l| p.field_lists.get(l)) {
                    for f in list {
                        self.field(f);
                    }
                }
            }
            Primitive::Truncate(e) | Primitive::JumpIfZero(e, _) | Primitive::Assert(e) => {
                self.expr(e)
            }
        }
    }

    fn parse_state(&mut self, p: &Program, st: &ParseState) {
        let ParseState {
            name: _,
            ops,
            key,
            transitions: _,
            op_lookahead: _,
            key_lookahead: _,
            narrow_key: _,
            extracts: _,
        } = st;
        for op in ops {
            match op {
                ParserOp::Extract(_) => {}
                ParserOp::Set { dst, src } => {
                    self.field(dst);
                    self.expr(src);
                }
                ParserOp::Verify { cond, error } => {
                    self.expr(cond);
                    self.expr(error);
                }
                ParserOp::Advance(e) => self.expr(e),
                ParserOp::Primitive(prim) => self.primitive(p, prim),
            }
        }
        for (part, _) in key {
            match part {
                SelectKeyPart::Field(f) => self.field(f),
                SelectKeyPart::Lookahead { .. } => {}
            }
        }
    }

    fn table(&mut self, t: &Table) {
        let Table {
            name: _,
            json_id: _,
            keys,
            actions: _,
            next: _,
            base_default_next: _,
            max_size: _,
            direct_counter: _,
            support_timeout: _,
            default_action: _,
            const_entries: _,
        } = t;
        for k in keys {
            let KeyField {
                name: _,
                kind: _,
                source,
                width: _,
                mask: _,
            } = k;
            match source {
                KeySource::Field(f) => self.field(f),
                KeySource::Valid(_) => {}
            }
        }
    }

    fn checksum(&mut self, p: &Program, ck: &Checksum) {
        let Checksum {
            name: _,
            target,
            calculation,
            verify: _,
            update: _,
            condition,
            update_from_bytes: _,
        } = ck;
        self.field(target);
        if let Some(c) = condition {
            self.expr(c);
        }
        // A checksum over one header's bytes (IPv4's) is summed from the bytes; when it has to
        // be computed from the values instead, the data plane reads the skipped fields first.
        if p.calculations
            .get(*calculation)
            .is_some_and(|c| c.span.is_none())
        {
            self.calculation_inputs(p, *calculation);
        }
    }
}

/// Marks, in each packet header with per-field loads, the fields that extraction may skip.
pub fn mark_lazy_fields(p: &mut Program) {
    let mut named = Named {
        slots: vec![false; p.slot_count],
    };
    let Program {
        headers: _,
        slot_count: _,
        errors: _,
        parser_errors: _,
        parse_states,
        parser_start: _,
        deparse_order: _,
        initially_valid: _,
        actions,
        tables,
        conditionals,
        ingress,
        egress,
        calculations: _,
        checksums,
        counters: _,
        registers: _,
        field_lists: _,
        std: _,
        slot_owner: _,
        packet_slots: _,
    } = &*p;
    // Calculations are read through the checksums and hashes that use them, field lists through
    // the clones that use them; controls name nodes only; the standard metadata is not a packet
    // header (nothing is extracted into it).
    let Control { name: _, init: _ } = ingress;
    let Control { name: _, init: _ } = egress;
    for st in parse_states {
        named.parse_state(p, st);
    }
    for Action {
        name: _,
        json_id: _,
        params: _,
        body,
    } in actions
    {
        for prim in body {
            named.primitive(p, prim);
        }
    }
    for t in tables {
        named.table(t);
    }
    for Conditional {
        name: _,
        source: _,
        expr,
        true_next: _,
        false_next: _,
    } in conditionals
    {
        named.expr(expr);
    }
    for ck in checksums {
        named.checksum(p, ck);
    }
    for layout in &mut p.headers {
        let Some(windows) = &layout.windows else {
            continue;
        };
        let first = layout.first_slot as usize;
        let (eager, skipped): (Vec<_>, Vec<_>) = windows
            .iter()
            .enumerate()
            .map(|(i, w)| (i as u32, *w))
            .partition(|(i, _)| named.slots.get(first + *i as usize) == Some(&true));
        layout.lazy = (!skipped.is_empty()).then_some(LazyFields { eager, skipped });
    }
}
