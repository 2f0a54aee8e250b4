//! The switch: runtime state (table entries, counters, registers, clone sessions, multicast
//! groups, statistics), frame processing with v1model semantics as simple_switch implements them,
//! and the runtime API the P4Runtime server sits on.
//!
//! Per frame: parser → checksum verification → ingress → (I2E clones) → multicast or unicast →
//! egress → checksum update → deparser. Semantics worth knowing:
//! - A parser error does not drop the frame: as in bmv2's v1model, parsing stops, the header being
//!   extracted stays invalid, `standard_metadata.parser_error` carries the error code, and ingress
//!   runs (programs drop on `parser_error != NoError`, as ref4 does). The frame is counted in
//!   `Stats::parser_errors`.
//! - `egress_spec == 511` at the end of ingress (`mark_to_drop`) drops the frame, and so does 511
//!   at the end of egress. `mcast_grp != 0` replicates to a multicast group instead.
//! - An I2E clone re-parses the frame as received (so it carries none of ingress's changes),
//!   copies the clone's field list from the end of ingress, and enters egress with
//!   `instance_type = 1` on each port of the clone session.
//! - Direct and indexed counters count the whole frame as received (no FCS). A table's direct
//!   counter also has a cell for its default entry, which counts the misses (P4Runtime treats the
//!   default entry like any entry for direct resources; bmv2's PI server refuses to read it).
//!
//! Concurrency: every method takes `&mut self`; the caller serializes (a mutex around the switch).
//! Nothing is allocated per frame once the scratch buffers have grown.

use std::collections::HashMap;
use std::ops::Range;
use std::time::Instant;

use super::hash::HashAlgo;
use super::pipeline::{
    csum_fold, csum_fold16, width_mask, BinOp, CalcInput, Calculation, Expr, FieldRef, LoadError,
    MatchKind, Node, ParserOp, Primitive, Program, SelectKeyPart, TableNext, UnOp,
    MAX_PARSER_STEPS,
};
use super::table::{
    check_action, check_entry, ActionCall, CounterValue, EntryKey, MatchValue, RuntimeError,
    StoredEntry, TableEntry, TableState,
};

/// v1model's drop port (`mark_to_drop` sets `egress_spec` to it).
pub const DROP_PORT: u128 = 511;
/// `standard_metadata.instance_type` values, as bmv2's simple_switch sets them.
pub const INSTANCE_NORMAL: u128 = 0;
pub const INSTANCE_INGRESS_CLONE: u128 = 1;
pub const INSTANCE_REPLICATION: u128 = 5;

/// One copy a clone session or multicast group makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replica {
    pub port: u32,
    /// The replica's instance (`egress_rid`).
    pub instance: u32,
}

/// A clone session: where its copies go and how long they may be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloneSession {
    pub replicas: Vec<Replica>,
    /// P4Runtime's `packet_length_bytes`: a copy longer than this leaves cut to this many bytes.
    pub max_length: Option<usize>,
}

/// Per-switch frame statistics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub frames_in: u64,
    pub bytes_in: u64,
    pub frames_out: u64,
    pub bytes_out: u64,
    /// Frames whose parser ended in an error (they still run ingress; see the module doc).
    pub parser_errors: u64,
    /// Of those, frames shorter than a header the parser extracted.
    pub packet_too_short: u64,
    /// Frames whose checksum verification failed.
    pub checksum_errors: u64,
    /// Dropped at the end of ingress (`egress_spec == 511`).
    pub dropped_ingress: u64,
    /// Dropped at the end of egress (`mark_to_drop` in egress).
    pub dropped_egress: u64,
    /// Dropped by a failed `assert`/`assume`.
    pub dropped_assert: u64,
    /// Multicast to a group that does not exist.
    pub dropped_no_multicast_group: u64,
    /// Clones requested to a session that does not exist.
    pub clones_no_session: u64,
    /// Counter, register or clone accesses with an out-of-range index (ignored, as a no-op).
    pub index_out_of_range: u64,
}

/// The frames one `process` call sent, in order, sharing one byte buffer.
#[derive(Debug, Default, Clone)]
pub struct Outputs {
    bytes: Vec<u8>,
    frames: Vec<(u32, Range<usize>)>,
}

impl Outputs {
    pub fn new() -> Outputs {
        Outputs::default()
    }
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.frames.clear();
    }
    pub fn len(&self) -> usize {
        self.frames.len()
    }
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }
    /// `(egress port, frame)` pairs.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &[u8])> {
        self.frames
            .iter()
            .map(|(port, r)| (*port, &self.bytes[r.clone()]))
    }
}

/// An entry whose idle timeout expired. While the entry stays idle it is reported again after
/// each further `idle_timeout_ns`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdleTimeout {
    pub table: usize,
    pub key: EntryKey,
}

/// `Phv::origin` of a header that was not extracted from the frame.
const NOT_EXTRACTED: u32 = u32::MAX;

/// Header values and validity of one packet: one slot per field of every header; and, so that
/// the deparser can copy what the pipeline left alone instead of serializing it field by field,
/// where each header came from and which of its fields were written since.
#[derive(Debug, Clone, Default)]
struct Phv {
    values: Vec<u128>,
    valid: Vec<bool>,
    /// Per header: the byte offset in the frame it was extracted from, or NOT_EXTRACTED.
    origin: Vec<u32>,
    /// One bit per slot: written since its header was extracted (meaningful for extracted
    /// headers only; an extract clears its header's bits).
    changed: SlotSet,
    /// Per header: some field written since it was extracted.
    header_changed: Vec<bool>,
}

impl Phv {
    fn reset(&mut self, p: &Program) {
        if self.values.len() != p.slot_count || self.valid.len() != p.headers.len() {
            self.size_for(p);
        }
        // Sized for `p`: each part is a fill or copy of known length, without reallocation.
        self.values.fill(0);
        self.valid.copy_from_slice(&p.initially_valid);
        self.origin.fill(NOT_EXTRACTED);
        self.header_changed.fill(false);
    }

    #[cold]
    fn size_for(&mut self, p: &Program) {
        self.values.resize(p.slot_count, 0);
        self.valid.resize(p.headers.len(), false);
        self.origin.resize(p.headers.len(), NOT_EXTRACTED);
        self.changed.0.resize(p.slot_count.div_ceil(64), 0);
        self.header_changed.resize(p.headers.len(), false);
    }

    fn copy_from(&mut self, other: &Phv) {
        self.values.clone_from(&other.values);
        self.valid.clone_from(&other.valid);
        self.origin.clone_from(&other.origin);
        self.changed.clone_from(&other.changed);
        self.header_changed.clone_from(&other.header_changed);
    }

    /// Writes a field (cut to its width) and notes the change for the deparser.
    #[inline]
    fn set(&mut self, f: FieldRef, v: u128) {
        self.values[f.slot as usize] = cut_to_width(v, f.width);
        self.changed.insert(f.slot as usize);
        self.header_changed[f.header as usize] = true;
    }

    /// Notes that every field of header `h` may have changed.
    fn touch_header(&mut self, p: &Program, h: u32) {
        let layout = &p.headers[h as usize];
        let first = layout.first_slot as usize;
        for slot in first..first + layout.fields.len() {
            self.changed.insert(slot);
        }
        self.header_changed[h as usize] = true;
    }
}

/// `v` cut to `width` bits. Field widths are 1..=128 (checked at load); most are below 64, cut
/// with 64-bit operations.
#[inline(always)]
fn cut_to_width(v: u128, width: u32) -> u128 {
    if width < 64 {
        u128::from(v as u64 & ((1u64 << width) - 1))
    } else {
        v & (u128::MAX >> (128 - width.min(128)))
    }
}

/// A set of slots, one bit each.
#[derive(Debug, Clone, Default)]
struct SlotSet(Vec<u64>);

impl SlotSet {
    #[inline]
    fn insert(&mut self, slot: usize) {
        if let Some(word) = self.0.get_mut(slot / 64) {
            *word |= 1 << (slot % 64);
        }
    }

    /// Removes the slots of `words` (as `slot_words` gives them).
    #[inline]
    fn clear_words(&mut self, words: &[(usize, u64)]) {
        for &(w, mask) in words {
            if let Some(word) = self.0.get_mut(w) {
                *word &= !mask;
            }
        }
    }

    /// Calls `f` with the offset from `start` of each slot of `words` (`slot_words(start, _)`)
    /// in the set.
    #[inline]
    fn for_each_of(&self, words: &[(usize, u64)], start: usize, mut f: impl FnMut(usize)) {
        for &(w, mask) in words {
            let mut bits = self.0.get(w).copied().unwrap_or(0) & mask;
            while bits != 0 {
                f(w * 64 + bits.trailing_zeros() as usize - start);
                bits &= bits - 1;
            }
        }
    }
}

/// What a packet's actions asked for beyond header changes.
#[derive(Debug, Default, Clone, Copy)]
struct Flags {
    clone: Option<(u128, Option<usize>)>,
    truncate: Option<usize>,
    assert_failed: bool,
}

/// The mutable state actions reach.
struct Env<'a> {
    counters: &'a mut [Vec<CounterValue>],
    registers: &'a mut [Vec<u128>],
    stats: &'a mut Stats,
    calc_buf: &'a mut Vec<u8>,
    frame_len: usize,
    /// Whether the packet log is on (see [`PACKET_LOG`]).
    trace: bool,
}

/// The target of the packet log: one debug event per step of each frame (received, parsed,
/// each condition and table with its key and action, what the action wrote, dropped or sent),
/// what bmv2's console log shows. `vmdep switch -L debug` shows it; `--log
/// vmdep::switch::packet=debug` shows it alone. Off, it costs one check of the log level per
/// frame (kept in `Env::trace`) and a test of that flag at each step.
pub const PACKET_LOG: &str = "vmdep::switch::packet";

/// One line of the packet log. Out of line and cold, so that the hot paths keep only the test of
/// `Env::trace` and none of the formatting.
#[cold]
#[inline(never)]
fn packet_log(line: std::fmt::Arguments) {
    tracing::debug!(target: PACKET_LOG, "{line}");
}

/// A bmv2-compatible v1model switch running one compiled program.
pub struct Switch {
    program: Program,
    tables: Vec<TableState>,
    counters: Vec<Vec<CounterValue>>,
    registers: Vec<Vec<u128>>,
    clone_sessions: HashMap<u32, CloneSession>,
    multicast_groups: HashMap<u32, Vec<Replica>>,
    stats: Stats,
    epoch: Instant,
    phv: Phv,
    phv2: Phv,
    key_buf: Vec<u128>,
    calc_buf: Vec<u8>,
}

impl Switch {
    /// A switch running `program`, with empty tables (but the program's const entries and default
    /// actions), zeroed counters and registers, and no clone sessions.
    pub fn new(program: Program) -> Result<Switch, LoadError> {
        let mut tables: Vec<TableState> = program.tables.iter().map(TableState::new).collect();
        for (ti, t) in program.tables.iter().enumerate() {
            for (i, ce) in t.const_entries.iter().enumerate() {
                let ctx = format!("table {}, const entry {i}", t.name);
                let entry = const_entry(t, ce).map_err(|m| LoadError::Invalid {
                    message: m,
                    context: ctx.clone(),
                })?;
                check_entry(t, &program.actions[ce.action].params, &entry)
                    .and_then(|()| tables[ti].insert(t, entry, 0))
                    .map_err(|e| LoadError::Invalid {
                        message: e.to_string(),
                        context: ctx,
                    })?;
            }
        }
        let counters = program
            .counters
            .iter()
            .map(|c| {
                if c.direct_table.is_some() {
                    Vec::new()
                } else {
                    vec![CounterValue::default(); c.size]
                }
            })
            .collect();
        let registers = program.registers.iter().map(|r| vec![0; r.size]).collect();
        Ok(Switch {
            tables,
            counters,
            registers,
            clone_sessions: HashMap::new(),
            multicast_groups: HashMap::new(),
            stats: Stats::default(),
            epoch: Instant::now(),
            phv: Phv::default(),
            phv2: Phv::default(),
            key_buf: Vec::new(),
            calc_buf: Vec::new(),
            program,
        })
    }

    /// Loads bmv2 JSON text.
    pub fn from_json_str(text: &str) -> Result<Switch, LoadError> {
        Switch::new(Program::from_json_str(text)?)
    }

    pub fn program(&self) -> &Program {
        &self.program
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The switch clock: nanoseconds since the switch was created.
    pub fn now_ns(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    // ---------------------------------------------------------------- runtime API: tables

    fn table(&self, table: usize) -> Result<&super::pipeline::Table, RuntimeError> {
        self.program
            .tables
            .get(table)
            .ok_or(RuntimeError::NoSuchTable(table))
    }

    fn mutable_table(&self, table: usize) -> Result<(), RuntimeError> {
        let t = self.table(table)?;
        if self.tables[table].immutable {
            return Err(RuntimeError::ConstTable(t.name.clone()));
        }
        Ok(())
    }

    /// Adds an entry (P4Runtime INSERT).
    pub fn insert_entry(&mut self, table: usize, entry: TableEntry) -> Result<(), RuntimeError> {
        let now = self.now_ns();
        self.mutable_table(table)?;
        self.check_call(table, &entry.action)?;
        let t = &self.program.tables[table];
        check_entry(t, &self.program.actions[entry.action.action].params, &entry)?;
        self.tables[table].insert(t, entry, now)
    }

    /// Replaces the action (and idle timeout) of an existing entry (P4Runtime MODIFY); its
    /// counter and idle clock are kept, except that a changed `idle_timeout_ns` restarts the idle
    /// timer (the new TTL counts from the MODIFY).
    pub fn modify_entry(&mut self, table: usize, entry: TableEntry) -> Result<(), RuntimeError> {
        let now = self.now_ns();
        self.modify_entry_at(table, entry, now)
    }

    /// `modify_entry` with an explicit switch clock (for idle-timeout bookkeeping).
    pub fn modify_entry_at(
        &mut self,
        table: usize,
        entry: TableEntry,
        now_ns: u64,
    ) -> Result<(), RuntimeError> {
        self.mutable_table(table)?;
        self.check_call(table, &entry.action)?;
        let t = &self.program.tables[table];
        check_entry(t, &self.program.actions[entry.action.action].params, &entry)?;
        let id = EntryKey {
            key: entry.key.clone(),
            priority: entry.priority,
        };
        let at = self.tables[table]
            .find(&id)
            .ok_or_else(|| RuntimeError::NoSuchEntry(t.name.clone()))?;
        let stored = &mut self.tables[table].entries[at];
        stored.entry.action = entry.action;
        if stored.entry.idle_timeout_ns != entry.idle_timeout_ns {
            stored.entry.idle_timeout_ns = entry.idle_timeout_ns;
            stored.idle_timer_ns = now_ns;
        }
        Ok(())
    }

    /// Removes an entry (P4Runtime DELETE).
    pub fn delete_entry(&mut self, table: usize, key: &EntryKey) -> Result<(), RuntimeError> {
        self.mutable_table(table)?;
        let t = &self.program.tables[table];
        let at = self.tables[table]
            .find(key)
            .ok_or_else(|| RuntimeError::NoSuchEntry(t.name.clone()))?;
        self.tables[table].remove(at);
        Ok(())
    }

    /// Removes every entry of a table (not the const ones).
    pub fn clear_table(&mut self, table: usize) -> Result<(), RuntimeError> {
        self.mutable_table(table)?;
        let t = &self.program.tables[table];
        self.tables[table] = TableState::new(t);
        Ok(())
    }

    /// All entries of a table, with counters and last-hit times: in match order for tables with
    /// priorities, otherwise in no particular order.
    pub fn entries(&self, table: usize) -> Result<&[StoredEntry], RuntimeError> {
        self.table(table)?;
        Ok(&self.tables[table].entries)
    }

    /// One entry by its key.
    pub fn entry(&self, table: usize, key: &EntryKey) -> Result<&StoredEntry, RuntimeError> {
        let t = self.table(table)?;
        let state = &self.tables[table];
        state
            .find(key)
            .map(|i| &state.entries[i])
            .ok_or_else(|| RuntimeError::NoSuchEntry(t.name.clone()))
    }

    fn check_call(&self, table: usize, call: &ActionCall) -> Result<(), RuntimeError> {
        let t = self.table(table)?;
        let action = self.program.actions.get(call.action).ok_or_else(|| {
            RuntimeError::ActionNotInTable {
                table: t.name.clone(),
                action: call.action,
            }
        })?;
        check_action(t, &action.params, call)
    }

    /// Sets the action run on a miss. Refused if the program made the default action const.
    pub fn set_default_action(
        &mut self,
        table: usize,
        call: ActionCall,
    ) -> Result<(), RuntimeError> {
        self.check_call(table, &call)?;
        let t = &self.program.tables[table];
        if let Some(d) = &t.default_action {
            if d.entry_const || (d.action_const && d.action != call.action) {
                return Err(RuntimeError::ConstDefaultAction(t.name.clone()));
            }
        }
        self.tables[table].default_action = Some(call);
        Ok(())
    }

    /// Restores the program's default action.
    pub fn reset_default_action(&mut self, table: usize) -> Result<(), RuntimeError> {
        self.table(table)?;
        let t = &self.program.tables[table];
        self.tables[table].default_action = t.default_action.as_ref().map(|d| ActionCall {
            action: d.action,
            args: d.args.clone(),
        });
        Ok(())
    }

    pub fn default_action(&self, table: usize) -> Result<Option<&ActionCall>, RuntimeError> {
        self.table(table)?;
        Ok(self.tables[table].default_action.as_ref())
    }

    // ---------------------------------------------------------------- runtime API: counters

    fn direct_entry_mut(
        &mut self,
        table: usize,
        key: &EntryKey,
    ) -> Result<&mut StoredEntry, RuntimeError> {
        let t = self.table(table)?;
        if t.direct_counter.is_none() {
            return Err(RuntimeError::NoDirectCounter(t.name.clone()));
        }
        let name = t.name.clone();
        let state = &mut self.tables[table];
        let at = state.find(key).ok_or(RuntimeError::NoSuchEntry(name))?;
        Ok(&mut state.entries[at])
    }

    /// The direct counter of an entry.
    pub fn read_direct_counter(
        &mut self,
        table: usize,
        key: &EntryKey,
    ) -> Result<CounterValue, RuntimeError> {
        Ok(self.direct_entry_mut(table, key)?.counter)
    }

    /// Sets (e.g. resets) the direct counter of an entry.
    pub fn write_direct_counter(
        &mut self,
        table: usize,
        key: &EntryKey,
        value: CounterValue,
    ) -> Result<(), RuntimeError> {
        self.direct_entry_mut(table, key)?.counter = value;
        Ok(())
    }

    fn check_direct_counter(&self, table: usize) -> Result<(), RuntimeError> {
        let t = self.table(table)?;
        if t.direct_counter.is_none() {
            return Err(RuntimeError::NoDirectCounter(t.name.clone()));
        }
        Ok(())
    }

    /// The direct counter of a table's default entry: the frames that missed.
    pub fn read_default_counter(&self, table: usize) -> Result<CounterValue, RuntimeError> {
        self.check_direct_counter(table)?;
        Ok(self.tables[table].default_counter)
    }

    /// Sets (e.g. resets) the direct counter of a table's default entry.
    pub fn write_default_counter(
        &mut self,
        table: usize,
        value: CounterValue,
    ) -> Result<(), RuntimeError> {
        self.check_direct_counter(table)?;
        self.tables[table].default_counter = value;
        Ok(())
    }

    fn counter_cell(
        &mut self,
        counter: usize,
        index: usize,
    ) -> Result<&mut CounterValue, RuntimeError> {
        let c = self
            .program
            .counters
            .get(counter)
            .ok_or(RuntimeError::NoSuchCounter(counter))?;
        if c.direct_table.is_some() {
            return Err(RuntimeError::CounterIsDirect(c.name.clone()));
        }
        let (name, size) = (c.name.clone(), c.size);
        self.counters[counter]
            .get_mut(index)
            .ok_or(RuntimeError::IndexOutOfRange {
                what: format!("counter {name}"),
                index,
                size,
            })
    }

    pub fn read_counter(
        &mut self,
        counter: usize,
        index: usize,
    ) -> Result<CounterValue, RuntimeError> {
        Ok(*self.counter_cell(counter, index)?)
    }

    pub fn write_counter(
        &mut self,
        counter: usize,
        index: usize,
        value: CounterValue,
    ) -> Result<(), RuntimeError> {
        *self.counter_cell(counter, index)? = value;
        Ok(())
    }

    // ---------------------------------------------------------------- runtime API: registers

    fn register_cell(&mut self, register: usize, index: usize) -> Result<&mut u128, RuntimeError> {
        let r = self
            .program
            .registers
            .get(register)
            .ok_or(RuntimeError::NoSuchRegister(register))?;
        let (name, size) = (r.name.clone(), r.size);
        self.registers[register]
            .get_mut(index)
            .ok_or(RuntimeError::IndexOutOfRange {
                what: format!("register {name}"),
                index,
                size,
            })
    }

    pub fn read_register(&mut self, register: usize, index: usize) -> Result<u128, RuntimeError> {
        Ok(*self.register_cell(register, index)?)
    }

    pub fn write_register(
        &mut self,
        register: usize,
        index: usize,
        value: u128,
    ) -> Result<(), RuntimeError> {
        let width = self
            .program
            .registers
            .get(register)
            .ok_or(RuntimeError::NoSuchRegister(register))?
            .width;
        if value & !width_mask(width) != 0 {
            return Err(RuntimeError::TooWide {
                what: format!("register {}", self.program.registers[register].name),
                width,
            });
        }
        *self.register_cell(register, index)? = value;
        Ok(())
    }

    // ---------------------------------------------------------------- runtime API: replication

    /// Creates or replaces a clone session (P4Runtime CloneSessionEntry): copies to `replicas`,
    /// cut to `max_length` bytes if given.
    pub fn set_clone_session(
        &mut self,
        session: u32,
        replicas: Vec<Replica>,
        max_length: Option<usize>,
    ) -> Result<(), RuntimeError> {
        if let Some(r) = replicas.iter().find(|r| u128::from(r.port) > DROP_PORT) {
            return Err(RuntimeError::BadCloneSession(
                session,
                format!("port {} does not fit v1model's 9-bit ports", r.port),
            ));
        }
        if max_length == Some(0) {
            return Err(RuntimeError::BadCloneSession(
                session,
                "a copy cannot be cut to 0 bytes".into(),
            ));
        }
        self.clone_sessions.insert(
            session,
            CloneSession {
                replicas,
                max_length,
            },
        );
        Ok(())
    }

    pub fn remove_clone_session(&mut self, session: u32) -> Result<(), RuntimeError> {
        self.clone_sessions
            .remove(&session)
            .map(|_| ())
            .ok_or(RuntimeError::NoSuchCloneSession(session))
    }

    pub fn clone_session(&self, session: u32) -> Option<&CloneSession> {
        self.clone_sessions.get(&session)
    }

    /// Creates or replaces a multicast group (P4Runtime MulticastGroupEntry).
    pub fn set_multicast_group(&mut self, group: u32, replicas: Vec<Replica>) {
        self.multicast_groups.insert(group, replicas);
    }

    pub fn remove_multicast_group(&mut self, group: u32) -> bool {
        self.multicast_groups.remove(&group).is_some()
    }

    // ---------------------------------------------------------------- runtime API: idle timeouts

    /// Entries idle for at least their `idle_timeout_ns` at `now_ns` (switch clock). Reporting an
    /// entry restarts its idle timer at `now_ns`, so an entry that stays idle is reported again
    /// one `idle_timeout_ns` later (P4Runtime: after a notification the server resets the entry's
    /// timer); a hit restarts it too. A scan reports an entry at most once, however late it runs.
    pub fn idle_timeouts(&mut self, now_ns: u64) -> Vec<IdleTimeout> {
        let mut out = Vec::new();
        for (ti, state) in self.tables.iter_mut().enumerate() {
            for e in &mut state.entries {
                // A TTL of 0 never expires (P4Runtime), rather than expiring on every scan.
                if let Some(ttl) = e.entry.idle_timeout_ns.filter(|&ttl| ttl > 0) {
                    if now_ns.saturating_sub(e.idle_timer_ns) >= ttl {
                        e.idle_timer_ns = now_ns;
                        out.push(IdleTimeout {
                            table: ti,
                            key: EntryKey {
                                key: e.entry.key.clone(),
                                priority: e.entry.priority,
                            },
                        });
                    }
                }
            }
        }
        out
    }

    // ---------------------------------------------------------------- the data plane

    /// Processes one frame received on `in_port`; the frames it sends are appended to `out`.
    pub fn process(&mut self, in_port: u32, frame: &[u8], out: &mut Outputs) {
        let now = self.now_ns();
        self.process_at(in_port, frame, now, out);
    }

    /// `process` with an explicit switch clock (for idle-timeout bookkeeping).
    pub fn process_at(&mut self, in_port: u32, frame: &[u8], now_ns: u64, out: &mut Outputs) {
        let p = &self.program;
        self.stats.frames_in += 1;
        self.stats.bytes_in += frame.len() as u64;
        let std = &p.std;
        let phv = &mut self.phv;
        phv.reset(p);
        phv.values[std.ingress_port.slot as usize] =
            cut_to_width(u128::from(in_port), std.ingress_port.width);
        let trace = tracing::enabled!(target: PACKET_LOG, tracing::Level::DEBUG);
        if trace {
            packet_log(format_args!(
                "packet received on port {in_port}, {} bytes",
                frame.len()
            ));
        }
        let mut env = Env {
            counters: &mut self.counters,
            registers: &mut self.registers,
            stats: &mut self.stats,
            calc_buf: &mut self.calc_buf,
            frame_len: frame.len(),
            trace,
        };
        let cursor = parse_and_verify(p, frame, phv, &mut env, true);

        let mut flags = Flags::default();
        run_control(
            p,
            p.ingress.init,
            &mut self.tables,
            phv,
            &mut env,
            &mut self.key_buf,
            &mut flags,
            now_ns,
        );
        if flags.assert_failed {
            env.stats.dropped_assert += 1;
            if env.trace {
                packet_log(format_args!("dropped: an assertion failed in ingress"));
            }
            return;
        }

        if let Some((session, field_list)) = flags.clone {
            if env.trace {
                packet_log(format_args!(
                    "cloned (ingress to egress) to session {session}"
                ));
            }
            match u32::try_from(session)
                .ok()
                .and_then(|s| self.clone_sessions.get(&s))
            {
                None => {
                    env.stats.clones_no_session += 1;
                    if env.trace {
                        packet_log(format_args!("clone dropped: no clone session {session}"));
                    }
                }
                Some(session) => {
                    let cut = Truncation {
                        ingress: None,
                        session: session.max_length,
                    };
                    for r in &session.replicas {
                        let copy = &mut self.phv2;
                        copy.reset(p);
                        copy.values[std.ingress_port.slot as usize] =
                            phv.values[std.ingress_port.slot as usize];
                        let copy_cursor = parse_and_verify(p, frame, copy, &mut env, false);
                        if let Some(fl) = field_list {
                            for f in &p.field_lists[fl] {
                                copy.set(*f, phv.values[f.slot as usize]);
                            }
                        }
                        copy.values[std.instance_type.slot as usize] = INSTANCE_INGRESS_CLONE;
                        egress(
                            p,
                            &mut self.tables,
                            copy,
                            &mut env,
                            &mut self.key_buf,
                            *r,
                            frame,
                            copy_cursor,
                            now_ns,
                            out,
                            cut,
                        );
                    }
                }
            }
        }

        let mcast = std.mcast_grp.map_or(0, |f| phv.values[f.slot as usize]);
        if mcast != 0 {
            let Some(replicas) = u32::try_from(mcast)
                .ok()
                .and_then(|g| self.multicast_groups.get(&g))
            else {
                env.stats.dropped_no_multicast_group += 1;
                if env.trace {
                    packet_log(format_args!("dropped: no multicast group {mcast}"));
                }
                return;
            };
            if env.trace {
                packet_log(format_args!(
                    "multicast group {mcast}: {} replicas",
                    replicas.len()
                ));
            }
            for r in replicas {
                let copy = &mut self.phv2;
                copy.copy_from(phv);
                copy.values[std.instance_type.slot as usize] = INSTANCE_REPLICATION;
                egress(
                    p,
                    &mut self.tables,
                    copy,
                    &mut env,
                    &mut self.key_buf,
                    *r,
                    frame,
                    cursor,
                    now_ns,
                    out,
                    Truncation::default(),
                );
            }
            return;
        }
        let egress_spec = phv.values[std.egress_spec.slot as usize];
        if egress_spec == DROP_PORT {
            env.stats.dropped_ingress += 1;
            if env.trace {
                packet_log(format_args!("dropped in ingress (egress_spec {DROP_PORT})"));
            }
            return;
        }
        if env.trace {
            packet_log(format_args!("egress port is {egress_spec}"));
        }
        phv.values[std.instance_type.slot as usize] = INSTANCE_NORMAL;
        // A truncate requested in ingress applies to the frame that leaves.
        let port = u32::try_from(egress_spec).unwrap_or(u32::MAX);
        egress(
            p,
            &mut self.tables,
            phv,
            &mut env,
            &mut self.key_buf,
            Replica { port, instance: 0 },
            frame,
            cursor,
            now_ns,
            out,
            Truncation {
                ingress: flags.truncate,
                session: None,
            },
        );
    }
}

/// Converts a const entry of the JSON into a runtime entry.
fn const_entry(
    t: &super::pipeline::Table,
    ce: &super::pipeline::ConstEntry,
) -> Result<TableEntry, String> {
    use super::pipeline::parse_hexstr;
    let hex = |v: Option<&str>, what: &str| -> Result<u128, String> {
        let v = v.ok_or_else(|| format!("missing {what}"))?;
        parse_hexstr(v, what).map_err(|e| e.to_string())
    };
    let mut key = Vec::new();
    for (k, ck) in t.keys.iter().zip(&ce.key) {
        let key_str = ck.key.as_ref().and_then(|v| v.as_str());
        key.push(match (k.kind, ck.match_type.as_str()) {
            (MatchKind::Valid, _) => match &ck.key {
                Some(serde_json::Value::Bool(b)) => MatchValue::Exact(u128::from(*b)),
                _ => MatchValue::Exact(hex(key_str, "key")?),
            },
            (MatchKind::Exact, "exact") => MatchValue::Exact(hex(key_str, "key")?),
            (MatchKind::Lpm, "lpm") => MatchValue::Lpm {
                value: hex(key_str, "key")?,
                prefix_len: ck.prefix_length.ok_or("missing prefix_length")?,
            },
            (MatchKind::Ternary, "ternary") => {
                let mask = hex(ck.mask.as_deref(), "mask")?;
                MatchValue::Ternary {
                    value: hex(key_str, "key")? & mask,
                    mask,
                }
            }
            (MatchKind::Optional, "ternary" | "optional") => {
                let mask = match ck.mask.as_deref() {
                    Some(m) => hex(Some(m), "mask")?,
                    None => width_mask(k.width),
                };
                if mask == 0 {
                    MatchValue::Optional(None)
                } else {
                    MatchValue::Optional(Some(hex(key_str, "key")?))
                }
            }
            (MatchKind::Range, "range") => MatchValue::Range {
                low: hex(ck.start.as_deref(), "start")?,
                high: hex(ck.end.as_deref(), "end")?,
            },
            (kind, given) => {
                return Err(format!(
                    "key {} is {} but the entry gives {given}",
                    k.name,
                    kind.name()
                ))
            }
        });
    }
    // bmv2: a lower number wins; P4Runtime (this switch's API): a higher one does.
    let priority = if t.needs_priority() {
        let bmv2 = ce
            .bmv2_priority
            .unwrap_or(0)
            .clamp(0, i64::from(i32::MAX) - 1);
        i32::try_from(i64::from(i32::MAX) - bmv2).unwrap_or(1)
    } else {
        0
    };
    Ok(TableEntry {
        key,
        priority,
        action: ActionCall {
            action: ce.action,
            args: ce.args.clone(),
        },
        idle_timeout_ns: None,
    })
}

/// How long a frame leaving egress may be.
#[derive(Debug, Default, Clone, Copy)]
struct Truncation {
    /// `truncate()` called in ingress; one called in egress replaces it (the last call wins, as
    /// in bmv2).
    ingress: Option<usize>,
    /// The clone session's `max_length`: a cap on top of what the program asked for.
    session: Option<usize>,
}

#[allow(clippy::too_many_arguments)]
fn egress(
    p: &Program,
    tables: &mut [TableState],
    phv: &mut Phv,
    env: &mut Env,
    key_buf: &mut Vec<u128>,
    replica: Replica,
    frame: &[u8],
    cursor: usize,
    now_ns: u64,
    out: &mut Outputs,
    cut: Truncation,
) {
    let std = &p.std;
    phv.values[std.egress_port.slot as usize] =
        cut_to_width(u128::from(replica.port), std.egress_port.width);
    if let Some(rid) = std.egress_rid {
        phv.values[rid.slot as usize] = cut_to_width(u128::from(replica.instance), rid.width);
    }
    let mut flags = Flags::default();
    // An empty egress (most programs') costs nothing.
    if p.egress.init.is_some() {
        run_control(
            p,
            p.egress.init,
            tables,
            phv,
            env,
            key_buf,
            &mut flags,
            now_ns,
        );
    }
    if flags.assert_failed {
        env.stats.dropped_assert += 1;
        if env.trace {
            packet_log(format_args!("dropped: an assertion failed in egress"));
        }
        return;
    }
    if phv.values[std.egress_spec.slot as usize] == DROP_PORT {
        env.stats.dropped_egress += 1;
        if env.trace {
            packet_log(format_args!("dropped in egress (port {})", replica.port));
        }
        return;
    }
    let in_place = deparses_in_place(p, phv, frame, cursor);
    // Updates summed from the deparsed bytes, by checksum index, wait for the deparser (then the
    // header's bytes are its fields' values).
    let mut from_bytes = 0u64;
    for (i, ck) in p.checksums.iter().enumerate().filter(|(_, c)| c.update) {
        if ck
            .condition
            .as_ref()
            .is_none_or(|c| eval_inline(c, phv, &[], &[]) != 0)
        {
            if in_place && ck.update_from_bytes && i < 64 && phv.valid[ck.target.header as usize] {
                from_bytes |= 1 << i;
            } else {
                extract_skipped(p, ck.calculation, phv, frame);
                let v = calculate(p, ck.calculation, phv, env.calc_buf);
                phv.set(ck.target, u128::from(v));
            }
        }
    }
    let start = out.bytes.len();
    if in_place {
        deparse_in_place(p, phv, frame, &mut out.bytes);
        while from_bytes != 0 {
            let ck = &p.checksums[from_bytes.trailing_zeros() as usize];
            from_bytes &= from_bytes - 1;
            update_deparsed(p, ck, phv, &mut out.bytes[start..], env.calc_buf);
        }
    } else {
        for &h in &p.deparse_order {
            if phv.valid[h as usize] {
                deparse(p, h, phv, frame, &mut out.bytes);
            }
        }
        out.bytes
            .extend_from_slice(frame.get(cursor..).unwrap_or(&[]));
    }
    let program_limit = flags.truncate.or(cut.ingress);
    let limit = match (program_limit, cut.session) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    if let Some(limit) = limit {
        if out.bytes.len() - start > limit {
            out.bytes.truncate(start + limit);
        }
    }
    env.stats.frames_out += 1;
    if env.trace {
        packet_log(format_args!(
            "sent on port {}, {} bytes{}",
            replica.port,
            out.bytes.len() - start,
            match phv.values[std.instance_type.slot as usize] {
                INSTANCE_INGRESS_CLONE => " (ingress clone)",
                INSTANCE_REPLICATION => " (multicast replica)",
                _ => "",
            }
        ));
    }
    env.stats.bytes_out += (out.bytes.len() - start) as u64;
    out.frames.push((replica.port, start..out.bytes.len()));
}

/// Whether the deparser's common case applies: the valid headers, in deparse order, are the
/// ones the parser extracted, back to back from the frame's start up to the payload.
fn deparses_in_place(p: &Program, phv: &Phv, frame: &[u8], cursor: usize) -> bool {
    let mut end = 0usize;
    for &h in &p.deparse_order {
        if phv.valid[h as usize] {
            if phv.origin[h as usize] as usize != end {
                return false;
            }
            end += p.headers[h as usize].bits as usize / 8;
        }
    }
    end == cursor && end <= frame.len()
}

/// The deparser's common case (see `deparses_in_place`), in one copy: the frame is appended
/// whole and the fields written since extraction are patched in, found in one pass over the
/// change bits of all packet headers. An extract clears its header's bits, so a set bit of a
/// valid header that was extracted (each at its place, as this case has it) is a field written
/// since; the other set bits belong to headers not extracted from this frame.
fn deparse_in_place(p: &Program, phv: &Phv, frame: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(frame);
    let sent = &mut out[start..];
    for (w, (&changed, &packet)) in phv.changed.0.iter().zip(&p.packet_slots).enumerate() {
        let mut bits = changed & packet;
        while bits != 0 {
            let slot = w * 64 + bits.trailing_zeros() as usize;
            bits &= bits - 1;
            let Some(&(h, i)) = p.slot_owner.get(slot) else {
                continue;
            };
            let origin = phv.origin[h as usize];
            if !phv.valid[h as usize] || origin == NOT_EXTRACTED {
                continue;
            }
            let f = &p.headers[h as usize].fields[i as usize];
            let bit = origin as usize * 8 + f.offset as usize;
            write_bits(sent, bit, f.width, phv.values[slot]);
        }
    }
    // Debug builds (tests, fuzzing) check each header sent against its serialized fields.
    if cfg!(debug_assertions) {
        for &h in p.deparse_order.iter().filter(|&&h| phv.valid[h as usize]) {
            let at = phv.origin[h as usize] as usize;
            let len = p.headers[h as usize].bits as usize / 8;
            debug_assert!(matches_fields(p, h, phv, &sent[at..at + len]));
        }
    }
}

/// Runs an update checksum (`update_from_bytes`, target header valid) after `deparse_in_place`:
/// sums its header's bytes in `frame`, the frame being sent, and writes the result there and to
/// the target field.
fn update_deparsed(
    p: &Program,
    ck: &super::pipeline::Checksum,
    phv: &mut Phv,
    frame: &mut [u8],
    calc_buf: &mut Vec<u8>,
) {
    let h = ck.target.header as usize;
    // In place, a header's bytes in the frame sent are where it was extracted from.
    let at = phv.origin[h] as usize;
    let span = p.calculations[ck.calculation].span.as_ref();
    let v = match span.and_then(|s| s.checksum(frame.get(at..)?)) {
        Some(v) => u64::from(v),
        None => {
            extract_skipped(p, ck.calculation, phv, frame);
            calculate(p, ck.calculation, phv, calc_buf)
        }
    };
    phv.set(ck.target, u128::from(v));
    let layout = &p.headers[h];
    let field = &layout.fields[(ck.target.slot - layout.first_slot) as usize];
    if let Some(header) = frame.get_mut(at..at + layout.bits as usize / 8) {
        write_bits(header, field.offset as usize, field.width, u128::from(v));
    }
}

/// Appends header `h` to `out`: a header extracted from `frame` is copied from there, with the
/// fields written since patched in; any other is serialized field by field.
fn deparse(p: &Program, h: u32, phv: &Phv, frame: &[u8], out: &mut Vec<u8>) {
    let layout = &p.headers[h as usize];
    let origin = phv.origin[h as usize] as usize;
    let len = layout.bits as usize / 8;
    if let Some(original) = frame.get(origin..origin.saturating_add(len)) {
        let at = out.len();
        out.extend_from_slice(original);
        patch_written_fields(p, h, phv, &mut out[at..]);
        return;
    }
    let first = layout.first_slot as usize;
    serialize(layout, &phv.values[first..first + layout.fields.len()], out);
}

/// Writes the fields of header `h` changed since extraction into `copy`, the header's bytes as
/// extracted. Debug builds (tests, fuzzing) check the result against the field-by-field form.
#[inline]
fn patch_written_fields(p: &Program, h: u32, phv: &Phv, copy: &mut [u8]) {
    let layout = &p.headers[h as usize];
    let first = layout.first_slot as usize;
    let values = &phv.values[first..first + layout.fields.len()];
    if phv.header_changed[h as usize] {
        phv.changed.for_each_of(&layout.slot_words, first, |i| {
            let f = &layout.fields[i];
            write_bits(copy, f.offset as usize, f.width, values[i]);
        });
    }
    debug_assert!(matches_fields(p, h, phv, copy));
}

/// Whether `bytes`, header `h` as deparsed, are its fields' values (for debug checks).
fn matches_fields(p: &Program, h: u32, phv: &Phv, bytes: &[u8]) -> bool {
    let layout = &p.headers[h as usize];
    let first = layout.first_slot as usize;
    let mut values = phv.values[first..first + layout.fields.len()].to_vec();
    // The fields extraction skipped are in the bytes only.
    for &(i, _) in layout.lazy.iter().flat_map(|l| &l.skipped) {
        let f = &layout.fields[i as usize];
        values[i as usize] = read_field(bytes, f.offset as usize, f.width);
    }
    let mut serialized = Vec::new();
    serialize(layout, &values, &mut serialized);
    bytes == &serialized[..]
}

/// Appends a header's field values, bit-packed.
fn serialize(layout: &super::pipeline::HeaderLayout, values: &[u128], out: &mut Vec<u8>) {
    let mut w = BitWriter::new(out);
    for (f, &v) in layout.fields.iter().zip(values) {
        w.put(v, f.width);
    }
    // Packet headers are whole bytes (checked at load): nothing is padded.
    w.finish();
}

/// Overwrites the `width` (1..=128) bits of `buf` at bit `bit` (MSB first) with the low bits of
/// `v`, leaving the bits around them as they are; the caller checked that they are there.
fn write_bits(buf: &mut [u8], bit: usize, width: u32, v: u128) {
    let end = bit + width as usize;
    // Most fields: one read-modify-write of the 8 bytes from the field's first byte (or, near
    // the buffer's end, of its last 8 bytes), when they hold the whole field.
    if let Some(last) = buf.len().checked_sub(8) {
        let at = (bit / 8).min(last);
        if width > 0 && bit >= at * 8 && end <= at * 8 + 64 {
            let shift = (at * 8 + 64 - end) as u32;
            let mask = (u64::MAX >> (64 - width)) << shift;
            if let Some(window) = buf.get_mut(at..at + 8) {
                let old = u64::from_be_bytes(window.try_into().unwrap_or([0; 8]));
                let new = (old & !mask) | (((v as u64) << shift) & mask);
                window.copy_from_slice(&new.to_be_bytes());
                return;
            }
        }
    }
    let mut b = bit;
    while b < end {
        let (byte, lead) = (b / 8, b % 8);
        let n = (8 - lead).min(end - b);
        // The value's bits for positions b..b+n are n bits up from its bit end-b-n.
        let chunk = ((v >> (end - b - n)) as u8) & (0xffu8 >> (8 - n));
        let keep = !((0xffu8 >> (8 - n)) << (8 - lead - n));
        buf[byte] = (buf[byte] & keep) | (chunk << (8 - lead - n));
        b += n;
    }
}

/// Runs the parser and checksum verification; returns the payload offset (bytes).
fn parse_and_verify(p: &Program, frame: &[u8], phv: &mut Phv, env: &mut Env, count: bool) -> usize {
    let std = &p.std;
    if let Some(f) = std.packet_length {
        phv.values[f.slot as usize] = cut_to_width(frame.len() as u128, f.width);
    }
    let (cursor_bits, error) = parse(p, frame, phv, env.trace && count);
    if env.trace && count {
        log_parsed(p, phv, cursor_bits / 8, error);
    }
    if let Some(code) = error {
        if count {
            env.stats.parser_errors += 1;
            if code == p.parser_errors.packet_too_short {
                env.stats.packet_too_short += 1;
            }
        }
        if let Some(f) = std.parser_error {
            phv.values[f.slot as usize] = cut_to_width(u128::from(code), f.width);
        }
    }
    for ck in p.checksums.iter().filter(|c| c.verify) {
        if ck
            .condition
            .as_ref()
            .is_none_or(|c| eval_inline(c, phv, &[], &[]) != 0)
        {
            let v = match checksum_from_frame(p, ck.calculation, phv, frame) {
                Some(v) => u64::from(v),
                None => {
                    extract_skipped(p, ck.calculation, phv, frame);
                    calculate(p, ck.calculation, phv, env.calc_buf)
                }
            };
            if cut_to_width(u128::from(v), ck.target.width) != phv.values[ck.target.slot as usize] {
                if let Some(f) = std.checksum_error {
                    phv.values[f.slot as usize] = 1;
                }
                if count {
                    env.stats.checksum_errors += 1;
                    if env.trace {
                        packet_log(format_args!("checksum {} is wrong", ck.name));
                    }
                }
            }
        }
    }
    cursor_bits / 8
}

/// A csum16 over one header's fields summed from the bytes the header was just extracted from,
/// which are its fields' values as long as the parser wrote none of them; `None` otherwise.
#[inline]
fn checksum_from_frame(p: &Program, calc: usize, phv: &Phv, frame: &[u8]) -> Option<u16> {
    let span = p.calculations[calc].span.as_ref()?;
    let h = span.header as usize;
    let origin = phv.origin[h];
    if !phv.valid[h] || phv.header_changed[h] || origin == NOT_EXTRACTED {
        return None;
    }
    span.checksum(frame.get(origin as usize..)?)
}

/// The parser: returns the cursor (bits) and the error, if parsing ended in one.
/// With `trace`, each state's select key and choice go to the packet log.
fn parse(p: &Program, frame: &[u8], phv: &mut Phv, trace: bool) -> (usize, Option<u32>) {
    let total_bits = frame.len() * 8;
    let mut cursor = 0usize;
    let mut state = Some(p.parser_start);
    let mut steps = 0usize;
    let errs = &p.parser_errors;
    while let Some(si) = state {
        steps += 1;
        if steps > MAX_PARSER_STEPS {
            return (cursor, Some(errs.parser_timeout));
        }
        let st = &p.parse_states[si];
        let done = match &st.extracts {
            Some(headers) => headers
                .iter()
                .all(|&h| extract_at(p, h, frame, &mut cursor, phv))
                .then_some(())
                .ok_or(errs.packet_too_short),
            None => run_parser_ops(p, st, frame, &mut cursor, phv),
        };
        if let Err(code) = done {
            return (cursor, Some(code));
        }
        if cursor + st.key_lookahead as usize > total_bits {
            return (cursor, Some(errs.packet_too_short));
        }
        let part_value = |part: &SelectKeyPart| match part {
            SelectKeyPart::Field(f) => phv.values[f.slot as usize],
            SelectKeyPart::Lookahead { offset, width } => {
                read_field(frame, cursor + *offset as usize, *width)
            }
        };
        // Each part's value fits its padded width.
        let key = if st.narrow_key {
            let mut key = 0u64;
            for (part, padded) in &st.key {
                let v = part_value(part) as u64;
                key = if *padded >= 64 {
                    v
                } else {
                    (key << padded) | v
                };
            }
            u128::from(key)
        } else {
            let mut key = 0u128;
            for (part, padded) in &st.key {
                let v = part_value(part);
                key = if *padded >= 128 {
                    v
                } else {
                    (key << padded) | v
                };
            }
            key
        };
        let chosen = st
            .transitions
            .iter()
            .find(|t| t.value.is_none_or(|v| key & t.mask == v));
        if trace {
            log_parse_state(p, st, key, chosen, cursor);
        }
        match chosen {
            Some(t) => state = t.next,
            None => return (cursor, Some(errs.no_match)),
        }
    }
    (cursor, None)
}

/// A parse state's ops in general (with lookaheads, assignments, verify, advance); `Err` is the
/// parser error that stops the parser.
fn run_parser_ops(
    p: &Program,
    st: &super::pipeline::ParseState,
    frame: &[u8],
    cursor: &mut usize,
    phv: &mut Phv,
) -> Result<(), u32> {
    let errs = &p.parser_errors;
    let total_bits = frame.len() * 8;
    for (op, &need) in st.ops.iter().zip(&st.op_lookahead) {
        if *cursor + need as usize > total_bits {
            return Err(errs.packet_too_short);
        }
        // The packet from the cursor on, for the ops that look ahead.
        let ahead = frame.get(*cursor / 8..).unwrap_or(&[]);
        match op {
            ParserOp::Extract(h) => {
                if !extract_at(p, *h, frame, cursor, phv) {
                    return Err(errs.packet_too_short);
                }
            }
            ParserOp::Set { dst, src } => {
                let v = eval(src, phv, &[], ahead);
                phv.set(*dst, v);
            }
            ParserOp::Verify { cond, error } => {
                if eval(cond, phv, &[], ahead) == 0 {
                    return Err(u32::try_from(eval(error, phv, &[], ahead) & 0x7fff_ffff)
                        .unwrap_or(errs.parser_invalid_argument));
                }
            }
            ParserOp::Advance(e) => {
                let bits = eval(e, phv, &[], ahead);
                if !bits.is_multiple_of(8) {
                    return Err(errs.parser_invalid_argument);
                }
                match usize::try_from(bits) {
                    Ok(b) if cursor.saturating_add(b) <= total_bits => *cursor += b,
                    _ => return Err(errs.packet_too_short),
                }
            }
            ParserOp::Primitive(prim) => header_primitive(p, prim, phv, ahead),
        }
    }
    Ok(())
}

/// `packet.extract` of header `h` at `cursor` (bits), which it moves past the header; false
/// (and nothing extracted) if the frame ends first.
#[inline(always)]
fn extract_at(p: &Program, h: u32, frame: &[u8], cursor: &mut usize, phv: &mut Phv) -> bool {
    let layout = &p.headers[h as usize];
    let at = *cursor;
    if at + layout.bits as usize > frame.len() * 8 {
        return false;
    }
    extract(layout, frame, at, phv);
    phv.valid[h as usize] = true;
    phv.header_changed[h as usize] = false;
    phv.origin[h as usize] = if at.is_multiple_of(8) {
        u32::try_from(at / 8).unwrap_or(NOT_EXTRACTED)
    } else {
        NOT_EXTRACTED
    };
    *cursor = at + layout.bits as usize;
    true
}

/// Reads header `layout` from `frame` at bit `cursor` (the caller checked that it is all there)
/// into its slots, and clears their change flags.
#[inline]
fn extract(layout: &super::pipeline::HeaderLayout, frame: &[u8], cursor: usize, phv: &mut Phv) {
    let first = layout.first_slot as usize;
    let n = layout.fields.len();
    let slots = &mut phv.values[first..first + n];
    phv.changed.clear_words(&layout.slot_words);
    let start = cursor / 8;
    // Most packet headers: each field is one load, shift and mask at an offset known since the
    // pipeline was loaded.
    if let (true, Some(windows), Some(bytes)) = (
        cursor.is_multiple_of(8),
        &layout.windows,
        frame.get(start..start + layout.bits as usize / 8),
    ) {
        match &layout.lazy {
            // Only the fields the program names (`field_use`); the others stay in the bytes.
            Some(lazy) => {
                for &(i, w) in &lazy.eager {
                    if let Some(slot) = slots.get_mut(i as usize) {
                        *slot = window_value(bytes, w);
                    }
                }
            }
            None => {
                for (&w, slot) in windows.iter().zip(slots) {
                    *slot = window_value(bytes, w);
                }
            }
        }
        return;
    }
    for (f, slot) in layout.fields.iter().zip(slots) {
        *slot = read_field(frame, cursor + f.offset as usize, f.width);
    }
}

/// A field's value from its load in `header`, the header's bytes.
#[inline(always)]
fn window_value(header: &[u8], w: super::pipeline::Window) -> u128 {
    let at = w.byte as usize;
    // Always 8 bytes: windows lie inside the header.
    let word = header
        .get(at..at + 8)
        .map_or(0, |b| u64::from_be_bytes(b.try_into().unwrap_or([0; 8])));
    u128::from((word >> w.shift) & w.mask)
}

/// Reads into their slots the fields extraction skipped (see `field_use`) in the headers of
/// calculation `calc` that were extracted from `frame` and are valid: before a checksum is
/// computed from field values rather than from a header's bytes.
fn extract_skipped(p: &Program, calc: usize, phv: &mut Phv, frame: &[u8]) {
    for &h in &p.calculations[calc].headers {
        let layout = &p.headers[h as usize];
        let (Some(lazy), true) = (&layout.lazy, phv.valid[h as usize]) else {
            continue;
        };
        // Not extracted, or extracted at a bit offset: then every field was read (or is 0).
        let origin = phv.origin[h as usize];
        if origin == NOT_EXTRACTED {
            continue;
        }
        let at = origin as usize;
        let Some(bytes) = frame.get(at..at + layout.bits as usize / 8) else {
            continue;
        };
        let first = layout.first_slot as usize;
        for &(i, w) in &lazy.skipped {
            phv.values[first + i as usize] = window_value(bytes, w);
        }
    }
}

/// The header-only primitives a parser may run (the loader refuses the others in parsers).
fn header_primitive(p: &Program, prim: &Primitive, phv: &mut Phv, ahead: &[u8]) {
    match prim {
        Primitive::Assign { dst, src } => {
            let v = eval(src, phv, &[], ahead);
            phv.set(*dst, v);
        }
        Primitive::AssignHeader { dst, src } => assign_header(p, phv, *dst, *src),
        Primitive::SetValid(h) => phv.valid[*h as usize] = true,
        Primitive::SetInvalid(h) => phv.valid[*h as usize] = false,
        _ => {}
    }
}

/// Copies a header's fields and validity (headers of the same type).
fn assign_header(p: &Program, phv: &mut Phv, dst: u32, src: u32) {
    let (d, s) = (&p.headers[dst as usize], &p.headers[src as usize]);
    let n = d.fields.len().min(s.fields.len());
    let (ds, ss) = (d.first_slot as usize, s.first_slot as usize);
    phv.values.copy_within(ss..ss + n, ds);
    phv.valid[dst as usize] = phv.valid[src as usize];
    phv.touch_header(p, dst);
}

#[allow(clippy::too_many_arguments)]
fn run_control(
    p: &Program,
    init: Option<Node>,
    tables: &mut [TableState],
    phv: &mut Phv,
    env: &mut Env,
    key_buf: &mut Vec<u128>,
    flags: &mut Flags,
    now_ns: u64,
) {
    let mut node = init;
    // The graph is acyclic (checked at load), so this visits each node at most once.
    while let Some(n) = node {
        match n {
            Node::Conditional(c) => {
                let k = &p.conditionals[c];
                let holds = eval_inline(&k.expr, phv, &[], &[]) != 0;
                if env.trace {
                    let source = k.source.as_deref().unwrap_or("");
                    packet_log(format_args!("condition {} ({source}) is {holds}", k.name));
                }
                node = if holds { k.true_next } else { k.false_next };
            }
            Node::Table(ti) => {
                let t = &p.tables[ti];
                let state = &mut tables[ti];
                let hit = match state.lookup_fields(&phv.values) {
                    Some(hit) => hit,
                    None => {
                        key_buf.clear();
                        key_buf.extend(t.keys.iter().map(|k| key_value(k, phv)));
                        state.lookup(t, key_buf)
                    }
                };
                let call = match hit.and_then(|i| state.entries.get_mut(i)) {
                    Some(e) => {
                        if t.direct_counter.is_some() {
                            e.counter.add(env.frame_len);
                        }
                        e.last_hit_ns = now_ns;
                        e.idle_timer_ns = now_ns;
                        Some(&e.entry.action)
                    }
                    // A miss hits the default entry.
                    None => {
                        if t.direct_counter.is_some() {
                            state.default_counter.add(env.frame_len);
                        }
                        state.default_action.as_ref()
                    }
                };
                if env.trace {
                    log_table(p, t, phv, hit, call);
                }
                let Some(call) = call else {
                    node = match &t.next {
                        TableNext::HitMiss { miss, .. } => *miss,
                        TableNext::ByAction(_) => t.base_default_next,
                    };
                    continue;
                };
                // Only actions stop a control (exit, a failed assert).
                if run_action(p, call.action, &call.args, phv, env, flags) {
                    break;
                }
                node = match &t.next {
                    TableNext::HitMiss { hit: h, miss } => {
                        if hit.is_some() {
                            *h
                        } else {
                            *miss
                        }
                    }
                    TableNext::ByAction(v) => t
                        .actions
                        .iter()
                        .position(|&a| a == call.action)
                        .and_then(|i| v[i]),
                };
            }
        }
    }
}

/// Runs an action; true if it stopped the control (`exit`, a failed assertion: see `flags`).
fn run_action(
    p: &Program,
    action: usize,
    args: &[u128],
    phv: &mut Phv,
    env: &mut Env,
    flags: &mut Flags,
) -> bool {
    let body = &p.actions[action].body;
    let mut pc = 0usize;
    while let Some(prim) = body.get(pc) {
        pc += 1;
        match prim {
            Primitive::Assign { dst, src } => {
                let v = eval_inline(src, phv, args, &[]);
                phv.set(*dst, v);
            }
            Primitive::AssignHeader { dst, src } => assign_header(p, phv, *dst, *src),
            Primitive::SetValid(h) => phv.valid[*h as usize] = true,
            Primitive::SetInvalid(h) => phv.valid[*h as usize] = false,
            Primitive::MarkToDrop => {
                phv.values[p.std.egress_spec.slot as usize] = DROP_PORT;
                if let Some(m) = p.std.mcast_grp {
                    phv.values[m.slot as usize] = 0;
                }
            }
            Primitive::Count { counter, index } => {
                let i = eval(index, phv, args, &[]);
                match usize::try_from(i)
                    .ok()
                    .and_then(|i| env.counters[*counter].get_mut(i))
                {
                    Some(c) => c.add(env.frame_len),
                    None => env.stats.index_out_of_range += 1,
                }
            }
            Primitive::RegisterRead {
                dst,
                register,
                index,
            } => {
                let i = eval(index, phv, args, &[]);
                let v = match usize::try_from(i)
                    .ok()
                    .and_then(|i| env.registers[*register].get(i))
                {
                    Some(v) => *v,
                    None => {
                        env.stats.index_out_of_range += 1;
                        0
                    }
                };
                phv.set(*dst, v);
            }
            Primitive::RegisterWrite {
                register,
                index,
                value,
            } => {
                let i = eval(index, phv, args, &[]);
                let v = eval(value, phv, args, &[]) & width_mask(p.registers[*register].width);
                match usize::try_from(i)
                    .ok()
                    .and_then(|i| env.registers[*register].get_mut(i))
                {
                    Some(cell) => *cell = v,
                    None => env.stats.index_out_of_range += 1,
                }
            }
            Primitive::HashOffset {
                dst,
                base,
                calculation,
                size,
            } => {
                let h = u128::from(calculate(p, *calculation, phv, env.calc_buf));
                let size = eval(size, phv, args, &[]);
                let offset = if size == 0 { h } else { h % size };
                let v = eval(base, phv, args, &[]).wrapping_add(offset);
                phv.set(*dst, v);
            }
            Primitive::CloneI2E {
                session,
                field_list,
            } => {
                flags.clone = Some((eval(session, phv, args, &[]), *field_list));
            }
            Primitive::Exit => {
                if env.trace {
                    packet_log(format_args!("  exit"));
                }
                return true;
            }
            Primitive::Truncate(len) => {
                flags.truncate =
                    Some(usize::try_from(eval(len, phv, args, &[])).unwrap_or(usize::MAX));
            }
            Primitive::Jump(t) => pc = *t,
            Primitive::JumpIfZero(cond, t) => {
                if eval(cond, phv, args, &[]) == 0 {
                    pc = *t;
                }
            }
            Primitive::Assert(cond) => {
                if eval(cond, phv, args, &[]) == 0 {
                    flags.assert_failed = true;
                    return true;
                }
            }
        }
        if env.trace {
            log_primitive(p, prim, phv);
        }
    }
    false
}

/// `header.field`, as the JSON names it (p4c's locals are fields of `scalars`).
fn field_name(p: &Program, f: FieldRef) -> String {
    let h = &p.headers[f.header as usize];
    let field = h.fields.get((f.slot - h.first_slot) as usize);
    format!("{}.{}", h.name, field.map_or("?", |f| f.name.as_str()))
}

/// A key field's value for the lookup: the field (or the header's validity), masked by the
/// program's static mask if it has one.
#[inline]
fn key_value(k: &super::pipeline::KeyField, phv: &Phv) -> u128 {
    let v = match k.source {
        super::pipeline::KeySource::Field(f) => phv.values[f.slot as usize],
        super::pipeline::KeySource::Valid(h) => u128::from(phv.valid[h as usize]),
    };
    k.mask.map_or(v, |m| v & m)
}

/// The packet log's line for an action primitive that changed something, after it ran: the
/// field, header or register it wrote and the value it holds now.
#[cold]
#[inline(never)]
fn log_primitive(p: &Program, prim: &Primitive, phv: &Phv) {
    let header = |h: &u32| p.headers[*h as usize].name.as_str();
    let line = match prim {
        Primitive::Assign { dst, .. }
        | Primitive::RegisterRead { dst, .. }
        | Primitive::HashOffset { dst, .. } => format!(
            "{} = {:#x}",
            field_name(p, *dst),
            phv.values[dst.slot as usize]
        ),
        Primitive::AssignHeader { dst, src } => format!("{} = {}", header(dst), header(src)),
        Primitive::SetValid(h) => format!("{}.setValid()", header(h)),
        Primitive::SetInvalid(h) => format!("{}.setInvalid()", header(h)),
        Primitive::MarkToDrop => "mark_to_drop()".to_string(),
        Primitive::Count { counter, .. } => format!("count {}", p.counters[*counter].name),
        Primitive::RegisterWrite { register, .. } => {
            format!("write register {}", p.registers[*register].name)
        }
        Primitive::Truncate(_) => "truncate".to_string(),
        Primitive::CloneI2E { .. }
        | Primitive::Exit
        | Primitive::Jump(_)
        | Primitive::JumpIfZero(..)
        | Primitive::Assert(_) => return,
    };
    tracing::debug!(target: PACKET_LOG, "  {line}");
}

/// The packet log's line for a parse state: where it left the cursor, its select key (when it
/// has one) and the state it chose.
#[cold]
#[inline(never)]
fn log_parse_state(
    p: &Program,
    st: &super::pipeline::ParseState,
    key: u128,
    chosen: Option<&super::pipeline::Transition>,
    cursor_bits: usize,
) {
    let key = if st.key.is_empty() {
        String::new()
    } else {
        format!(", key {key:#x}")
    };
    let next = match chosen {
        None => "no transition matches",
        Some(t) => t
            .next
            .and_then(|n| p.parse_states.get(n))
            .map_or("accept", |n| n.name.as_str()),
    };
    tracing::debug!(
        target: PACKET_LOG,
        "parser state {}, cursor at byte {}{key}: next {next}",
        st.name,
        cursor_bits / 8
    );
}

/// The packet log's line for the parser: the headers extracted, the bytes parsed, the error.
#[cold]
#[inline(never)]
fn log_parsed(p: &Program, phv: &Phv, bytes: usize, error: Option<u32>) {
    let headers: Vec<&str> = p
        .headers
        .iter()
        .zip(&phv.valid)
        .filter(|(h, valid)| **valid && !h.metadata)
        .map(|(h, _)| h.name.as_str())
        .collect();
    let error = match error {
        None => String::new(),
        Some(code) => {
            let name = p.errors.iter().find(|(_, c)| *c == code);
            format!(", error {}", name.map_or("(unknown)", |(n, _)| n.as_str()))
        }
    };
    tracing::debug!(
        target: PACKET_LOG,
        "parsed {bytes} bytes, headers [{}]{error}",
        headers.join(", ")
    );
}

/// The packet log's line for a table: its key, and the entry's action or the default one.
#[cold]
#[inline(never)]
fn log_table(
    p: &Program,
    t: &super::pipeline::Table,
    phv: &Phv,
    hit: Option<usize>,
    call: Option<&ActionCall>,
) {
    let key: Vec<String> = t
        .keys
        .iter()
        .map(|k| format!("{}={:#x}", k.name, key_value(k, phv)))
        .collect();
    let action = match call {
        Some(call) => {
            let args: Vec<String> = call.args.iter().map(|a| format!("{a:#x}")).collect();
            let name = p.actions.get(call.action).map_or("?", |a| a.name.as_str());
            format!("{name}({})", args.join(", "))
        }
        None => "none".to_string(),
    };
    let outcome = if hit.is_some() {
        "hit"
    } else {
        "miss, default action"
    };
    // p4c turns a direct action call into a table without a key.
    let key = if key.is_empty() {
        String::new()
    } else {
        format!(" key [{}]:", key.join(", "))
    };
    tracing::debug!(target: PACKET_LOG, "table {}:{key} {outcome} {action}", t.name);
}

/// Runs a calculation over its inputs, bit-packed in order (fields of invalid headers skipped).
#[inline]
fn calculate(p: &Program, calc: usize, phv: &Phv, buf: &mut Vec<u8>) -> u64 {
    let c = &p.calculations[calc];
    if c.algo == HashAlgo::Csum16 && c.headers.iter().all(|&h| phv.valid[h as usize]) {
        return u64::from(csum16_all_included(c, phv));
    }
    calculate_packed(c, phv, buf)
}

/// `calculate` for other algorithms, and for checksums that leave out some input.
fn calculate_packed(c: &Calculation, phv: &Phv, buf: &mut Vec<u8>) -> u64 {
    if c.algo == HashAlgo::Csum16 {
        return u64::from(csum16_of_inputs(&c.inputs, phv));
    }
    buf.clear();
    let mut w = BitWriter::new(buf);
    for (v, width) in c.inputs.iter().filter_map(|i| calc_input(i, phv)) {
        w.put(v, width);
    }
    w.finish();
    c.algo.compute(buf)
}

/// An input's value and width, or `None` for a field of an invalid header (left out).
fn calc_input(i: &CalcInput, phv: &Phv) -> Option<(u128, u32)> {
    match *i {
        CalcInput::Field(f) => {
            phv.valid[f.header as usize].then(|| (phv.values[f.slot as usize], f.width))
        }
        CalcInput::Const { value, width } => Some((value, width)),
    }
}

/// The Internet checksum of the bit-packed inputs, computed without packing them. The ones'
/// complement sum of a buffer's 16-bit words is the buffer, read as one number, modulo 0xffff
/// (as 2^16 = 1 modulo 0xffff), and 0 only when every word is 0. So each input contributes its
/// value shifted by its bit distance (mod 16) from the end of the data, and the sum is finally
/// shifted by the zero padding up to whole 16-bit words, which is what `hash::csum16` sums.
fn csum16_of_inputs(inputs: &[CalcInput], phv: &Phv) -> u16 {
    let mut from_end = 0u32;
    // Each term is below 2^49 (a 128-bit value folded to 34 bits, shifted by < 16).
    let mut sum = 0u64;
    for (v, w) in inputs.iter().rev().filter_map(|i| calc_input(i, phv)) {
        let v = v & width_mask(w);
        let folded = (v as u64 & 0xffff_ffff)
            + ((v >> 32) as u64 & 0xffff_ffff)
            + ((v >> 64) as u64 & 0xffff_ffff)
            + (v >> 96) as u64;
        sum = sum.wrapping_add(folded << (from_end % 16));
        from_end = from_end.wrapping_add(w);
    }
    let padding = (16 - from_end % 16) % 16;
    !csum_fold16(sum).rotate_left(padding)
}

/// `csum16_of_inputs` when every input is included: the shifts, and the constants' share, are
/// known at load.
#[inline]
fn csum16_all_included(c: &Calculation, phv: &Phv) -> u16 {
    let mut sum = c.csum_constants;
    // Field values fit their widths (every write masks them): a value of at most 32 bits is its
    // own fold.
    if c.csum_narrow {
        for &(slot, shift) in &c.csum_fields {
            sum = sum.wrapping_add((phv.values[slot as usize] as u64) << shift);
        }
    } else {
        for &(slot, shift) in &c.csum_fields {
            sum = sum.wrapping_add(csum_fold(phv.values[slot as usize]) << shift);
        }
    }
    !csum_fold16(sum)
}

/// A leaf's value (constant, field, validity, parameter), read without a call; `None` for an
/// operator or a lookahead.
#[inline(always)]
fn leaf(e: &Expr, phv: &Phv, args: &[u128]) -> Option<u128> {
    match e {
        Expr::Const(v) => Some(*v),
        Expr::Field(f) => Some(phv.values[f.slot as usize]),
        Expr::Valid(h) => Some(u128::from(phv.valid[*h as usize])),
        Expr::Param(i) => Some(args.get(*i).copied().unwrap_or(0)),
        _ => None,
    }
}

/// `eval` with the leaves read inline, without a call.
#[inline(always)]
fn operand(e: &Expr, phv: &Phv, args: &[u128], ahead: &[u8]) -> u128 {
    match leaf(e, phv, args) {
        Some(v) => v,
        None => eval(e, phv, args, ahead),
    }
}

/// `eval` with what conditions and assignments mostly are (a leaf, or one operator over leaves)
/// computed inline, without a call. Expressions have no side effects, so evaluating both
/// operands of a logical operator gives what short-circuiting does.
#[inline(always)]
fn eval_inline(e: &Expr, phv: &Phv, args: &[u128], ahead: &[u8]) -> u128 {
    // One dispatch for a leaf; operands are leaves read by a second.
    match e {
        Expr::Const(v) => return *v,
        Expr::Field(f) => return phv.values[f.slot as usize],
        Expr::Valid(h) => return u128::from(phv.valid[*h as usize]),
        Expr::Param(i) => return args.get(*i).copied().unwrap_or(0),
        Expr::Unary(op, a) => {
            if let Some(a) = leaf(a, phv, args) {
                return unary(*op, a);
            }
        }
        Expr::Binary(op, a, b) => {
            if let (Some(l), Some(r)) = (leaf(a, phv, args), leaf(b, phv, args)) {
                return binary(*op, l, r);
            }
        }
        Expr::Lookahead { .. } | Expr::Cond(..) => {}
    }
    eval(e, phv, args, ahead)
}

#[inline(always)]
fn unary(op: UnOp, a: u128) -> u128 {
    match op {
        UnOp::Not => u128::from(a == 0),
        UnOp::BitNot => !a,
        UnOp::Neg => a.wrapping_neg(),
        UnOp::D2b => u128::from(a != 0),
    }
}

#[inline(always)]
fn binary(op: BinOp, l: u128, r: u128) -> u128 {
    match op {
        BinOp::Add => l.wrapping_add(r),
        BinOp::Sub => l.wrapping_sub(r),
        BinOp::Mul => l.wrapping_mul(r),
        BinOp::Shl => u32::try_from(r)
            .ok()
            .and_then(|s| l.checked_shl(s))
            .unwrap_or(0),
        BinOp::Shr => u32::try_from(r)
            .ok()
            .and_then(|s| l.checked_shr(s))
            .unwrap_or(0),
        BinOp::Eq => u128::from(l == r),
        BinOp::Ne => u128::from(l != r),
        BinOp::Gt => u128::from(l > r),
        BinOp::Ge => u128::from(l >= r),
        BinOp::Lt => u128::from(l < r),
        BinOp::Le => u128::from(l <= r),
        BinOp::And => u128::from(l != 0 && r != 0),
        BinOp::Or => u128::from(l != 0 || r != 0),
        BinOp::BitAnd => l & r,
        BinOp::BitOr => l | r,
        BinOp::BitXor => l ^ r,
    }
}

/// Evaluates an expression; `args` are the action's arguments, `ahead` the packet from the parser
/// cursor on (lookaheads were bounds-checked before).
fn eval(e: &Expr, phv: &Phv, args: &[u128], ahead: &[u8]) -> u128 {
    match e {
        Expr::Const(v) => *v,
        Expr::Field(f) => phv.values[f.slot as usize],
        Expr::Valid(h) => u128::from(phv.valid[*h as usize]),
        Expr::Param(i) => args.get(*i).copied().unwrap_or(0),
        Expr::Lookahead { offset, width } => {
            if (*offset as usize + *width as usize) <= ahead.len() * 8 {
                read_field(ahead, *offset as usize, *width)
            } else {
                0
            }
        }
        Expr::Unary(op, a) => unary(*op, operand(a, phv, args, ahead)),
        Expr::Binary(op, a, b) => {
            let l = operand(a, phv, args, ahead);
            // Logical operators short-circuit.
            match op {
                BinOp::And if l == 0 => return 0,
                BinOp::Or if l != 0 => return 1,
                _ => {}
            }
            binary(*op, l, operand(b, phv, args, ahead))
        }
        Expr::Cond(c, a, b) => {
            if operand(c, phv, args, ahead) != 0 {
                operand(a, phv, args, ahead)
            } else {
                operand(b, phv, args, ahead)
            }
        }
    }
}

/// Reads the `width` (1..=128) bits at bit `bit` (MSB first); the caller checked that they are
/// there. Most fields come from one big-endian 64-bit load of the 8 bytes that end with the
/// field (or, near the start of the buffer, of its first 8 bytes).
#[inline]
fn read_field(buf: &[u8], bit: usize, width: u32) -> u128 {
    let end = bit + width as usize;
    let start = end.div_ceil(8).saturating_sub(8);
    if let Some(bytes) = buf.get(start..start + 8) {
        let tail = ((start + 8) * 8 - end) as u32;
        if let (true, Ok(window)) = (width + tail <= 64, <[u8; 8]>::try_from(bytes)) {
            return u128::from((u64::from_be_bytes(window) >> tail) & (u64::MAX >> (64 - width)));
        }
    }
    BitReader::at(buf, bit).take(width)
}

/// Appends values MSB first to bytes, 64 bits at a time. It only stores: re-reading bytes just
/// written (a read-modify-write per field) would stall on store-to-load forwarding.
struct BitWriter<'a> {
    out: &'a mut Vec<u8>,
    acc: u128,
    /// How many low bits of `acc` are not written yet (fewer than 64 between calls).
    bits: u32,
}

impl<'a> BitWriter<'a> {
    fn new(out: &'a mut Vec<u8>) -> BitWriter<'a> {
        BitWriter {
            out,
            acc: 0,
            bits: 0,
        }
    }

    /// Appends the low `width` (1..=128) bits of `v`.
    #[inline]
    fn put(&mut self, v: u128, width: u32) {
        if width > 64 {
            self.put_chunk((v >> 64) as u64, width - 64);
            self.put_chunk(v as u64, 64);
        } else {
            self.put_chunk(v as u64, width);
        }
    }

    /// Appends the low `width` (1..=64) bits of `v`.
    #[inline]
    fn put_chunk(&mut self, v: u64, width: u32) {
        self.acc = (self.acc << width) | u128::from(v & (u64::MAX >> (64 - width)));
        self.bits += width;
        if self.bits >= 64 {
            self.bits -= 64;
            self.out
                .extend_from_slice(&((self.acc >> self.bits) as u64).to_be_bytes());
        }
    }

    /// Writes what is left, a last partial byte padded with zeros.
    fn finish(self) {
        let n = self.bits.div_ceil(8);
        let left = (self.acc << (n * 8 - self.bits)) as u64;
        self.out
            .extend_from_slice(&left.to_be_bytes()[(8 - n) as usize..]);
    }
}

/// Reads consecutive values MSB first from bytes, a byte at a time into an accumulator: the
/// general case of `read_field`.
struct BitReader<'a> {
    bytes: &'a [u8],
    next: usize,
    acc: u64,
    /// How many low bits of `acc` are not read yet (fewer than 8 between calls).
    bits: u32,
}

/// Values up to this wide go through the 64-bit accumulator in one piece (at most 7 bits wait
/// there between values).
const CHUNK: u32 = 56;

impl<'a> BitReader<'a> {
    fn at(bytes: &'a [u8], bit: usize) -> BitReader<'a> {
        let mut r = BitReader {
            bytes,
            next: bit / 8,
            acc: 0,
            bits: 0,
        };
        let skip = (bit % 8) as u32;
        if skip != 0 {
            r.acc = u64::from(bytes[r.next]);
            r.next += 1;
            r.bits = 8 - skip;
        }
        r
    }

    /// The next `width` (1..=128) bits.
    fn take(&mut self, width: u32) -> u128 {
        let mut v = 0u128;
        let mut rest = width;
        while rest > 0 {
            let n = rest.min(CHUNK);
            v = (v << n) | u128::from(self.take_chunk(n));
            rest -= n;
        }
        v
    }

    fn take_chunk(&mut self, width: u32) -> u64 {
        while self.bits < width {
            self.acc = (self.acc << 8) | u64::from(self.bytes[self.next]);
            self.next += 1;
            self.bits += 8;
        }
        self.bits -= width;
        (self.acc >> self.bits) & ((1u64 << width) - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::switch::pipeline::slot_words;

    /// `fields` one after the other after `start` zero bits, the last byte zero-padded.
    fn packed(start: usize, fields: &[(u128, u32)]) -> Vec<u8> {
        let mut buf = Vec::new();
        let mut w = BitWriter::new(&mut buf);
        for _ in 0..start {
            w.put(0, 1);
        }
        for &(v, width) in fields {
            w.put(v, width);
        }
        w.finish();
        buf
    }

    #[test]
    fn bits_round_trip_at_odd_offsets() {
        let fields = [(0b101, 3), (0x1abc, 13), (u128::MAX - 5, 128), (0x5, 4)];
        let buf = packed(0, &fields);
        assert_eq!(buf.len(), 19);
        assert_eq!(buf[18], 0x50);
        let mut bit = 0;
        for (v, width) in fields {
            assert_eq!(read_field(&buf, bit, width), v);
            assert_eq!(BitReader::at(&buf, bit).take(width), v);
            bit += width as usize;
        }
        assert_eq!(packed(0, &[(0x4, 4), (0x5, 4), (0x1ff, 8)]), [0x45, 0xff]);
        assert_eq!(packed(3, &[(0x1f, 5), (1, 1)]), [0x1f, 0x80]);
        assert_eq!(packed(0, &[]), Vec::<u8>::new());
    }

    proptest::proptest! {
        /// Reading back what was written gives the values (each cut to its width), through the
        /// 64-bit windows and the byte-wise paths alike, and the bytes are just long enough.
        #[test]
        fn fields_written_read_back(
            fields in proptest::collection::vec((proptest::num::u128::ANY, 1u32..=128), 0..12),
            start in 0usize..80,
        ) {
            let buf = packed(start, &fields);
            let bits: usize = start + fields.iter().map(|f| f.1 as usize).sum::<usize>();
            proptest::prop_assert_eq!(buf.len(), bits.div_ceil(8));
            let mut bit = start;
            for &(v, width) in &fields {
                proptest::prop_assert_eq!(read_field(&buf, bit, width), v & width_mask(width));
                proptest::prop_assert_eq!(
                    BitReader::at(&buf, bit).take(width),
                    v & width_mask(width)
                );
                bit += width as usize;
            }
            if !bits.is_multiple_of(8) {
                proptest::prop_assert_eq!(read_field(&buf, bits, (8 - bits % 8) as u32), 0);
            }
        }

        /// The checksum computed from the inputs' values equals the checksum of the packed bytes,
        /// whatever the widths, values and header validity.
        #[test]
        fn csum16_without_packing_equals_csum16_of_packed_bytes(
            inputs in proptest::collection::vec(
                (proptest::num::u128::ANY, 1u32..=128, proptest::bool::ANY, proptest::bool::weighted(0.85)),
                0..14,
            ),
            narrow in proptest::bool::ANY,
        ) {
            use super::super::pipeline::FieldRef;
            let mut phv = Phv::default();
            let calc: Vec<CalcInput> = inputs
                .iter()
                .enumerate()
                .map(|(i, &(value, width, is_const, valid))| {
                    // Half the cases: fields of at most 32 bits, summed without folding.
                    let width = if narrow { 1 + (width - 1) % 32 } else { width };
                    phv.values.push(value & width_mask(width));
                    phv.valid.push(valid);
                    if is_const {
                        // As loaded: constants fit their widths.
                        CalcInput::Const { value: value & width_mask(width), width }
                    } else {
                        CalcInput::Field(FieldRef { slot: i as u32, header: i as u32, width })
                    }
                })
                .collect();
            let included: Vec<(u128, u32)> =
                calc.iter().filter_map(|i| calc_input(i, &phv)).collect();
            let buf = packed(0, &included);
            let expected = super::super::hash::csum16(&buf);
            proptest::prop_assert_eq!(csum16_of_inputs(&calc, &phv), expected);
            let c = Calculation::new("c".into(), HashAlgo::Csum16, calc);
            proptest::prop_assert!(c.csum_narrow || !narrow);
            if c.headers.iter().all(|&h| phv.valid[h as usize]) {
                proptest::prop_assert_eq!(csum16_all_included(&c, &phv), expected);
            }
        }
    }

    proptest::proptest! {
        /// Writing a field in place reads back as the value cut to its width, and leaves every
        /// other bit of the buffer as it was.
        #[test]
        fn bits_written_in_place_read_back_and_touch_nothing_else(
            buf in proptest::collection::vec(proptest::num::u8::ANY, 1..40),
            bit_seed in proptest::num::usize::ANY,
            width in 1u32..=128,
            v in proptest::num::u128::ANY,
        ) {
            // Anywhere in the buffer: short ones, and fields in their last 8 bytes, included.
            let total = buf.len() * 8;
            let width = width.min(total as u32);
            let bit = bit_seed % (total - width as usize + 1);
            let mut written = buf.clone();
            write_bits(&mut written, bit, width, v);
            proptest::prop_assert_eq!(read_field(&written, bit, width), v & width_mask(width));
            for i in (0..total).filter(|&i| i < bit || i >= bit + width as usize) {
                proptest::prop_assert_eq!(read_field(&written, i, 1), read_field(&buf, i, 1));
            }
        }
    }

    proptest::proptest! {
        /// Extracting a header reads each field as the bit reader does, whether its fields come
        /// through 64-bit windows or not, at any byte offset and with or without bytes after it.
        #[test]
        fn extract_reads_every_field_as_the_bit_reader(
            widths in proptest::collection::vec(1u32..=128, 1..12),
            pad in 0u32..8,
            frame in proptest::collection::vec(proptest::num::u8::ANY, 0..100),
            at in 0usize..8,
            metadata in proptest::bool::weighted(0.1),
        ) {
            let mut fields: Vec<(String, u32)> =
                widths.iter().map(|&w| (String::new(), w)).collect();
            let bits: u32 = widths.iter().sum();
            // Whole bytes, as packet headers are.
            let round = (8 - (bits + pad) % 8) % 8 + pad;
            if round > 0 {
                fields.push((String::new(), round));
            }
            let layout = super::super::pipeline::HeaderLayout::new("h".into(), metadata, 0, fields);
            let cursor = at * 8;
            proptest::prop_assume!(cursor + layout.bits as usize <= frame.len() * 8);
            let mut phv = Phv {
                values: vec![0; layout.fields.len()],
                changed: SlotSet(vec![u64::MAX; layout.fields.len().div_ceil(64)]),
                ..Phv::default()
            };
            extract(&layout, &frame, cursor, &mut phv);
            for (f, &v) in layout.fields.iter().zip(&phv.values) {
                proptest::prop_assert_eq!(v, read_field(&frame, cursor + f.offset as usize, f.width));
            }
            let mut left = 0;
            phv.changed.for_each_of(&layout.slot_words, 0, |_| left += 1);
            proptest::prop_assert_eq!(left, 0);
        }
    }

    proptest::proptest! {
        /// A slot set's range operations see exactly the slots of the range.
        #[test]
        fn slot_set_ranges(
            slots in proptest::collection::vec(0usize..200, 0..40),
            start in 0usize..200,
            n in 0usize..100,
            cleared in 0usize..200,
            cleared_n in 0usize..100,
        ) {
            let mut set = SlotSet(vec![0; 300usize.div_ceil(64)]);
            for &s in &slots {
                set.insert(s);
            }
            set.clear_words(&slot_words(cleared, cleared_n));
            let mut expected: Vec<usize> = slots
                .iter()
                .copied()
                .filter(|&s| s >= start && s < start + n)
                .filter(|&s| s < cleared || s >= cleared + cleared_n)
                .map(|s| s - start)
                .collect();
            expected.sort();
            expected.dedup();
            let mut got = Vec::new();
            set.for_each_of(&slot_words(start, n), start, |i| got.push(i));
            proptest::prop_assert_eq!(got, expected);
        }
    }

    /// A header of `widths` laid out from slot 0, and the calculation of the fields `included`
    /// (in layout order).
    fn header_and_csum(
        widths: &[u32],
        included: &[bool],
    ) -> (super::super::pipeline::HeaderLayout, Calculation) {
        use super::super::pipeline::{FieldRef, HeaderLayout};
        let fields = widths.iter().map(|&w| (String::new(), w)).collect();
        let layout = HeaderLayout::new("h".into(), false, 0, fields);
        let inputs = widths
            .iter()
            .enumerate()
            .filter(|&(i, _)| included[i])
            .map(|(i, &width)| {
                CalcInput::Field(FieldRef {
                    slot: i as u32,
                    header: 0,
                    width,
                })
            })
            .collect();
        (
            layout,
            Calculation::new("c".into(), HashAlgo::Csum16, inputs),
        )
    }

    #[test]
    fn ipv4s_header_checksum_is_summed_from_bytes() {
        use super::super::pipeline::CsumSpan;
        let widths = [4, 4, 8, 16, 16, 3, 13, 8, 8, 16, 32, 32];
        let mut included = [true; 12];
        included[9] = false;
        let (layout, calc) = header_and_csum(&widths, &included);
        let span = CsumSpan::of(&calc, std::slice::from_ref(&layout)).unwrap();
        assert_eq!(
            (span.start, span.end, span.skipped.clone()),
            (0, 20, vec![10])
        );
        // Five 32-bit words, the third without its low half (the checksum field).
        assert_eq!(
            span.words,
            Some(vec![
                (0, u32::MAX),
                (4, u32::MAX),
                (8, 0xffff_0000),
                (12, u32::MAX),
                (16, u32::MAX)
            ])
        );
        let header = [
            0x45, 0, 0, 0x20, 0, 7, 0, 0, 64, 17, 0xab, 0xcd, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        let mut zeroed = header;
        zeroed[10..12].fill(0);
        assert_eq!(
            span.checksum(&header),
            Some(super::super::hash::csum16(&zeroed))
        );
        // A left-out field not on a 16-bit word: no span.
        let mut included = [true; 12];
        included[7] = false;
        let (layout, calc) = header_and_csum(&widths, &included);
        assert_eq!(CsumSpan::of(&calc, &[layout]), None);
    }

    proptest::proptest! {
        /// When a calculation has a span, summing the header's bytes gives the checksum of the
        /// input fields' values.
        #[test]
        fn a_csum16_summed_from_bytes_equals_the_one_from_values(
            groups in proptest::collection::vec((0usize..7, proptest::bool::weighted(0.7)), 1..10),
            odd_byte in proptest::bool::ANY,
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 80),
        ) {
            use super::super::pipeline::CsumSpan;
            // Runs of fields filling whole 16-bit words, in or out of the calculation, and maybe
            // a last byte in it.
            const RUNS: [&[u32]; 7] = [&[16], &[32], &[8, 8], &[4, 4, 8], &[3, 13], &[1, 15], &[48]];
            let (mut widths, mut included) = (Vec::new(), Vec::new());
            for &(run, inside) in &groups {
                widths.extend(RUNS[run]);
                included.extend(RUNS[run].iter().map(|_| inside));
            }
            if odd_byte {
                widths.push(8);
                included.push(true);
            }
            proptest::prop_assume!(included.contains(&true));
            let (layout, calc) = header_and_csum(&widths, &included);
            let span = CsumSpan::of(&calc, std::slice::from_ref(&layout));
            proptest::prop_assert!(span.is_some());
            let mut phv = Phv {
                values: vec![0; layout.fields.len()],
                valid: vec![true],
                changed: SlotSet(vec![0; layout.fields.len().div_ceil(64)]),
                ..Phv::default()
            };
            extract(&layout, &bytes, 0, &mut phv);
            let from_bytes = span.as_ref().and_then(|s| s.checksum(&bytes));
            proptest::prop_assert_eq!(from_bytes, Some(csum16_of_inputs(&calc.inputs, &phv)));
            // Spans of whole 32-bit words are summed by masked words: the same as word by word.
            if let Some(span) = span.filter(|s| s.words.is_some()) {
                let without_words = CsumSpan { words: None, ..span };
                proptest::prop_assert_eq!(without_words.checksum(&bytes), from_bytes);
            }
        }
    }

    #[test]
    fn csum16_without_packing_of_zeros_and_of_all_ones() {
        use super::super::pipeline::FieldRef;
        let phv = Phv {
            values: vec![0, 0xffff, 0xff],
            valid: vec![true, true, true],
            ..Phv::default()
        };
        let field = |slot: u32, width: u32| {
            CalcInput::Field(FieldRef {
                slot,
                header: slot,
                width,
            })
        };
        // All-zero words: the sum is 0, the checksum 0xffff.
        assert_eq!(csum16_of_inputs(&[field(0, 32)], &phv), 0xffff);
        // One word 0xffff: the sum is 0xffff (not 0), the checksum 0.
        assert_eq!(csum16_of_inputs(&[field(1, 16)], &phv), 0);
        // An odd byte is padded: 0xff00.
        assert_eq!(csum16_of_inputs(&[field(2, 8)], &phv), 0x00ff);
        assert_eq!(csum16_of_inputs(&[], &phv), 0xffff);
    }
}
