//! Compiles a bmv2 JSON document, once, into the executable form the data plane runs: headers as
//! fixed slots of a field vector, expressions as small trees over resolved operands, actions as
//! primitive lists, tables with their match kinds, a parser with resolved transitions, and the
//! control graph as node indices. Everything named in the JSON is resolved here; whatever this
//! switch does not implement is refused here, with the feature named, never ignored later.
//! This module owns no runtime state (entries, counters, registers live in `dataplane`/`table`).

use std::collections::HashMap;

use super::hash::HashAlgo;
use super::json::{self, Bmv2Json, ExpressionValue, Operand};

/// The widest field (and value) the switch computes with.
pub const MAX_WIDTH: u32 = 128;
/// Parser states visited per frame before the parser gives up with `ParserTimeout`.
pub const MAX_PARSER_STEPS: usize = 1024;

/// Largest counter or register array this switch allocates (cells are allocated when the
/// pipeline is set, so a size from outside must not be able to exhaust memory).
pub const MAX_ARRAY_CELLS: u64 = 1 << 24;

fn array_size(size: u64, what: &str) -> Result<usize, LoadError> {
    if size > MAX_ARRAY_CELLS {
        return Err(unsupported(
            format!("{size} cells (at most {MAX_ARRAY_CELLS})"),
            what,
        ));
    }
    Ok(size as usize)
}

/// Why a pipeline could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Json(#[from] json::JsonError),
    /// The program uses something this switch does not implement.
    #[error("unsupported feature: {feature} (at {context})")]
    Unsupported { feature: String, context: String },
    /// The JSON is well formed but inconsistent (a dangling name, a bad width, ...).
    #[error("invalid pipeline: {message} (at {context})")]
    Invalid { message: String, context: String },
}

fn unsupported(feature: impl Into<String>, context: impl Into<String>) -> LoadError {
    LoadError::Unsupported {
        feature: feature.into(),
        context: context.into(),
    }
}

fn invalid(message: impl Into<String>, context: impl Into<String>) -> LoadError {
    LoadError::Invalid {
        message: message.into(),
        context: context.into(),
    }
}

/// Mask of the low `width` bits.
pub fn width_mask(width: u32) -> u128 {
    if width >= 128 {
        u128::MAX
    } else {
        (1u128 << width) - 1
    }
}

/// A resolved field: its slot in the field vector, its header and width.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldRef {
    pub slot: u32,
    pub header: u32,
    pub width: u32,
}

#[derive(Debug, Clone)]
pub struct FieldLayout {
    pub name: String,
    pub width: u32,
    /// Bit offset of the field's first (most significant) bit from the header's start.
    pub offset: u32,
}

/// Where one big-endian 64-bit load inside a header holds a whole field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Byte offset of the load from the header's start.
    pub byte: u32,
    /// Right shift of the loaded word that brings the field to the low bits.
    pub shift: u32,
    /// The field's width as a mask.
    pub mask: u64,
}

/// Each field's 64-bit window inside a header of `bytes` bytes: from the field's first byte,
/// or, near the header's end, the header's last 8 bytes (which then hold the field too). `None`
/// unless every field has one (headers shorter than 8 bytes, fields spread over more than 8).
fn place_windows(fields: &[FieldLayout], bytes: u32) -> Option<Vec<Window>> {
    let last = bytes.checked_sub(8)?;
    fields
        .iter()
        .map(|f| {
            let start = (f.offset / 8).min(last);
            let end = f.offset + f.width;
            ((start + 8) * 8 >= end).then(|| Window {
                byte: start,
                shift: (start + 8) * 8 - end,
                mask: u64::MAX >> (64 - f.width),
            })
        })
        .collect()
}

/// A header (or metadata) instance: its fields occupy slots `first_slot..first_slot+fields.len()`.
#[derive(Debug, Clone)]
pub struct HeaderLayout {
    pub name: String,
    pub metadata: bool,
    pub first_slot: u32,
    pub fields: Vec<FieldLayout>,
    /// Sum of the field widths; a multiple of 8 for packet headers.
    pub bits: u32,
    /// Packet headers whose every field is one 64-bit load away: the loads, by field.
    pub windows: Option<Vec<Window>>,
    /// For a header with `windows`, when the program never names some of its fields (see
    /// `field_use`): the loads of the fields to extract, and of those extraction skips.
    pub lazy: Option<LazyFields>,
    /// The header's slots as bits of 64-bit words: `slot_words(first_slot, fields.len())`.
    pub slot_words: Vec<(usize, u64)>,
}

/// A header's fields split by whether extraction reads them: (field index, load) each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LazyFields {
    pub eager: Vec<(u32, Window)>,
    pub skipped: Vec<(u32, Window)>,
}

/// The bits of slots `start..start + n` in a set of 64-bit words, one bit per slot: (word
/// index, mask of those bits in that word), for each word holding some of them.
pub fn slot_words(start: usize, n: usize) -> Vec<(usize, u64)> {
    let end = start + n;
    // Each word of the range holds at least one of its bits (none when n is 0).
    let words = if n == 0 {
        0..0
    } else {
        start / 64..end.div_ceil(64)
    };
    words
        .map(|w| {
            let low = start.saturating_sub(w * 64);
            let high = (end - w * 64).min(64);
            let mask = (u64::MAX >> (64 - (high - low))) << low;
            (w, mask)
        })
        .collect()
}

impl HeaderLayout {
    /// Lays out `fields` (name, width) one after the other, in slots from `first_slot`.
    pub fn new(
        name: String,
        metadata: bool,
        first_slot: u32,
        fields: Vec<(String, u32)>,
    ) -> HeaderLayout {
        let mut bits = 0u32;
        let mut laid = Vec::with_capacity(fields.len());
        for (name, width) in fields {
            laid.push(FieldLayout {
                name,
                width,
                offset: bits,
            });
            bits = bits.saturating_add(width);
        }
        let windows = if metadata {
            None
        } else {
            place_windows(&laid, bits / 8)
        };
        HeaderLayout {
            name,
            metadata,
            first_slot,
            slot_words: slot_words(first_slot as usize, laid.len()),
            fields: laid,
            bits,
            windows,
            lazy: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Shl,
    Shr,
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    And,
    Or,
    BitAnd,
    BitOr,
    BitXor,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnOp {
    /// Logical not.
    Not,
    /// Bitwise complement (of the infinite-precision value, as bmv2; p4c masks the result).
    BitNot,
    /// Unary minus.
    Neg,
    /// Data to bool: non-zero.
    D2b,
}

/// A compiled expression. Booleans are the values 0 and 1.
#[derive(Debug, Clone)]
pub enum Expr {
    Const(u128),
    Field(FieldRef),
    /// A header's validity (`$valid$`, `valid`).
    Valid(u32),
    /// An action parameter (`runtime_data`, `local`).
    Param(usize),
    /// Parser only: `[bit offset, width]` ahead of the cursor.
    Lookahead {
        offset: u32,
        width: u32,
    },
    Unary(UnOp, Box<Expr>),
    Binary(BinOp, Box<Expr>, Box<Expr>),
    Cond(Box<Expr>, Box<Expr>, Box<Expr>),
}

/// A named calculation: algorithm and input fields (or constants).
#[derive(Debug, Clone)]
pub struct Calculation {
    pub name: String,
    pub algo: HashAlgo,
    pub inputs: Vec<CalcInput>,
    /// The headers the input fields belong to (each once).
    pub headers: Vec<u32>,
    /// For each input, its bit distance (mod 16) from the end of the packed inputs padded to
    /// whole 16-bit words, when all `headers` are valid (every input included): what a csum16
    /// computed from the values needs.
    pub csum_shifts: Vec<u32>,
    /// The same for the field inputs alone, as (slot, shift): what a csum16 reads per packet.
    pub csum_fields: Vec<(u32, u32)>,
    /// The constant inputs' contribution to that sum (each folded to 34 bits and shifted).
    pub csum_constants: u64,
    /// Every field input is at most 32 bits wide, so its value is its own fold (IPv4's).
    pub csum_narrow: bool,
    /// For a csum16 over one packet header's fields (IPv4's header checksum): where they lie in
    /// the header's bytes (set when the program is loaded, as it needs the header layouts).
    pub span: Option<CsumSpan>,
}

/// Where a csum16's inputs lie in one packet header when they are that header's fields in
/// layout order, from a 16-bit boundary to a byte boundary, leaving out only whole 16-bit words
/// (the checksum field itself, say). The checksum is then that of the header's bytes without
/// those words: it can be summed from the bytes a header was extracted from, or deparsed to,
/// instead of field by field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsumSpan {
    pub header: u32,
    /// The bytes of the header (from its start) the inputs lie in, left-out words included.
    pub start: u32,
    pub end: u32,
    /// The byte offsets (from the header's start) of the 16-bit words left out.
    pub skipped: Vec<u32>,
    /// When the span is whole 32-bit words (IPv4's 20 bytes): each word's offset from `start`
    /// and the mask that leaves out its skipped halves; then the sum is one masked load per word.
    pub words: Option<Vec<(u32, u32)>>,
}

impl CsumSpan {
    /// The span of `calc`'s inputs, if it has one (see the type).
    pub fn of(calc: &Calculation, headers: &[HeaderLayout]) -> Option<CsumSpan> {
        if calc.algo != HashAlgo::Csum16 {
            return None;
        }
        let fields = calc
            .inputs
            .iter()
            .map(|i| match i {
                CalcInput::Field(f) => Some(*f),
                CalcInput::Const { .. } => None,
            })
            .collect::<Option<Vec<_>>>()?;
        let header = fields.first()?.header;
        let layout = headers.get(header as usize)?;
        if layout.metadata || fields.iter().any(|f| f.header != header) {
            return None;
        }
        let mut skipped = Vec::new();
        let mut next: Option<u32> = None;
        let mut start = 0;
        for f in &fields {
            let at = layout.fields.get((f.slot - layout.first_slot) as usize)?;
            match next {
                None => start = at.offset,
                // A gap of whole 16-bit words, or nothing.
                Some(n)
                    if n <= at.offset
                        && n.is_multiple_of(16)
                        && (at.offset - n).is_multiple_of(16) =>
                {
                    skipped.extend((n / 8..at.offset / 8).step_by(2))
                }
                Some(n) if n == at.offset => {}
                Some(_) => return None,
            }
            next = Some(at.offset + at.width);
        }
        let end = next?;
        if !(start.is_multiple_of(16) && end.is_multiple_of(8)) {
            return None;
        }
        let (start, end) = (start / 8, end / 8);
        let words = (end - start).is_multiple_of(4).then(|| {
            (start..end)
                .step_by(4)
                .map(|at| {
                    let mut mask = u32::MAX;
                    if skipped.contains(&at) {
                        mask &= 0x0000_ffff;
                    }
                    if skipped.contains(&(at + 2)) {
                        mask &= 0xffff_0000;
                    }
                    (at - start, mask)
                })
                .collect()
        });
        Some(CsumSpan {
            header,
            start,
            end,
            skipped,
            words,
        })
    }

    /// The checksum of the inputs, from `header`, the header's bytes (as long as it is).
    pub fn checksum(&self, header: &[u8]) -> Option<u16> {
        let bytes = header.get(self.start as usize..self.end as usize)?;
        if let Some(words) = &self.words {
            // Each word lies inside `bytes` (built so): the fallback is never taken.
            let sum: u64 = words
                .iter()
                .map(|&(at, mask)| {
                    let w = bytes
                        .get(at as usize..at as usize + 4)
                        .map_or(0, |w| u32::from_be_bytes(w.try_into().unwrap_or([0; 4])));
                    u64::from(w & mask)
                })
                .sum();
            return Some(!csum_fold16(sum));
        }
        // The same ones' complement sum as the values give (see `csum_fold`): as 2^16 is 1
        // modulo 0xffff, the big-endian 32-bit words (the last one padded with zeros) added up
        // as integers, less each left-out 16-bit word with the weight it had in its 32-bit word.
        let mut words = bytes.chunks_exact(4);
        let mut sum: u64 = words
            .by_ref()
            .map(|w| u64::from(u32::from_be_bytes([w[0], w[1], w[2], w[3]])))
            .sum();
        let mut last = [0u8; 4];
        for (to, from) in last.iter_mut().zip(words.remainder()) {
            *to = *from;
        }
        sum += u64::from(u32::from_be_bytes(last));
        for &at in &self.skipped {
            let w = header.get(at as usize..at as usize + 2)?;
            let weight = if (at - self.start).is_multiple_of(4) {
                16
            } else {
                0
            };
            sum -= u64::from(u16::from_be_bytes([w[0], w[1]])) << weight;
        }
        Some(!csum_fold16(sum))
    }
}

/// `v` modulo 0xffff as a ones' complement sum of its 16-bit words: in 1..=0xffff unless `v` is 0.
pub fn csum_fold16(v: u64) -> u16 {
    let mut s = (v & 0xffff_ffff) + (v >> 32);
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// A value's 16-bit words summed in 34 bits (32-bit halves added): congruent to it modulo
/// 0xffff, which is all a ones' complement sum needs.
pub fn csum_fold(v: u128) -> u64 {
    let (low, high) = (v as u64, (v >> 64) as u64);
    (low & 0xffff_ffff) + (low >> 32) + (high & 0xffff_ffff) + (high >> 32)
}

impl Calculation {
    pub fn new(name: String, algo: HashAlgo, inputs: Vec<CalcInput>) -> Calculation {
        let mut headers = Vec::new();
        for i in &inputs {
            if let CalcInput::Field(f) = i {
                if !headers.contains(&f.header) {
                    headers.push(f.header);
                }
            }
        }
        let width = |i: &CalcInput| match i {
            CalcInput::Field(f) => f.width,
            CalcInput::Const { width, .. } => *width,
        };
        let total: u32 = inputs.iter().map(width).sum();
        let mut from_end = total.next_multiple_of(16) - total;
        let mut csum_shifts: Vec<u32> = inputs
            .iter()
            .rev()
            .map(|i| {
                let shift = from_end % 16;
                from_end += width(i);
                shift
            })
            .collect();
        csum_shifts.reverse();
        let mut csum_fields = Vec::new();
        let mut csum_constants = 0u64;
        for (i, &shift) in inputs.iter().zip(&csum_shifts) {
            match *i {
                CalcInput::Field(f) => csum_fields.push((f.slot, shift)),
                // At most 4096 inputs of < 2^50 each: no overflow.
                CalcInput::Const { value, width } => {
                    csum_constants =
                        csum_constants.wrapping_add(csum_fold(value & width_mask(width)) << shift)
                }
            }
        }
        let csum_narrow = inputs.iter().all(|i| match i {
            CalcInput::Field(f) => f.width <= 32,
            CalcInput::Const { .. } => true,
        });
        Calculation {
            name,
            algo,
            inputs,
            headers,
            csum_shifts,
            csum_fields,
            csum_constants,
            csum_narrow,
            span: None,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub enum CalcInput {
    Field(FieldRef),
    Const { value: u128, width: u32 },
}

/// One primitive of an action body.
#[derive(Debug, Clone)]
pub enum Primitive {
    Assign {
        dst: FieldRef,
        src: Expr,
    },
    /// Copy a whole header, validity included.
    AssignHeader {
        dst: u32,
        src: u32,
    },
    SetValid(u32),
    SetInvalid(u32),
    MarkToDrop,
    Count {
        counter: usize,
        index: Expr,
    },
    RegisterRead {
        dst: FieldRef,
        register: usize,
        index: Expr,
    },
    RegisterWrite {
        register: usize,
        index: Expr,
        value: Expr,
    },
    HashOffset {
        dst: FieldRef,
        base: Expr,
        calculation: usize,
        size: Expr,
    },
    CloneI2E {
        session: Expr,
        field_list: Option<usize>,
    },
    Exit,
    Truncate(Expr),
    Jump(usize),
    JumpIfZero(Expr, usize),
    /// `assert`/`assume`: a false condition drops the frame (bmv2 would abort the switch).
    Assert(Expr),
}

#[derive(Debug, Clone)]
pub struct ActionParam {
    pub name: String,
    pub width: u32,
}

#[derive(Debug, Clone)]
pub struct Action {
    pub name: String,
    /// The bmv2 JSON id.
    pub json_id: i64,
    pub params: Vec<ActionParam>,
    pub body: Vec<Primitive>,
}

/// How a key field of a table matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchKind {
    Exact,
    Lpm,
    Ternary,
    Range,
    Optional,
    /// Header validity, as a 1-bit exact value.
    Valid,
}

impl MatchKind {
    pub fn name(self) -> &'static str {
        match self {
            MatchKind::Exact => "exact",
            MatchKind::Lpm => "lpm",
            MatchKind::Ternary => "ternary",
            MatchKind::Range => "range",
            MatchKind::Optional => "optional",
            MatchKind::Valid => "valid",
        }
    }
}

#[derive(Debug, Clone)]
pub struct KeyField {
    /// The key's `name` in the JSON (the P4Info match field name).
    pub name: String,
    pub kind: MatchKind,
    pub source: KeySource,
    pub width: u32,
    /// A static mask from the program (`field & mask : kind`).
    pub mask: Option<u128>,
}

#[derive(Debug, Clone, Copy)]
pub enum KeySource {
    Field(FieldRef),
    Valid(u32),
}

/// Where control goes after a table.
#[derive(Debug, Clone)]
pub enum TableNext {
    /// Indexed like `Table::actions`.
    ByAction(Vec<Option<Node>>),
    HitMiss {
        hit: Option<Node>,
        miss: Option<Node>,
    },
}

#[derive(Debug, Clone)]
pub struct DefaultAction {
    pub action: usize,
    pub args: Vec<u128>,
    /// The control plane may not change the action function.
    pub action_const: bool,
    /// The control plane may not change the action nor its arguments.
    pub entry_const: bool,
}

/// A const entry of the program, still in bmv2 terms; `table` turns it into a runtime entry.
#[derive(Debug, Clone)]
pub struct ConstEntry {
    pub key: Vec<json::ConstKey>,
    pub action: usize,
    pub args: Vec<u128>,
    pub bmv2_priority: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct Table {
    pub name: String,
    pub json_id: i64,
    pub keys: Vec<KeyField>,
    /// Program action indices this table may run.
    pub actions: Vec<usize>,
    pub next: TableNext,
    /// Where a miss without a default action goes.
    pub base_default_next: Option<Node>,
    pub max_size: usize,
    pub direct_counter: Option<usize>,
    pub support_timeout: bool,
    pub default_action: Option<DefaultAction>,
    pub const_entries: Vec<ConstEntry>,
}

impl Table {
    /// Whether entries of this table carry a priority (P4Runtime: ternary, range or optional keys).
    pub fn needs_priority(&self) -> bool {
        self.keys.iter().any(|k| {
            matches!(
                k.kind,
                MatchKind::Ternary | MatchKind::Range | MatchKind::Optional
            )
        })
    }
}

#[derive(Debug, Clone)]
pub struct Conditional {
    pub name: String,
    /// The P4 source of the condition, when the JSON gives it (for the packet log).
    pub source: Option<String>,
    pub expr: Expr,
    pub true_next: Option<Node>,
    pub false_next: Option<Node>,
}

/// A node of a control graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Node {
    Table(usize),
    Conditional(usize),
}

#[derive(Debug, Clone)]
pub struct Control {
    pub name: String,
    pub init: Option<Node>,
}

#[derive(Debug, Clone)]
pub enum ParserOp {
    Extract(u32),
    Set {
        dst: FieldRef,
        src: Expr,
    },
    Verify {
        cond: Expr,
        error: Expr,
    },
    /// Skip this many bits (a multiple of 8).
    Advance(Expr),
    Primitive(Primitive),
}

#[derive(Debug, Clone, Copy)]
pub enum SelectKeyPart {
    Field(FieldRef),
    Lookahead { offset: u32, width: u32 },
}

#[derive(Debug, Clone)]
pub struct Transition {
    /// `None` for the default transition.
    pub value: Option<u128>,
    pub mask: u128,
    /// `None` means accept.
    pub next: Option<usize>,
}

#[derive(Debug, Clone)]
pub struct ParseState {
    pub name: String,
    pub ops: Vec<ParserOp>,
    /// Each part padded to whole bytes and concatenated, as bmv2 builds the key.
    pub key: Vec<(SelectKeyPart, u32)>,
    pub transitions: Vec<Transition>,
    /// Per op, how many bits past the cursor its lookaheads read (checked before it runs).
    pub op_lookahead: Vec<u32>,
    /// How many bits past the cursor the select key reads.
    pub key_lookahead: u32,
    /// The select key fits in 64 bits (then it is built with 64-bit shifts).
    pub narrow_key: bool,
    /// When every op is an extract (most states): the headers, in order, run without the
    /// general ops' dispatch and lookahead checks.
    pub extracts: Option<Vec<u32>>,
}

/// Whether an expression's value is always 0 or 1.
fn is_boolean(e: &Expr) -> bool {
    match e {
        Expr::Valid(_) => true,
        Expr::Const(v) => *v <= 1,
        Expr::Unary(op, _) => matches!(op, UnOp::Not | UnOp::D2b),
        Expr::Binary(op, ..) => matches!(
            op,
            BinOp::Eq
                | BinOp::Ne
                | BinOp::Gt
                | BinOp::Ge
                | BinOp::Lt
                | BinOp::Le
                | BinOp::And
                | BinOp::Or
        ),
        Expr::Cond(_, a, b) => is_boolean(a) && is_boolean(b),
        Expr::Field(_) | Expr::Param(_) | Expr::Lookahead { .. } => false,
    }
}

/// `e` without an outermost `& mask` that keeps all of the low `width` bits: what p4c wraps
/// around arithmetic (`ttl - 1` is `(ttl + 0xff) & 0xff`) and what writing a field of that width
/// does anyway. Leaves a cheaper expression to evaluate, with the same field value.
fn without_outer_mask(e: Expr, width: u32) -> Expr {
    let keeps_width =
        |m: &Expr| matches!(m, Expr::Const(m) if m & width_mask(width) == width_mask(width));
    match e {
        Expr::Binary(BinOp::BitAnd, a, m) if keeps_width(&m) => *a,
        Expr::Binary(BinOp::BitAnd, m, b) if keeps_width(&m) => *b,
        e => e,
    }
}

/// How many bits past the parser cursor an expression reads through lookaheads.
pub fn lookahead_bits(e: &Expr) -> u32 {
    match e {
        Expr::Lookahead { offset, width } => offset.saturating_add(*width),
        Expr::Unary(_, a) => lookahead_bits(a),
        Expr::Binary(_, a, b) => lookahead_bits(a).max(lookahead_bits(b)),
        Expr::Cond(a, b, c) => lookahead_bits(a)
            .max(lookahead_bits(b))
            .max(lookahead_bits(c)),
        Expr::Const(_) | Expr::Field(_) | Expr::Valid(_) | Expr::Param(_) => 0,
    }
}

#[derive(Debug, Clone)]
pub struct Checksum {
    pub name: String,
    pub target: FieldRef,
    pub calculation: usize,
    pub verify: bool,
    pub update: bool,
    pub condition: Option<Expr>,
    /// An update whose calculation has a `CsumSpan` in the target's header, which no other
    /// update reads or writes: it may be summed from the deparsed header's bytes.
    pub update_from_bytes: bool,
}

#[derive(Debug, Clone)]
pub struct CounterArray {
    pub name: String,
    pub size: usize,
    /// The table a direct counter belongs to.
    pub direct_table: Option<usize>,
}

#[derive(Debug, Clone)]
pub struct RegisterArray {
    pub name: String,
    pub size: usize,
    pub width: u32,
}

/// The standard metadata fields the v1model architecture reads and writes.
#[derive(Debug, Clone, Copy)]
pub struct StandardMetadata {
    pub ingress_port: FieldRef,
    pub egress_spec: FieldRef,
    pub egress_port: FieldRef,
    pub instance_type: FieldRef,
    pub packet_length: Option<FieldRef>,
    pub checksum_error: Option<FieldRef>,
    pub parser_error: Option<FieldRef>,
    pub mcast_grp: Option<FieldRef>,
    pub egress_rid: Option<FieldRef>,
}

/// The error codes the parser raises itself.
#[derive(Debug, Clone, Copy)]
pub struct ParserErrors {
    pub packet_too_short: u32,
    pub no_match: u32,
    pub parser_timeout: u32,
    pub parser_invalid_argument: u32,
}

/// A loaded, resolved, executable pipeline.
#[derive(Debug, Clone)]
pub struct Program {
    pub headers: Vec<HeaderLayout>,
    pub slot_count: usize,
    pub errors: Vec<(String, u32)>,
    pub parser_errors: ParserErrors,
    pub parse_states: Vec<ParseState>,
    pub parser_start: usize,
    pub deparse_order: Vec<u32>,
    /// Per header: valid before the parser runs (metadata is, packet headers are not).
    pub initially_valid: Vec<bool>,
    pub actions: Vec<Action>,
    pub tables: Vec<Table>,
    pub conditionals: Vec<Conditional>,
    pub ingress: Control,
    pub egress: Control,
    pub calculations: Vec<Calculation>,
    pub checksums: Vec<Checksum>,
    pub counters: Vec<CounterArray>,
    pub registers: Vec<RegisterArray>,
    /// Field lists (for clone metadata preservation), by position; `field_list_ids` maps JSON ids.
    pub field_lists: Vec<Vec<FieldRef>>,
    pub std: StandardMetadata,
    /// Per slot: its header and the field's index in it.
    pub slot_owner: Vec<(u32, u32)>,
    /// The slots of packet headers (not metadata), one bit each in 64-bit words.
    pub packet_slots: Vec<u64>,
}

impl Program {
    /// Parses and compiles bmv2 JSON text.
    pub fn from_json_str(text: &str) -> Result<Program, LoadError> {
        let doc = json::parse(text)?;
        Program::compile(&doc)
    }

    pub fn table_by_name(&self, name: &str) -> Option<usize> {
        self.tables.iter().position(|t| t.name == name)
    }

    pub fn counter_by_name(&self, name: &str) -> Option<usize> {
        self.counters.iter().position(|c| c.name == name)
    }

    pub fn register_by_name(&self, name: &str) -> Option<usize> {
        self.registers.iter().position(|r| r.name == name)
    }

    /// The action of `table` called `name` (action names repeat across the JSON; within one
    /// table's action list they are unique).
    pub fn table_action_by_name(&self, table: usize, name: &str) -> Option<usize> {
        self.tables
            .get(table)?
            .actions
            .iter()
            .copied()
            .find(|&a| self.actions[a].name == name)
    }

    pub fn field_by_name(&self, header: &str, field: &str) -> Option<FieldRef> {
        let h = self.headers.iter().position(|h| h.name == header)?;
        let layout = &self.headers[h];
        let i = layout.fields.iter().position(|f| f.name == field)?;
        Some(FieldRef {
            slot: layout.first_slot + i as u32,
            header: h as u32,
            width: layout.fields[i].width,
        })
    }

    /// Compiles a parsed document.
    pub fn compile(doc: &Bmv2Json) -> Result<Program, LoadError> {
        Compiler::new(doc)?.run()
    }
}

/// Parses a bmv2 hexstr (`0x..`, optionally negative) into a u128 (two's complement if negative).
pub fn parse_hexstr(text: &str, context: &str) -> Result<u128, LoadError> {
    let (negative, body) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let digits = body
        .strip_prefix("0x")
        .or_else(|| body.strip_prefix("0X"))
        .unwrap_or(body);
    let digits = digits.trim_start_matches('0');
    if digits.len() > 32 {
        return Err(unsupported(
            format!("constant wider than {MAX_WIDTH} bits ({text})"),
            context,
        ));
    }
    let value = if digits.is_empty() {
        0
    } else {
        u128::from_str_radix(digits, 16)
            .map_err(|_| invalid(format!("bad hexstr {text:?}"), context))?
    };
    Ok(if negative {
        value.wrapping_neg()
    } else {
        value
    })
}

struct Compiler<'a> {
    doc: &'a Bmv2Json,
    headers: Vec<HeaderLayout>,
    header_index: HashMap<&'a str, u32>,
    action_index: HashMap<i64, usize>,
    calc_index: HashMap<&'a str, usize>,
    counter_index: HashMap<&'a str, usize>,
    register_index: HashMap<&'a str, usize>,
    field_list_index: HashMap<i64, usize>,
    node_index: HashMap<&'a str, Node>,
    table_index: HashMap<&'a str, usize>,
}

impl<'a> Compiler<'a> {
    fn new(doc: &'a Bmv2Json) -> Result<Self, LoadError> {
        refuse_unsupported_sections(doc)?;
        let types: HashMap<&str, &json::HeaderType> = doc
            .header_types
            .iter()
            .map(|t| (t.name.as_str(), t))
            .collect();
        let mut headers = Vec::new();
        let mut header_index = HashMap::new();
        let mut slot = 0u32;
        for h in &doc.headers {
            let ctx = format!("header {}", h.name);
            let ty = types
                .get(h.header_type.as_str())
                .ok_or_else(|| invalid(format!("unknown header type {}", h.header_type), &ctx))?;
            let mut fields = Vec::new();
            let mut bits = 0u32;
            for f in &ty.fields {
                let width = match f.width() {
                    json::FieldWidth::Bits(w) => *w,
                    json::FieldWidth::Variable(_) => {
                        return Err(unsupported(
                            "variable-length (varbit) fields",
                            format!("{ctx}.{}", f.name()),
                        ))
                    }
                };
                if f.signed() {
                    return Err(unsupported(
                        "signed (int<N>) fields",
                        format!("{ctx}.{}", f.name()),
                    ));
                }
                if width == 0 || width > MAX_WIDTH {
                    return Err(unsupported(
                        format!("field width {width} (supported: 1..={MAX_WIDTH})"),
                        format!("{ctx}.{}", f.name()),
                    ));
                }
                fields.push((f.name().to_string(), width));
                bits = bits.saturating_add(width);
            }
            if !h.metadata && !bits.is_multiple_of(8) {
                return Err(invalid(
                    format!("header of {bits} bits, not a whole number of bytes"),
                    &ctx,
                ));
            }
            if header_index
                .insert(h.name.as_str(), headers.len() as u32)
                .is_some()
            {
                return Err(invalid("duplicate header instance name", &ctx));
            }
            headers.push(HeaderLayout::new(h.name.clone(), h.metadata, slot, fields));
            slot += ty.fields.len() as u32;
        }
        let mut c = Compiler {
            doc,
            headers,
            header_index,
            action_index: HashMap::new(),
            calc_index: HashMap::new(),
            counter_index: HashMap::new(),
            register_index: HashMap::new(),
            field_list_index: HashMap::new(),
            node_index: HashMap::new(),
            table_index: HashMap::new(),
        };
        for (i, a) in doc.actions.iter().enumerate() {
            if c.action_index.insert(a.id, i).is_some() {
                return Err(invalid("duplicate action id", format!("action {}", a.name)));
            }
        }
        for (i, x) in doc.calculations.iter().enumerate() {
            c.calc_index.insert(x.name.as_str(), i);
        }
        for (i, x) in doc.counter_arrays.iter().enumerate() {
            c.counter_index.insert(x.name.as_str(), i);
        }
        for (i, x) in doc.register_arrays.iter().enumerate() {
            c.register_index.insert(x.name.as_str(), i);
        }
        for (i, x) in doc.field_lists.iter().enumerate() {
            c.field_list_index.insert(x.id, i);
        }
        let mut table_no = 0usize;
        let mut cond_no = 0usize;
        for p in &doc.pipelines {
            for t in &p.tables {
                let ctx = format!("table {}", t.name);
                if c.node_index
                    .insert(t.name.as_str(), Node::Table(table_no))
                    .is_some()
                {
                    return Err(invalid("duplicate control node name", ctx));
                }
                c.table_index.insert(t.name.as_str(), table_no);
                table_no += 1;
            }
            for k in &p.conditionals {
                if c.node_index
                    .insert(k.name.as_str(), Node::Conditional(cond_no))
                    .is_some()
                {
                    return Err(invalid(
                        "duplicate control node name",
                        format!("conditional {}", k.name),
                    ));
                }
                cond_no += 1;
            }
        }
        Ok(c)
    }

    fn run(self) -> Result<Program, LoadError> {
        let doc = self.doc;
        let std = self.standard_metadata()?;
        let errors: Vec<(String, u32)> = doc.errors.clone();
        let error_code = |name: &str, fallback: u32| {
            errors
                .iter()
                .find(|(n, _)| n == name)
                .map_or(fallback, |e| e.1)
        };
        let parser_errors = ParserErrors {
            packet_too_short: error_code("PacketTooShort", 1),
            no_match: error_code("NoMatch", 2),
            parser_timeout: error_code("ParserTimeout", 5),
            parser_invalid_argument: error_code("ParserInvalidArgument", 6),
        };

        let field_lists = doc
            .field_lists
            .iter()
            .map(|fl| {
                let ctx = format!("field list {}", fl.name);
                fl.elements
                    .iter()
                    .map(|e| match e {
                        Operand::Field(h, f) => self.field(h, f, &ctx),
                        other => Err(unsupported(
                            format!("field list element of type {}", other.kind()),
                            &ctx,
                        )),
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .collect::<Result<Vec<_>, _>>()?;

        let calculations = doc
            .calculations
            .iter()
            .map(|x| self.calculation(x))
            .collect::<Result<Vec<_>, _>>()?;
        let actions = doc
            .actions
            .iter()
            .map(|a| self.action(a))
            .collect::<Result<Vec<_>, _>>()?;
        let registers = doc
            .register_arrays
            .iter()
            .map(|r| {
                if r.bitwidth == 0 || r.bitwidth > MAX_WIDTH {
                    return Err(unsupported(
                        format!("register width {}", r.bitwidth),
                        format!("register {}", r.name),
                    ));
                }
                Ok(RegisterArray {
                    name: r.name.clone(),
                    size: array_size(r.size, &format!("register {}", r.name))?,
                    width: r.bitwidth,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut counters = Vec::new();
        for x in &doc.counter_arrays {
            let ctx = format!("counter {}", x.name);
            let direct_table = if x.is_direct {
                let binding = x
                    .binding
                    .as_deref()
                    .ok_or_else(|| invalid("direct counter without binding", &ctx))?;
                Some(
                    *self
                        .table_index
                        .get(binding)
                        .ok_or_else(|| invalid(format!("unknown table {binding}"), &ctx))?,
                )
            } else {
                None
            };
            counters.push(CounterArray {
                name: x.name.clone(),
                size: array_size(x.size, &ctx)?,
                direct_table,
            });
        }

        let mut tables = Vec::new();
        let mut conditionals = Vec::new();
        let mut ingress = None;
        let mut egress = None;
        for p in &doc.pipelines {
            for t in &p.tables {
                tables.push(self.table(t, &actions, &counters)?);
            }
            for k in &p.conditionals {
                let ctx = format!("conditional {}", k.name);
                conditionals.push(Conditional {
                    name: k.name.clone(),
                    source: k
                        .source_info
                        .as_ref()
                        .and_then(|i| i.source_fragment.clone()),
                    expr: self.expr(&k.expression, &ctx, ExprScope::Control)?,
                    true_next: self.node(k.true_next.as_deref(), &ctx)?,
                    false_next: self.node(k.false_next.as_deref(), &ctx)?,
                });
            }
            let control = Control {
                name: p.name.clone(),
                init: self.node(p.init_table.as_deref(), &format!("pipeline {}", p.name))?,
            };
            match p.name.as_str() {
                "ingress" => ingress = Some(control),
                "egress" => egress = Some(control),
                other => {
                    return Err(unsupported(
                        format!("pipeline {other:?} (v1model has ingress and egress)"),
                        "pipelines",
                    ))
                }
            }
        }
        let ingress = ingress.ok_or_else(|| invalid("no ingress pipeline", "pipelines"))?;
        let egress = egress.ok_or_else(|| invalid("no egress pipeline", "pipelines"))?;

        let (parse_states, parser_start) = self.parser()?;
        let deparser = match doc.deparsers.as_slice() {
            [d] => d,
            _ => {
                return Err(unsupported(
                    format!("{} deparsers (exactly one expected)", doc.deparsers.len()),
                    "deparsers",
                ))
            }
        };
        if !deparser.primitives.is_empty() {
            return Err(unsupported(
                "deparser primitives",
                format!("deparser {}", deparser.name),
            ));
        }
        let deparse_order = deparser
            .order
            .iter()
            .map(|h| {
                let ctx = format!("deparser {}", deparser.name);
                let i = self.header(h, &ctx)?;
                if self.headers[i as usize].metadata {
                    return Err(unsupported(format!("deparsing metadata {h}"), ctx));
                }
                Ok(i)
            })
            .collect::<Result<Vec<_>, _>>()?;

        let mut checksums = doc
            .checksums
            .iter()
            .map(|k| {
                let ctx = format!("checksum {}", k.name);
                if let Some(kind) = k.kind.as_deref() {
                    if kind != "generic" {
                        return Err(unsupported(format!("checksum type {kind}"), &ctx));
                    }
                }
                let condition = match &k.if_cond {
                    Some(e) => Some(self.expr(e, &ctx, ExprScope::Control)?),
                    None => None,
                };
                Ok(Checksum {
                    name: k.name.clone(),
                    target: self.field(&k.target.0, &k.target.1, &ctx)?,
                    calculation: *self.calc_index.get(k.calculation.as_str()).ok_or_else(|| {
                        invalid(format!("unknown calculation {}", k.calculation), &ctx)
                    })?,
                    verify: k.verify,
                    update: k.update,
                    condition,
                    update_from_bytes: false,
                })
            })
            .collect::<Result<Vec<Checksum>, _>>()?;
        // The header an update reads or writes: an update summed after the deparser must not
        // depend on the order of the others.
        let touches = |c: &Checksum, h: u32| {
            c.target.header == h
                || calculations[c.calculation]
                    .inputs
                    .iter()
                    .any(|i| matches!(i, CalcInput::Field(f) if f.header == h))
        };
        for i in 0..checksums.len() {
            let c = &checksums[i];
            let from_bytes = c.update
                && calculations[c.calculation]
                    .span
                    .as_ref()
                    .is_some_and(|span| {
                        span.header == c.target.header
                            && checksums
                                .iter()
                                .enumerate()
                                .all(|(j, o)| j == i || !o.update || !touches(o, span.header))
                    });
            checksums[i].update_from_bytes = from_bytes;
        }

        let slot_count: usize = self.headers.iter().map(|h| h.fields.len()).sum();
        let slot_owner: Vec<(u32, u32)> = self
            .headers
            .iter()
            .enumerate()
            .flat_map(|(h, layout)| (0..layout.fields.len() as u32).map(move |i| (h as u32, i)))
            .collect();
        let mut packet_slots = vec![0u64; slot_count.div_ceil(64)];
        for (slot, &(h, _)) in slot_owner.iter().enumerate() {
            if !self.headers[h as usize].metadata {
                packet_slots[slot / 64] |= 1 << (slot % 64);
            }
        }
        let mut program = Program {
            slot_count,
            slot_owner,
            packet_slots,
            initially_valid: self.headers.iter().map(|h| h.metadata).collect(),
            headers: self.headers,
            errors,
            parser_errors,
            parse_states,
            parser_start,
            deparse_order,
            actions,
            tables,
            conditionals,
            ingress,
            egress,
            calculations,
            checksums,
            counters,
            registers,
            field_lists,
            std,
        };
        check_acyclic(&program)?;
        super::field_use::mark_lazy_fields(&mut program);
        Ok(program)
    }

    fn standard_metadata(&self) -> Result<StandardMetadata, LoadError> {
        let get = |f: &str| self.field("standard_metadata", f, "standard_metadata").ok();
        let need = |f: &str| {
            get(f).ok_or_else(|| {
                invalid(
                    format!("v1model needs standard_metadata.{f}"),
                    "standard_metadata",
                )
            })
        };
        Ok(StandardMetadata {
            ingress_port: need("ingress_port")?,
            egress_spec: need("egress_spec")?,
            egress_port: need("egress_port")?,
            instance_type: need("instance_type")?,
            packet_length: get("packet_length"),
            checksum_error: get("checksum_error"),
            parser_error: get("parser_error"),
            mcast_grp: get("mcast_grp"),
            egress_rid: get("egress_rid"),
        })
    }

    fn header(&self, name: &str, ctx: &str) -> Result<u32, LoadError> {
        self.header_index
            .get(name)
            .copied()
            .ok_or_else(|| invalid(format!("unknown header {name}"), ctx))
    }

    fn field(&self, header: &str, field: &str, ctx: &str) -> Result<FieldRef, LoadError> {
        let h = self.header(header, ctx)?;
        let layout = &self.headers[h as usize];
        let i = layout
            .fields
            .iter()
            .position(|f| f.name == field)
            .ok_or_else(|| invalid(format!("unknown field {header}.{field}"), ctx))?;
        Ok(FieldRef {
            slot: layout.first_slot + i as u32,
            header: h,
            width: layout.fields[i].width,
        })
    }

    fn node(&self, name: Option<&str>, ctx: &str) -> Result<Option<Node>, LoadError> {
        name.map(|n| {
            self.node_index
                .get(n)
                .copied()
                .ok_or_else(|| invalid(format!("unknown control node {n}"), ctx))
        })
        .transpose()
    }

    fn expr(&self, op: &Operand, ctx: &str, scope: ExprScope) -> Result<Expr, LoadError> {
        Ok(match op {
            Operand::Field(h, f) if f == "$valid$" => Expr::Valid(self.header(h, ctx)?),
            Operand::Field(h, f) => Expr::Field(self.field(h, f, ctx)?),
            Operand::Hexstr(s) => Expr::Const(parse_hexstr(s, ctx)?),
            Operand::Bool(b) => Expr::Const(u128::from(*b)),
            Operand::RuntimeData(i) | Operand::Local(i) => match scope {
                ExprScope::Action { params } if *i < params => Expr::Param(*i),
                ExprScope::Action { .. } => {
                    return Err(invalid(format!("action parameter {i} out of range"), ctx))
                }
                _ => return Err(invalid("action parameter outside an action", ctx)),
            },
            Operand::Lookahead(offset, width) => match scope {
                ExprScope::Parser => {
                    if *width == 0 || *width > MAX_WIDTH {
                        return Err(unsupported(format!("lookahead of {width} bits"), ctx));
                    }
                    Expr::Lookahead {
                        offset: *offset,
                        width: *width,
                    }
                }
                _ => return Err(invalid("lookahead outside the parser", ctx)),
            },
            Operand::Expression(inner) => match inner.as_ref() {
                ExpressionValue::Wrapped(o) => self.expr(o, ctx, scope)?,
                ExpressionValue::Op(node) => self.op(node, ctx, scope)?,
            },
            Operand::Header(_) => {
                return Err(invalid("a header used as a value", ctx));
            }
            other => {
                return Err(unsupported(
                    format!("operand of type {} in an expression", other.kind()),
                    ctx,
                ))
            }
        })
    }

    fn op(&self, node: &json::OpNode, ctx: &str, scope: ExprScope) -> Result<Expr, LoadError> {
        let side = |o: &Option<Operand>, which: &str| -> Result<Expr, LoadError> {
            let o = o
                .as_ref()
                .ok_or_else(|| invalid(format!("operator {} without {which}", node.op), ctx))?;
            self.expr(o, ctx, scope)
        };
        let bin = |op: BinOp| -> Result<Expr, LoadError> {
            Ok(Expr::Binary(
                op,
                Box::new(side(&node.left, "left")?),
                Box::new(side(&node.right, "right")?),
            ))
        };
        let un = |op: UnOp| -> Result<Expr, LoadError> {
            Ok(Expr::Unary(op, Box::new(side(&node.right, "right")?)))
        };
        match node.op.as_str() {
            "+" => bin(BinOp::Add),
            "-" if node.left.is_none() => un(UnOp::Neg),
            "-" => bin(BinOp::Sub),
            "*" => bin(BinOp::Mul),
            "<<" => bin(BinOp::Shl),
            ">>" => bin(BinOp::Shr),
            "==" => bin(BinOp::Eq),
            "!=" => bin(BinOp::Ne),
            ">" => bin(BinOp::Gt),
            ">=" => bin(BinOp::Ge),
            "<" => bin(BinOp::Lt),
            "<=" => bin(BinOp::Le),
            "and" => bin(BinOp::And),
            "or" => bin(BinOp::Or),
            "&" => bin(BinOp::BitAnd),
            "|" => bin(BinOp::BitOr),
            "^" => bin(BinOp::BitXor),
            "not" => un(UnOp::Not),
            "~" => un(UnOp::BitNot),
            // A value that already is 0 or 1 needs no conversion.
            "d2b" => {
                let inner = side(&node.right, "right")?;
                Ok(if is_boolean(&inner) {
                    inner
                } else {
                    Expr::Unary(UnOp::D2b, Box::new(inner))
                })
            }
            // Booleans already are the values 0 and 1.
            "b2d" => side(&node.right, "right"),
            "valid" => match &node.right {
                Some(Operand::Header(h)) => Ok(Expr::Valid(self.header(h, ctx)?)),
                _ => Err(unsupported("`valid` of something other than a header", ctx)),
            },
            "?" => Ok(Expr::Cond(
                Box::new(side(&node.cond, "cond")?),
                Box::new(side(&node.left, "left")?),
                Box::new(side(&node.right, "right")?),
            )),
            "two_comp_mod" | "sat_cast" | "usat_cast" => Err(unsupported(
                format!("signed arithmetic (operator {})", node.op),
                ctx,
            )),
            "dereference_header_stack" | "last_stack_index" | "size_stack" | "access_field" => Err(
                unsupported(format!("header stacks (operator {})", node.op), ctx),
            ),
            "valid_union" | "dereference_union_stack" | "access_union_header" => Err(unsupported(
                format!("header unions (operator {})", node.op),
                ctx,
            )),
            other => Err(unsupported(format!("expression operator {other:?}"), ctx)),
        }
    }

    fn calculation(&self, x: &json::Calculation) -> Result<Calculation, LoadError> {
        let ctx = format!("calculation {}", x.name);
        let algo = HashAlgo::from_bmv2_name(&x.algo)
            .ok_or_else(|| unsupported(format!("hash algorithm {:?}", x.algo), &ctx))?;
        let inputs = x
            .input
            .iter()
            .map(|i| match &i.operand {
                Operand::Field(h, f) => Ok(CalcInput::Field(self.field(h, f, &ctx)?)),
                Operand::Hexstr(s) => {
                    let width = i.bitwidth.ok_or_else(|| {
                        invalid("hexstr calculation input without bitwidth", &ctx)
                    })?;
                    if width == 0 || width > MAX_WIDTH {
                        return Err(unsupported(format!("constant of {width} bits"), &ctx));
                    }
                    Ok(CalcInput::Const {
                        value: parse_hexstr(s, &ctx)? & width_mask(width),
                        width,
                    })
                }
                Operand::Payload(_) => Err(unsupported("payload in a calculation", &ctx)),
                other => Err(unsupported(
                    format!("calculation input of type {}", other.kind()),
                    &ctx,
                )),
            })
            .collect::<Result<Vec<_>, _>>()?;
        if inputs.len() > 4096 {
            return Err(unsupported(
                format!("{} calculation inputs (at most 4096)", inputs.len()),
                &ctx,
            ));
        }
        let mut calc = Calculation::new(x.name.clone(), algo, inputs);
        calc.span = CsumSpan::of(&calc, &self.headers);
        Ok(calc)
    }

    fn action(&self, a: &json::Action) -> Result<Action, LoadError> {
        let ctx = format!("action {}", a.name);
        let params = a
            .runtime_data
            .iter()
            .map(|p| {
                if p.bitwidth == 0 || p.bitwidth > MAX_WIDTH {
                    return Err(unsupported(
                        format!("action parameter of {} bits", p.bitwidth),
                        format!("{ctx}({})", p.name),
                    ));
                }
                Ok(ActionParam {
                    name: p.name.clone(),
                    width: p.bitwidth,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let scope = ExprScope::Action {
            params: params.len(),
        };
        let mut body = Vec::new();
        for (i, p) in a.primitives.iter().enumerate() {
            if let Some(prim) =
                self.primitive(p, &format!("{ctx}, primitive {i} ({})", p.op), scope)?
            {
                body.push(prim);
            }
        }
        // Jumps only go forward (as p4c emits them), so an action always ends.
        for (i, prim) in body.iter().enumerate() {
            if let Primitive::Jump(t) | Primitive::JumpIfZero(_, t) = prim {
                if *t <= i || *t > body.len() {
                    return Err(unsupported("backward or out-of-range _jump", &ctx));
                }
            }
        }
        Ok(Action {
            name: a.name.clone(),
            json_id: a.id,
            params,
            body,
        })
    }

    /// Compiles one primitive call; `log_msg` has no effect on the packet and compiles to nothing.
    fn primitive(
        &self,
        p: &json::Primitive,
        ctx: &str,
        scope: ExprScope,
    ) -> Result<Option<Primitive>, LoadError> {
        let args = &p.parameters;
        let arg = |i: usize| -> Result<&Operand, LoadError> {
            args.get(i)
                .ok_or_else(|| invalid(format!("missing argument {i}"), ctx))
        };
        let lvalue = |i: usize| -> Result<FieldRef, LoadError> {
            match arg(i)? {
                Operand::Field(h, f) if f != "$valid$" => self.field(h, f, ctx),
                other => Err(unsupported(
                    format!("assignment to an operand of type {}", other.kind()),
                    ctx,
                )),
            }
        };
        let value = |i: usize| self.expr(arg(i)?, ctx, scope);
        let header_arg = |i: usize| -> Result<u32, LoadError> {
            match arg(i)? {
                Operand::Header(h) => self.header(h, ctx),
                other => Err(unsupported(
                    format!("header argument of type {}", other.kind()),
                    ctx,
                )),
            }
        };
        let named = |i: usize,
                     map: &HashMap<&str, usize>,
                     what: &str|
         -> Result<usize, LoadError> {
            let name = match arg(i)? {
                Operand::CounterArray(n) | Operand::RegisterArray(n) | Operand::Calculation(n) => n,
                other => {
                    return Err(invalid(
                        format!("expected a {what}, found {}", other.kind()),
                        ctx,
                    ))
                }
            };
            map.get(name.as_str())
                .copied()
                .ok_or_else(|| invalid(format!("unknown {what} {name}"), ctx))
        };
        let jump_target = |i: usize| -> Result<usize, LoadError> {
            match arg(i)? {
                Operand::Hexstr(s) => usize::try_from(parse_hexstr(s, ctx)?)
                    .map_err(|_| invalid("jump target too large", ctx)),
                _ => Err(invalid("jump target must be a constant", ctx)),
            }
        };
        let assign_header = || -> Result<Primitive, LoadError> {
            let (dst, src) = (header_arg(0)?, header_arg(1)?);
            let widths = |h: u32| {
                self.headers[h as usize]
                    .fields
                    .iter()
                    .map(|f| f.width)
                    .collect::<Vec<_>>()
            };
            if widths(dst) != widths(src) {
                return Err(invalid("assigning a header of another type", ctx));
            }
            Ok(Primitive::AssignHeader { dst, src })
        };
        Ok(Some(match p.op.as_str() {
            "assign" | "modify_field" => match arg(0)? {
                Operand::Header(_) => assign_header()?,
                _ => {
                    let dst = lvalue(0)?;
                    Primitive::Assign {
                        dst,
                        src: without_outer_mask(value(1)?, dst.width),
                    }
                }
            },
            "assign_header" | "copy_header" => assign_header()?,
            "add_header" => Primitive::SetValid(header_arg(0)?),
            "remove_header" => Primitive::SetInvalid(header_arg(0)?),
            "mark_to_drop" | "drop" => Primitive::MarkToDrop,
            "count" => Primitive::Count {
                counter: named(0, &self.counter_index, "counter array")?,
                index: value(1)?,
            },
            "register_read" => Primitive::RegisterRead {
                dst: lvalue(0)?,
                register: named(1, &self.register_index, "register array")?,
                index: value(2)?,
            },
            "register_write" => Primitive::RegisterWrite {
                register: named(0, &self.register_index, "register array")?,
                index: value(1)?,
                value: value(2)?,
            },
            "modify_field_with_hash_based_offset" => Primitive::HashOffset {
                dst: lvalue(0)?,
                base: value(1)?,
                calculation: named(2, &self.calc_index, "calculation")?,
                size: value(3)?,
            },
            "clone_ingress_pkt_to_egress" => {
                let field_list = match args.get(1) {
                    None => None,
                    Some(Operand::Hexstr(s)) => {
                        let id = i64::try_from(parse_hexstr(s, ctx)?)
                            .map_err(|_| invalid("field list id too large", ctx))?;
                        match self.field_list_index.get(&id) {
                            Some(&i) => Some(i),
                            None => return Err(invalid(format!("unknown field list {id}"), ctx)),
                        }
                    }
                    Some(other) => {
                        return Err(unsupported(
                            format!("clone field list of type {}", other.kind()),
                            ctx,
                        ))
                    }
                };
                Primitive::CloneI2E {
                    session: value(0)?,
                    field_list,
                }
            }
            "exit" => Primitive::Exit,
            "truncate" => Primitive::Truncate(value(0)?),
            "_jump" => Primitive::Jump(jump_target(0)?),
            "_jump_if_zero" => Primitive::JumpIfZero(value(0)?, jump_target(1)?),
            "assert" | "assume" => Primitive::Assert(value(0)?),
            "log_msg" => return Ok(None),
            "clone_egress_pkt_to_egress" => {
                return Err(unsupported("egress-to-egress clone (clone E2E)", ctx))
            }
            "resubmit" | "resubmit_preserving_field_list" => {
                return Err(unsupported("resubmit", ctx))
            }
            "recirculate" | "recirculate_preserving_field_list" => {
                return Err(unsupported("recirculate", ctx))
            }
            "execute_meter" | "_meter_execute" => return Err(unsupported("meters", ctx)),
            "generate_digest" => return Err(unsupported("digests", ctx)),
            "push" | "pop" | "assign_header_stack" => {
                return Err(unsupported("header stacks", ctx))
            }
            "assign_union" | "assign_union_stack" => return Err(unsupported("header unions", ctx)),
            "assign_VL" => return Err(unsupported("variable-length (varbit) fields", ctx)),
            other => return Err(unsupported(format!("primitive {other:?}"), ctx)),
        }))
    }

    fn table(
        &self,
        t: &json::Table,
        actions: &[Action],
        counters: &[CounterArray],
    ) -> Result<Table, LoadError> {
        let ctx = format!("table {}", t.name);
        if t.kind != "simple" {
            return Err(unsupported(
                format!("action profiles/selectors (table type {})", t.kind),
                &ctx,
            ));
        }
        if t.direct_meters.is_some() {
            return Err(unsupported("direct meters", &ctx));
        }
        let mut keys = Vec::new();
        for (i, k) in t.key.iter().enumerate() {
            let kctx = format!("{ctx}, key {i}");
            let kind = match k.match_type.as_str() {
                "exact" => MatchKind::Exact,
                "lpm" => MatchKind::Lpm,
                "ternary" => MatchKind::Ternary,
                "range" => MatchKind::Range,
                "optional" => MatchKind::Optional,
                "valid" => MatchKind::Valid,
                other => return Err(unsupported(format!("match kind {other:?}"), &kctx)),
            };
            let (source, width) = match (&k.target, kind) {
                (serde_json::Value::String(h), MatchKind::Valid) => {
                    (KeySource::Valid(self.header(h, &kctx)?), 1)
                }
                (serde_json::Value::Array(pair), _) => match pair.as_slice() {
                    [serde_json::Value::String(h), serde_json::Value::String(f)] => {
                        if f == "$valid$" {
                            (KeySource::Valid(self.header(h, &kctx)?), 1)
                        } else {
                            let fr = self.field(h, f, &kctx)?;
                            (KeySource::Field(fr), fr.width)
                        }
                    }
                    _ => return Err(invalid("key target is not [header, field]", &kctx)),
                },
                _ => return Err(invalid("bad key target", &kctx)),
            };
            let mask = match &k.mask {
                Some(m) => Some(parse_hexstr(m, &kctx)? & width_mask(width)),
                None => None,
            };
            keys.push(KeyField {
                name: k.name.clone().unwrap_or_else(|| match source {
                    KeySource::Field(f) => {
                        let h = &self.headers[f.header as usize];
                        format!(
                            "{}.{}",
                            h.name,
                            h.fields[(f.slot - h.first_slot) as usize].name
                        )
                    }
                    KeySource::Valid(h) => format!("{}.$valid$", self.headers[h as usize].name),
                }),
                kind,
                source,
                width,
                mask,
            });
        }
        if keys.iter().filter(|k| k.kind == MatchKind::Lpm).count() > 1 {
            return Err(invalid("more than one lpm key", &ctx));
        }
        let table_actions = t
            .action_ids
            .iter()
            .map(|id| {
                self.action_index
                    .get(id)
                    .copied()
                    .ok_or_else(|| invalid(format!("unknown action id {id}"), &ctx))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let next =
            if t.next_tables.contains_key("__HIT__") || t.next_tables.contains_key("__MISS__") {
                let get = |k: &str| -> Result<Option<Node>, LoadError> {
                    match t.next_tables.get(k) {
                        Some(serde_json::Value::String(n)) => self.node(Some(n), &ctx),
                        Some(serde_json::Value::Null) | None => Ok(None),
                        Some(_) => Err(invalid(format!("bad next_tables.{k}"), &ctx)),
                    }
                };
                TableNext::HitMiss {
                    hit: get("__HIT__")?,
                    miss: get("__MISS__")?,
                }
            } else {
                let mut by_action = Vec::new();
                for &a in &table_actions {
                    let name = &actions[a].name;
                    by_action.push(match t.next_tables.get(name.as_str()) {
                        Some(serde_json::Value::String(n)) => self.node(Some(n), &ctx)?,
                        Some(serde_json::Value::Null) => None,
                        None => self.node(t.base_default_next.as_deref(), &ctx)?,
                        Some(_) => return Err(invalid(format!("bad next_tables.{name}"), &ctx)),
                    });
                }
                TableNext::ByAction(by_action)
            };
        let args_of =
            |action: usize, data: &[String], what: &str| -> Result<Vec<u128>, LoadError> {
                let params = &actions[action].params;
                if data.len() != params.len() {
                    return Err(invalid(
                        format!(
                            "{what}: {} arguments for {} parameters",
                            data.len(),
                            params.len()
                        ),
                        &ctx,
                    ));
                }
                data.iter()
                    .zip(params)
                    .map(|(d, p)| Ok(parse_hexstr(d, &ctx)? & width_mask(p.width)))
                    .collect()
            };
        let in_table = |id: i64| -> Result<usize, LoadError> {
            let a = self
                .action_index
                .get(&id)
                .copied()
                .ok_or_else(|| invalid(format!("unknown action id {id}"), &ctx))?;
            if !table_actions.contains(&a) {
                return Err(invalid(format!("action id {id} is not in the table"), &ctx));
            }
            Ok(a)
        };
        let default_action = match &t.default_entry {
            Some(d) => {
                let action = in_table(d.action_id)?;
                Some(DefaultAction {
                    action,
                    args: args_of(action, &d.action_data, "default entry")?,
                    action_const: d.action_const,
                    entry_const: d.action_entry_const,
                })
            }
            None => None,
        };
        let const_entries = t
            .entries
            .iter()
            .map(|e| {
                let action = in_table(e.action_entry.action_id)?;
                if e.match_key.len() != keys.len() {
                    return Err(invalid("const entry with the wrong number of keys", &ctx));
                }
                Ok(ConstEntry {
                    key: e.match_key.clone(),
                    action,
                    args: args_of(action, &e.action_entry.action_data, "const entry")?,
                    bmv2_priority: e.priority,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let table_no = self.table_index[t.name.as_str()];
        let direct_counter = counters
            .iter()
            .position(|c| c.direct_table == Some(table_no));
        if t.with_counters && direct_counter.is_none() {
            return Err(invalid("with_counters but no direct counter bound", &ctx));
        }
        Ok(Table {
            name: t.name.clone(),
            json_id: t.id,
            keys,
            actions: table_actions,
            next,
            base_default_next: self.node(t.base_default_next.as_deref(), &ctx)?,
            max_size: t.max_size as usize,
            direct_counter,
            support_timeout: t.support_timeout,
            default_action,
            const_entries,
        })
    }

    fn parser(&self) -> Result<(Vec<ParseState>, usize), LoadError> {
        let parser = match self.doc.parsers.as_slice() {
            [p] => p,
            _ => {
                return Err(unsupported(
                    format!("{} parsers (exactly one expected)", self.doc.parsers.len()),
                    "parsers",
                ))
            }
        };
        let index: HashMap<&str, usize> = parser
            .parse_states
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.as_str(), i))
            .collect();
        let mut states = Vec::new();
        for s in &parser.parse_states {
            let ctx = format!("parse state {}", s.name);
            let mut ops = Vec::new();
            for (i, op) in s.parser_ops.iter().enumerate() {
                let octx = format!("{ctx}, op {i} ({})", op.op);
                let arg = |i: usize| -> Result<&Operand, LoadError> {
                    match op.parameters.get(i) {
                        Some(json::ParserParam::Operand(o)) => Ok(o),
                        Some(json::ParserParam::Primitive(_)) => {
                            Err(invalid(format!("argument {i} is a primitive call"), &octx))
                        }
                        None => Err(invalid(format!("missing argument {i}"), &octx)),
                    }
                };
                ops.push(match op.op.as_str() {
                    "extract" => match arg(0)? {
                        Operand::Regular(h) => ParserOp::Extract(self.header(h, &octx)?),
                        Operand::Stack(_) => return Err(unsupported("header stacks", &octx)),
                        other => {
                            return Err(unsupported(
                                format!("extract into {}", other.kind()),
                                &octx,
                            ))
                        }
                    },
                    "extract_VL" => {
                        return Err(unsupported("variable-length (varbit) fields", &octx))
                    }
                    "set" => match arg(0)? {
                        Operand::Field(h, f) if f != "$valid$" => ParserOp::Set {
                            dst: self.field(h, f, &octx)?,
                            src: self.expr(arg(1)?, &octx, ExprScope::Parser)?,
                        },
                        _ => return Err(invalid("set needs a field to write", &octx)),
                    },
                    "verify" => ParserOp::Verify {
                        cond: self.expr(arg(0)?, &octx, ExprScope::Parser)?,
                        error: self.expr(arg(1)?, &octx, ExprScope::Parser)?,
                    },
                    "advance" => ParserOp::Advance(self.expr(arg(0)?, &octx, ExprScope::Parser)?),
                    "shift" => ParserOp::Advance(Expr::Binary(
                        BinOp::Mul,
                        Box::new(self.expr(arg(0)?, &octx, ExprScope::Parser)?),
                        Box::new(Expr::Const(8)),
                    )),
                    "primitive" => match op.parameters.first() {
                        Some(json::ParserParam::Primitive(inner)) => {
                            match self.primitive(inner, &octx, ExprScope::Parser)? {
                                Some(
                                    p @ (Primitive::Assign { .. }
                                    | Primitive::AssignHeader { .. }
                                    | Primitive::SetValid(_)
                                    | Primitive::SetInvalid(_)),
                                ) => ParserOp::Primitive(p),
                                Some(_) => {
                                    return Err(unsupported(
                                        format!("primitive {} in a parser", inner.op),
                                        &octx,
                                    ))
                                }
                                None => continue,
                            }
                        }
                        _ => return Err(invalid("primitive without a primitive call", &octx)),
                    },
                    other => return Err(unsupported(format!("parser op {other:?}"), &octx)),
                });
            }
            let mut key = Vec::new();
            let mut key_bits = 0u32;
            for k in &s.transition_key {
                let (part, width) = match k {
                    Operand::Field(h, f) => {
                        let fr = self.field(h, f, &ctx)?;
                        (SelectKeyPart::Field(fr), fr.width)
                    }
                    Operand::Lookahead(offset, width) => (
                        SelectKeyPart::Lookahead {
                            offset: *offset,
                            width: *width,
                        },
                        *width,
                    ),
                    Operand::StackField(..) => return Err(unsupported("header stacks", &ctx)),
                    other => {
                        return Err(unsupported(
                            format!("select key of type {}", other.kind()),
                            &ctx,
                        ))
                    }
                };
                let padded = width.div_ceil(8) * 8;
                key_bits += padded;
                key.push((part, padded));
            }
            if key_bits > MAX_WIDTH {
                return Err(unsupported(
                    format!("select key of {key_bits} bits (at most {MAX_WIDTH})"),
                    &ctx,
                ));
            }
            let transitions =
                s.transitions
                    .iter()
                    .map(|t| {
                        let next = match &t.next_state {
                            Some(n) => Some(
                                *index
                                    .get(n.as_str())
                                    .ok_or_else(|| invalid(format!("unknown state {n}"), &ctx))?,
                            ),
                            None => None,
                        };
                        match t.kind.as_str() {
                            "default" => Ok(Transition {
                                value: None,
                                mask: 0,
                                next,
                            }),
                            "hexstr" => {
                                let v = t.value.as_deref().ok_or_else(|| {
                                    invalid("hexstr transition without value", &ctx)
                                })?;
                                let mask = match t.mask.as_deref() {
                                    Some(m) => parse_hexstr(m, &ctx)?,
                                    None => width_mask(key_bits),
                                };
                                Ok(Transition {
                                    value: Some(parse_hexstr(v, &ctx)? & mask),
                                    mask,
                                    next,
                                })
                            }
                            "parse_vset" => Err(unsupported("parser value sets", &ctx)),
                            other => Err(unsupported(format!("transition type {other:?}"), &ctx)),
                        }
                    })
                    .collect::<Result<Vec<_>, _>>()?;
            let op_lookahead = ops
                .iter()
                .map(|op| match op {
                    ParserOp::Set { src, .. } => lookahead_bits(src),
                    ParserOp::Verify { cond, error } => {
                        lookahead_bits(cond).max(lookahead_bits(error))
                    }
                    ParserOp::Advance(e) => lookahead_bits(e),
                    ParserOp::Primitive(Primitive::Assign { src, .. }) => lookahead_bits(src),
                    ParserOp::Extract(_) | ParserOp::Primitive(_) => 0,
                })
                .collect();
            let key_lookahead = key
                .iter()
                .map(|(part, _)| match part {
                    SelectKeyPart::Lookahead { offset, width } => offset.saturating_add(*width),
                    SelectKeyPart::Field(_) => 0,
                })
                .max()
                .unwrap_or(0);
            let extracts = ops
                .iter()
                .map(|op| match op {
                    ParserOp::Extract(h) => Some(*h),
                    _ => None,
                })
                .collect();
            states.push(ParseState {
                extracts,
                name: s.name.clone(),
                ops,
                key,
                transitions,
                op_lookahead,
                key_lookahead,
                narrow_key: key_bits <= 64,
            });
        }
        let start = *index.get(parser.init_state.as_str()).ok_or_else(|| {
            invalid(
                format!("unknown init state {}", parser.init_state),
                "parsers",
            )
        })?;
        Ok((states, start))
    }
}

#[derive(Debug, Clone, Copy)]
enum ExprScope {
    Control,
    Parser,
    Action { params: usize },
}

fn refuse_unsupported_sections(doc: &Bmv2Json) -> Result<(), LoadError> {
    let checks: [(bool, &str, &str); 8] = [
        (
            !doc.header_stacks.is_empty(),
            "header stacks",
            "header_stacks",
        ),
        (
            !doc.header_unions.is_empty() || !doc.header_union_stacks.is_empty(),
            "header unions",
            "header_unions",
        ),
        (
            !doc.parse_vsets.is_empty(),
            "parser value sets",
            "parse_vsets",
        ),
        (!doc.meter_arrays.is_empty(), "meters", "meter_arrays"),
        (
            !doc.learn_lists.is_empty(),
            "digests (learn lists)",
            "learn_lists",
        ),
        (
            !doc.extern_instances.is_empty(),
            "extern instances",
            "extern_instances",
        ),
        (
            doc.pipelines.iter().any(|p| !p.action_profiles.is_empty()),
            "action profiles",
            "pipelines[].action_profiles",
        ),
        (
            doc.pipelines.iter().any(|p| !p.action_calls.is_empty()),
            "action_calls",
            "pipelines[].action_calls",
        ),
    ];
    for (bad, feature, context) in checks {
        if bad {
            return Err(unsupported(feature, context));
        }
    }
    if let Some(meta) = &doc.meta {
        if meta.version.0 != 2 {
            return Err(unsupported(
                format!("bmv2 JSON version {}.{}", meta.version.0, meta.version.1),
                "__meta__.version",
            ));
        }
    }
    Ok(())
}

/// Refuses control graphs with cycles, so applying a control always ends.
fn check_acyclic(p: &Program) -> Result<(), LoadError> {
    // 0 = unvisited, 1 = on the current path, 2 = done.
    let mut table_state = vec![0u8; p.tables.len()];
    let mut cond_state = vec![0u8; p.conditionals.len()];
    fn successors(p: &Program, n: Node) -> Vec<Node> {
        match n {
            Node::Table(t) => {
                let table = &p.tables[t];
                let mut next: Vec<Node> = match &table.next {
                    TableNext::ByAction(v) => v.iter().flatten().copied().collect(),
                    TableNext::HitMiss { hit, miss } => hit.iter().chain(miss).copied().collect(),
                };
                next.extend(table.base_default_next);
                next
            }
            Node::Conditional(c) => {
                let k = &p.conditionals[c];
                k.true_next.iter().chain(&k.false_next).copied().collect()
            }
        }
    }
    let roots: Vec<Node> = (0..p.tables.len())
        .map(Node::Table)
        .chain((0..p.conditionals.len()).map(Node::Conditional))
        .collect();
    for root in roots {
        // Iterative DFS with an explicit stack of (node, next successor index).
        let mut stack: Vec<(Node, Vec<Node>, usize)> = Vec::new();
        let state_of = |n: Node, ts: &Vec<u8>, cs: &Vec<u8>| match n {
            Node::Table(i) => ts[i],
            Node::Conditional(i) => cs[i],
        };
        if state_of(root, &table_state, &cond_state) != 0 {
            continue;
        }
        let set = |n: Node, v: u8, ts: &mut Vec<u8>, cs: &mut Vec<u8>| match n {
            Node::Table(i) => ts[i] = v,
            Node::Conditional(i) => cs[i] = v,
        };
        set(root, 1, &mut table_state, &mut cond_state);
        stack.push((root, successors(p, root), 0));
        while let Some((node, succ, i)) = stack.last_mut() {
            if let Some(&next) = succ.get(*i) {
                *i += 1;
                match state_of(next, &table_state, &cond_state) {
                    0 => {
                        set(next, 1, &mut table_state, &mut cond_state);
                        let s = successors(p, next);
                        stack.push((next, s, 0));
                    }
                    1 => {
                        return Err(invalid(
                            "the control graph has a cycle",
                            format!("{next:?}"),
                        ))
                    }
                    _ => {}
                }
            } else {
                let n = *node;
                set(n, 2, &mut table_state, &mut cond_state);
                stack.pop();
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(width: u32) -> Expr {
        Expr::Field(FieldRef {
            slot: 0,
            header: 0,
            width,
        })
    }

    /// `ttl - 1` as p4c emits it.
    fn decrement(mask: u128, mask_first: bool) -> Expr {
        let sum = Box::new(Expr::Binary(
            BinOp::Add,
            Box::new(field(8)),
            Box::new(Expr::Const(0xff)),
        ));
        let mask = Box::new(Expr::Const(mask));
        if mask_first {
            Expr::Binary(BinOp::BitAnd, mask, sum)
        } else {
            Expr::Binary(BinOp::BitAnd, sum, mask)
        }
    }

    #[test]
    fn an_outer_mask_goes_only_when_it_keeps_the_whole_width() {
        let bare = |e: &Expr| matches!(e, Expr::Binary(BinOp::Add, ..));
        for mask_first in [false, true] {
            // 0xff and wider masks keep all 8 bits: the write cuts to 8 bits anyway.
            assert!(bare(&without_outer_mask(decrement(0xff, mask_first), 8)));
            assert!(bare(&without_outer_mask(decrement(0x1ff, mask_first), 8)));
            // 0x7f clears bit 7, 0xff is too narrow for 16 bits: the mask stays.
            assert!(!bare(&without_outer_mask(decrement(0x7f, mask_first), 8)));
            assert!(!bare(&without_outer_mask(decrement(0xff, mask_first), 16)));
        }
        // Other operators stay as they are.
        let or = Expr::Binary(
            BinOp::BitOr,
            Box::new(field(8)),
            Box::new(Expr::Const(0xff)),
        );
        assert!(matches!(
            without_outer_mask(or, 8),
            Expr::Binary(BinOp::BitOr, ..)
        ));
    }
}
