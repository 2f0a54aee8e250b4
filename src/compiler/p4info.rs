//! The P4Info back end: turns the checked program's [`ControlPlane`] into the P4Runtime `P4Info`
//! that p4c would write for it (`p4c --p4runtime-files`), and encodes it as text or binary.
//!
//! Owns: object ids (p4c's hashing, `@id` handling and collision probing), aliases (p4c's
//! shortest unique suffix), the shape of every P4Info message, and the two encodings.
//! Must not touch: parsing or checking (the model arrives complete), files, the network; it uses
//! nothing of vmdep but the model and the generated P4Runtime types in `p4rt`.
//!
//! ## Ids, as p4c assigns them
//!
//! An object id is `(prefix << 24) | low24`, with the prefix of its kind from the P4Runtime
//! `P4Ids` enum (action 0x01, table 0x02, counter 0x12, direct counter 0x13, register 0x16,
//! digest 0x17).
//!
//! 1. `@id(N)` first: if N's top byte is zero the kind's prefix is added; a non-zero top byte
//!    must already be the kind's prefix. Two objects may not end up with the same id.
//! 2. Then every other object, kind by kind, in byte order of the names (so the result does not
//!    depend on declaration order): `h = jenkins_one_at_a_time(name)`, candidate
//!    `prefix << 24 | h & 0xFFFFFF`; while the candidate is taken, `h += 1` (wrapping) and try
//!    again. This is p4c's linear probing; a collision therefore moves the byte-order-later name.
//!    Since all 2^24 low parts are tried before any repeats, the search is bounded.
//!
//! ## Order of entities
//!
//! p4c emits actions, tables and indexed externs in the order it meets them in the program, which
//! is the order the model lists them in. The one exception: p4c emits a direct counter when it
//! emits the table that owns it, so direct counters come out in the order of their tables.
//!
//! ## Not covered
//!
//! What the model does not carry is not written: `@description` (doc.description), structured
//! annotations, annotation source locations, `type_name`/`index_type_name` for user-defined
//! types, meters, action profiles, value sets and controller headers.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;

use prost::Message as _;

use super::control_plane::{
    ControlPlane, CpAction, CpActionScope, CpCounterUnit, CpMatchKind, CpPreamble, CpTable,
};
use crate::p4rt::config::{
    action, action_ref, counter_spec, match_field, p4_bitstring_like_type_spec, p4_data_type_spec,
    p4_struct_type_spec, table, table_action_call, Action, ActionRef, Counter, CounterSpec, Digest,
    DirectCounter, Documentation, MatchField, P4BitTypeSpec, P4BitstringLikeTypeSpec,
    P4DataTypeSpec, P4Info, P4NamedType, P4StructTypeSpec, P4TypeInfo, PkgInfo, Preamble, Register,
    Table, TableActionCall,
};
use crate::p4rt::{bytestring, ids};

/// The kinds of P4Info object that carry an id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EntityKind {
    Action,
    Table,
    Counter,
    DirectCounter,
    Register,
    Digest,
}

impl EntityKind {
    /// The id prefix (top byte) of this kind, from the P4Runtime `P4Ids.Prefix` enum.
    pub fn prefix(self) -> u8 {
        match self {
            EntityKind::Action => ids::ACTION,
            EntityKind::Table => ids::TABLE,
            EntityKind::Counter => ids::COUNTER,
            EntityKind::DirectCounter => ids::DIRECT_COUNTER,
            EntityKind::Register => ids::REGISTER,
            EntityKind::Digest => ids::DIGEST,
        }
    }
}

impl fmt::Display for EntityKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EntityKind::Action => "action",
            EntityKind::Table => "table",
            EntityKind::Counter => "counter",
            EntityKind::DirectCounter => "direct counter",
            EntityKind::Register => "register",
            EntityKind::Digest => "digest",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum P4InfoError {
    #[error("{kind} has an empty name")]
    EmptyName { kind: EntityKind },
    #[error("two {kind}s are named `{name}`")]
    DuplicateName { kind: EntityKind, name: String },
    #[error(
        "{kind} `{name}`: @id({id:#010x}) has the 8-bit prefix {found:#04x}, but a {kind} id \
         must have the prefix {expected:#04x} (or none, and it is added)"
    )]
    WrongIdPrefix {
        kind: EntityKind,
        name: String,
        id: u32,
        found: u8,
        expected: u8,
    },
    #[error("@id {id:#010x} is assigned to both {kind} `{first}` and {kind} `{second}`")]
    DuplicateId {
        kind: EntityKind,
        id: u32,
        first: String,
        second: String,
    },
    #[error("no free {kind} id is left for `{name}`")]
    IdSpaceExhausted { kind: EntityKind, name: String },
    #[error("table `{table}` refers to unknown action `{action}`")]
    UnknownAction { table: String, action: String },
    #[error("table `{table}`: default action `{action}` is not one of the table's actions")]
    DefaultActionNotInTable { table: String, action: String },
    #[error(
        "table `{table}`: default action `{action}` takes {expected} argument(s), {found} given"
    )]
    DefaultActionArity {
        table: String,
        action: String,
        expected: usize,
        found: usize,
    },
    #[error(
        "table `{table}`: default argument {value} for parameter `{param}` of `{action}` does \
         not fit in {bitwidth} bits"
    )]
    ArgumentTooWide {
        table: String,
        action: String,
        param: String,
        value: u128,
        bitwidth: u32,
    },
    #[error("table `{table}` uses unknown direct counter `{counter}`")]
    UnknownDirectCounter { table: String, counter: String },
    #[error(
        "direct counter `{counter}` belongs to table `{declared}`, but it is attached to \
         table `{attached}`"
    )]
    DirectCounterTableMismatch {
        counter: String,
        declared: String,
        attached: String,
    },
    #[error("direct counter `{counter}` is not attached to its table `{table}`")]
    DirectCounterNotAttached { counter: String, table: String },
    #[error("{what} is {value}, more than P4Info can carry (at most {max})")]
    TooLarge { what: String, value: u64, max: u64 },
    #[error("digest struct `{name}` is described twice, with different fields")]
    ConflictingDigestStruct { name: String },
}

/// Jenkins' one-at-a-time hash, as p4c uses it on object names (UTF-8 bytes).
pub fn jenkins_one_at_a_time(bytes: &[u8]) -> u32 {
    let mut hash: u32 = 0;
    for &byte in bytes {
        hash = hash.wrapping_add(u32::from(byte));
        hash = hash.wrapping_add(hash << 10);
        hash ^= hash >> 6;
    }
    hash = hash.wrapping_add(hash << 3);
    hash ^= hash >> 11;
    hash.wrapping_add(hash << 15)
}

/// One object that needs an id: its kind, fully qualified name and `@id`, if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Symbol {
    pub kind: EntityKind,
    pub name: String,
    pub explicit_id: Option<u32>,
}

/// Ids and aliases of every object of a program, computed the way p4c computes them.
#[derive(Clone, Debug, Default)]
pub struct SymbolTable {
    ids: HashMap<(EntityKind, String), u32>,
    aliases: HashMap<String, String>,
}

impl SymbolTable {
    /// Assigns ids (see the module docs) and aliases to `symbols`.
    pub fn new(symbols: impl IntoIterator<Item = Symbol>) -> Result<Self, P4InfoError> {
        let symbols: Vec<Symbol> = symbols.into_iter().collect();
        let mut seen = HashSet::new();
        for symbol in &symbols {
            if symbol.name.is_empty() {
                return Err(P4InfoError::EmptyName { kind: symbol.kind });
            }
            if !seen.insert((symbol.kind, symbol.name.as_str())) {
                return Err(P4InfoError::DuplicateName {
                    kind: symbol.kind,
                    name: symbol.name.clone(),
                });
            }
        }

        // Explicit ids first, so hashed ids steer around them.
        let mut owner_of_id: HashMap<u32, &Symbol> = HashMap::new();
        let mut ids = HashMap::new();
        for symbol in &symbols {
            let Some(id) = symbol.explicit_id else {
                continue;
            };
            let id = with_prefix(symbol, id)?;
            if let Some(first) = owner_of_id.insert(id, symbol) {
                return Err(P4InfoError::DuplicateId {
                    kind: symbol.kind,
                    id,
                    first: first.name.clone(),
                    second: symbol.name.clone(),
                });
            }
            ids.insert((symbol.kind, symbol.name.clone()), id);
        }

        // Then the rest, kind by kind, each kind in byte order of the names.
        let mut pending: BTreeSet<(EntityKind, &str)> = BTreeSet::new();
        for symbol in symbols.iter().filter(|s| s.explicit_id.is_none()) {
            pending.insert((symbol.kind, symbol.name.as_str()));
        }
        let mut taken: HashSet<u32> = owner_of_id.keys().copied().collect();
        for (kind, name) in pending {
            let id = probe_for_id(kind, name, &taken)?;
            taken.insert(id);
            ids.insert((kind, name.to_owned()), id);
        }

        let names = symbols.iter().map(|s| s.name.as_str());
        Ok(SymbolTable {
            ids,
            aliases: shortest_unique_suffixes(names),
        })
    }

    /// The id of the `kind` object named `name`, if it is in the table.
    pub fn id(&self, kind: EntityKind, name: &str) -> Option<u32> {
        self.ids.get(&(kind, name.to_owned())).copied()
    }

    /// The alias of `name`, if it is in the table.
    pub fn alias(&self, name: &str) -> Option<&str> {
        self.aliases.get(name).map(String::as_str)
    }
}

fn with_prefix(symbol: &Symbol, id: u32) -> Result<u32, P4InfoError> {
    let expected = symbol.kind.prefix();
    let found = (id >> 24) as u8;
    if found != 0 && found != expected {
        return Err(P4InfoError::WrongIdPrefix {
            kind: symbol.kind,
            name: symbol.name.clone(),
            id,
            found,
            expected,
        });
    }
    Ok(id | (u32::from(expected) << 24))
}

fn probe_for_id(kind: EntityKind, name: &str, taken: &HashSet<u32>) -> Result<u32, P4InfoError> {
    let prefix = u32::from(kind.prefix()) << 24;
    let mut value = jenkins_one_at_a_time(name.as_bytes());
    // 2^24 steps visit every low part once; after that p4c's search would only repeat them.
    for _ in 0..(1u32 << 24) {
        let id = prefix | (value & 0x00FF_FFFF);
        if !taken.contains(&id) {
            return Ok(id);
        }
        value = value.wrapping_add(1);
    }
    Err(P4InfoError::IdSpaceExhausted {
        kind,
        name: name.to_owned(),
    })
}

/// p4c's default alias: the fewest trailing dot-separated components of a name that no other
/// name (of any kind) ends with; a name that is itself a suffix of another keeps all of itself.
fn shortest_unique_suffixes<'a>(names: impl Iterator<Item = &'a str>) -> HashMap<String, String> {
    let unique: HashSet<&str> = names.collect();
    // How many names end with each suffix (a suffix is whole components, joined by '.').
    let mut passing: HashMap<&str, usize> = HashMap::new();
    for name in &unique {
        for suffix in suffixes(name) {
            *passing.entry(suffix).or_default() += 1;
        }
    }
    unique
        .iter()
        .map(|name| {
            let alias = suffixes(name)
                .find(|suffix| passing[suffix] < 2)
                .unwrap_or(name);
            ((*name).to_owned(), alias.to_owned())
        })
        .collect()
}

/// The component suffixes of `name`, shortest first: `a.b.c` → `c`, `b.c`, `a.b.c`.
fn suffixes(name: &str) -> impl Iterator<Item = &str> {
    let starts = name
        .char_indices()
        .rev()
        .filter(|&(_, c)| c == '.')
        .map(|(i, _)| i + 1);
    starts.chain(std::iter::once(0)).map(move |i| &name[i..])
}

fn symbols_of(cp: &ControlPlane) -> Vec<Symbol> {
    let symbol = |kind, p: &CpPreamble| Symbol {
        kind,
        name: p.name.clone(),
        explicit_id: p.explicit_id,
    };
    let mut out = Vec::new();
    out.extend(
        cp.actions
            .iter()
            .map(|a| symbol(EntityKind::Action, &a.preamble)),
    );
    out.extend(
        cp.tables
            .iter()
            .map(|t| symbol(EntityKind::Table, &t.preamble)),
    );
    out.extend(
        cp.counters
            .iter()
            .map(|c| symbol(EntityKind::Counter, &c.preamble)),
    );
    out.extend(
        cp.direct_counters
            .iter()
            .map(|c| symbol(EntityKind::DirectCounter, &c.preamble)),
    );
    out.extend(
        cp.registers
            .iter()
            .map(|r| symbol(EntityKind::Register, &r.preamble)),
    );
    out.extend(
        cp.digests
            .iter()
            .map(|d| symbol(EntityKind::Digest, &d.preamble)),
    );
    out
}

/// Builds the P4Info p4c writes for the program described by `cp`.
pub fn build_p4info(cp: &ControlPlane) -> Result<P4Info, P4InfoError> {
    let symbols = SymbolTable::new(symbols_of(cp))?;
    let builder = Builder { cp, symbols };
    let mut type_info = P4TypeInfo::default();
    let digests = cp
        .digests
        .iter()
        .map(|d| builder.digest(d, &mut type_info))
        .collect::<Result<_, _>>()?;
    Ok(P4Info {
        pkg_info: Some(PkgInfo {
            arch: cp.arch.clone(),
            ..Default::default()
        }),
        tables: cp
            .tables
            .iter()
            .map(|t| builder.table(t))
            .collect::<Result<_, _>>()?,
        actions: cp
            .actions
            .iter()
            .map(|a| builder.action(a))
            .collect::<Result<_, _>>()?,
        counters: builder.counters()?,
        direct_counters: builder.direct_counters()?,
        registers: builder.registers()?,
        digests,
        // p4c always creates it, even when no type needs describing.
        type_info: Some(type_info),
        ..Default::default()
    })
}

struct Builder<'a> {
    cp: &'a ControlPlane,
    symbols: SymbolTable,
}

impl Builder<'_> {
    /// The id of a registered symbol: every preamble was registered by `symbols_of`, and a
    /// referenced name is looked up only after its referent was found in the model.
    fn id(&self, kind: EntityKind, name: &str) -> u32 {
        self.symbols
            .id(kind, name)
            .unwrap_or_else(|| unreachable!("{kind} `{name}` was registered"))
    }

    fn preamble(&self, kind: EntityKind, p: &CpPreamble) -> Preamble {
        Preamble {
            id: self.id(kind, &p.name),
            name: p.name.clone(),
            alias: self.symbols.alias(&p.name).unwrap_or(&p.name).to_owned(),
            annotations: p.annotations.clone(),
            doc: p.brief.as_ref().map(|brief| Documentation {
                brief: brief.clone(),
                description: String::new(),
            }),
            ..Default::default()
        }
    }

    fn action_named(&self, table: &CpTable, name: &str) -> Result<(&CpAction, u32), P4InfoError> {
        let action = self
            .cp
            .actions
            .iter()
            .find(|a| a.preamble.name == name)
            .ok_or_else(|| P4InfoError::UnknownAction {
                table: table.preamble.name.clone(),
                action: name.to_owned(),
            })?;
        Ok((action, self.id(EntityKind::Action, name)))
    }

    fn table(&self, t: &CpTable) -> Result<Table, P4InfoError> {
        let table_name = &t.preamble.name;
        let mut action_refs = Vec::with_capacity(t.actions.len());
        for r in &t.actions {
            let (_, id) = self.action_named(t, &r.action)?;
            let scope = match r.scope {
                CpActionScope::TableAndDefault => action_ref::Scope::TableAndDefault,
                CpActionScope::TableOnly => action_ref::Scope::TableOnly,
                CpActionScope::DefaultOnly => action_ref::Scope::DefaultOnly,
            };
            action_refs.push(ActionRef {
                id,
                scope: scope as i32,
                annotations: r.annotations.clone(),
                ..Default::default()
            });
        }
        let in_table = |action: &str| t.actions.iter().any(|r| r.action == action);

        let const_default_action_id = match &t.const_default_action {
            Some(name) => {
                let (_, id) = self.action_named(t, name)?;
                if !in_table(name) {
                    return Err(P4InfoError::DefaultActionNotInTable {
                        table: table_name.clone(),
                        action: name.clone(),
                    });
                }
                id
            }
            None => 0,
        };
        let initial_default_action = t
            .initial_default_action
            .as_ref()
            .map(|(name, args)| {
                let (action, id) = self.action_named(t, name)?;
                if !in_table(name) {
                    return Err(P4InfoError::DefaultActionNotInTable {
                        table: table_name.clone(),
                        action: name.clone(),
                    });
                }
                Ok(TableActionCall {
                    action_id: id,
                    arguments: default_arguments(t, action, args)?,
                })
            })
            .transpose()?;

        let match_fields = t
            .match_fields
            .iter()
            .zip(1u32..)
            .map(|(f, id)| {
                let kind = match f.match_kind {
                    CpMatchKind::Exact => match_field::MatchType::Exact,
                    CpMatchKind::Lpm => match_field::MatchType::Lpm,
                    CpMatchKind::Ternary => match_field::MatchType::Ternary,
                    CpMatchKind::Range => match_field::MatchType::Range,
                    CpMatchKind::Optional => match_field::MatchType::Optional,
                };
                Ok(MatchField {
                    id,
                    name: f.name.clone(),
                    annotations: f.annotations.clone(),
                    bitwidth: bitwidth_i32(
                        &format!("key `{}` of `{table_name}`", f.name),
                        f.bitwidth,
                    )?,
                    r#match: Some(match_field::Match::MatchType(kind as i32)),
                    ..Default::default()
                })
            })
            .collect::<Result<_, P4InfoError>>()?;

        let mut direct_resource_ids = Vec::with_capacity(t.direct_counters.len());
        for counter in &t.direct_counters {
            let declared = self
                .cp
                .direct_counters
                .iter()
                .find(|c| &c.preamble.name == counter)
                .ok_or_else(|| P4InfoError::UnknownDirectCounter {
                    table: table_name.clone(),
                    counter: counter.clone(),
                })?;
            if &declared.table != table_name {
                return Err(P4InfoError::DirectCounterTableMismatch {
                    counter: counter.clone(),
                    declared: declared.table.clone(),
                    attached: table_name.clone(),
                });
            }
            direct_resource_ids.push(self.id(EntityKind::DirectCounter, counter));
        }

        let idle_timeout_behavior = if t.support_timeout {
            table::IdleTimeoutBehavior::NotifyControl
        } else {
            table::IdleTimeoutBehavior::NoTimeout
        };
        Ok(Table {
            preamble: Some(self.preamble(EntityKind::Table, &t.preamble)),
            match_fields,
            action_refs,
            const_default_action_id,
            initial_default_action,
            direct_resource_ids,
            size: size_i64(&format!("size of table `{table_name}`"), t.size)?,
            idle_timeout_behavior: idle_timeout_behavior as i32,
            is_const_table: t.is_const_table,
            // The model knows only `const entries`, and p4c sets both flags for those.
            has_initial_entries: t.is_const_table,
            ..Default::default()
        })
    }

    fn action(&self, a: &CpAction) -> Result<Action, P4InfoError> {
        let params = a
            .params
            .iter()
            .zip(1u32..)
            .map(|(p, id)| {
                Ok(action::Param {
                    id,
                    name: p.name.clone(),
                    annotations: p.annotations.clone(),
                    bitwidth: bitwidth_i32(
                        &format!("parameter `{}` of `{}`", p.name, a.preamble.name),
                        p.bitwidth,
                    )?,
                    ..Default::default()
                })
            })
            .collect::<Result<_, P4InfoError>>()?;
        Ok(Action {
            preamble: Some(self.preamble(EntityKind::Action, &a.preamble)),
            params,
        })
    }

    fn counters(&self) -> Result<Vec<Counter>, P4InfoError> {
        self.cp
            .counters
            .iter()
            .map(|c| {
                Ok(Counter {
                    preamble: Some(self.preamble(EntityKind::Counter, &c.preamble)),
                    spec: Some(counter_spec(c.unit)),
                    size: size_i64(&format!("size of counter `{}`", c.preamble.name), c.size)?,
                    ..Default::default()
                })
            })
            .collect()
    }

    fn direct_counters(&self) -> Result<Vec<DirectCounter>, P4InfoError> {
        let table_position =
            |name: &str| self.cp.tables.iter().position(|t| t.preamble.name == name);
        let mut placed = Vec::with_capacity(self.cp.direct_counters.len());
        for c in &self.cp.direct_counters {
            let counter = &c.preamble.name;
            let attached = table_position(&c.table)
                .filter(|&i| self.cp.tables[i].direct_counters.contains(counter));
            let Some(position) = attached else {
                return Err(P4InfoError::DirectCounterNotAttached {
                    counter: counter.clone(),
                    table: c.table.clone(),
                });
            };
            placed.push((position, c));
        }
        // Stable: counters of one table keep the model's order.
        placed.sort_by_key(|&(position, _)| position);
        Ok(placed
            .into_iter()
            .map(|(_, c)| DirectCounter {
                preamble: Some(self.preamble(EntityKind::DirectCounter, &c.preamble)),
                spec: Some(counter_spec(c.unit)),
                direct_table_id: self.id(EntityKind::Table, &c.table),
            })
            .collect())
    }

    fn registers(&self) -> Result<Vec<Register>, P4InfoError> {
        self.cp
            .registers
            .iter()
            .map(|r| {
                let name = &r.preamble.name;
                Ok(Register {
                    preamble: Some(self.preamble(EntityKind::Register, &r.preamble)),
                    type_spec: Some(bit_type(bitwidth_i32(
                        &format!("cell width of register `{name}`"),
                        r.bitwidth,
                    )?)),
                    size: size_i32(&format!("size of register `{name}`"), r.size)?,
                    ..Default::default()
                })
            })
            .collect()
    }

    fn digest(
        &self,
        d: &super::control_plane::CpDigest,
        type_info: &mut P4TypeInfo,
    ) -> Result<Digest, P4InfoError> {
        let members = d
            .fields
            .iter()
            .map(|(name, bitwidth)| {
                Ok(p4_struct_type_spec::Member {
                    name: name.clone(),
                    type_spec: Some(bit_type(bitwidth_i32(
                        &format!("field `{name}` of struct `{}`", d.struct_name),
                        *bitwidth,
                    )?)),
                })
            })
            .collect::<Result<_, P4InfoError>>()?;
        let spec = P4StructTypeSpec {
            members,
            ..Default::default()
        };
        match type_info.structs.get(&d.struct_name) {
            Some(existing) if *existing != spec => {
                return Err(P4InfoError::ConflictingDigestStruct {
                    name: d.struct_name.clone(),
                })
            }
            Some(_) => {}
            None => {
                type_info.structs.insert(d.struct_name.clone(), spec);
            }
        }
        Ok(Digest {
            preamble: Some(self.preamble(EntityKind::Digest, &d.preamble)),
            type_spec: Some(P4DataTypeSpec {
                type_spec: Some(p4_data_type_spec::TypeSpec::Struct(P4NamedType {
                    name: d.struct_name.clone(),
                })),
            }),
        })
    }
}

/// The default action's arguments as p4c writes them: param ids 1.., each value big-endian,
/// zero-padded to the parameter's whole bytes (p4c avoids the shorter canonical form because
/// the reference P4Runtime server did not accept it).
fn default_arguments(
    t: &CpTable,
    action: &CpAction,
    args: &[u128],
) -> Result<Vec<table_action_call::Argument>, P4InfoError> {
    if args.len() != action.params.len() {
        return Err(P4InfoError::DefaultActionArity {
            table: t.preamble.name.clone(),
            action: action.preamble.name.clone(),
            expected: action.params.len(),
            found: args.len(),
        });
    }
    action
        .params
        .iter()
        .zip(args)
        .zip(1u32..)
        .map(|((param, &value), param_id)| {
            let too_wide = || P4InfoError::ArgumentTooWide {
                table: t.preamble.name.clone(),
                action: action.preamble.name.clone(),
                param: param.name.clone(),
                value,
                bitwidth: param.bitwidth,
            };
            let canonical = bytestring::encode(value, param.bitwidth).map_err(|_| too_wide())?;
            Ok(table_action_call::Argument {
                param_id,
                value: bytestring::to_padded(&canonical, param.bitwidth).map_err(|_| too_wide())?,
            })
        })
        .collect()
}

fn counter_spec(unit: CpCounterUnit) -> CounterSpec {
    let unit = match unit {
        CpCounterUnit::Bytes => counter_spec::Unit::Bytes,
        CpCounterUnit::Packets => counter_spec::Unit::Packets,
        CpCounterUnit::Both => counter_spec::Unit::Both,
    };
    CounterSpec { unit: unit as i32 }
}

fn bit_type(bitwidth: i32) -> P4DataTypeSpec {
    P4DataTypeSpec {
        type_spec: Some(p4_data_type_spec::TypeSpec::Bitstring(
            P4BitstringLikeTypeSpec {
                type_spec: Some(p4_bitstring_like_type_spec::TypeSpec::Bit(P4BitTypeSpec {
                    bitwidth,
                })),
                ..Default::default()
            },
        )),
    }
}

fn bitwidth_i32(what: &str, bitwidth: u32) -> Result<i32, P4InfoError> {
    i32::try_from(bitwidth).map_err(|_| P4InfoError::TooLarge {
        what: format!("width of {what}"),
        value: u64::from(bitwidth),
        max: i32::MAX as u64,
    })
}

fn size_i32(what: &str, size: u64) -> Result<i32, P4InfoError> {
    i32::try_from(size).map_err(|_| P4InfoError::TooLarge {
        what: what.to_owned(),
        value: size,
        max: i32::MAX as u64,
    })
}

fn size_i64(what: &str, size: u64) -> Result<i64, P4InfoError> {
    i64::try_from(size).map_err(|_| P4InfoError::TooLarge {
        what: what.to_owned(),
        value: size,
        max: i64::MAX as u64,
    })
}

/// The P4Info as protobuf text, byte for byte as p4c writes it: its two header comment lines,
/// a blank line, then the message.
pub fn p4info_text(p4info: &P4Info) -> String {
    format!(
        "# proto-file: p4/config/v1/p4info.proto\n# proto-message: p4.config.v1.P4Info\n\n{}",
        crate::p4rt::p4info_to_text(p4info)
    )
}

/// The P4Info in the protobuf binary encoding (p4c's `.p4info.bin`).
pub fn p4info_binary(p4info: &P4Info) -> Vec<u8> {
    p4info.encode_to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sym(kind: EntityKind, name: &str, explicit_id: Option<u32>) -> Symbol {
        Symbol {
            kind,
            name: name.to_owned(),
            explicit_id,
        }
    }

    #[test]
    fn hash_matches_known_values() {
        // Published test vectors of Jenkins' one-at-a-time hash.
        assert_eq!(jenkins_one_at_a_time(b"a"), 0xca2e_9442);
        assert_eq!(
            jenkins_one_at_a_time(b"The quick brown fox jumps over the lazy dog"),
            0x519e_91f5
        );
        assert_eq!(jenkins_one_at_a_time(b""), 0);
        // p4c's table id for `Ing.acl` in ref2_ternary_counters.
        let table = SymbolTable::new([sym(EntityKind::Table, "Ing.acl", None)]).unwrap();
        assert_eq!(table.id(EntityKind::Table, "Ing.acl"), Some(39_914_931));
    }

    #[test]
    fn prefixes_are_the_p4runtime_ones() {
        let prefixes = [
            EntityKind::Action,
            EntityKind::Table,
            EntityKind::Counter,
            EntityKind::DirectCounter,
            EntityKind::Register,
            EntityKind::Digest,
        ]
        .map(EntityKind::prefix);
        assert_eq!(prefixes, [0x01, 0x02, 0x12, 0x13, 0x16, 0x17]);
    }

    // `C.t1510` and `C.t2280` hash to the same low 24 bits (0x014cf6).
    const COLLIDING: [&str; 2] = ["C.t1510", "C.t2280"];

    #[test]
    fn hash_collisions_probe_upwards_in_name_order() {
        let low = |n: &str| jenkins_one_at_a_time(n.as_bytes()) & 0xFF_FFFF;
        assert_eq!(low(COLLIDING[0]), low(COLLIDING[1]));
        // Listed in either order, the byte-order-first name keeps the hashed id.
        for order in [[0, 1], [1, 0]] {
            let table = SymbolTable::new(order.map(|i| sym(EntityKind::Table, COLLIDING[i], None)))
                .unwrap();
            assert_eq!(table.id(EntityKind::Table, COLLIDING[0]), Some(0x0201_4cf6));
            assert_eq!(table.id(EntityKind::Table, COLLIDING[1]), Some(0x0201_4cf7));
        }
        // Different kinds never collide: the prefix tells them apart.
        let table = SymbolTable::new([
            sym(EntityKind::Table, COLLIDING[0], None),
            sym(EntityKind::Action, COLLIDING[1], None),
        ])
        .unwrap();
        assert_eq!(
            table.id(EntityKind::Action, COLLIDING[1]),
            Some(0x0101_4cf6)
        );
    }

    #[test]
    fn explicit_ids_push_hashed_ids_aside() {
        let hashed = 0x0200_0000 | (jenkins_one_at_a_time(b"C.x") & 0xFF_FFFF);
        let table = SymbolTable::new([
            sym(EntityKind::Table, "C.x", None),
            sym(EntityKind::Table, "C.y", Some(hashed & 0xFF_FFFF)),
        ])
        .unwrap();
        assert_eq!(table.id(EntityKind::Table, "C.y"), Some(hashed));
        assert_eq!(table.id(EntityKind::Table, "C.x"), Some(hashed + 1));
    }

    #[test]
    fn probing_wraps_within_the_24_bit_space() {
        let mut taken = HashSet::new();
        let low = jenkins_one_at_a_time(b"n") & 0xFF_FFFF;
        // Take every id from the hashed one to the top of the space: the search wraps to 0.
        for l in low..=0xFF_FFFF {
            taken.insert(0x1200_0000 | l);
        }
        assert_eq!(
            probe_for_id(EntityKind::Counter, "n", &taken),
            Ok(0x1200_0000)
        );
    }

    #[test]
    fn aliases_are_shortest_unique_suffixes() {
        let aliases =
            shortest_unique_suffixes(["d.a.c", "e.b.c", "Ing.acl", "a.b", "b", "x..y"].into_iter());
        assert_eq!(aliases["d.a.c"], "a.c");
        assert_eq!(aliases["e.b.c"], "b.c");
        assert_eq!(aliases["Ing.acl"], "acl");
        // A name that is a suffix of another cannot be shortened, and the other needs more.
        assert_eq!(aliases["b"], "b");
        assert_eq!(aliases["a.b"], "a.b");
        assert_eq!(aliases["x..y"], "y");
    }

    #[test]
    fn aliases_span_all_kinds() {
        let table = SymbolTable::new([
            sym(EntityKind::Table, "Ing.t", None),
            sym(EntityKind::Action, "Eg.t", None),
            sym(EntityKind::Counter, "Ing.t", None),
        ])
        .unwrap();
        assert_eq!(table.alias("Ing.t"), Some("Ing.t"));
        assert_eq!(table.alias("Eg.t"), Some("Eg.t"));
    }

    fn kind() -> impl Strategy<Value = EntityKind> {
        prop_oneof![
            Just(EntityKind::Action),
            Just(EntityKind::Table),
            Just(EntityKind::Counter),
            Just(EntityKind::DirectCounter),
            Just(EntityKind::Register),
            Just(EntityKind::Digest),
        ]
    }

    fn symbols() -> impl Strategy<Value = Vec<Symbol>> {
        let name = "[a-c]{1,2}(\\.[a-c]{1,2}){0,2}";
        let explicit = prop::option::weighted(0.2, 0u32..0x40);
        prop::collection::vec((kind(), name, explicit), 0..40).prop_map(|items| {
            let mut seen = HashSet::new();
            items
                .into_iter()
                .filter(|(k, n, _)| seen.insert((*k, n.clone())))
                .map(|(kind, name, explicit_id)| Symbol {
                    kind,
                    name,
                    explicit_id,
                })
                .collect()
        })
    }

    proptest! {
        #[test]
        fn ids_are_unique_prefixed_and_order_independent(
            symbols in symbols(),
            rotate in 0usize..40,
        ) {
            let Ok(table) = SymbolTable::new(symbols.clone()) else {
                // Only explicit ids can clash; check that this is what happened.
                let mut ids = HashSet::new();
                let clash = symbols.iter().filter_map(|s| s.explicit_id.map(|id| {
                    (u32::from(s.kind.prefix()) << 24) | id
                })).any(|id| !ids.insert(id));
                prop_assert!(clash);
                return Ok(());
            };
            let mut seen = HashSet::new();
            for s in &symbols {
                let id = table.id(s.kind, &s.name).unwrap();
                prop_assert_eq!((id >> 24) as u8, s.kind.prefix());
                prop_assert!(seen.insert(id), "id {:#x} given twice", id);
                if let Some(explicit) = s.explicit_id {
                    prop_assert_eq!(id & 0xFF_FFFF, explicit);
                }
                // The alias is a suffix of the name, on a component boundary.
                let alias = table.alias(&s.name).unwrap();
                let dotted = format!(".{alias}");
                prop_assert!(s.name == alias || s.name.ends_with(&dotted));
            }
            let mut rotated = symbols.clone();
            if !rotated.is_empty() {
                let by = rotate % rotated.len();
                rotated.rotate_left(by);
            }
            let again = SymbolTable::new(rotated).unwrap();
            for s in &symbols {
                prop_assert_eq!(again.id(s.kind, &s.name), table.id(s.kind, &s.name));
                prop_assert_eq!(again.alias(&s.name), table.alias(&s.name));
            }
        }

        #[test]
        fn aliases_are_unique_among_all_names(symbols in symbols()) {
            let names: HashSet<&str> = symbols.iter().map(|s| s.name.as_str()).collect();
            let aliases = shortest_unique_suffixes(names.iter().copied());
            for (name, alias) in &aliases {
                // Unless the name is a whole suffix of another, no other name ends with its alias.
                let clash = names.iter().any(|other| {
                    other != name
                        && (*other == alias.as_str() || other.ends_with(&format!(".{alias}")))
                });
                prop_assert!(!clash || alias == name, "{} -> {}", name, alias);
            }
        }
    }
}
