//! The boundary between P4Runtime and the data plane: P4Info ids and byte strings on one side,
//! the switch's table/action/counter indices and integer values on the other.
//!
//! [`PipelineMap`] checks a P4Info against a loaded bmv2 JSON program (every P4Info object must
//! have its counterpart, by name, with the same match kinds and widths) and keeps the id ↔ index
//! maps. [`P4rtState`] applies `Update`s and answers `Read` requests on a [`Switch`], checking
//! every field the way the P4Runtime spec requires and turning each refusal into the spec's
//! canonical code. It also keeps what P4Runtime stores but the data plane does not need (entry
//! metadata, clone session and multicast group entries as written, for read-back).
//!
//! This is the only file that converts P4Runtime entities; it knows nothing of gRPC, streams,
//! arbitration or ports.

// `controller_metadata` and `Replica.egress_port` are deprecated in the protos but still part of
// P4Runtime 1.4: clients may send them and must read back what they wrote.
#![allow(deprecated)]

use std::collections::{BTreeMap, HashMap};

use tonic::Code;

use crate::p4rt::bytestring;
use crate::p4rt::config::{self as cfg, action_ref::Scope, match_field, P4Info};
use crate::p4rt::v1::{
    entity, field_match, p4_data, packet_replication_engine_entry as pre, replica, table_action,
    table_entry, update, Action, CloneSessionEntry, CounterData, CounterEntry, DirectCounterEntry,
    Entity, FieldMatch, ForwardingPipelineConfig, Index, MulticastGroupEntry, P4Data,
    PacketReplicationEngineEntry, RegisterEntry, Replica, TableAction, TableEntry, Update,
};
use crate::p4rt::P4InfoIndex;
use crate::switch::dataplane::Replica as DataplaneReplica;
use crate::switch::pipeline::{width_mask, MatchKind, Program};
use crate::switch::table::{
    self, ActionCall, CounterValue, EntryKey, MatchValue, RuntimeError, StoredEntry,
};
use crate::switch::Switch;

use super::packet_io::ControllerHeader;

/// Why one update or read request failed: a canonical code and a message for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntityError {
    pub code: Code,
    pub message: String,
}

impl EntityError {
    pub fn new(code: Code, message: impl Into<String>) -> EntityError {
        EntityError {
            code,
            message: message.into(),
        }
    }
}

fn invalid(message: impl Into<String>) -> EntityError {
    EntityError::new(Code::InvalidArgument, message)
}

impl From<RuntimeError> for EntityError {
    fn from(err: RuntimeError) -> EntityError {
        let code = match &err {
            RuntimeError::NoSuchTable(_)
            | RuntimeError::NoSuchCounter(_)
            | RuntimeError::NoSuchRegister(_)
            | RuntimeError::NoSuchEntry(_)
            | RuntimeError::NoSuchCloneSession(_) => Code::NotFound,
            RuntimeError::ActionNotInTable { .. }
            | RuntimeError::WrongCount { .. }
            | RuntimeError::WrongMatchKind { .. }
            | RuntimeError::TooWide { .. }
            | RuntimeError::InvalidValue { .. }
            | RuntimeError::BadPriority { .. }
            | RuntimeError::NoIdleTimeout(_)
            | RuntimeError::NoDirectCounter(_)
            | RuntimeError::CounterIsDirect(_)
            | RuntimeError::BadCloneSession(..) => Code::InvalidArgument,
            RuntimeError::DuplicateEntry(_) => Code::AlreadyExists,
            RuntimeError::TableFull { .. } => Code::ResourceExhausted,
            RuntimeError::ConstDefaultAction(_) | RuntimeError::ConstTable(_) => {
                Code::PermissionDenied
            }
            RuntimeError::IndexOutOfRange { .. } => Code::OutOfRange,
        };
        EntityError::new(code, err.to_string())
    }
}

// ------------------------------------------------------------------------------- the id maps

#[derive(Debug, Clone)]
struct FieldMap {
    id: u32,
    name: String,
    kind: MatchKind,
    width: u32,
}

#[derive(Debug, Clone)]
struct ParamMap {
    id: u32,
    name: String,
    width: u32,
}

#[derive(Debug, Clone)]
struct ActionMap {
    name: String,
    /// Index into `Program::actions`.
    action: usize,
    /// In the data plane's parameter order.
    params: Vec<ParamMap>,
    scope: Scope,
}

#[derive(Debug, Clone)]
struct TableMap {
    id: u32,
    name: String,
    /// Index into `Program::tables`.
    table: usize,
    /// In the data plane's key order.
    fields: Vec<FieldMap>,
    actions: HashMap<u32, ActionMap>,
    /// Data plane action index → P4Info action id.
    action_ids: HashMap<usize, u32>,
    direct_counter: bool,
    support_timeout: bool,
    const_default: bool,
    needs_priority: bool,
}

#[derive(Debug, Clone)]
struct ArrayMap {
    id: u32,
    name: String,
    /// Index into `Program::counters` or `Program::registers`.
    array: usize,
    size: usize,
    /// Registers only: the cell width.
    width: u32,
}

/// A P4Info checked against a loaded program, with the maps between their ids and indices.
#[derive(Debug, Clone)]
pub struct PipelineMap {
    tables: Vec<TableMap>,
    table_by_id: HashMap<u32, usize>,
    table_by_index: HashMap<usize, usize>,
    counters: Vec<ArrayMap>,
    registers: Vec<ArrayMap>,
    direct_counter_tables: HashMap<u32, u32>,
    pub packet_out: Option<ControllerHeader>,
    pub packet_in: Option<ControllerHeader>,
}

fn name_of(preamble: Option<&cfg::Preamble>) -> &str {
    preamble.map(|p| p.name.as_str()).unwrap_or("")
}

fn id_of(preamble: Option<&cfg::Preamble>) -> u32 {
    preamble.map(|p| p.id).unwrap_or(0)
}

fn p4info_width(bitwidth: i32, what: &str) -> Result<u32, String> {
    u32::try_from(bitwidth)
        .ok()
        .filter(|w| (1..=128).contains(w))
        .ok_or_else(|| format!("{what}: bitwidth {bitwidth} is not in 1..=128"))
}

fn register_width(register: &cfg::Register) -> Option<u32> {
    use cfg::p4_bitstring_like_type_spec::TypeSpec as Bits;
    use cfg::p4_data_type_spec::TypeSpec;
    match register.type_spec.as_ref()?.type_spec.as_ref()? {
        TypeSpec::Bitstring(b) => match b.type_spec.as_ref()? {
            Bits::Bit(bit) => u32::try_from(bit.bitwidth).ok(),
            _ => None,
        },
        _ => None,
    }
}

impl PipelineMap {
    /// Checks `p4info` against `program` and builds the maps; the error says what does not match.
    pub fn new(p4info: &P4Info, program: &Program) -> Result<PipelineMap, String> {
        let index = P4InfoIndex::new(p4info.clone()).map_err(|e| e.to_string())?;
        let unsupported = [
            ("action profiles", p4info.action_profiles.len()),
            ("meters", p4info.meters.len()),
            ("direct meters", p4info.direct_meters.len()),
            ("parser value sets", p4info.value_sets.len()),
            ("digests", p4info.digests.len()),
            ("externs", p4info.externs.len()),
        ];
        if let Some((what, _)) = unsupported.iter().find(|(_, n)| *n > 0) {
            return Err(format!(
                "the P4Info declares {what}, which this switch does not support"
            ));
        }
        let mut map = PipelineMap {
            tables: Vec::new(),
            table_by_id: HashMap::new(),
            table_by_index: HashMap::new(),
            counters: Vec::new(),
            registers: Vec::new(),
            direct_counter_tables: HashMap::new(),
            packet_out: None,
            packet_in: None,
        };
        for t in &p4info.tables {
            let tm = Self::map_table(&index, t, program)?;
            map.table_by_id.insert(tm.id, map.tables.len());
            map.table_by_index.insert(tm.table, map.tables.len());
            map.tables.push(tm);
        }
        for dc in &p4info.direct_counters {
            let name = name_of(dc.preamble.as_ref());
            let table = map
                .table_by_id
                .get(&dc.direct_table_id)
                .map(|&i| &map.tables[i])
                .ok_or_else(|| {
                    format!(
                        "direct counter `{name}`: table id {} is not in the P4Info",
                        dc.direct_table_id
                    )
                })?;
            let json = program.tables[table.table].direct_counter;
            if json.map(|c| program.counters[c].name.as_str()) != Some(name) {
                return Err(format!(
                    "direct counter `{name}`: the JSON table `{}` has no direct counter of that name",
                    table.name
                ));
            }
            map.direct_counter_tables
                .insert(id_of(dc.preamble.as_ref()), table.id);
        }
        for t in &mut map.tables {
            t.direct_counter = map.direct_counter_tables.values().any(|&id| id == t.id);
            if t.direct_counter != program.tables[t.table].direct_counter.is_some() {
                return Err(format!(
                    "table `{}`: the P4Info and the JSON disagree on its direct counter",
                    t.name
                ));
            }
        }
        for c in &p4info.counters {
            let name = name_of(c.preamble.as_ref());
            let array = program
                .counters
                .iter()
                .position(|j| j.name == name && j.direct_table.is_none())
                .ok_or_else(|| format!("counter `{name}` is not an indexed counter of the JSON"))?;
            let size = program.counters[array].size;
            if usize::try_from(c.size).ok() != Some(size) {
                return Err(format!(
                    "counter `{name}`: size {} in the P4Info, {size} in the JSON",
                    c.size
                ));
            }
            map.counters.push(ArrayMap {
                id: id_of(c.preamble.as_ref()),
                name: name.to_string(),
                array,
                size,
                width: 0,
            });
        }
        for r in &p4info.registers {
            let name = name_of(r.preamble.as_ref());
            let array = program
                .registers
                .iter()
                .position(|j| j.name == name)
                .ok_or_else(|| format!("register `{name}` is not in the JSON"))?;
            let json = &program.registers[array];
            if usize::try_from(r.size).ok() != Some(json.size) {
                return Err(format!(
                    "register `{name}`: size {} in the P4Info, {} in the JSON",
                    r.size, json.size
                ));
            }
            if register_width(r) != Some(json.width) {
                return Err(format!(
                    "register `{name}`: the P4Info type is not bit<{}> as in the JSON",
                    json.width
                ));
            }
            map.registers.push(ArrayMap {
                id: id_of(r.preamble.as_ref()),
                name: name.to_string(),
                array,
                size: json.size,
                width: json.width,
            });
        }
        for cpm in &p4info.controller_packet_metadata {
            let header = ControllerHeader::from_p4info(cpm).map_err(|e| e.to_string())?;
            match name_of(cpm.preamble.as_ref()) {
                "packet_out" => map.packet_out = Some(header),
                "packet_in" => map.packet_in = Some(header),
                _ => {}
            }
        }
        Ok(map)
    }

    fn map_table(
        index: &P4InfoIndex,
        t: &cfg::Table,
        program: &Program,
    ) -> Result<TableMap, String> {
        let name = name_of(t.preamble.as_ref()).to_string();
        let table = program
            .table_by_name(&name)
            .ok_or_else(|| format!("table `{name}` is not in the JSON"))?;
        let json = &program.tables[table];
        if t.implementation_id != 0 {
            return Err(format!(
                "table `{name}` uses an action profile, which this switch does not support"
            ));
        }
        if t.match_fields.len() != json.keys.len() {
            return Err(format!(
                "table `{name}`: {} match fields in the P4Info, {} in the JSON",
                t.match_fields.len(),
                json.keys.len()
            ));
        }
        let mut fields = Vec::with_capacity(json.keys.len());
        for key in &json.keys {
            let mf = t
                .match_fields
                .iter()
                .find(|m| m.name == key.name)
                .ok_or_else(|| {
                    format!("table `{name}`: key `{}` is not in the P4Info", key.name)
                })?;
            let what = format!("table `{name}`, match field `{}`", mf.name);
            let width = p4info_width(mf.bitwidth, &what)?;
            let p4info_kind = match mf.r#match {
                Some(match_field::Match::MatchType(k)) => match_field::MatchType::try_from(k).ok(),
                _ => None,
            };
            use match_field::MatchType as M;
            let agrees = matches!(
                (p4info_kind, key.kind),
                (Some(M::Exact), MatchKind::Exact | MatchKind::Valid)
                    | (Some(M::Lpm), MatchKind::Lpm)
                    | (Some(M::Ternary), MatchKind::Ternary)
                    | (Some(M::Range), MatchKind::Range)
                    | (Some(M::Optional), MatchKind::Optional)
            );
            if !agrees {
                return Err(format!(
                    "{what}: the JSON matches it as {}, the P4Info as {:?}",
                    key.kind.name(),
                    p4info_kind
                ));
            }
            if width != key.width {
                return Err(format!(
                    "{what}: {width} bits in the P4Info, {} in the JSON",
                    key.width
                ));
            }
            fields.push(FieldMap {
                id: mf.id,
                name: mf.name.clone(),
                kind: key.kind,
                width,
            });
        }
        let mut actions = HashMap::new();
        let mut action_ids = HashMap::new();
        for aref in &t.action_refs {
            let a = index.action_by_id(aref.id).map_err(|e| e.to_string())?;
            let a_name = name_of(a.preamble.as_ref());
            let action = json
                .actions
                .iter()
                .copied()
                .find(|&i| program.actions[i].name == a_name)
                .ok_or_else(|| {
                    format!("table `{name}`: action `{a_name}` is not one of its JSON actions")
                })?;
            let json_params = &program.actions[action].params;
            if json_params.len() != a.params.len() {
                return Err(format!(
                    "action `{a_name}`: {} parameters in the P4Info, {} in the JSON",
                    a.params.len(),
                    json_params.len()
                ));
            }
            let params = json_params
                .iter()
                .map(|jp| {
                    let p = a.params.iter().find(|p| p.name == jp.name).ok_or_else(|| {
                        format!("action `{a_name}`: parameter `{}` is not in the P4Info", jp.name)
                    })?;
                    let width =
                        p4info_width(p.bitwidth, &format!("action `{a_name}`, parameter `{}`", p.name))?;
                    if width != jp.width {
                        return Err(format!(
                            "action `{a_name}`, parameter `{}`: {width} bits in the P4Info, {} in the JSON",
                            p.name, jp.width
                        ));
                    }
                    Ok(ParamMap {
                        id: p.id,
                        name: p.name.clone(),
                        width,
                    })
                })
                .collect::<Result<Vec<_>, String>>()?;
            action_ids.insert(action, aref.id);
            actions.insert(
                aref.id,
                ActionMap {
                    name: a_name.to_string(),
                    action,
                    params,
                    scope: Scope::try_from(aref.scope).unwrap_or(Scope::TableAndDefault),
                },
            );
        }
        let support_timeout =
            t.idle_timeout_behavior == cfg::table::IdleTimeoutBehavior::NotifyControl as i32;
        if support_timeout != json.support_timeout {
            return Err(format!(
                "table `{name}`: the P4Info and the JSON disagree on idle-timeout support"
            ));
        }
        Ok(TableMap {
            id: id_of(t.preamble.as_ref()),
            name,
            table,
            fields,
            actions,
            action_ids,
            direct_counter: false,
            support_timeout,
            const_default: t.const_default_action_id != 0,
            needs_priority: json.needs_priority(),
        })
    }

    fn table(&self, id: u32) -> Result<&TableMap, EntityError> {
        if id == 0 {
            return Err(invalid("table_id 0 names no table"));
        }
        self.table_by_id
            .get(&id)
            .map(|&i| &self.tables[i])
            .ok_or_else(|| EntityError::new(Code::NotFound, format!("no table with id {id}")))
    }

    fn counter(&self, id: u32) -> Result<&ArrayMap, EntityError> {
        self.counters.iter().find(|c| c.id == id).ok_or_else(|| {
            EntityError::new(Code::NotFound, format!("no indexed counter with id {id}"))
        })
    }

    fn register(&self, id: u32) -> Result<&ArrayMap, EntityError> {
        self.registers
            .iter()
            .find(|r| r.id == id)
            .ok_or_else(|| EntityError::new(Code::NotFound, format!("no register with id {id}")))
    }
}

// ------------------------------------------------------------------------------- conversions

fn decode(bytes: &[u8], width: u32, what: impl FnOnce() -> String) -> Result<u128, EntityError> {
    bytestring::decode(bytes, width).map_err(|e| invalid(format!("{}: {e}", what())))
}

fn encode(value: u128, width: u32) -> Vec<u8> {
    // Values in the data plane always fit their declared width.
    bytestring::encode(value & width_mask(width), width).unwrap_or_else(|_| vec![0])
}

impl TableMap {
    /// The entry key of `matches` and `priority`, checked as the spec's "Match Format" says.
    fn key(&self, matches: &[FieldMatch], priority: i32) -> Result<EntryKey, EntityError> {
        let mut given: Vec<Option<&field_match::FieldMatchType>> = vec![None; self.fields.len()];
        for m in matches {
            let position = self
                .fields
                .iter()
                .position(|f| f.id == m.field_id)
                .ok_or_else(|| {
                    invalid(format!(
                        "table `{}` has no match field with id {}",
                        self.name, m.field_id
                    ))
                })?;
            if given[position].is_some() {
                return Err(invalid(format!(
                    "table `{}`: match field `{}` is given twice",
                    self.name, self.fields[position].name
                )));
            }
            let kind = m.field_match_type.as_ref().ok_or_else(|| {
                invalid(format!(
                    "table `{}`: match field `{}` has no value",
                    self.name, self.fields[position].name
                ))
            })?;
            given[position] = Some(kind);
        }
        let key = self
            .fields
            .iter()
            .zip(given)
            .map(|(f, m)| self.match_value(f, m))
            .collect::<Result<Vec<_>, _>>()?;
        if self.needs_priority && priority <= 0 {
            return Err(invalid(format!(
                "table `{}` has ternary, range or optional keys: entries need a priority > 0",
                self.name
            )));
        }
        if !self.needs_priority && priority != 0 {
            return Err(invalid(format!(
                "table `{}` has no ternary, range or optional key: priority must be 0, not {priority}",
                self.name
            )));
        }
        Ok(EntryKey { key, priority })
    }

    fn match_value(
        &self,
        f: &FieldMap,
        m: Option<&field_match::FieldMatchType>,
    ) -> Result<MatchValue, EntityError> {
        use field_match::FieldMatchType as F;
        let what = || format!("table `{}`, match field `{}`", self.name, f.name);
        let width = f.width;
        let full = width_mask(width);
        let wrong = |given: &str| {
            invalid(format!(
                "{}: a {} field cannot take a {given} match",
                what(),
                f.kind.name()
            ))
        };
        Ok(match (f.kind, m) {
            (MatchKind::Exact | MatchKind::Valid, None) => {
                return Err(invalid(format!(
                    "{}: exact fields cannot be omitted",
                    what()
                )))
            }
            (MatchKind::Exact | MatchKind::Valid, Some(F::Exact(e))) => {
                MatchValue::Exact(decode(&e.value, width, what)?)
            }
            (MatchKind::Lpm, None) => MatchValue::Lpm {
                value: 0,
                prefix_len: 0,
            },
            (MatchKind::Lpm, Some(F::Lpm(l))) => {
                let value = decode(&l.value, width, what)?;
                let prefix_len = u32::try_from(l.prefix_len)
                    .ok()
                    .filter(|p| (1..=width).contains(p))
                    .ok_or_else(|| {
                        invalid(format!(
                            "{}: prefix_len {} is not in 1..={width} (omit the field for a don't-care match)",
                            what(),
                            l.prefix_len
                        ))
                    })?;
                if value & !table::prefix_mask(width, prefix_len) != 0 {
                    return Err(invalid(format!(
                        "{}: the value has bits set beyond the /{prefix_len} prefix",
                        what()
                    )));
                }
                MatchValue::Lpm { value, prefix_len }
            }
            (MatchKind::Ternary, None) => MatchValue::Ternary { value: 0, mask: 0 },
            (MatchKind::Ternary, Some(F::Ternary(t))) => {
                let value = decode(&t.value, width, what)?;
                let mask = decode(&t.mask, width, what)?;
                if mask == 0 {
                    return Err(invalid(format!(
                        "{}: mask 0 is a don't-care match, which must be omitted",
                        what()
                    )));
                }
                if value & !mask != 0 {
                    return Err(invalid(format!(
                        "{}: the value has bits set outside the mask",
                        what()
                    )));
                }
                MatchValue::Ternary { value, mask }
            }
            (MatchKind::Range, None) => MatchValue::Range { low: 0, high: full },
            (MatchKind::Range, Some(F::Range(r))) => {
                let low = decode(&r.low, width, what)?;
                let high = decode(&r.high, width, what)?;
                if low > high {
                    return Err(invalid(format!("{}: low {low} > high {high}", what())));
                }
                if low == 0 && high == full {
                    return Err(invalid(format!(
                        "{}: the full range is a don't-care match, which must be omitted",
                        what()
                    )));
                }
                MatchValue::Range { low, high }
            }
            (MatchKind::Optional, None) => MatchValue::Optional(None),
            (MatchKind::Optional, Some(F::Optional(o))) => {
                MatchValue::Optional(Some(decode(&o.value, width, what)?))
            }
            (_, Some(F::Exact(_))) => return Err(wrong("exact")),
            (_, Some(F::Lpm(_))) => return Err(wrong("lpm")),
            (_, Some(F::Ternary(_))) => return Err(wrong("ternary")),
            (_, Some(F::Range(_))) => return Err(wrong("range")),
            (_, Some(F::Optional(_))) => return Err(wrong("optional")),
            (_, Some(F::Other(_))) => return Err(wrong("architecture-specific")),
        })
    }

    /// The P4Runtime form of a key: canonical byte strings, don't-care fields omitted.
    fn matches(&self, key: &[MatchValue]) -> Vec<FieldMatch> {
        use field_match::FieldMatchType as F;
        self.fields
            .iter()
            .zip(key)
            .filter_map(|(f, m)| {
                let w = f.width;
                let value = match *m {
                    MatchValue::Exact(v) => F::Exact(field_match::Exact {
                        value: encode(v, w),
                    }),
                    MatchValue::Lpm { prefix_len: 0, .. } => return None,
                    MatchValue::Lpm { value, prefix_len } => F::Lpm(field_match::Lpm {
                        value: encode(value, w),
                        prefix_len: prefix_len as i32,
                    }),
                    MatchValue::Ternary { mask: 0, .. } => return None,
                    MatchValue::Ternary { value, mask } => F::Ternary(field_match::Ternary {
                        value: encode(value, w),
                        mask: encode(mask, w),
                    }),
                    MatchValue::Range { low: 0, high } if high == width_mask(w) => return None,
                    MatchValue::Range { low, high } => F::Range(field_match::Range {
                        low: encode(low, w),
                        high: encode(high, w),
                    }),
                    MatchValue::Optional(None) => return None,
                    MatchValue::Optional(Some(v)) => F::Optional(field_match::Optional {
                        value: encode(v, w),
                    }),
                };
                Some(FieldMatch {
                    field_id: f.id,
                    field_match_type: Some(value),
                })
            })
            .collect()
    }

    /// The data plane call of a P4Runtime action, checked against the table and the P4Info.
    fn action_call(&self, action: &TableAction, default: bool) -> Result<ActionCall, EntityError> {
        let a = match &action.r#type {
            Some(table_action::Type::Action(a)) => a,
            Some(_) => {
                return Err(invalid(format!(
                    "table `{}` has no action profile: give a direct action",
                    self.name
                )))
            }
            None => return Err(invalid("the table action is empty")),
        };
        let am = self.actions.get(&a.action_id).ok_or_else(|| {
            invalid(format!(
                "action id {} is not an action of table `{}`",
                a.action_id, self.name
            ))
        })?;
        if default && am.scope == Scope::TableOnly {
            return Err(EntityError::new(
                Code::PermissionDenied,
                format!(
                    "action `{}` may not be the default action of table `{}`",
                    am.name, self.name
                ),
            ));
        }
        if !default && am.scope == Scope::DefaultOnly {
            return Err(EntityError::new(
                Code::PermissionDenied,
                format!(
                    "action `{}` may only be the default action of table `{}`",
                    am.name, self.name
                ),
            ));
        }
        let mut args: Vec<Option<u128>> = vec![None; am.params.len()];
        for p in &a.params {
            let position = am
                .params
                .iter()
                .position(|m| m.id == p.param_id)
                .ok_or_else(|| {
                    invalid(format!(
                        "action `{}` has no parameter with id {}",
                        am.name, p.param_id
                    ))
                })?;
            let pm = &am.params[position];
            if args[position].is_some() {
                return Err(invalid(format!(
                    "action `{}`: parameter `{}` is given twice",
                    am.name, pm.name
                )));
            }
            args[position] = Some(decode(&p.value, pm.width, || {
                format!("action `{}`, parameter `{}`", am.name, pm.name)
            })?);
        }
        let args = args
            .into_iter()
            .zip(&am.params)
            .map(|(v, pm)| {
                v.ok_or_else(|| {
                    invalid(format!(
                        "action `{}`: parameter `{}` is missing",
                        am.name, pm.name
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ActionCall {
            action: am.action,
            args,
        })
    }

    /// The P4Runtime form of a data plane action call (None for an action the P4Info hides).
    fn action(&self, call: &ActionCall) -> Option<TableAction> {
        let id = *self.action_ids.get(&call.action)?;
        let am = &self.actions[&id];
        Some(TableAction {
            r#type: Some(table_action::Type::Action(Action {
                action_id: id,
                params: am
                    .params
                    .iter()
                    .zip(&call.args)
                    .map(|(pm, &v)| crate::p4rt::v1::action::Param {
                        param_id: pm.id,
                        value: encode(v, pm.width),
                    })
                    .collect(),
            })),
        })
    }
}

fn counter_value(data: &CounterData) -> Result<CounterValue, EntityError> {
    match (
        u64::try_from(data.packet_count),
        u64::try_from(data.byte_count),
    ) {
        (Ok(packets), Ok(bytes)) => Ok(CounterValue { packets, bytes }),
        _ => Err(invalid("counter values cannot be negative")),
    }
}

fn counter_data(value: CounterValue) -> CounterData {
    CounterData {
        packet_count: i64::try_from(value.packets).unwrap_or(i64::MAX),
        byte_count: i64::try_from(value.bytes).unwrap_or(i64::MAX),
    }
}

/// The cells an `Index` selects: all when unset.
/// The cells a counter or register read selects: every cell of every array for a wildcard
/// read (`arrays` are all of that kind, `index` is `None`), else the indexed cell or the whole
/// array of the one named.
fn selected_cells<'m>(
    arrays: &'m [ArrayMap],
    index: Option<&Index>,
    kind: &str,
) -> Result<Vec<(&'m ArrayMap, usize)>, EntityError> {
    let mut selected = Vec::new();
    for a in arrays {
        for i in cells(index, a.size, &format!("{kind} `{}`", a.name))? {
            selected.push((a, i));
        }
    }
    Ok(selected)
}

fn cells(
    index: Option<&Index>,
    size: usize,
    what: &str,
) -> Result<std::ops::Range<usize>, EntityError> {
    match index {
        None => Ok(0..size),
        Some(i) => {
            let at = usize::try_from(i.index)
                .map_err(|_| invalid(format!("{what}: index {} is negative", i.index)))?;
            if at >= size {
                return Err(EntityError::new(
                    Code::OutOfRange,
                    format!("{what}: index {at} is out of range (size {size})"),
                ));
            }
            Ok(at..at + 1)
        }
    }
}

fn replica(r: &Replica) -> Result<DataplaneReplica, EntityError> {
    let port = match &r.port_kind {
        Some(replica::PortKind::EgressPort(p)) => *p,
        Some(replica::PortKind::Port(bytes)) => {
            decode(bytes, 32, || "replica port".to_string())? as u32
        }
        None => return Err(invalid("a replica needs a port")),
    };
    // v1model's egress_rid is 16 bits wide.
    if r.instance > 0xffff {
        return Err(invalid(format!(
            "replica instance {} does not fit v1model's 16-bit egress_rid",
            r.instance
        )));
    }
    Ok(DataplaneReplica {
        port,
        instance: r.instance,
    })
}

fn entity(e: entity::Entity) -> Entity {
    Entity { entity: Some(e) }
}

// ------------------------------------------------------------------------------- runtime state

/// What a table entry carries that the data plane does not look at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct EntryExtras {
    controller_metadata: u64,
    metadata: Vec<u8>,
}

/// The P4Runtime side of a running pipeline: its maps and what P4Runtime keeps beside the data
/// plane.
#[derive(Debug)]
pub struct P4rtState {
    pub map: PipelineMap,
    extras: HashMap<(usize, EntryKey), EntryExtras>,
    clone_sessions: BTreeMap<u32, CloneSessionEntry>,
    multicast_groups: BTreeMap<u32, MulticastGroupEntry>,
}

/// Builds the data plane and the P4Runtime state of a pipeline config; errors are the
/// INVALID_ARGUMENT the spec asks for when a config cannot be realized.
pub fn realize(config: &ForwardingPipelineConfig) -> Result<(Switch, P4rtState), EntityError> {
    let p4info = config
        .p4info
        .as_ref()
        .ok_or_else(|| invalid("the config has no P4Info"))?;
    if config.p4_device_config.is_empty() {
        return Err(invalid(
            "the config has no p4_device_config (this switch expects bmv2 JSON)",
        ));
    }
    let json = std::str::from_utf8(&config.p4_device_config)
        .map_err(|e| invalid(format!("p4_device_config is not UTF-8 bmv2 JSON: {e}")))?;
    let switch = Switch::from_json_str(json)
        .map_err(|e| invalid(format!("cannot load the bmv2 JSON: {e}")))?;
    let map = PipelineMap::new(p4info, switch.program())
        .map_err(|e| invalid(format!("the P4Info does not match the bmv2 JSON: {e}")))?;
    Ok((
        switch,
        P4rtState {
            map,
            extras: HashMap::new(),
            clone_sessions: BTreeMap::new(),
            multicast_groups: BTreeMap::new(),
        },
    ))
}

impl P4rtState {
    /// One line on an update for the switch's debug log, in P4Info's names: its type and its
    /// entity (a table entry with its key and action, as the controller sent them).
    pub fn describe_update(&self, update: &Update) -> String {
        let kind = update::Type::try_from(update.r#type).map_or("?", |k| k.as_str_name());
        let Some(e) = update.entity.as_ref().and_then(|e| e.entity.as_ref()) else {
            return format!("{kind} (no entity)");
        };
        let index = |i: Option<&Index>| i.map_or("[all]".to_string(), |i| format!("[{}]", i.index));
        use entity::Entity as E;
        let what = match e {
            E::TableEntry(t) => self.describe_table_entry(t),
            E::DirectCounterEntry(d) => match &d.table_entry {
                Some(t) => format!("direct counter of {}", self.describe_table_entry(t)),
                None => "direct counter of no table entry".to_string(),
            },
            E::CounterEntry(c) => match self.map.counter(c.counter_id) {
                Ok(m) => format!("counter {}{}", m.name, index(c.index.as_ref())),
                Err(_) => format!("counter id {}", c.counter_id),
            },
            E::RegisterEntry(r) => match self.map.register(r.register_id) {
                Ok(m) => format!("register {}{}", m.name, index(r.index.as_ref())),
                Err(_) => format!("register id {}", r.register_id),
            },
            E::PacketReplicationEngineEntry(p) => match &p.r#type {
                Some(pre::Type::CloneSessionEntry(c)) => {
                    format!("clone session {}", c.session_id)
                }
                Some(pre::Type::MulticastGroupEntry(m)) => {
                    format!("multicast group {}", m.multicast_group_id)
                }
                None => "replication engine entry".to_string(),
            },
            _ => "unsupported entity".to_string(),
        };
        format!("{kind} {what}")
    }

    /// `table NAME [key] priority P -> action(params)`, or `default entry` for the default.
    fn describe_table_entry(&self, t: &TableEntry) -> String {
        let Ok(table) = self.map.table(t.table_id) else {
            return format!("entry of unknown table id {}", t.table_id);
        };
        let hex = |bytes: &[u8]| -> String {
            let digits: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            format!("0x{digits}")
        };
        let key: Vec<String> = t
            .r#match
            .iter()
            .map(|m| {
                let field = table.fields.iter().find(|f| f.id == m.field_id);
                let name = field.map_or("?", |f| f.name.as_str());
                use field_match::FieldMatchType as M;
                match &m.field_match_type {
                    Some(M::Exact(x)) => format!("{name}={}", hex(&x.value)),
                    Some(M::Lpm(x)) => format!("{name}={}/{}", hex(&x.value), x.prefix_len),
                    Some(M::Ternary(x)) => {
                        format!("{name}={}&&&{}", hex(&x.value), hex(&x.mask))
                    }
                    Some(M::Range(x)) => format!("{name}={}..{}", hex(&x.low), hex(&x.high)),
                    Some(M::Optional(x)) => format!("{name}={}", hex(&x.value)),
                    Some(M::Other(_)) | None => format!("{name}=?"),
                }
            })
            .collect();
        let entry = if t.is_default_action {
            " default entry".to_string()
        } else {
            format!(" [{}]", key.join(", "))
        };
        let priority = if t.priority != 0 {
            format!(" priority {}", t.priority)
        } else {
            String::new()
        };
        let action = match t.action.as_ref().and_then(|a| a.r#type.as_ref()) {
            Some(table_action::Type::Action(a)) => {
                let name = table.actions.get(&a.action_id).map_or("?", |m| &m.name);
                let params: Vec<String> = a.params.iter().map(|p| hex(&p.value)).collect();
                format!(" -> {name}({})", params.join(", "))
            }
            Some(_) => " -> (action profile)".to_string(),
            None => String::new(),
        };
        format!("table {}{entry}{priority}{action}", table.name)
    }

    /// Applies one update of a Write batch.
    pub fn write(&mut self, switch: &mut Switch, update: &Update) -> Result<(), EntityError> {
        let kind = update::Type::try_from(update.r#type)
            .ok()
            .filter(|k| *k != update::Type::Unspecified)
            .ok_or_else(|| {
                invalid(format!(
                    "update type {} is not INSERT, MODIFY or DELETE",
                    update.r#type
                ))
            })?;
        let e = update
            .entity
            .as_ref()
            .and_then(|e| e.entity.as_ref())
            .ok_or_else(|| invalid("the update has no entity"))?;
        use entity::Entity as E;
        match e {
            E::TableEntry(t) => self.write_table_entry(switch, kind, t),
            E::DirectCounterEntry(d) => self.write_direct_counter(switch, kind, d),
            E::CounterEntry(c) => self.write_counter(switch, kind, c),
            E::RegisterEntry(r) => self.write_register(switch, kind, r),
            E::PacketReplicationEngineEntry(p) => self.write_pre(switch, kind, p),
            E::ExternEntry(_) => Err(unsupported("extern entries")),
            E::ActionProfileMember(_) | E::ActionProfileGroup(_) => {
                Err(unsupported("action profiles"))
            }
            E::MeterEntry(_) | E::DirectMeterEntry(_) => Err(unsupported("meters")),
            E::ValueSetEntry(_) => Err(unsupported("parser value sets")),
            E::DigestEntry(_) => Err(unsupported("digests")),
        }
    }

    fn write_table_entry(
        &mut self,
        switch: &mut Switch,
        kind: update::Type,
        e: &TableEntry,
    ) -> Result<(), EntityError> {
        let t = self.map.table(e.table_id)?;
        if e.is_const {
            return Err(invalid("is_const must be false in a write"));
        }
        if e.time_since_last_hit.is_some() {
            return Err(invalid("time_since_last_hit must be unset in a write"));
        }
        if e.meter_config.is_some() || e.meter_counter_data.is_some() {
            return Err(invalid(format!("table `{}` has no direct meter", t.name)));
        }
        if e.idle_timeout_ns < 0 {
            return Err(invalid("idle_timeout_ns cannot be negative"));
        }
        if e.idle_timeout_ns > 0 && !t.support_timeout {
            return Err(invalid(format!(
                "table `{}` does not support idle timeouts",
                t.name
            )));
        }
        if e.counter_data.is_some() && !t.direct_counter {
            return Err(invalid(format!("table `{}` has no direct counter", t.name)));
        }
        let counter = e.counter_data.as_ref().map(counter_value).transpose()?;
        if e.is_default_action {
            return write_default_entry(t, switch, kind, e, counter);
        }
        if t.fields.is_empty() {
            return Err(invalid(format!(
                "table `{}` has no key: only its default entry can be written",
                t.name
            )));
        }
        let key = t.key(&e.r#match, e.priority)?;
        let idle_timeout_ns = u64::try_from(e.idle_timeout_ns).ok().filter(|&n| n > 0);
        let extras = EntryExtras {
            controller_metadata: e.controller_metadata,
            metadata: e.metadata.clone(),
        };
        let table = t.table;
        match kind {
            update::Type::Insert => {
                let action = e
                    .action
                    .as_ref()
                    .ok_or_else(|| invalid("an INSERT needs an action"))?;
                let call = t.action_call(action, false)?;
                switch.insert_entry(
                    table,
                    table::TableEntry {
                        key: key.key.clone(),
                        priority: key.priority,
                        action: call,
                        idle_timeout_ns,
                    },
                )?;
                if let Some(value) = counter {
                    switch.write_direct_counter(table, &key, value)?;
                }
                self.store_extras(table, key, extras);
            }
            update::Type::Modify => {
                let existing = switch.entry(table, &key)?;
                let call = match &e.action {
                    Some(action) => Some(t.action_call(action, false)?),
                    None => None,
                };
                let is_const = !switch.program().tables[table].const_entries.is_empty();
                if !(is_const && call.is_none()) {
                    let action = call.unwrap_or_else(|| existing.entry.action.clone());
                    switch.modify_entry(
                        table,
                        table::TableEntry {
                            key: key.key.clone(),
                            priority: key.priority,
                            action,
                            idle_timeout_ns,
                        },
                    )?;
                    self.store_extras(table, key.clone(), extras);
                }
                if let Some(value) = counter {
                    switch.write_direct_counter(table, &key, value)?;
                }
            }
            _ => {
                switch.delete_entry(table, &key)?;
                self.extras.remove(&(table, key));
            }
        }
        Ok(())
    }

    fn store_extras(&mut self, table: usize, key: EntryKey, extras: EntryExtras) {
        if extras == EntryExtras::default() {
            self.extras.remove(&(table, key));
        } else {
            self.extras.insert((table, key), extras);
        }
    }

    fn write_direct_counter(
        &mut self,
        switch: &mut Switch,
        kind: update::Type,
        d: &DirectCounterEntry,
    ) -> Result<(), EntityError> {
        if kind != update::Type::Modify {
            return Err(invalid("direct counter entries can only be modified"));
        }
        let e = d
            .table_entry
            .as_ref()
            .ok_or_else(|| invalid("a direct counter entry needs its table_entry"))?;
        let t = self.map.table(e.table_id)?;
        if !t.direct_counter {
            return Err(invalid(format!("table `{}` has no direct counter", t.name)));
        }
        if e.is_default_action {
            check_default_key(&e.r#match, e.priority)?;
            if let Some(data) = &d.data {
                switch.write_default_counter(t.table, counter_value(data)?)?;
            }
            return Ok(());
        }
        let key = t.key(&e.r#match, e.priority)?;
        match &d.data {
            Some(data) => switch.write_direct_counter(t.table, &key, counter_value(data)?)?,
            // No data: the value stays, but the entry must exist.
            None => {
                switch.entry(t.table, &key)?;
            }
        }
        Ok(())
    }

    fn write_counter(
        &mut self,
        switch: &mut Switch,
        kind: update::Type,
        c: &CounterEntry,
    ) -> Result<(), EntityError> {
        if kind != update::Type::Modify {
            return Err(invalid("counter entries can only be modified"));
        }
        let counter = self.map.counter(c.counter_id)?;
        let range = cells(
            c.index.as_ref(),
            counter.size,
            &format!("counter `{}`", counter.name),
        )?;
        if let Some(data) = &c.data {
            let value = counter_value(data)?;
            for i in range {
                switch.write_counter(counter.array, i, value)?;
            }
        }
        Ok(())
    }

    fn write_register(
        &mut self,
        switch: &mut Switch,
        kind: update::Type,
        r: &RegisterEntry,
    ) -> Result<(), EntityError> {
        if kind != update::Type::Modify {
            return Err(invalid("register entries can only be modified"));
        }
        let register = self.map.register(r.register_id)?;
        let what = format!("register `{}`", register.name);
        let range = cells(r.index.as_ref(), register.size, &what)?;
        let value = match r.data.as_ref().and_then(|d| d.data.as_ref()) {
            Some(p4_data::Data::Bitstring(bytes)) => {
                decode(bytes, register.width, || what.clone())?
            }
            Some(_) => return Err(invalid(format!("{what}: data must be a bitstring"))),
            None => return Err(invalid(format!("{what}: a register write needs data"))),
        };
        for i in range {
            switch.write_register(register.array, i, value)?;
        }
        Ok(())
    }

    fn write_pre(
        &mut self,
        switch: &mut Switch,
        kind: update::Type,
        p: &PacketReplicationEngineEntry,
    ) -> Result<(), EntityError> {
        match &p.r#type {
            Some(pre::Type::CloneSessionEntry(s)) => {
                let id = s.session_id;
                if id == 0 {
                    return Err(invalid("clone session id 0 is reserved for wildcard reads"));
                }
                let exists = self.clone_sessions.contains_key(&id);
                check_existence(kind, exists, || format!("clone session {id}"))?;
                if kind == update::Type::Delete {
                    self.clone_sessions.remove(&id);
                    return Ok(switch.remove_clone_session(id)?);
                }
                // 0: copies are not cut.
                let max_length = match usize::try_from(s.packet_length_bytes) {
                    Ok(0) => None,
                    Ok(n) => Some(n),
                    Err(_) => return Err(invalid("packet_length_bytes cannot be negative")),
                };
                let replicas = s
                    .replicas
                    .iter()
                    .map(replica)
                    .collect::<Result<Vec<_>, _>>()?;
                switch.set_clone_session(id, replicas, max_length)?;
                self.clone_sessions.insert(id, s.clone());
                Ok(())
            }
            Some(pre::Type::MulticastGroupEntry(g)) => {
                let id = g.multicast_group_id;
                if id == 0 {
                    return Err(invalid(
                        "multicast group id 0 is reserved for wildcard reads",
                    ));
                }
                let exists = self.multicast_groups.contains_key(&id);
                check_existence(kind, exists, || format!("multicast group {id}"))?;
                if kind == update::Type::Delete {
                    self.multicast_groups.remove(&id);
                    switch.remove_multicast_group(id);
                    return Ok(());
                }
                let replicas = g
                    .replicas
                    .iter()
                    .map(replica)
                    .collect::<Result<Vec<_>, _>>()?;
                switch.set_multicast_group(id, replicas);
                self.multicast_groups.insert(id, g.clone());
                Ok(())
            }
            None => Err(invalid("the packet replication engine entry is empty")),
        }
    }

    // --------------------------------------------------------------------------- reads

    /// Answers one entity of a Read batch, appending what it selects to `out`.
    pub fn read(
        &self,
        switch: &mut Switch,
        query: &Entity,
        out: &mut Vec<Entity>,
    ) -> Result<(), EntityError> {
        use entity::Entity as E;
        match query
            .entity
            .as_ref()
            .ok_or_else(|| invalid("the entity is empty"))?
        {
            E::TableEntry(q) => self.read_table_entries(switch, q, out),
            E::DirectCounterEntry(q) => self.read_direct_counters(switch, q, out),
            E::CounterEntry(q) => self.read_counters(switch, q, out),
            E::RegisterEntry(q) => self.read_registers(switch, q, out),
            E::PacketReplicationEngineEntry(q) => self.read_pre(q, out),
            // This switch accepts no pipeline with these objects: a wildcard finds nothing and
            // any id is unknown.
            E::ExternEntry(q) => none_or_unknown(q.extern_id, "extern"),
            E::ActionProfileMember(q) => none_or_unknown(q.action_profile_id, "action profile"),
            E::ActionProfileGroup(q) => none_or_unknown(q.action_profile_id, "action profile"),
            E::MeterEntry(q) => none_or_unknown(q.meter_id, "meter"),
            E::DirectMeterEntry(q) => none_or_unknown(
                q.table_entry.as_ref().map_or(0, |t| t.table_id),
                "direct meter",
            ),
            E::ValueSetEntry(q) => none_or_unknown(q.value_set_id, "value set"),
            E::DigestEntry(q) => none_or_unknown(q.digest_id, "digest"),
        }
    }

    fn tables_of(&self, table_id: u32) -> Result<Vec<&TableMap>, EntityError> {
        if table_id == 0 {
            Ok(self.map.tables.iter().collect())
        } else {
            Ok(vec![self.map.table(table_id)?])
        }
    }

    fn read_table_entries(
        &self,
        switch: &Switch,
        q: &TableEntry,
        out: &mut Vec<Entity>,
    ) -> Result<(), EntityError> {
        if q.table_id == 0 && !q.r#match.is_empty() {
            return Err(invalid("a match filter needs a table_id"));
        }
        let action_filter = match q.action.as_ref().and_then(|a| a.r#type.as_ref()) {
            Some(table_action::Type::Action(a)) => Some(a.action_id),
            Some(_) => return Err(invalid("reads can only filter on a direct action id")),
            None => None,
        };
        if q.is_default_action {
            check_default_key(&q.r#match, q.priority)?;
        }
        for t in self.tables_of(q.table_id)? {
            if q.is_default_action {
                let mut e = default_entry(t, switch)?;
                if q.counter_data.is_some() && t.direct_counter {
                    e.counter_data = Some(counter_data(switch.read_default_counter(t.table)?));
                }
                out.push(entity(entity::Entity::TableEntry(e)));
                continue;
            }
            let now = switch.now_ns();
            let mut emit = |stored: &StoredEntry| {
                let key = EntryKey {
                    key: stored.entry.key.clone(),
                    priority: stored.entry.priority,
                };
                let extras = self
                    .extras
                    .get(&(t.table, key))
                    .cloned()
                    .unwrap_or_default();
                let wanted = (q.priority == 0 || q.priority == stored.entry.priority)
                    && (q.controller_metadata == 0
                        || q.controller_metadata == extras.controller_metadata)
                    && (q.metadata.is_empty() || q.metadata == extras.metadata)
                    && action_filter.is_none_or(|id| {
                        t.action_ids.get(&stored.entry.action.action) == Some(&id)
                    });
                if !wanted {
                    return;
                }
                let mut e = self.entry(t, switch, stored, extras);
                if q.counter_data.is_some() && t.direct_counter {
                    e.counter_data = Some(counter_data(stored.counter));
                }
                if q.time_since_last_hit.is_some() {
                    e.time_since_last_hit = Some(table_entry::IdleTimeout {
                        elapsed_ns: i64::try_from(now.saturating_sub(stored.last_hit_ns))
                            .unwrap_or(i64::MAX),
                    });
                }
                out.push(entity(entity::Entity::TableEntry(e)));
            };
            if q.r#match.is_empty() {
                switch.entries(t.table)?.iter().for_each(&mut emit);
            } else {
                let key = t.key(&q.r#match, q.priority)?;
                if let Ok(stored) = switch.entry(t.table, &key) {
                    emit(stored);
                }
            }
        }
        Ok(())
    }

    /// The P4Runtime form of a stored entry: key, action, priority, metadata, idle timeout.
    fn entry(
        &self,
        t: &TableMap,
        switch: &Switch,
        stored: &StoredEntry,
        extras: EntryExtras,
    ) -> TableEntry {
        TableEntry {
            table_id: t.id,
            r#match: t.matches(&stored.entry.key),
            action: t.action(&stored.entry.action),
            priority: stored.entry.priority,
            controller_metadata: extras.controller_metadata,
            metadata: extras.metadata,
            idle_timeout_ns: stored
                .entry
                .idle_timeout_ns
                .map_or(0, |n| i64::try_from(n).unwrap_or(i64::MAX)),
            is_const: !switch.program().tables[t.table].const_entries.is_empty(),
            ..TableEntry::default()
        }
    }

    fn read_direct_counters(
        &self,
        switch: &Switch,
        q: &DirectCounterEntry,
        out: &mut Vec<Entity>,
    ) -> Result<(), EntityError> {
        let query = q.table_entry.clone().unwrap_or_default();
        if query.is_default_action {
            check_default_key(&query.r#match, query.priority)?;
        }
        if query.table_id == 0 && !query.r#match.is_empty() {
            return Err(invalid("a match filter needs a table_id"));
        }
        let tables = self.tables_of(query.table_id)?;
        if query.table_id != 0 && !tables[0].direct_counter {
            return Err(invalid(format!(
                "table `{}` has no direct counter",
                tables[0].name
            )));
        }
        for t in tables.into_iter().filter(|t| t.direct_counter) {
            if query.is_default_action {
                out.push(entity(entity::Entity::DirectCounterEntry(
                    DirectCounterEntry {
                        table_entry: Some(TableEntry {
                            table_id: t.id,
                            is_default_action: true,
                            ..TableEntry::default()
                        }),
                        data: Some(counter_data(switch.read_default_counter(t.table)?)),
                    },
                )));
                continue;
            }
            let mut emit = |stored: &StoredEntry| {
                let key = EntryKey {
                    key: stored.entry.key.clone(),
                    priority: stored.entry.priority,
                };
                let extras = self
                    .extras
                    .get(&(t.table, key))
                    .cloned()
                    .unwrap_or_default();
                out.push(entity(entity::Entity::DirectCounterEntry(
                    DirectCounterEntry {
                        table_entry: Some(TableEntry {
                            table_id: t.id,
                            r#match: t.matches(&stored.entry.key),
                            priority: stored.entry.priority,
                            controller_metadata: extras.controller_metadata,
                            metadata: extras.metadata,
                            ..TableEntry::default()
                        }),
                        data: Some(counter_data(stored.counter)),
                    },
                )));
            };
            if query.r#match.is_empty() {
                switch.entries(t.table)?.iter().for_each(&mut emit);
            } else {
                let key = t.key(&query.r#match, query.priority)?;
                emit(switch.entry(t.table, &key)?);
            }
        }
        Ok(())
    }

    fn read_counters(
        &self,
        switch: &mut Switch,
        q: &CounterEntry,
        out: &mut Vec<Entity>,
    ) -> Result<(), EntityError> {
        let selected = if q.counter_id == 0 {
            selected_cells(&self.map.counters, None, "counter")?
        } else {
            let c = self.map.counter(q.counter_id)?;
            selected_cells(std::slice::from_ref(c), q.index.as_ref(), "counter")?
        };
        for (c, i) in selected {
            let value = switch.read_counter(c.array, i)?;
            out.push(entity(entity::Entity::CounterEntry(CounterEntry {
                counter_id: c.id,
                index: Some(Index { index: i as i64 }),
                data: Some(counter_data(value)),
            })));
        }
        Ok(())
    }

    fn read_registers(
        &self,
        switch: &mut Switch,
        q: &RegisterEntry,
        out: &mut Vec<Entity>,
    ) -> Result<(), EntityError> {
        let selected = if q.register_id == 0 {
            selected_cells(&self.map.registers, None, "register")?
        } else {
            let r = self.map.register(q.register_id)?;
            selected_cells(std::slice::from_ref(r), q.index.as_ref(), "register")?
        };
        for (r, i) in selected {
            let value = switch.read_register(r.array, i)?;
            out.push(entity(entity::Entity::RegisterEntry(RegisterEntry {
                register_id: r.id,
                index: Some(Index { index: i as i64 }),
                data: Some(P4Data {
                    data: Some(p4_data::Data::Bitstring(encode(value, r.width))),
                }),
            })));
        }
        Ok(())
    }

    fn read_pre(
        &self,
        q: &PacketReplicationEngineEntry,
        out: &mut Vec<Entity>,
    ) -> Result<(), EntityError> {
        let wrap = |t: pre::Type| {
            entity(entity::Entity::PacketReplicationEngineEntry(
                PacketReplicationEngineEntry { r#type: Some(t) },
            ))
        };
        match &q.r#type {
            Some(pre::Type::CloneSessionEntry(s)) => {
                let selected = self
                    .clone_sessions
                    .iter()
                    .filter(|(&id, _)| s.session_id == 0 || s.session_id == id);
                out.extend(selected.map(|(_, e)| wrap(pre::Type::CloneSessionEntry(e.clone()))));
            }
            Some(pre::Type::MulticastGroupEntry(g)) => {
                let selected = self
                    .multicast_groups
                    .iter()
                    .filter(|(&id, _)| g.multicast_group_id == 0 || g.multicast_group_id == id);
                out.extend(selected.map(|(_, e)| wrap(pre::Type::MulticastGroupEntry(e.clone()))));
            }
            None => return Err(invalid("the packet replication engine entry is empty")),
        }
        Ok(())
    }

    // --------------------------------------------------------------------------- idle timeouts

    /// The entries whose idle timeout expired since the last call, as the IdleTimeoutNotification
    /// must carry them (key, metadata, idle_timeout_ns), grouped by table.
    pub fn idle_timeouts(&self, switch: &mut Switch) -> Vec<Vec<TableEntry>> {
        let now = switch.now_ns();
        let expired = switch.idle_timeouts(now);
        let mut by_table: BTreeMap<u32, Vec<TableEntry>> = BTreeMap::new();
        for x in expired {
            let Some(t) = self
                .map
                .table_by_index
                .get(&x.table)
                .map(|&i| &self.map.tables[i])
            else {
                continue;
            };
            let Ok(stored) = switch.entry(x.table, &x.key) else {
                continue;
            };
            let extras = self
                .extras
                .get(&(x.table, x.key.clone()))
                .cloned()
                .unwrap_or_default();
            let mut e = self.entry(t, switch, stored, extras);
            e.action = None;
            e.is_const = false;
            by_table.entry(t.id).or_default().push(e);
        }
        by_table.into_values().collect()
    }
}

/// A MODIFY of a table's default entry: its action (none resets the entry to the program's,
/// direct counter included, as the spec's reset of direct resources asks) and then its direct
/// counter, if given.
fn write_default_entry(
    t: &TableMap,
    switch: &mut Switch,
    kind: update::Type,
    e: &TableEntry,
    counter: Option<CounterValue>,
) -> Result<(), EntityError> {
    if kind != update::Type::Modify {
        return Err(invalid(
            "the default entry always exists: it can only be modified, not inserted or deleted",
        ));
    }
    check_default_key(&e.r#match, e.priority)?;
    if e.idle_timeout_ns != 0 {
        return Err(invalid("default entries have no idle timeout"));
    }
    if t.const_default {
        return Err(EntityError::new(
            Code::PermissionDenied,
            format!("the default action of table `{}` is const", t.name),
        ));
    }
    match &e.action {
        None => {
            switch.reset_default_action(t.table)?;
            if t.direct_counter {
                switch.write_default_counter(t.table, CounterValue::default())?;
            }
        }
        Some(action) => {
            let call = t.action_call(action, true)?;
            switch.set_default_action(t.table, call)?;
        }
    }
    if let Some(value) = counter {
        switch.write_default_counter(t.table, value)?;
    }
    Ok(())
}

/// The default entry is named by `is_default_action` alone: no match, priority 0.
fn check_default_key(matches: &[FieldMatch], priority: i32) -> Result<(), EntityError> {
    if !matches.is_empty() || priority != 0 {
        return Err(invalid("the default entry has no match and priority 0"));
    }
    Ok(())
}

fn default_entry(t: &TableMap, switch: &Switch) -> Result<TableEntry, EntityError> {
    let action = switch
        .default_action(t.table)?
        .and_then(|call| t.action(call));
    Ok(TableEntry {
        table_id: t.id,
        action,
        is_default_action: true,
        ..TableEntry::default()
    })
}

fn check_existence(
    kind: update::Type,
    exists: bool,
    what: impl FnOnce() -> String,
) -> Result<(), EntityError> {
    match (kind, exists) {
        (update::Type::Insert, true) => Err(EntityError::new(
            Code::AlreadyExists,
            format!("{} already exists", what()),
        )),
        (update::Type::Modify | update::Type::Delete, false) => Err(EntityError::new(
            Code::NotFound,
            format!("{} does not exist", what()),
        )),
        _ => Ok(()),
    }
}

fn unsupported(what: &str) -> EntityError {
    EntityError::new(
        Code::Unimplemented,
        format!("this switch does not support {what}"),
    )
}

fn none_or_unknown(id: u32, what: &str) -> Result<(), EntityError> {
    if id == 0 {
        Ok(())
    } else {
        Err(EntityError::new(
            Code::NotFound,
            format!("no {what} with id {id}"),
        ))
    }
}
