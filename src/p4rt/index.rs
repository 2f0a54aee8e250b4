//! Find-by-name over a P4Info: every P4Runtime party names objects by their P4 names (or
//! aliases) and must translate to and from the numeric ids the protocol carries.

use std::collections::HashMap;
use std::fmt;

use thiserror::Error;

use super::config::{
    action::Param, Action, ActionProfile, ControllerPacketMetadata, Counter, Digest, DirectCounter,
    DirectMeter, MatchField, Meter, P4Info, Preamble, Register, Table, ValueSet,
};

/// The kinds of P4Info objects that have a preamble.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectKind {
    Table,
    Action,
    ActionProfile,
    Counter,
    DirectCounter,
    Meter,
    DirectMeter,
    ControllerPacketMetadata,
    ValueSet,
    Register,
    Digest,
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ObjectKind::Table => "table",
            ObjectKind::Action => "action",
            ObjectKind::ActionProfile => "action profile",
            ObjectKind::Counter => "counter",
            ObjectKind::DirectCounter => "direct counter",
            ObjectKind::Meter => "meter",
            ObjectKind::DirectMeter => "direct meter",
            ObjectKind::ControllerPacketMetadata => "controller packet metadata",
            ObjectKind::ValueSet => "value set",
            ObjectKind::Register => "register",
            ObjectKind::Digest => "digest",
        })
    }
}

/// A P4Info that cannot be indexed: names and ids must identify objects unambiguously.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum P4InfoIndexError {
    #[error("{kind} number {position} in the P4Info has no preamble")]
    MissingPreamble { kind: ObjectKind, position: usize },
    #[error("two {kind}s have id {id:#010x} (`{first}` and `{second}`)")]
    DuplicateId {
        kind: ObjectKind,
        id: u32,
        first: String,
        second: String,
    },
    #[error("two {kind}s are named `{name}`")]
    DuplicateName { kind: ObjectKind, name: String },
}

/// A name or id that the P4Info does not define.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LookupError {
    #[error("no {kind} named `{name}` in the P4Info")]
    UnknownName { kind: ObjectKind, name: String },
    #[error("no {kind} with id {id:#010x} in the P4Info")]
    UnknownId { kind: ObjectKind, id: u32 },
    #[error("`{name}` is the alias of several {kind}s; use the fully qualified name")]
    AmbiguousAlias { kind: ObjectKind, name: String },
    #[error("table `{table}` has no match field named `{field}`")]
    UnknownMatchField { table: String, field: String },
    #[error("table `{table}` has no match field with id {id}")]
    UnknownMatchFieldId { table: String, id: u32 },
    #[error("action `{action}` has no parameter named `{param}`")]
    UnknownParam { action: String, param: String },
    #[error("action `{action}` has no parameter with id {id}")]
    UnknownParamId { action: String, id: u32 },
}

/// Where a name resolves to: one object, or an alias several objects share.
#[derive(Debug, Clone, Copy)]
enum NameTarget {
    Object(usize),
    AmbiguousAlias,
}

/// Name, alias and id lookup for one kind of object, by position in its P4Info list.
#[derive(Debug, Clone, Default)]
struct KindIndex {
    by_name: HashMap<String, NameTarget>,
    by_id: HashMap<u32, usize>,
}

impl KindIndex {
    fn build<'a>(
        kind: ObjectKind,
        preambles: impl Iterator<Item = Option<&'a Preamble>>,
    ) -> Result<Self, P4InfoIndexError> {
        let preambles = preambles
            .enumerate()
            .map(|(position, p)| p.ok_or(P4InfoIndexError::MissingPreamble { kind, position }))
            .collect::<Result<Vec<_>, _>>()?;
        let mut index = KindIndex::default();
        for (position, preamble) in preambles.iter().enumerate() {
            if let Some(&other) = index.by_id.get(&preamble.id) {
                return Err(P4InfoIndexError::DuplicateId {
                    kind,
                    id: preamble.id,
                    first: preambles[other].name.clone(),
                    second: preamble.name.clone(),
                });
            }
            index.by_id.insert(preamble.id, position);
            if index
                .by_name
                .insert(preamble.name.clone(), NameTarget::Object(position))
                .is_some()
            {
                return Err(P4InfoIndexError::DuplicateName {
                    kind,
                    name: preamble.name.clone(),
                });
            }
        }
        // Aliases after all full names, so a full name always wins over another object's alias.
        let mut alias_owner: HashMap<&str, usize> = HashMap::new();
        for (position, preamble) in preambles.iter().enumerate() {
            let alias = preamble.alias.as_str();
            if alias.is_empty() || alias == preamble.name {
                continue;
            }
            match alias_owner.insert(alias, position) {
                Some(previous) => {
                    if let Some(target) = index.by_name.get_mut(alias) {
                        if matches!(target, NameTarget::Object(p) if *p == previous) {
                            *target = NameTarget::AmbiguousAlias;
                        }
                    }
                }
                None => {
                    index
                        .by_name
                        .entry(alias.to_string())
                        .or_insert(NameTarget::Object(position));
                }
            }
        }
        Ok(index)
    }

    fn find<'a, T>(
        &self,
        kind: ObjectKind,
        items: &'a [T],
        name: &str,
    ) -> Result<&'a T, LookupError> {
        match self.by_name.get(name) {
            Some(NameTarget::Object(position)) => Ok(&items[*position]),
            Some(NameTarget::AmbiguousAlias) => Err(LookupError::AmbiguousAlias {
                kind,
                name: name.to_string(),
            }),
            None => Err(LookupError::UnknownName {
                kind,
                name: name.to_string(),
            }),
        }
    }

    fn find_id<'a, T>(
        &self,
        kind: ObjectKind,
        items: &'a [T],
        id: u32,
    ) -> Result<&'a T, LookupError> {
        self.by_id
            .get(&id)
            .map(|&position| &items[position])
            .ok_or(LookupError::UnknownId { kind, id })
    }
}

/// A P4Info with lookup by fully qualified name, alias or id for every kind of object, and
/// by name or id for the match fields of a table and the parameters of an action.
#[derive(Debug, Clone)]
pub struct P4InfoIndex {
    p4info: P4Info,
    tables: KindIndex,
    actions: KindIndex,
    action_profiles: KindIndex,
    counters: KindIndex,
    direct_counters: KindIndex,
    meters: KindIndex,
    direct_meters: KindIndex,
    controller_packet_metadata: KindIndex,
    value_sets: KindIndex,
    registers: KindIndex,
    digests: KindIndex,
}

/// Generates the by-name and by-id accessors of one kind.
macro_rules! lookups {
    ($($field:ident: $ty:ty, $kind:ident, $by_name:ident, $by_id:ident;)*) => {
        $(
            #[doc = concat!("The ", stringify!($field), " entry with this fully qualified name or alias.")]
            pub fn $by_name(&self, name: &str) -> Result<&$ty, LookupError> {
                self.$field.find(ObjectKind::$kind, &self.p4info.$field, name)
            }

            #[doc = concat!("The ", stringify!($field), " entry with this id.")]
            pub fn $by_id(&self, id: u32) -> Result<&$ty, LookupError> {
                self.$field.find_id(ObjectKind::$kind, &self.p4info.$field, id)
            }
        )*
    };
}

fn preambles<T>(
    items: &[T],
    preamble: impl Fn(&T) -> Option<&Preamble>,
) -> impl Iterator<Item = Option<&Preamble>> {
    items.iter().map(preamble)
}

/// The fully qualified name of an object, for error messages.
fn name_of(preamble: Option<&Preamble>) -> String {
    preamble.map(|p| p.name.clone()).unwrap_or_default()
}

impl P4InfoIndex {
    /// Indexes `p4info`; fails if an object lacks a preamble or two objects of one kind share
    /// an id or a fully qualified name.
    pub fn new(p4info: P4Info) -> Result<Self, P4InfoIndexError> {
        use ObjectKind as K;
        let p = &p4info;
        Ok(P4InfoIndex {
            tables: KindIndex::build(K::Table, preambles(&p.tables, |t| t.preamble.as_ref()))?,
            actions: KindIndex::build(K::Action, preambles(&p.actions, |a| a.preamble.as_ref()))?,
            action_profiles: KindIndex::build(
                K::ActionProfile,
                preambles(&p.action_profiles, |a| a.preamble.as_ref()),
            )?,
            counters: KindIndex::build(
                K::Counter,
                preambles(&p.counters, |c| c.preamble.as_ref()),
            )?,
            direct_counters: KindIndex::build(
                K::DirectCounter,
                preambles(&p.direct_counters, |c| c.preamble.as_ref()),
            )?,
            meters: KindIndex::build(K::Meter, preambles(&p.meters, |m| m.preamble.as_ref()))?,
            direct_meters: KindIndex::build(
                K::DirectMeter,
                preambles(&p.direct_meters, |m| m.preamble.as_ref()),
            )?,
            controller_packet_metadata: KindIndex::build(
                K::ControllerPacketMetadata,
                preambles(&p.controller_packet_metadata, |c| c.preamble.as_ref()),
            )?,
            value_sets: KindIndex::build(
                K::ValueSet,
                preambles(&p.value_sets, |v| v.preamble.as_ref()),
            )?,
            registers: KindIndex::build(
                K::Register,
                preambles(&p.registers, |r| r.preamble.as_ref()),
            )?,
            digests: KindIndex::build(K::Digest, preambles(&p.digests, |d| d.preamble.as_ref()))?,
            p4info,
        })
    }

    /// The indexed P4Info.
    pub fn p4info(&self) -> &P4Info {
        &self.p4info
    }

    lookups! {
        tables: Table, Table, table, table_by_id;
        actions: Action, Action, action, action_by_id;
        action_profiles: ActionProfile, ActionProfile, action_profile, action_profile_by_id;
        counters: Counter, Counter, counter, counter_by_id;
        direct_counters: DirectCounter, DirectCounter, direct_counter, direct_counter_by_id;
        meters: Meter, Meter, meter, meter_by_id;
        direct_meters: DirectMeter, DirectMeter, direct_meter, direct_meter_by_id;
        controller_packet_metadata: ControllerPacketMetadata, ControllerPacketMetadata,
            controller_packet_metadata, controller_packet_metadata_by_id;
        value_sets: ValueSet, ValueSet, value_set, value_set_by_id;
        registers: Register, Register, register, register_by_id;
        digests: Digest, Digest, digest, digest_by_id;
    }

    /// The match field `field` of the table named (or aliased) `table`.
    pub fn match_field(&self, table: &str, field: &str) -> Result<&MatchField, LookupError> {
        let t = self.table(table)?;
        t.match_fields
            .iter()
            .find(|m| m.name == field)
            .ok_or_else(|| LookupError::UnknownMatchField {
                table: name_of(t.preamble.as_ref()),
                field: field.to_string(),
            })
    }

    /// The match field with id `field_id` of the table with id `table_id`.
    pub fn match_field_by_id(
        &self,
        table_id: u32,
        field_id: u32,
    ) -> Result<&MatchField, LookupError> {
        let t = self.table_by_id(table_id)?;
        t.match_fields
            .iter()
            .find(|m| m.id == field_id)
            .ok_or_else(|| LookupError::UnknownMatchFieldId {
                table: name_of(t.preamble.as_ref()),
                id: field_id,
            })
    }

    /// The parameter `param` of the action named (or aliased) `action`.
    pub fn action_param(&self, action: &str, param: &str) -> Result<&Param, LookupError> {
        let a = self.action(action)?;
        a.params
            .iter()
            .find(|p| p.name == param)
            .ok_or_else(|| LookupError::UnknownParam {
                action: name_of(a.preamble.as_ref()),
                param: param.to_string(),
            })
    }

    /// The parameter with id `param_id` of the action with id `action_id`.
    pub fn action_param_by_id(&self, action_id: u32, param_id: u32) -> Result<&Param, LookupError> {
        let a = self.action_by_id(action_id)?;
        a.params
            .iter()
            .find(|p| p.id == param_id)
            .ok_or_else(|| LookupError::UnknownParamId {
                action: name_of(a.preamble.as_ref()),
                id: param_id,
            })
    }

    /// The direct counters attached to the table with id `table_id`.
    pub fn direct_counters_of_table(&self, table_id: u32) -> impl Iterator<Item = &DirectCounter> {
        self.p4info
            .direct_counters
            .iter()
            .filter(move |c| c.direct_table_id == table_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::p4rt::ids;
    use crate::p4rt::p4info_from_text;

    fn reference(name: &str) -> P4InfoIndex {
        let path = format!(
            "{}/tests/fixtures/p4c-reference/p4c-out/{name}.p4info.txtpb",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(&path).unwrap();
        P4InfoIndex::new(p4info_from_text(&text).unwrap()).unwrap()
    }

    fn preamble(id: u32, name: &str, alias: &str) -> Option<Preamble> {
        Some(Preamble {
            id,
            name: name.into(),
            alias: alias.into(),
            ..Default::default()
        })
    }

    #[test]
    fn finds_p4c_objects_by_name_alias_and_id() {
        let index = reference("ref2_ternary_counters");
        let acl = index.table("Ing.acl").unwrap();
        assert_eq!(acl.preamble.as_ref().unwrap().id, 39914931);
        assert_eq!(index.table("acl").unwrap(), acl);
        assert_eq!(index.table_by_id(39914931).unwrap(), acl);

        let dport = index.match_field("acl", "h.udp.dport").unwrap();
        assert_eq!((dport.id, dport.bitwidth), (3, 16));
        assert_eq!(index.match_field_by_id(39914931, 3).unwrap(), dport);

        let port = index.action_param("Ing.permit", "port").unwrap();
        assert_eq!((port.id, port.bitwidth), (1, 9));
        assert_eq!(index.action_param_by_id(27758871, 1).unwrap(), port);
        assert_eq!(
            index
                .action("NoAction")
                .unwrap()
                .preamble
                .as_ref()
                .unwrap()
                .id,
            21257015
        );

        let per_port = index.counter("per_port").unwrap();
        assert_eq!(per_port.size, 8);
        assert_eq!(
            ids::prefix_of(per_port.preamble.as_ref().unwrap().id),
            ids::COUNTER
        );

        let hits = index.direct_counter("Ing.acl_hits").unwrap();
        assert_eq!(hits.direct_table_id, 39914931);
        let attached: Vec<_> = index.direct_counters_of_table(39914931).collect();
        assert_eq!(attached, vec![hits]);

        let register = reference("ref3_register_clone_hash");
        assert_eq!(register.register("seen_per_port").unwrap().size, 8);
    }

    #[test]
    fn unknown_names_and_ids_are_typed_errors() {
        let index = reference("ref1_lpm_checksum");
        assert_eq!(
            index.table("Ing.nope"),
            Err(LookupError::UnknownName {
                kind: ObjectKind::Table,
                name: "Ing.nope".into()
            })
        );
        // An action's name is not a table's.
        assert!(index.table("Ing.route").is_err());
        assert_eq!(
            index.counter_by_id(7),
            Err(LookupError::UnknownId {
                kind: ObjectKind::Counter,
                id: 7
            })
        );
        assert_eq!(
            index.match_field("routes", "h.ip.src"),
            Err(LookupError::UnknownMatchField {
                table: "Ing.routes".into(),
                field: "h.ip.src".into()
            })
        );
        assert_eq!(
            index.action_param("route", "vlan"),
            Err(LookupError::UnknownParam {
                action: "Ing.route".into(),
                param: "vlan".into()
            })
        );
        let routes_id = index.table("routes").unwrap().preamble.as_ref().unwrap().id;
        assert!(matches!(
            index.match_field_by_id(routes_id, 9),
            Err(LookupError::UnknownMatchFieldId { id: 9, .. })
        ));
        assert!(index.digest("anything").is_err());
        assert_eq!(
            index.table("Ing.nope").unwrap_err().to_string(),
            "no table named `Ing.nope` in the P4Info"
        );
    }

    #[test]
    fn shared_alias_is_ambiguous_and_full_names_win() {
        let p4info = P4Info {
            digests: vec![
                Digest {
                    preamble: preamble(0x1700_0001, "Ing.learn", "learn"),
                    ..Default::default()
                },
                Digest {
                    preamble: preamble(0x1700_0002, "Egr.learn", "learn"),
                    ..Default::default()
                },
                Digest {
                    preamble: preamble(0x1700_0003, "notify", "notify"),
                    ..Default::default()
                },
                // Its alias is another digest's full name: the full name keeps winning.
                Digest {
                    preamble: preamble(0x1700_0004, "Egr.notify", "notify"),
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let index = P4InfoIndex::new(p4info).unwrap();
        assert_eq!(
            index.digest("learn"),
            Err(LookupError::AmbiguousAlias {
                kind: ObjectKind::Digest,
                name: "learn".into()
            })
        );
        assert_eq!(
            index
                .digest("Egr.learn")
                .unwrap()
                .preamble
                .as_ref()
                .unwrap()
                .id,
            0x1700_0002
        );
        assert_eq!(
            index
                .digest("notify")
                .unwrap()
                .preamble
                .as_ref()
                .unwrap()
                .id,
            0x1700_0003
        );
        assert_eq!(
            index
                .digest_by_id(0x1700_0004)
                .unwrap()
                .preamble
                .as_ref()
                .unwrap()
                .name,
            "Egr.notify"
        );
    }

    #[test]
    fn inconsistent_p4info_is_rejected() {
        let table = |id, name: &str| Table {
            preamble: preamble(id, name, ""),
            ..Default::default()
        };
        let duplicate_id = P4Info {
            tables: vec![table(0x0200_0001, "a"), table(0x0200_0001, "b")],
            ..Default::default()
        };
        assert_eq!(
            P4InfoIndex::new(duplicate_id).unwrap_err(),
            P4InfoIndexError::DuplicateId {
                kind: ObjectKind::Table,
                id: 0x0200_0001,
                first: "a".into(),
                second: "b".into()
            }
        );
        let duplicate_name = P4Info {
            tables: vec![table(0x0200_0001, "a"), table(0x0200_0002, "a")],
            ..Default::default()
        };
        assert_eq!(
            P4InfoIndex::new(duplicate_name).unwrap_err(),
            P4InfoIndexError::DuplicateName {
                kind: ObjectKind::Table,
                name: "a".into()
            }
        );
        let no_preamble = P4Info {
            registers: vec![Register::default()],
            ..Default::default()
        };
        assert_eq!(
            P4InfoIndex::new(no_preamble).unwrap_err(),
            P4InfoIndexError::MissingPreamble {
                kind: ObjectKind::Register,
                position: 0
            }
        );
    }
}
