//! The controller's P4Runtime entries for vmdep.p4: `ipv4_lpm` routes and `vm_pair` counting
//! entries, built and decoded by name through the P4Info (never by hard-coded ids), and a
//! canonical text form of WriteRequests for people and snapshot tests.
//!
//! It owns the mapping between the controller's values ([`Route`], [`VmPair`]) and P4Runtime
//! messages; it opens no connection (that is [`super::session`]). Byte strings are canonical
//! (P4Runtime spec, "Bytestrings": the shortest form).

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::time::Duration;

use thiserror::Error;

use crate::p4rt::bytestring::{self, BytestringError};
use crate::p4rt::config::{match_field::MatchType, table::IdleTimeoutBehavior, P4Info};
use crate::p4rt::v1::{
    action, entity, field_match, table_action, update, write_request::Atomicity, Action,
    CounterData, Entity, FieldMatch, ReadRequest, TableAction, TableEntry, Update, WriteRequest,
};
use crate::p4rt::{LookupError, P4InfoIndex, P4InfoIndexError};

use super::paths::Route;
use super::topology::MacAddr;
use super::VmPair;

/// The names vmdep.p4 gives its control-plane objects: part of vmdep's interface.
pub mod names {
    pub const IPV4_LPM: &str = "MyIngress.ipv4_lpm";
    pub const IPV4_LPM_DST: &str = "hdr.ipv4.dstAddr";
    pub const SET_NEXT_HOP: &str = "MyIngress.set_next_hop";
    pub const SRC_MAC: &str = "src_mac";
    pub const DST_MAC: &str = "dst_mac";
    pub const PORT: &str = "port";
    pub const DROP: &str = "MyIngress.drop";
    pub const VM_PAIR: &str = "MyIngress.vm_pair";
    pub const VM_PAIR_SRC: &str = "hdr.ipv4.srcAddr";
    pub const VM_PAIR_DST: &str = "hdr.ipv4.dstAddr";
    pub const COUNT_PAIR: &str = "MyIngress.count_pair";
    pub const VM_PAIR_COUNTER: &str = "MyIngress.vm_pair_counter";
}

/// Why the P4Info is not vmdep.p4's, or an entry cannot be built or decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RulesError {
    #[error("the P4Info cannot be indexed: {0}")]
    Index(#[from] P4InfoIndexError),
    #[error("the P4Info is not vmdep.p4's: {0}")]
    Missing(#[from] LookupError),
    #[error(
        "the P4Info is not vmdep.p4's: match field `{field}` of `{table}` is {found}, expected {expected}"
    )]
    MatchFieldShape {
        table: String,
        field: String,
        expected: String,
        found: String,
    },
    #[error("the P4Info is not vmdep.p4's: table `{table}` has {found} match fields, expected {expected}")]
    KeyArity {
        table: String,
        expected: usize,
        found: usize,
    },
    #[error(
        "the P4Info is not vmdep.p4's: parameter `{param}` of `{action}` is {found} bits wide, expected {expected}"
    )]
    ParamWidth {
        action: String,
        param: String,
        expected: u32,
        found: i32,
    },
    #[error("the P4Info is not vmdep.p4's: action `{action}` takes {found} parameters, expected {expected}")]
    ParamArity {
        action: String,
        expected: usize,
        found: usize,
    },
    #[error("the P4Info is not vmdep.p4's: table `{table}` cannot use action `{action}`")]
    ActionNotInTable { table: String, action: String },
    #[error("the P4Info is not vmdep.p4's: direct counter `{counter}` {reason}")]
    CounterShape { counter: String, reason: String },
    #[error("the P4Info is not vmdep.p4's: table `{table}` does not notify idle timeouts")]
    NoIdleTimeout { table: String },
    #[error("route {prefix}/{prefix_len}: a prefix length above 32")]
    PrefixTooLong { prefix: Ipv4Addr, prefix_len: u8 },
    #[error("route {prefix}/{prefix_len}: egress port {port} does not fit the {bitwidth}-bit port parameter")]
    PortDoesNotFit {
        prefix: Ipv4Addr,
        prefix_len: u8,
        port: u16,
        bitwidth: u32,
    },
    #[error("idle timeout {0:?} is zero or longer than P4Runtime's signed 64-bit nanoseconds")]
    IdleTimeout(Duration),
    #[error("entry of table id {found:#010x} is not a `vm_pair` entry (id {expected:#010x})")]
    NotVmPair { expected: u32, found: u32 },
    #[error("`vm_pair` entry: {0}")]
    BadPairKey(String),
    #[error("`vm_pair` entry: key field `{field}`: {source}")]
    BadPairValue {
        field: &'static str,
        source: BytestringError,
    },
    #[error("`vm_pair` entry of {pair} carries no counter data")]
    NoCounterData { pair: VmPair },
    #[error("`vm_pair` entry of {pair}: negative counter ({packets} packets, {bytes} bytes)")]
    NegativeCounter {
        pair: VmPair,
        packets: i64,
        bytes: i64,
    },
}

/// A raw `vm_pair_counter` reading: what the switch counted since the entry was inserted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PairCount {
    pub packets: u64,
    pub bytes: u64,
}

/// INSERT, MODIFY or DELETE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateKind {
    Insert,
    Modify,
    Delete,
}

impl UpdateKind {
    /// The P4Runtime name: INSERT, MODIFY or DELETE.
    pub fn as_str(self) -> &'static str {
        self.proto().as_str_name()
    }

    fn proto(self) -> update::Type {
        match self {
            UpdateKind::Insert => update::Type::Insert,
            UpdateKind::Modify => update::Type::Modify,
            UpdateKind::Delete => update::Type::Delete,
        }
    }
}

/// vmdep.p4's objects, resolved by name in one P4Info and checked for shape.
#[derive(Debug, Clone)]
pub struct VmdepProgram {
    index: P4InfoIndex,
    ipv4_lpm: u32,
    ipv4_lpm_dst: u32,
    set_next_hop: u32,
    src_mac: u32,
    dst_mac: u32,
    port: u32,
    port_bitwidth: u32,
    vm_pair: u32,
    vm_pair_src: u32,
    vm_pair_dst: u32,
    count_pair: u32,
    vm_pair_counter: u32,
}

fn preamble_id(p: Option<&crate::p4rt::config::Preamble>) -> u32 {
    p.map_or(0, |p| p.id)
}

impl VmdepProgram {
    /// Resolves and checks every object the controller uses.
    pub fn new(p4info: P4Info) -> Result<VmdepProgram, RulesError> {
        use names::*;
        let index = P4InfoIndex::new(p4info)?;
        let table_id = |name: &str| -> Result<u32, RulesError> {
            Ok(preamble_id(index.table(name)?.preamble.as_ref()))
        };
        let action_id = |name: &str| -> Result<u32, RulesError> {
            Ok(preamble_id(index.action(name)?.preamble.as_ref()))
        };
        let field = |table: &str, name: &str, match_type: MatchType| -> Result<u32, RulesError> {
            let f = index.match_field(table, name)?;
            let found_type = match f.r#match {
                Some(crate::p4rt::config::match_field::Match::MatchType(t)) => {
                    MatchType::try_from(t).map_or_else(
                        |_| format!("match type {t}"),
                        |t| t.as_str_name().to_string(),
                    )
                }
                Some(crate::p4rt::config::match_field::Match::OtherMatchType(ref t)) => t.clone(),
                None => "without a match type".to_string(),
            };
            if f.bitwidth != 32 || found_type != match_type.as_str_name() {
                return Err(RulesError::MatchFieldShape {
                    table: table.to_string(),
                    field: name.to_string(),
                    expected: format!("{} of 32 bits", match_type.as_str_name()),
                    found: format!("{found_type} of {} bits", f.bitwidth),
                });
            }
            Ok(f.id)
        };
        let key_arity = |table: &str, expected: usize| -> Result<(), RulesError> {
            let found = index.table(table)?.match_fields.len();
            if found != expected {
                return Err(RulesError::KeyArity {
                    table: table.to_string(),
                    expected,
                    found,
                });
            }
            Ok(())
        };
        let param = |action: &str,
                     name: &str,
                     widths: std::ops::RangeInclusive<u32>|
         -> Result<(u32, u32), RulesError> {
            let p = index.action_param(action, name)?;
            if !u32::try_from(p.bitwidth).is_ok_and(|w| widths.contains(&w)) {
                return Err(RulesError::ParamWidth {
                    action: action.to_string(),
                    param: name.to_string(),
                    expected: *widths.end(),
                    found: p.bitwidth,
                });
            }
            Ok((p.id, p.bitwidth as u32))
        };
        let param_arity = |action: &str, expected: usize| -> Result<(), RulesError> {
            let found = index.action(action)?.params.len();
            if found != expected {
                return Err(RulesError::ParamArity {
                    action: action.to_string(),
                    expected,
                    found,
                });
            }
            Ok(())
        };
        let in_table = |table: &str, action: &str| -> Result<(), RulesError> {
            let id = action_id(action)?;
            if !index.table(table)?.action_refs.iter().any(|r| r.id == id) {
                return Err(RulesError::ActionNotInTable {
                    table: table.to_string(),
                    action: action.to_string(),
                });
            }
            Ok(())
        };

        let ipv4_lpm = table_id(IPV4_LPM)?;
        key_arity(IPV4_LPM, 1)?;
        let ipv4_lpm_dst = field(IPV4_LPM, IPV4_LPM_DST, MatchType::Lpm)?;
        let set_next_hop = action_id(SET_NEXT_HOP)?;
        param_arity(SET_NEXT_HOP, 3)?;
        let (src_mac, _) = param(SET_NEXT_HOP, SRC_MAC, 48..=48)?;
        let (dst_mac, _) = param(SET_NEXT_HOP, DST_MAC, 48..=48)?;
        // v1model ports are 9 bits; a wider port parameter would still hold every port.
        let (port, port_bitwidth) = param(SET_NEXT_HOP, PORT, 9..=32)?;
        in_table(IPV4_LPM, SET_NEXT_HOP)?;
        in_table(IPV4_LPM, DROP)?;

        let vm_pair = table_id(VM_PAIR)?;
        key_arity(VM_PAIR, 2)?;
        let vm_pair_src = field(VM_PAIR, VM_PAIR_SRC, MatchType::Exact)?;
        let vm_pair_dst = field(VM_PAIR, VM_PAIR_DST, MatchType::Exact)?;
        let count_pair = action_id(COUNT_PAIR)?;
        param_arity(COUNT_PAIR, 0)?;
        in_table(VM_PAIR, COUNT_PAIR)?;
        let table = index.table(VM_PAIR)?;
        if table.idle_timeout_behavior != IdleTimeoutBehavior::NotifyControl as i32 {
            return Err(RulesError::NoIdleTimeout {
                table: VM_PAIR.to_string(),
            });
        }
        let counter = index.direct_counter(VM_PAIR_COUNTER)?;
        let counter_shape = |reason: &str| RulesError::CounterShape {
            counter: VM_PAIR_COUNTER.to_string(),
            reason: reason.to_string(),
        };
        if counter.direct_table_id != vm_pair {
            return Err(counter_shape("is not attached to `MyIngress.vm_pair`"));
        }
        let both = crate::p4rt::config::counter_spec::Unit::Both as i32;
        if counter.spec.as_ref().map(|s| s.unit) != Some(both) {
            return Err(counter_shape("does not count both packets and bytes"));
        }
        let vm_pair_counter = preamble_id(counter.preamble.as_ref());
        Ok(VmdepProgram {
            index,
            ipv4_lpm,
            ipv4_lpm_dst,
            set_next_hop,
            src_mac,
            dst_mac,
            port,
            port_bitwidth,
            vm_pair,
            vm_pair_src,
            vm_pair_dst,
            count_pair,
            vm_pair_counter,
        })
    }

    /// The P4Info this program was resolved in.
    pub fn p4info(&self) -> &P4Info {
        self.index.p4info()
    }

    /// The find-by-name index over the P4Info.
    pub fn index(&self) -> &P4InfoIndex {
        &self.index
    }

    pub fn ipv4_lpm_id(&self) -> u32 {
        self.ipv4_lpm
    }

    pub fn vm_pair_id(&self) -> u32 {
        self.vm_pair
    }

    pub fn vm_pair_counter_id(&self) -> u32 {
        self.vm_pair_counter
    }

    /// The `ipv4_lpm` entry of `route` (key and action; the key alone identifies it).
    pub fn route_entry(&self, route: &Route) -> Result<TableEntry, RulesError> {
        let mut entry = self.route_key(route)?;
        let port = bytestring::encode(u128::from(route.egress_port), self.port_bitwidth).map_err(
            |_| RulesError::PortDoesNotFit {
                prefix: route.prefix,
                prefix_len: route.prefix_len,
                port: route.egress_port,
                bitwidth: self.port_bitwidth,
            },
        )?;
        entry.action = Some(direct_action(
            self.set_next_hop,
            vec![
                (self.src_mac, mac_bytes(route.src_mac)),
                (self.dst_mac, mac_bytes(route.dst_mac)),
                (self.port, port),
            ],
        ));
        Ok(entry)
    }

    fn route_key(&self, route: &Route) -> Result<TableEntry, RulesError> {
        if route.prefix_len > 32 {
            return Err(RulesError::PrefixTooLong {
                prefix: route.prefix,
                prefix_len: route.prefix_len,
            });
        }
        // A /0 route matches everything: P4Runtime omits don't-care fields from the key.
        let r#match = if route.prefix_len == 0 {
            Vec::new()
        } else {
            // The spec wants the bits past the prefix zero.
            let mask = u32::MAX << (32 - u32::from(route.prefix_len));
            vec![FieldMatch {
                field_id: self.ipv4_lpm_dst,
                field_match_type: Some(field_match::FieldMatchType::Lpm(field_match::Lpm {
                    value: ipv4_bytes(Ipv4Addr::from(u32::from(route.prefix) & mask)),
                    prefix_len: i32::from(route.prefix_len),
                })),
            }]
        };
        Ok(TableEntry {
            table_id: self.ipv4_lpm,
            r#match,
            ..TableEntry::default()
        })
    }

    /// An update of the `ipv4_lpm` entry of `route` (a DELETE carries the key only).
    pub fn route_update(&self, kind: UpdateKind, route: &Route) -> Result<Update, RulesError> {
        let entry = match kind {
            UpdateKind::Delete => self.route_key(route)?,
            _ => self.route_entry(route)?,
        };
        Ok(table_update(kind, entry))
    }

    /// The `vm_pair` entry counting `pair`, expiring (notifying) after `idle_timeout` without a
    /// hit when one is given.
    pub fn pair_entry(
        &self,
        pair: VmPair,
        idle_timeout: Option<Duration>,
    ) -> Result<TableEntry, RulesError> {
        let idle_timeout_ns = match idle_timeout {
            None => 0,
            Some(t) => i64::try_from(t.as_nanos())
                .ok()
                .filter(|&n| n > 0)
                .ok_or(RulesError::IdleTimeout(t))?,
        };
        Ok(TableEntry {
            action: Some(direct_action(self.count_pair, Vec::new())),
            idle_timeout_ns,
            ..self.pair_key(pair)
        })
    }

    /// The key of `pair`'s `vm_pair` entry, without action.
    pub fn pair_key(&self, pair: VmPair) -> TableEntry {
        let exact = |field_id, addr| FieldMatch {
            field_id,
            field_match_type: Some(field_match::FieldMatchType::Exact(field_match::Exact {
                value: ipv4_bytes(addr),
            })),
        };
        TableEntry {
            table_id: self.vm_pair,
            r#match: vec![
                exact(self.vm_pair_src, pair.src),
                exact(self.vm_pair_dst, pair.dst),
            ],
            ..TableEntry::default()
        }
    }

    /// An update of `pair`'s `vm_pair` entry (a DELETE carries the key only).
    pub fn pair_update(
        &self,
        kind: UpdateKind,
        pair: VmPair,
        idle_timeout: Option<Duration>,
    ) -> Result<Update, RulesError> {
        match kind {
            UpdateKind::Delete => Ok(self.pair_delete(pair)),
            _ => Ok(table_update(kind, self.pair_entry(pair, idle_timeout)?)),
        }
    }

    /// The DELETE of `pair`'s entry (its key only).
    pub fn pair_delete(&self, pair: VmPair) -> Update {
        table_update(UpdateKind::Delete, self.pair_key(pair))
    }

    /// A Read of every `vm_pair` entry with its direct counter.
    pub fn read_all_pairs(&self, device_id: u64) -> ReadRequest {
        self.read_request(
            device_id,
            TableEntry {
                table_id: self.vm_pair,
                counter_data: Some(CounterData::default()),
                ..TableEntry::default()
            },
        )
    }

    /// One Read of these pairs' entries with their direct counters (absent ones are skipped).
    pub fn read_pairs(
        &self,
        device_id: u64,
        pairs: impl IntoIterator<Item = VmPair>,
    ) -> ReadRequest {
        ReadRequest {
            device_id,
            entities: pairs
                .into_iter()
                .map(|pair| Entity {
                    entity: Some(entity::Entity::TableEntry(TableEntry {
                        counter_data: Some(CounterData::default()),
                        ..self.pair_key(pair)
                    })),
                })
                .collect(),
            ..ReadRequest::default()
        }
    }

    /// A Read of every `ipv4_lpm` entry.
    pub fn read_all_routes(&self, device_id: u64) -> ReadRequest {
        self.read_request(
            device_id,
            TableEntry {
                table_id: self.ipv4_lpm,
                ..TableEntry::default()
            },
        )
    }

    fn read_request(&self, device_id: u64, query: TableEntry) -> ReadRequest {
        ReadRequest {
            device_id,
            entities: vec![Entity {
                entity: Some(entity::Entity::TableEntry(query)),
            }],
            ..ReadRequest::default()
        }
    }

    /// The pair a `vm_pair` entry counts (its key), checked against the P4Info.
    pub fn decode_pair_key(&self, entry: &TableEntry) -> Result<VmPair, RulesError> {
        if entry.table_id != self.vm_pair {
            return Err(RulesError::NotVmPair {
                expected: self.vm_pair,
                found: entry.table_id,
            });
        }
        let mut src = None;
        let mut dst = None;
        for m in &entry.r#match {
            let (slot, name) = if m.field_id == self.vm_pair_src {
                (&mut src, "srcAddr")
            } else if m.field_id == self.vm_pair_dst {
                (&mut dst, "dstAddr")
            } else {
                return Err(RulesError::BadPairKey(format!(
                    "unknown match field id {}",
                    m.field_id
                )));
            };
            let Some(field_match::FieldMatchType::Exact(exact)) = &m.field_match_type else {
                return Err(RulesError::BadPairKey(format!(
                    "field `{name}` is not an exact match"
                )));
            };
            if slot.is_some() {
                return Err(RulesError::BadPairKey(format!("field `{name}` twice")));
            }
            let value = bytestring::decode(&exact.value, 32).map_err(|source| {
                RulesError::BadPairValue {
                    field: name,
                    source,
                }
            })?;
            // decode() checked the value fits 32 bits.
            *slot = Some(Ipv4Addr::from(value as u32));
        }
        match (src, dst) {
            (Some(src), Some(dst)) => Ok(VmPair::new(src, dst)),
            _ => Err(RulesError::BadPairKey(
                "the key lacks the source or the destination".to_string(),
            )),
        }
    }

    /// The pair and counts of a `vm_pair` entry read with its counter data.
    pub fn decode_pair_entry(&self, entry: &TableEntry) -> Result<(VmPair, PairCount), RulesError> {
        let pair = self.decode_pair_key(entry)?;
        let data = entry
            .counter_data
            .as_ref()
            .ok_or(RulesError::NoCounterData { pair })?;
        match (
            u64::try_from(data.packet_count),
            u64::try_from(data.byte_count),
        ) {
            (Ok(packets), Ok(bytes)) => Ok((pair, PairCount { packets, bytes })),
            _ => Err(RulesError::NegativeCounter {
                pair,
                packets: data.packet_count,
                bytes: data.byte_count,
            }),
        }
    }

    /// The route an `ipv4_lpm` entry read back from a switch installs, if it is a
    /// `set_next_hop` entry of this program (`None` for anything else).
    pub fn decode_route_entry(&self, entry: &TableEntry) -> Option<Route> {
        if entry.table_id != self.ipv4_lpm {
            return None;
        }
        let (prefix, prefix_len) = match entry.r#match.as_slice() {
            [] => (Ipv4Addr::UNSPECIFIED, 0),
            [m] if m.field_id == self.ipv4_lpm_dst => match &m.field_match_type {
                Some(field_match::FieldMatchType::Lpm(lpm)) => (
                    Ipv4Addr::from(bytestring::decode(&lpm.value, 32).ok()? as u32),
                    u8::try_from(lpm.prefix_len).ok()?,
                ),
                _ => return None,
            },
            _ => return None,
        };
        let Some(table_action::Type::Action(a)) = entry.action.as_ref()?.r#type.as_ref() else {
            return None;
        };
        if a.action_id != self.set_next_hop {
            return None;
        }
        let param = |id: u32, width: u32| {
            let p = a.params.iter().find(|p| p.param_id == id)?;
            bytestring::decode(&p.value, width).ok()
        };
        let mac = |v: u128| {
            let b = v.to_be_bytes();
            MacAddr([b[10], b[11], b[12], b[13], b[14], b[15]])
        };
        Some(Route {
            prefix,
            prefix_len,
            src_mac: mac(param(self.src_mac, 48)?),
            dst_mac: mac(param(self.dst_mac, 48)?),
            egress_port: u16::try_from(param(self.port, self.port_bitwidth)?).ok()?,
        })
    }
}

fn ipv4_bytes(addr: Ipv4Addr) -> Vec<u8> {
    // 32 bits always fit a 32-bit field.
    bytestring::encode(u128::from(u32::from(addr)), 32).unwrap_or_default()
}

fn mac_bytes(mac: MacAddr) -> Vec<u8> {
    let mut wide = [0u8; 16];
    wide[10..].copy_from_slice(&mac.octets());
    // 48 bits always fit a 48-bit field.
    bytestring::encode(u128::from_be_bytes(wide), 48).unwrap_or_default()
}

fn direct_action(action_id: u32, params: Vec<(u32, Vec<u8>)>) -> TableAction {
    TableAction {
        r#type: Some(table_action::Type::Action(Action {
            action_id,
            params: params
                .into_iter()
                .map(|(param_id, value)| action::Param { param_id, value })
                .collect(),
        })),
    }
}

fn table_update(kind: UpdateKind, entry: TableEntry) -> Update {
    Update {
        r#type: kind.proto() as i32,
        entity: Some(Entity {
            entity: Some(entity::Entity::TableEntry(entry)),
        }),
    }
}

/// A value for people: IPv4 for 32 bits, MAC for 48, decimal otherwise; the raw bytes in hex.
fn value_text(bytes: &[u8], bitwidth: Option<u32>) -> String {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let decoded = bitwidth.and_then(|w| Some((w, bytestring::decode(bytes, w.min(128)).ok()?)));
    match decoded {
        Some((32, v)) => format!("{} [{hex}]", Ipv4Addr::from(v as u32)),
        Some((48, v)) => {
            let b = v.to_be_bytes();
            let mac = MacAddr([b[10], b[11], b[12], b[13], b[14], b[15]]);
            format!("{mac} [{hex}]")
        }
        Some((_, v)) => format!("{v} [{hex}]"),
        None => format!("[{hex}] (not a value of the field)"),
    }
}

fn named(name: Option<String>, id: u32) -> String {
    match name {
        Some(name) => format!("{name} ({id})"),
        None => format!("<unknown> ({id})"),
    }
}

fn table_entry_text(out: &mut String, e: &TableEntry, index: &P4InfoIndex) {
    let table_name = index
        .table_by_id(e.table_id)
        .ok()
        .and_then(|t| t.preamble.as_ref())
        .map(|p| p.name.clone());
    let _ = writeln!(out, "  table {}", named(table_name, e.table_id));
    let mut matches: Vec<&FieldMatch> = e.r#match.iter().collect();
    matches.sort_by_key(|m| m.field_id);
    for m in matches {
        let field = index.match_field_by_id(e.table_id, m.field_id).ok();
        let width = field.and_then(|f| u32::try_from(f.bitwidth).ok());
        let name = named(field.map(|f| f.name.clone()), m.field_id);
        let value = match &m.field_match_type {
            Some(field_match::FieldMatchType::Exact(x)) => {
                format!("exact {}", value_text(&x.value, width))
            }
            Some(field_match::FieldMatchType::Lpm(x)) => {
                format!("lpm {} /{}", value_text(&x.value, width), x.prefix_len)
            }
            Some(field_match::FieldMatchType::Ternary(x)) => format!(
                "ternary {} &&& {}",
                value_text(&x.value, width),
                value_text(&x.mask, width)
            ),
            Some(field_match::FieldMatchType::Range(x)) => format!(
                "range {} .. {}",
                value_text(&x.low, width),
                value_text(&x.high, width)
            ),
            Some(field_match::FieldMatchType::Optional(x)) => {
                format!("optional {}", value_text(&x.value, width))
            }
            Some(field_match::FieldMatchType::Other(x)) => format!("other {}", x.type_url),
            None => "no match value".to_string(),
        };
        let _ = writeln!(out, "    match {name} {value}");
    }
    if e.priority != 0 {
        let _ = writeln!(out, "    priority {}", e.priority);
    }
    match e.action.as_ref().and_then(|a| a.r#type.as_ref()) {
        None => {}
        Some(table_action::Type::Action(a)) => {
            let action = index.action_by_id(a.action_id).ok();
            let name = action
                .and_then(|a| a.preamble.as_ref())
                .map(|p| p.name.clone());
            let _ = writeln!(out, "    action {}", named(name, a.action_id));
            let mut params: Vec<&action::Param> = a.params.iter().collect();
            params.sort_by_key(|p| p.param_id);
            for p in params {
                let param = index.action_param_by_id(a.action_id, p.param_id).ok();
                let width = param.and_then(|p| u32::try_from(p.bitwidth).ok());
                let _ = writeln!(
                    out,
                    "      {} = {}",
                    named(param.map(|p| p.name.clone()), p.param_id),
                    value_text(&p.value, width)
                );
            }
        }
        Some(other) => {
            let _ = writeln!(out, "    action (indirect) {other:?}");
        }
    }
    if e.idle_timeout_ns != 0 {
        let _ = writeln!(out, "    idle_timeout_ns {}", e.idle_timeout_ns);
    }
    if let Some(c) = &e.counter_data {
        let _ = writeln!(
            out,
            "    counter_data packets {} bytes {}",
            c.packet_count, c.byte_count
        );
    }
    if e.is_default_action {
        let _ = writeln!(out, "    is_default_action");
    }
}

/// A WriteRequest as reviewable text: a header line, then one block per update in order, with
/// the names of tables, fields, actions and parameters, values as IPv4/MAC/decimal followed by
/// their bytes, and every protobuf id in parentheses. Deterministic: match fields and
/// parameters are listed by id.
pub fn write_request_text(req: &WriteRequest, program: &VmdepProgram) -> String {
    let election = req
        .election_id
        .as_ref()
        .map_or(0, |e| (u128::from(e.high) << 64) | u128::from(e.low));
    let atomicity = Atomicity::try_from(req.atomicity).map_or_else(
        |_| req.atomicity.to_string(),
        |a| a.as_str_name().to_string(),
    );
    let mut out = format!(
        "write device_id {} election_id {} atomicity {} updates {}\n",
        req.device_id,
        election,
        atomicity,
        req.updates.len()
    );
    for u in &req.updates {
        let kind = update::Type::try_from(u.r#type)
            .map_or_else(|_| u.r#type.to_string(), |t| t.as_str_name().to_string());
        let _ = writeln!(out, "{kind}");
        match u.entity.as_ref().and_then(|e| e.entity.as_ref()) {
            Some(entity::Entity::TableEntry(e)) => table_entry_text(&mut out, e, program.index()),
            Some(other) => {
                let _ = writeln!(out, "  {other:?}");
            }
            None => out.push_str("  no entity\n"),
        }
    }
    out
}

#[cfg(test)]
mod tests;
