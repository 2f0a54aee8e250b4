//! The entries of one match-action table and how a lookup picks one: exact keys through a hash
//! index, everything else through a list kept in match order (longest prefix first for lpm tables,
//! highest priority first for tables with ternary, range or optional keys).
//!
//! Priority convention: **P4Runtime's** — a higher number wins, and priorities are only allowed
//! (and required, > 0) on tables with a ternary, range or optional key. bmv2's own convention is
//! the inverse (a lower number wins); the only place it appears is the priority of const entries
//! in the JSON, which this module converts (`i32::MAX - bmv2 priority`, clamped) when loading.
//! Entries are identified by their match key plus priority, as in P4Runtime.

use std::collections::HashMap;

use super::pipeline::{width_mask, MatchKind, Table};

/// The value one key field of an entry matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatchValue {
    /// Also used for `valid` keys (0 or 1).
    Exact(u128),
    /// `value` has no bits set beyond the prefix.
    Lpm {
        value: u128,
        prefix_len: u32,
    },
    /// `value` has no bits set outside `mask`.
    Ternary {
        value: u128,
        mask: u128,
    },
    Range {
        low: u128,
        high: u128,
    },
    /// `None` matches anything.
    Optional(Option<u128>),
}

impl MatchValue {
    fn matches(&self, width: u32, v: u128) -> bool {
        match *self {
            MatchValue::Exact(x) | MatchValue::Optional(Some(x)) => v == x,
            MatchValue::Optional(None) => true,
            MatchValue::Lpm { value, prefix_len } => v & prefix_mask(width, prefix_len) == value,
            MatchValue::Ternary { value, mask } => v & mask == value,
            MatchValue::Range { low, high } => low <= v && v <= high,
        }
    }
}

/// The mask of the top `len` bits of a `width`-bit value.
pub fn prefix_mask(width: u32, len: u32) -> u128 {
    if len == 0 {
        0
    } else {
        width_mask(width) & !width_mask(width - len.min(width))
    }
}

/// An action and its arguments (one per parameter, in order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionCall {
    /// Index into `Program::actions`.
    pub action: usize,
    pub args: Vec<u128>,
}

/// A table entry as the control plane writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableEntry {
    /// One value per key field, in the table's key order.
    pub key: Vec<MatchValue>,
    /// P4Runtime priority (higher wins); 0 for tables without ternary/range/optional keys.
    pub priority: i32,
    pub action: ActionCall,
    /// Only on tables with `support_timeout`.
    pub idle_timeout_ns: Option<u64>,
}

/// What identifies an entry: its match key and priority.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EntryKey {
    pub key: Vec<MatchValue>,
    pub priority: i32,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CounterValue {
    pub packets: u64,
    pub bytes: u64,
}

impl CounterValue {
    pub fn add(&mut self, bytes: usize) {
        self.packets = self.packets.wrapping_add(1);
        self.bytes = self.bytes.wrapping_add(bytes as u64);
    }
}

/// A control-plane request the switch refuses. Each maps onto one P4Runtime status code
/// (noted per variant).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuntimeError {
    /// NOT_FOUND
    #[error("no table with index {0}")]
    NoSuchTable(usize),
    /// NOT_FOUND
    #[error("no counter array with index {0}")]
    NoSuchCounter(usize),
    /// NOT_FOUND
    #[error("no register array with index {0}")]
    NoSuchRegister(usize),
    /// INVALID_ARGUMENT
    #[error("table {table}: action {action} is not one of its actions")]
    ActionNotInTable { table: String, action: usize },
    /// INVALID_ARGUMENT
    #[error("{what}: expected {expected} values, got {got}")]
    WrongCount {
        what: String,
        expected: usize,
        got: usize,
    },
    /// INVALID_ARGUMENT
    #[error("table {table}, key {field}: a {expected} match needs a {expected} value")]
    WrongMatchKind {
        table: String,
        field: String,
        expected: &'static str,
    },
    /// INVALID_ARGUMENT
    #[error("{what}: value does not fit in {width} bits")]
    TooWide { what: String, width: u32 },
    /// INVALID_ARGUMENT
    #[error("{what}: invalid value: {reason}")]
    InvalidValue { what: String, reason: String },
    /// INVALID_ARGUMENT
    #[error("table {table}: {reason}")]
    BadPriority { table: String, reason: String },
    /// INVALID_ARGUMENT
    #[error("table {0} does not support idle timeouts")]
    NoIdleTimeout(String),
    /// ALREADY_EXISTS
    #[error("table {0}: an entry with this key and priority already exists")]
    DuplicateEntry(String),
    /// NOT_FOUND
    #[error("table {0}: no entry with this key and priority")]
    NoSuchEntry(String),
    /// RESOURCE_EXHAUSTED
    #[error("table {table} is full ({max_size} entries)")]
    TableFull { table: String, max_size: usize },
    /// PERMISSION_DENIED
    #[error("table {0}: the default action is const")]
    ConstDefaultAction(String),
    /// PERMISSION_DENIED
    #[error("table {0} has const entries and cannot be changed")]
    ConstTable(String),
    /// INVALID_ARGUMENT
    #[error("table {0} has no direct counter")]
    NoDirectCounter(String),
    /// INVALID_ARGUMENT
    #[error("counter {0} is direct; use the table entry to reach it")]
    CounterIsDirect(String),
    /// OUT_OF_RANGE
    #[error("{what}: index {index} is out of range (size {size})")]
    IndexOutOfRange {
        what: String,
        index: usize,
        size: usize,
    },
    /// INVALID_ARGUMENT
    #[error("clone session {0}: {1}")]
    BadCloneSession(u32, String),
    /// NOT_FOUND
    #[error("no clone session {0}")]
    NoSuchCloneSession(u32),
}

/// An entry as stored, with its runtime state.
#[derive(Debug, Clone)]
pub struct StoredEntry {
    pub entry: TableEntry,
    pub counter: CounterValue,
    /// Switch clock (ns) of the last hit, or of insertion.
    pub last_hit_ns: u64,
    /// An idle-timeout notification went out and no hit happened since.
    pub idle_reported: bool,
}

/// The state of one table.
#[derive(Debug, Clone)]
pub struct TableState {
    /// In match order (see module doc); for exact-only tables, insertion order.
    pub entries: Vec<StoredEntry>,
    /// Exact-only tables: key values → index in `entries`.
    exact_index: Option<HashMap<Box<[u128]>, usize>>,
    pub default_action: Option<ActionCall>,
    pub immutable: bool,
}

impl TableState {
    pub fn new(table: &Table) -> TableState {
        let exact_only = table
            .keys
            .iter()
            .all(|k| matches!(k.kind, MatchKind::Exact | MatchKind::Valid));
        TableState {
            entries: Vec::new(),
            exact_index: exact_only.then(HashMap::new),
            default_action: table.default_action.as_ref().map(|d| ActionCall {
                action: d.action,
                args: d.args.clone(),
            }),
            immutable: !table.const_entries.is_empty(),
        }
    }

    /// The entry matching `values` (one per key field, static masks applied), if any.
    pub fn lookup(&self, table: &Table, values: &[u128]) -> Option<usize> {
        if let Some(index) = &self.exact_index {
            return index.get(values).copied();
        }
        self.entries.iter().position(|e| {
            e.entry
                .key
                .iter()
                .zip(&table.keys)
                .zip(values)
                .all(|((m, k), &v)| m.matches(k.width, v))
        })
    }

    pub fn find(&self, key: &EntryKey) -> Option<usize> {
        if let Some(index) = &self.exact_index {
            let values = exact_values(&key.key)?;
            return index.get(values.as_slice()).copied();
        }
        self.entries
            .iter()
            .position(|e| e.entry.priority == key.priority && e.entry.key == key.key)
    }

    /// Inserts a checked entry (see `check_entry`); `now_ns` starts its idle clock.
    pub fn insert(
        &mut self,
        table: &Table,
        entry: TableEntry,
        now_ns: u64,
    ) -> Result<(), RuntimeError> {
        let id = EntryKey {
            key: entry.key.clone(),
            priority: entry.priority,
        };
        if self.find(&id).is_some() {
            return Err(RuntimeError::DuplicateEntry(table.name.clone()));
        }
        if self.entries.len() >= table.max_size {
            return Err(RuntimeError::TableFull {
                table: table.name.clone(),
                max_size: table.max_size,
            });
        }
        let stored = StoredEntry {
            entry,
            counter: CounterValue::default(),
            last_hit_ns: now_ns,
            idle_reported: false,
        };
        if let Some(index) = &mut self.exact_index {
            let values = exact_values(&stored.entry.key).unwrap_or_default();
            index.insert(values.into_boxed_slice(), self.entries.len());
            self.entries.push(stored);
            return Ok(());
        }
        let rank = |e: &TableEntry| -> i64 {
            if table.needs_priority() {
                i64::from(e.priority)
            } else {
                // lpm tables: the longest prefix first.
                e.key
                    .iter()
                    .map(|m| match m {
                        MatchValue::Lpm { prefix_len, .. } => i64::from(*prefix_len),
                        _ => 0,
                    })
                    .sum()
            }
        };
        let r = rank(&stored.entry);
        // After all entries of the same rank: among equals, the older entry wins.
        let at = self.entries.partition_point(|e| rank(&e.entry) >= r);
        self.entries.insert(at, stored);
        Ok(())
    }

    pub fn remove(&mut self, at: usize) -> StoredEntry {
        if let Some(index) = &mut self.exact_index {
            let removed = self.entries.swap_remove(at);
            if let Some(values) = exact_values(&removed.entry.key) {
                index.remove(values.as_slice());
            }
            if let Some(moved) = self.entries.get(at) {
                if let Some(values) = exact_values(&moved.entry.key) {
                    index.insert(values.into_boxed_slice(), at);
                }
            }
            removed
        } else {
            self.entries.remove(at)
        }
    }
}

fn exact_values(key: &[MatchValue]) -> Option<Vec<u128>> {
    key.iter()
        .map(|m| match m {
            MatchValue::Exact(v) => Some(*v),
            _ => None,
        })
        .collect()
}

/// Checks an entry against the table's declaration: key kinds, widths, canonical masks,
/// priority rules, action membership and argument widths.
pub fn check_entry(
    table: &Table,
    params: &[super::pipeline::ActionParam],
    entry: &TableEntry,
) -> Result<(), RuntimeError> {
    if entry.key.len() != table.keys.len() {
        return Err(RuntimeError::WrongCount {
            what: format!("table {} key", table.name),
            expected: table.keys.len(),
            got: entry.key.len(),
        });
    }
    for (m, k) in entry.key.iter().zip(&table.keys) {
        let what = format!("table {}, key {}", table.name, k.name);
        let wrong = || RuntimeError::WrongMatchKind {
            table: table.name.clone(),
            field: k.name.clone(),
            expected: k.kind.name(),
        };
        let fits = |v: u128| {
            if v & !width_mask(k.width) != 0 {
                Err(RuntimeError::TooWide {
                    what: what.clone(),
                    width: k.width,
                })
            } else {
                Ok(())
            }
        };
        match (k.kind, m) {
            (MatchKind::Exact | MatchKind::Valid, MatchValue::Exact(v)) => fits(*v)?,
            (MatchKind::Lpm, MatchValue::Lpm { value, prefix_len }) => {
                fits(*value)?;
                if *prefix_len > k.width {
                    return Err(RuntimeError::InvalidValue {
                        what,
                        reason: format!("prefix length {prefix_len} > width {}", k.width),
                    });
                }
                if value & !prefix_mask(k.width, *prefix_len) != 0 {
                    return Err(RuntimeError::InvalidValue {
                        what,
                        reason: "bits set beyond the prefix".into(),
                    });
                }
            }
            (MatchKind::Ternary, MatchValue::Ternary { value, mask }) => {
                fits(*value)?;
                fits(*mask)?;
                if value & !mask != 0 {
                    return Err(RuntimeError::InvalidValue {
                        what,
                        reason: "bits set outside the mask".into(),
                    });
                }
            }
            (MatchKind::Range, MatchValue::Range { low, high }) => {
                fits(*low)?;
                fits(*high)?;
                if low > high {
                    return Err(RuntimeError::InvalidValue {
                        what,
                        reason: "low > high".into(),
                    });
                }
            }
            (MatchKind::Optional, MatchValue::Optional(v)) => {
                if let Some(v) = v {
                    fits(*v)?;
                }
            }
            _ => return Err(wrong()),
        }
    }
    if table.needs_priority() {
        if entry.priority <= 0 {
            return Err(RuntimeError::BadPriority {
                table: table.name.clone(),
                reason: "entries of this table need a priority > 0".into(),
            });
        }
    } else if entry.priority != 0 {
        return Err(RuntimeError::BadPriority {
            table: table.name.clone(),
            reason: "this table has no ternary/range/optional key; priority must be 0".into(),
        });
    }
    if entry.idle_timeout_ns.is_some() && !table.support_timeout {
        return Err(RuntimeError::NoIdleTimeout(table.name.clone()));
    }
    check_action(table, params, &entry.action)
}

/// Checks that `call` is one of the table's actions with fitting arguments.
pub fn check_action(
    table: &Table,
    params: &[super::pipeline::ActionParam],
    call: &ActionCall,
) -> Result<(), RuntimeError> {
    if !table.actions.contains(&call.action) {
        return Err(RuntimeError::ActionNotInTable {
            table: table.name.clone(),
            action: call.action,
        });
    }
    if call.args.len() != params.len() {
        return Err(RuntimeError::WrongCount {
            what: format!("table {} action arguments", table.name),
            expected: params.len(),
            got: call.args.len(),
        });
    }
    for (a, p) in call.args.iter().zip(params) {
        if a & !width_mask(p.width) != 0 {
            return Err(RuntimeError::TooWide {
                what: format!("table {} action parameter {}", table.name, p.name),
                width: p.width,
            });
        }
    }
    Ok(())
}

/// Reads a big-endian byte string (P4Runtime's encoding) as a value of `width` bits.
pub fn value_from_bytes(bytes: &[u8], width: u32) -> Result<u128, RuntimeError> {
    let significant = bytes.iter().skip_while(|&&b| b == 0).count();
    if significant > 16 {
        return Err(RuntimeError::TooWide {
            what: "byte string".into(),
            width,
        });
    }
    let v = bytes
        .iter()
        .skip(bytes.len() - significant)
        .fold(0u128, |acc, &b| (acc << 8) | u128::from(b));
    if v & !width_mask(width) != 0 {
        return Err(RuntimeError::TooWide {
            what: "byte string".into(),
            width,
        });
    }
    Ok(v)
}

/// Writes a `width`-bit value as the shortest big-endian byte string (P4Runtime canonical form:
/// at least one byte).
pub fn value_to_bytes(v: u128) -> Vec<u8> {
    let bytes = v.to_be_bytes();
    let first = bytes.iter().position(|&b| b != 0).unwrap_or(15);
    bytes[first..].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_masks() {
        assert_eq!(prefix_mask(32, 0), 0);
        assert_eq!(prefix_mask(32, 8), 0xff00_0000);
        assert_eq!(prefix_mask(32, 32), 0xffff_ffff);
        assert_eq!(prefix_mask(128, 1), 1u128 << 127);
        assert_eq!(prefix_mask(128, 128), u128::MAX);
        assert_eq!(prefix_mask(9, 3), 0b111_000_000);
    }

    #[test]
    fn lpm_ternary_range_optional_match() {
        let lpm = MatchValue::Lpm {
            value: 0x0a01_0000,
            prefix_len: 16,
        };
        assert!(lpm.matches(32, 0x0a01_0203));
        assert!(!lpm.matches(32, 0x0a02_0203));
        let any = MatchValue::Lpm {
            value: 0,
            prefix_len: 0,
        };
        assert!(any.matches(32, 0xdead_beef));
        let t = MatchValue::Ternary {
            value: 0x8100,
            mask: 0xefff,
        };
        assert!(t.matches(16, 0x8100));
        assert!(t.matches(16, 0x9100));
        assert!(!t.matches(16, 0x8200));
        let r = MatchValue::Range {
            low: 1000,
            high: 2000,
        };
        assert!(r.matches(16, 1000) && r.matches(16, 2000) && r.matches(16, 1500));
        assert!(!r.matches(16, 999) && !r.matches(16, 2001));
        assert!(MatchValue::Optional(None).matches(8, 7));
        assert!(MatchValue::Optional(Some(7)).matches(8, 7));
        assert!(!MatchValue::Optional(Some(7)).matches(8, 6));
    }

    #[test]
    fn bytes_round_trip() {
        assert_eq!(value_from_bytes(&[0x01, 0xff], 9), Ok(0x1ff));
        assert!(value_from_bytes(&[0x02, 0x00], 9).is_err());
        assert_eq!(value_from_bytes(&[0, 0, 0, 5], 8), Ok(5));
        assert_eq!(value_from_bytes(&[], 8), Ok(0));
        assert_eq!(value_to_bytes(0), vec![0]);
        assert_eq!(value_to_bytes(0x1ff), vec![0x01, 0xff]);
        assert!(value_from_bytes(&[1; 17], 128).is_err());
        assert_eq!(value_from_bytes(&[0xff; 16], 128), Ok(u128::MAX));
    }
}
