//! The entries of one match-action table and how a lookup picks one: exact keys through one hash
//! map over the whole key; exact keys plus one lpm key through one hash map per prefix length in
//! use, probed from the longest (or, for a key of one lpm field of at most 32 bits, straight at
//! the longest length covering the value, which a `LengthTrie` keeps); ternary, range or optional keys through a list kept in priority
//! order, scanned up to the first match. Keys that fit in 64 (or 128) bits are hashed as one
//! packed integer.
//!
//! Priority convention: **P4Runtime's** — a higher number wins, and priorities are only allowed
//! (and required, > 0) on tables with a ternary, range or optional key. bmv2's own convention is
//! the inverse (a lower number wins); the only place it appears is the priority of const entries
//! in the JSON, which this module converts (`i32::MAX - bmv2 priority`, clamped) when loading.
//! Entries are identified by their match key plus priority, as in P4Runtime.

use std::collections::HashMap;

use foldhash::fast::RandomState;

use super::length_trie::LengthTrie;
use super::pipeline::{width_mask, KeySource, MatchKind, Table};

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
    /// Switch clock (ns) the idle timer last started: insertion, a hit, an idle-timeout
    /// notification, or a MODIFY that changed `idle_timeout_ns`. The entry is due for a
    /// notification once `idle_timeout_ns` has passed since then. Kept apart from `last_hit_ns`
    /// so that a notification does not falsify `time_since_last_hit`.
    pub idle_timer_ns: u64,
}

/// The state of one table.
#[derive(Debug, Clone)]
pub struct TableState {
    /// Tables with ternary, range or optional keys: in match order (highest priority first; among
    /// equals, the older entry first). Other tables: in insertion order, except that removing an
    /// entry moves the last one into its place.
    pub entries: Vec<StoredEntry>,
    index: Index,
    pub default_action: Option<ActionCall>,
    /// The default entry's direct counter (tables with a direct counter): every miss counts
    /// here, as P4Runtime treats the default entry like any other entry for direct resources.
    pub default_counter: CounterValue,
    pub immutable: bool,
    /// For tables whose key is read from fields alone and packs into 64 bits: how to pack it.
    field_key: Option<FieldKey>,
}

/// How to pack a table's key straight from the field values, as `pack` packs a key buffer, for
/// a lookup in a 64-bit map without filling a key buffer first.
#[derive(Debug, Clone)]
struct FieldKey {
    /// Per key field, in key order: its slot, the bits it keeps (static mask and width), its
    /// width.
    parts: Box<[(usize, u64, u32)]>,
    /// The lpm field's position in `parts` (lpm tables).
    lpm: Option<usize>,
}

impl FieldKey {
    fn new(table: &Table, index: &Index) -> Option<FieldKey> {
        let lpm = match index {
            Index::Exact(m) if m.map.is_narrow() => None,
            // Every length's map is as wide as the whole key.
            Index::Lpm { field, .. } if table.keys.iter().map(|k| k.width).sum::<u32>() <= 64 => {
                Some(*field)
            }
            _ => return None,
        };
        let parts = table
            .keys
            .iter()
            .map(|k| match k.source {
                KeySource::Field(f) => {
                    let keep = k.mask.unwrap_or(u128::MAX) & width_mask(k.width);
                    Some((f.slot as usize, keep as u64, k.width))
                }
                KeySource::Valid(_) => None,
            })
            .collect::<Option<_>>()?;
        Some(FieldKey { parts, lpm })
    }
}

/// How a lookup finds the matching entry.
#[derive(Debug, Clone)]
enum Index {
    /// Exact (and valid) keys only: one hash map over the whole key.
    Exact(KeyMap),
    /// Exact keys and one lpm key: one hash map per prefix length in use, longest first; the
    /// first map holding the key masked to its prefix length has the longest matching prefix.
    Lpm {
        /// Which key field is the lpm one, and its width.
        field: usize,
        width: u32,
        lengths: Vec<PrefixLength>,
        /// When the key is that field alone, of at most 32 bits: the longest length covering
        /// each value, and each length's position in `lengths` (`u8::MAX`: none).
        trie: Option<LengthTrie>,
        by_len: Vec<u8>,
    },
    /// Ternary, range or optional keys: `entries` scanned in match order, up to the first match.
    Scan,
}

/// The entries of an lpm table with one prefix length.
#[derive(Debug, Clone)]
struct PrefixLength {
    prefix_len: u32,
    /// Applied to a lookup's values (packed form: to the packed key) before probing `map`.
    value_mask: u128,
    packed_mask: u128,
    map: KeyMap,
    /// One bit per value of the lpm field's top `filter_bits` bits, set when an entry of this
    /// length starts with them: a lookup whose bit is clear skips this length's map (most
    /// lengths, in a routing table, for most addresses).
    filter: Vec<u64>,
    /// The filter bit of a value is `(value >> filter_shift) & filter_mask`: its top
    /// `filter_bits` bits (none, bit 0, when `filter_bits` is 0).
    filter_shift: u32,
    filter_mask: usize,
}

/// How many top bits of the lpm field a length's filter looks at (2^16 bits: 8 kB at most).
const FILTER_BITS: u32 = 16;

impl PrefixLength {
    /// A length's lookup state with no entries yet: `len` of the `width`-bit lpm field, whose
    /// map has keys of `widths` (masked with `masks`, as the entries of this length are).
    fn new(len: u32, width: u32, widths: Box<[u32]>, masks: &[u128], field: usize) -> PrefixLength {
        let filter_bits = len.min(FILTER_BITS).min(width);
        PrefixLength {
            prefix_len: len,
            value_mask: masks[field],
            packed_mask: pack(&widths, masks),
            map: KeyMap::new(widths),
            filter: vec![0; (1usize << filter_bits).div_ceil(64)],
            filter_shift: width - filter_bits,
            filter_mask: (1usize << filter_bits) - 1,
        }
    }

    /// The filter bit of lpm value `v` (a value of the field's width).
    #[inline]
    fn filter_bit(&self, v: u128) -> usize {
        (v >> self.filter_shift) as usize & self.filter_mask
    }

    #[inline]
    fn may_hold(&self, v: u128) -> bool {
        let bit = self.filter_bit(v);
        self.filter[bit / 64] & (1 << (bit % 64)) != 0
    }

    /// The entry of a whole key packed into at most 64 bits, cut to this length.
    #[inline]
    fn get_packed(&self, packed: u64) -> Option<usize> {
        match &self.map.map {
            KeyMapInner::Narrow(m) => m.get(&(packed & self.packed_mask as u64)).copied(),
            _ => None,
        }
    }

    fn note(&mut self, v: u128) {
        let bit = self.filter_bit(v);
        self.filter[bit / 64] |= 1 << (bit % 64);
    }
}

/// Key values → position in `entries`. Keys whose fields fit in 64 or 128 bits together are
/// packed into one integer (no allocation, one cheap hash; 64 bits: half the memory, a cheaper
/// hash and compare); wider ones are kept as slices.
#[derive(Debug, Clone)]
struct KeyMap {
    /// Key field widths, in key order.
    widths: Box<[u32]>,
    map: KeyMapInner,
}

#[derive(Debug, Clone)]
enum KeyMapInner {
    /// Keys of at most 64 bits (say two IPv4 addresses).
    Narrow(HashMap<u64, usize, RandomState>),
    Packed(HashMap<u128, usize, RandomState>),
    Wide(HashMap<Box<[u128]>, usize, RandomState>),
}

/// Concatenates `values` (each cut to its width), first value in the high bits. Only for keys
/// whose widths sum to at most 128.
fn pack(widths: &[u32], values: &[u128]) -> u128 {
    widths.iter().zip(values).fold(0u128, |acc, (&w, &v)| {
        let v = v & width_mask(w);
        if w >= 128 {
            v
        } else {
            (acc << w) | v
        }
    })
}

impl KeyMapInner {
    fn is_narrow(&self) -> bool {
        matches!(self, KeyMapInner::Narrow(_))
    }
}

impl KeyMap {
    fn new(widths: Box<[u32]>) -> KeyMap {
        let bits = widths.iter().map(|&w| u64::from(w)).sum::<u64>();
        KeyMap {
            map: if bits <= 64 {
                KeyMapInner::Narrow(HashMap::default())
            } else if bits <= 128 {
                KeyMapInner::Packed(HashMap::default())
            } else {
                KeyMapInner::Wide(HashMap::default())
            },
            widths,
        }
    }

    fn is_empty(&self) -> bool {
        match &self.map {
            KeyMapInner::Narrow(m) => m.is_empty(),
            KeyMapInner::Packed(m) => m.is_empty(),
            KeyMapInner::Wide(m) => m.is_empty(),
        }
    }

    fn get(&self, values: &[u128]) -> Option<usize> {
        match &self.map {
            // The packed key fits in 64 bits: the cast keeps all of it.
            KeyMapInner::Narrow(m) => m.get(&(pack(&self.widths, values) as u64)).copied(),
            KeyMapInner::Packed(m) => m.get(&pack(&self.widths, values)).copied(),
            KeyMapInner::Wide(m) => m.get(values).copied(),
        }
    }

    fn get_mut(&mut self, values: &[u128]) -> Option<&mut usize> {
        match &mut self.map {
            KeyMapInner::Narrow(m) => m.get_mut(&(pack(&self.widths, values) as u64)),
            KeyMapInner::Packed(m) => m.get_mut(&pack(&self.widths, values)),
            KeyMapInner::Wide(m) => m.get_mut(values),
        }
    }

    fn insert(&mut self, values: &[u128], at: usize) {
        match &mut self.map {
            KeyMapInner::Narrow(m) => {
                m.insert(pack(&self.widths, values) as u64, at);
            }
            KeyMapInner::Packed(m) => {
                m.insert(pack(&self.widths, values), at);
            }
            KeyMapInner::Wide(m) => {
                m.insert(values.into(), at);
            }
        }
    }

    fn remove(&mut self, values: &[u128]) {
        match &mut self.map {
            KeyMapInner::Narrow(m) => {
                m.remove(&(pack(&self.widths, values) as u64));
            }
            KeyMapInner::Packed(m) => {
                m.remove(&pack(&self.widths, values));
            }
            KeyMapInner::Wide(m) => {
                m.remove(values);
            }
        }
    }
}

/// An entry key as the values an indexed table hashes, plus the lpm key's prefix length
/// (`None` for exact-only tables). `None` if the key holds a kind the index cannot hold.
fn indexed_key(key: &[MatchValue]) -> Option<(Vec<u128>, Option<u32>)> {
    let mut prefix = None;
    let values = key
        .iter()
        .map(|m| match *m {
            MatchValue::Exact(v) => Some(v),
            MatchValue::Lpm { value, prefix_len } => {
                prefix = Some(prefix_len);
                Some(value)
            }
            _ => None,
        })
        .collect::<Option<Vec<_>>>()?;
    Some((values, prefix))
}

impl Index {
    fn new(table: &Table) -> Index {
        let widths: Box<[u32]> = table.keys.iter().map(|k| k.width).collect();
        let lpm: Vec<usize> = (0..table.keys.len())
            .filter(|&i| table.keys[i].kind == MatchKind::Lpm)
            .collect();
        let others_exact = table
            .keys
            .iter()
            .all(|k| matches!(k.kind, MatchKind::Exact | MatchKind::Valid | MatchKind::Lpm));
        match lpm.as_slice() {
            [] if others_exact => Index::Exact(KeyMap::new(widths)),
            [field] if others_exact => {
                let width = table.keys[*field].width;
                Index::Lpm {
                    field: *field,
                    width,
                    lengths: Vec::new(),
                    trie: (table.keys.len() == 1)
                        .then(|| LengthTrie::new(width))
                        .flatten(),
                    by_len: vec![u8::MAX; width as usize + 1],
                }
            }
            _ => Index::Scan,
        }
    }

    /// The map holding entries with this key (for lpm tables, of this prefix length), if any.
    fn map_mut(&mut self, prefix: Option<u32>) -> Option<&mut KeyMap> {
        match (self, prefix) {
            (Index::Exact(m), None) => Some(m),
            (Index::Lpm { lengths, .. }, Some(len)) => lengths
                .iter_mut()
                .find(|l| l.prefix_len == len)
                .map(|l| &mut l.map),
            _ => None,
        }
    }

    fn map(&self, prefix: Option<u32>) -> Option<&KeyMap> {
        match (self, prefix) {
            (Index::Exact(m), None) => Some(m),
            (Index::Lpm { lengths, .. }, Some(len)) => {
                lengths.iter().find(|l| l.prefix_len == len).map(|l| &l.map)
            }
            _ => None,
        }
    }
}

impl TableState {
    pub fn new(table: &Table) -> TableState {
        let index = Index::new(table);
        TableState {
            entries: Vec::new(),
            field_key: FieldKey::new(table, &index),
            index,
            default_action: table.default_action.as_ref().map(|d| ActionCall {
                action: d.action,
                args: d.args.clone(),
            }),
            default_counter: CounterValue::default(),
            immutable: !table.const_entries.is_empty(),
        }
    }

    /// The entry matching `values` (one per key field, each within its width, static masks
    /// applied), if any. Lpm tables probe by overwriting the lpm value in `values` with its
    /// prefixes; it is restored before returning.
    pub fn lookup(&self, table: &Table, values: &mut [u128]) -> Option<usize> {
        match &self.index {
            Index::Exact(map) => map.get(values),
            Index::Lpm { field, lengths, .. } => {
                let first = lengths.first()?;
                let original = values[*field];
                // Every length's map has the table's key widths, so the same kind of map.
                match first.map.map {
                    KeyMapInner::Narrow(_) => {
                        let full = pack(&first.map.widths, values) as u64;
                        return lengths.iter().filter(|l| l.may_hold(original)).find_map(
                            |l| match &l.map.map {
                                KeyMapInner::Narrow(m) => {
                                    m.get(&(full & l.packed_mask as u64)).copied()
                                }
                                _ => None,
                            },
                        );
                    }
                    KeyMapInner::Packed(_) => {
                        let full = pack(&first.map.widths, values);
                        return lengths.iter().filter(|l| l.may_hold(original)).find_map(
                            |l| match &l.map.map {
                                KeyMapInner::Packed(m) => m.get(&(full & l.packed_mask)).copied(),
                                _ => None,
                            },
                        );
                    }
                    KeyMapInner::Wide(_) => {}
                }
                let hit = lengths
                    .iter()
                    .filter(|l| l.may_hold(original))
                    .find_map(|l| {
                        values[*field] = original & l.value_mask;
                        l.map.get(values)
                    });
                values[*field] = original;
                hit
            }
            Index::Scan => self.entries.iter().position(|e| {
                e.entry
                    .key
                    .iter()
                    .zip(&table.keys)
                    .zip(values.iter())
                    .all(|((m, k), &v)| m.matches(k.width, v))
            }),
        }
    }

    /// `lookup` for tables whose key packs straight from the field values (`values`, by slot,
    /// each within its width); `None` for the other tables.
    #[inline]
    pub fn lookup_fields(&self, values: &[u128]) -> Option<Option<usize>> {
        let plan = self.field_key.as_ref()?;
        let value =
            |&(slot, keep, _): &(usize, u64, u32)| values.get(slot).map_or(0, |&v| v as u64) & keep;
        let mut packed = 0u64;
        for part in &plan.parts {
            let width = part.2;
            packed = if width >= 64 {
                value(part)
            } else {
                (packed << width) | value(part)
            };
        }
        match (&self.index, plan.lpm) {
            (
                Index::Exact(KeyMap {
                    map: KeyMapInner::Narrow(m),
                    ..
                }),
                None,
            ) => Some(m.get(&packed).copied()),
            (
                Index::Lpm {
                    lengths,
                    trie: Some(trie),
                    by_len,
                    ..
                },
                Some(_),
            ) => {
                // The key is the lpm field alone: `packed` is its value.
                let longest = trie
                    .longest(packed as u32)
                    .and_then(|len| lengths.get(usize::from(*by_len.get(len as usize)?)));
                Some(longest.and_then(|l| l.get_packed(packed)))
            }
            (Index::Lpm { lengths, .. }, Some(field)) => {
                let lpm_value = u128::from(value(plan.parts.get(field)?));
                Some(
                    lengths
                        .iter()
                        .filter(|l| l.may_hold(lpm_value))
                        .find_map(|l| l.get_packed(packed)),
                )
            }
            _ => None,
        }
    }

    pub fn find(&self, key: &EntryKey) -> Option<usize> {
        if let Index::Scan = self.index {
            return self
                .entries
                .iter()
                .position(|e| e.entry.priority == key.priority && e.entry.key == key.key);
        }
        let (values, prefix) = indexed_key(&key.key)?;
        self.index.map(prefix)?.get(&values)
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
            idle_timer_ns: now_ns,
        };
        if let Index::Scan = self.index {
            // After all entries of the same priority: among equals, the older entry wins.
            let p = stored.entry.priority;
            let at = self.entries.partition_point(|e| e.entry.priority >= p);
            self.entries.insert(at, stored);
            return Ok(());
        }
        // `check_entry` made the key kinds those of the table, which the index holds.
        let Some((values, prefix)) = indexed_key(&stored.entry.key) else {
            return Err(RuntimeError::WrongMatchKind {
                table: table.name.clone(),
                field: String::new(),
                expected: "exact or lpm",
            });
        };
        if let (
            Index::Lpm {
                field,
                width,
                lengths,
                by_len,
                ..
            },
            Some(len),
        ) = (&mut self.index, prefix)
        {
            if !lengths.iter().any(|l| l.prefix_len == len) {
                let at = lengths.partition_point(|l| l.prefix_len > len);
                let masks: Vec<u128> = table
                    .keys
                    .iter()
                    .enumerate()
                    .map(|(i, k)| {
                        if i == *field {
                            prefix_mask(k.width, len)
                        } else {
                            width_mask(k.width)
                        }
                    })
                    .collect();
                let widths: Box<[u32]> = table.keys.iter().map(|k| k.width).collect();
                lengths.insert(at, PrefixLength::new(len, *width, widths, &masks, *field));
                index_lengths(lengths, by_len);
            }
            let lpm_value = values[*field];
            if let Some(l) = lengths.iter_mut().find(|l| l.prefix_len == len) {
                l.note(lpm_value);
            }
        }
        let position = self.entries.len();
        match self.index.map_mut(prefix) {
            Some(map) => map.insert(&values, position),
            None => {
                return Err(RuntimeError::WrongMatchKind {
                    table: table.name.clone(),
                    field: String::new(),
                    expected: "exact or lpm",
                })
            }
        }
        if let (Index::Lpm { trie, .. }, Some(len)) = (&mut self.index, prefix) {
            // A trie that cannot grow (2^24 nodes) gives way to probing the lengths.
            if trie
                .as_mut()
                .is_some_and(|t| !t.insert(values[0] as u32, len))
            {
                *trie = None;
            }
        }
        self.entries.push(stored);
        Ok(())
    }

    /// Rebuilds the lookup filter of prefix length `prefix` (lpm tables) from the entries left:
    /// a removal may have taken the last entry behind one of its bits.
    fn refilter(&mut self, prefix: Option<u32>) {
        let (Index::Lpm { field, lengths, .. }, Some(len)) = (&mut self.index, prefix) else {
            return;
        };
        let Some(l) = lengths.iter_mut().find(|l| l.prefix_len == len) else {
            return;
        };
        l.filter.fill(0);
        for e in &self.entries {
            if let Some(MatchValue::Lpm { value, prefix_len }) = e.entry.key.get(*field) {
                if *prefix_len == len {
                    l.note(*value);
                }
            }
        }
    }

    pub fn remove(&mut self, at: usize) -> StoredEntry {
        if let Index::Scan = self.index {
            return self.entries.remove(at);
        }
        let removed = self.entries.swap_remove(at);
        if let Some((values, prefix)) = indexed_key(&removed.entry.key) {
            if let Some(map) = self.index.map_mut(prefix) {
                map.remove(&values);
            }
            if let (
                Index::Lpm {
                    lengths,
                    trie,
                    by_len,
                    width,
                    ..
                },
                Some(len),
            ) = (&mut self.index, prefix)
            {
                lengths.retain(|l| l.prefix_len != len || !l.map.is_empty());
                index_lengths(lengths, by_len);
                if let Some(trie) = trie {
                    // The longest other prefix covering the removed one takes over.
                    let value = values[0];
                    let shorter = lengths
                        .iter()
                        .filter(|l| l.prefix_len < len)
                        .find(|l| {
                            l.map
                                .get(&[value & prefix_mask(*width, l.prefix_len)])
                                .is_some()
                        })
                        .map(|l| l.prefix_len);
                    trie.remove(value as u32, len, shorter);
                }
            }
            self.refilter(prefix);
        }
        if let Some(moved) = self.entries.get(at) {
            if let Some((values, prefix)) = indexed_key(&moved.entry.key) {
                if let Some(slot) = self.index.map_mut(prefix).and_then(|m| m.get_mut(&values)) {
                    *slot = at;
                }
            }
        }
        removed
    }
}

/// Notes each length's position in `lengths` in `by_len`.
fn index_lengths(lengths: &[PrefixLength], by_len: &mut [u8]) {
    by_len.fill(u8::MAX);
    for (i, l) in lengths.iter().enumerate() {
        if let Some(slot) = by_len.get_mut(l.prefix_len as usize) {
            *slot = u8::try_from(i).unwrap_or(u8::MAX);
        }
    }
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
        // Built only for an error: inserting many entries should not format strings.
        let what = || format!("table {}, key {}", table.name, k.name);
        let wrong = || RuntimeError::WrongMatchKind {
            table: table.name.clone(),
            field: k.name.clone(),
            expected: k.kind.name(),
        };
        let fits = |v: u128| {
            if v & !width_mask(k.width) != 0 {
                Err(RuntimeError::TooWide {
                    what: what(),
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
                        what: what(),
                        reason: format!("prefix length {prefix_len} > width {}", k.width),
                    });
                }
                if value & !prefix_mask(k.width, *prefix_len) != 0 {
                    return Err(RuntimeError::InvalidValue {
                        what: what(),
                        reason: "bits set beyond the prefix".into(),
                    });
                }
            }
            (MatchKind::Ternary, MatchValue::Ternary { value, mask }) => {
                fits(*value)?;
                fits(*mask)?;
                if value & !mask != 0 {
                    return Err(RuntimeError::InvalidValue {
                        what: what(),
                        reason: "bits set outside the mask".into(),
                    });
                }
            }
            (MatchKind::Range, MatchValue::Range { low, high }) => {
                fits(*low)?;
                fits(*high)?;
                if low > high {
                    return Err(RuntimeError::InvalidValue {
                        what: what(),
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
    fn table_with(keys: &[(MatchKind, u32)]) -> Table {
        use super::super::pipeline::{FieldRef, KeyField, KeySource, TableNext};
        Table {
            name: "t".into(),
            json_id: 0,
            keys: keys
                .iter()
                .enumerate()
                .map(|(i, &(kind, width))| KeyField {
                    name: format!("k{i}"),
                    kind,
                    source: KeySource::Field(FieldRef {
                        slot: i as u32,
                        header: 0,
                        width,
                    }),
                    width,
                    mask: None,
                })
                .collect(),
            actions: vec![0],
            next: TableNext::HitMiss {
                hit: None,
                miss: None,
            },
            base_default_next: None,
            max_size: 1 << 20,
            direct_counter: None,
            support_timeout: false,
            default_action: None,
            const_entries: Vec::new(),
        }
    }

    fn entry(key: Vec<MatchValue>, priority: i32) -> TableEntry {
        TableEntry {
            key,
            priority,
            action: ActionCall {
                action: 0,
                args: vec![],
            },
            idle_timeout_ns: None,
        }
    }

    /// The naive answer: of the entries whose exact fields equal the values and whose prefix
    /// covers the lpm value, the one with the longest prefix.
    fn naive_lpm(
        table: &Table,
        entries: &[TableEntry],
        values: &[u128],
    ) -> Option<Vec<MatchValue>> {
        entries
            .iter()
            .filter(|e| {
                e.key
                    .iter()
                    .zip(&table.keys)
                    .zip(values)
                    .all(|((m, k), &v)| m.matches(k.width, v))
            })
            .max_by_key(|e| {
                e.key
                    .iter()
                    .map(|m| match m {
                        MatchValue::Lpm { prefix_len, .. } => *prefix_len,
                        _ => 0,
                    })
                    .sum::<u32>()
            })
            .map(|e| e.key.clone())
    }

    /// Key layouts: lpm alone, exact + lpm (packed in 64 bits), a 64-bit exact + lpm (packed in
    /// 128 bits), a 128-bit exact + lpm (too wide to pack).
    const LAYOUTS: [&[(MatchKind, u32)]; 6] = [
        &[(MatchKind::Lpm, 8)],
        &[(MatchKind::Exact, 2), (MatchKind::Lpm, 8)],
        &[(MatchKind::Exact, 64), (MatchKind::Lpm, 8)],
        &[(MatchKind::Exact, 128), (MatchKind::Lpm, 8)],
        // The lpm field alone, wider than one stride of the length trie.
        &[(MatchKind::Lpm, 24)],
        &[(MatchKind::Lpm, 32)],
    ];

    /// An lpm field's value and prefix length from a byte and a length of 0..=8: wider fields
    /// repeat the byte and scale the length, so prefixes of all lengths still overlap.
    fn spread(width: u32, value: u128, len: u32) -> (u128, u32) {
        let repeated = (0..width.div_ceil(8)).fold(0u128, |acc, _| (acc << 8) | value);
        (repeated & width_mask(width), len * width / 8)
    }

    /// A key of `layout` from raw numbers: exact values from a small set so they collide.
    fn key_of(layout: &[(MatchKind, u32)], exact: u128, value: u128, len: u32) -> Vec<MatchValue> {
        layout
            .iter()
            .map(|&(kind, width)| match kind {
                MatchKind::Lpm => {
                    let (value, len) = spread(width, value, len);
                    MatchValue::Lpm {
                        value: value & prefix_mask(width, len),
                        prefix_len: len,
                    }
                }
                _ => MatchValue::Exact((exact % 3) & width_mask(width)),
            })
            .collect()
    }

    fn values_of(layout: &[(MatchKind, u32)], exact: u128, value: u128) -> Vec<u128> {
        layout
            .iter()
            .map(|&(kind, width)| match kind {
                MatchKind::Lpm => spread(width, value, 0).0,
                _ => (exact % 3) & width_mask(width),
            })
            .collect()
    }

    proptest::proptest! {
        /// After any sequence of inserts and deletes, the per-prefix-length index answers every
        /// lookup as a scan for the longest matching prefix does, and finds every entry by key.
        #[test]
        fn lpm_index_agrees_with_a_longest_prefix_scan(
            layout in 0usize..LAYOUTS.len(),
            ops in proptest::collection::vec(
                (proptest::bool::weighted(0.75), 0u128..4, 0u128..256, 0u32..=8),
                0..60,
            ),
            probes in proptest::collection::vec((0u128..4, 0u128..256), 1..40),
        ) {
            let layout = LAYOUTS[layout];
            let table = table_with(layout);
            let mut state = TableState::new(&table);
            let is_lpm = matches!(state.index, Index::Lpm { .. });
            proptest::prop_assert!(is_lpm);
            let mut model: Vec<TableEntry> = Vec::new();
            for (insert, exact, value, len) in ops {
                let key = key_of(layout, exact, value, len);
                let id = EntryKey { key: key.clone(), priority: 0 };
                if insert {
                    let fresh = !model.iter().any(|e| e.key == key);
                    let r = state.insert(&table, entry(key.clone(), 0), 0);
                    proptest::prop_assert_eq!(r.is_ok(), fresh);
                    if fresh {
                        model.push(entry(key, 0));
                    }
                } else if let Some(at) = state.find(&id) {
                    proptest::prop_assert_eq!(&state.remove(at).entry.key, &key);
                    model.retain(|e| e.key != key);
                } else {
                    proptest::prop_assert!(!model.iter().any(|e| e.key == key));
                }
            }
            proptest::prop_assert_eq!(state.entries.len(), model.len());
            for e in &model {
                let at = state.find(&EntryKey { key: e.key.clone(), priority: 0 });
                proptest::prop_assert_eq!(at.map(|i| &state.entries[i].entry.key), Some(&e.key));
            }
            for (exact, value) in probes {
                let mut values = values_of(layout, exact, value);
                let before = values.clone();
                let got = state
                    .lookup(&table, &mut values)
                    .map(|i| state.entries[i].entry.key.clone());
                proptest::prop_assert_eq!(&values, &before);
                // Keys of at most 64 bits also pack straight from the fields (slot i is key i).
                let from_fields = state
                    .lookup_fields(&values)
                    .map(|hit| hit.map(|i| state.entries[i].entry.key.clone()));
                let narrow = layout.iter().map(|k| k.1).sum::<u32>() <= 64;
                proptest::prop_assert_eq!(from_fields, narrow.then(|| got.clone()));
                proptest::prop_assert_eq!(got, naive_lpm(&table, &model, &values));
            }
        }
    }

    #[test]
    fn scanned_tables_stop_at_the_highest_priority_match() {
        let table = table_with(&[(MatchKind::Ternary, 8)]);
        let mut state = TableState::new(&table);
        for (value, mask, priority) in
            [(0x10, 0xf0, 5), (0x12, 0xff, 9), (0, 0, 1), (0x12, 0xfe, 9)]
        {
            state
                .insert(
                    &table,
                    entry(vec![MatchValue::Ternary { value, mask }], priority),
                    0,
                )
                .unwrap();
        }
        let priorities: Vec<i32> = state.entries.iter().map(|e| e.entry.priority).collect();
        assert_eq!(priorities, vec![9, 9, 5, 1]);
        let hit = |v: u128| {
            let i = state.lookup(&table, &mut [v]).unwrap();
            state.entries[i].entry.key[0]
        };
        // Two priority-9 entries match 0x12: the older wins.
        assert_eq!(
            hit(0x12),
            MatchValue::Ternary {
                value: 0x12,
                mask: 0xff
            }
        );
        assert_eq!(
            hit(0x13),
            MatchValue::Ternary {
                value: 0x12,
                mask: 0xfe
            }
        );
        assert_eq!(
            hit(0x1f),
            MatchValue::Ternary {
                value: 0x10,
                mask: 0xf0
            }
        );
        assert_eq!(hit(0x20), MatchValue::Ternary { value: 0, mask: 0 });
    }

    #[test]
    fn exact_keys_pack_when_they_fit_and_stay_whole_when_not() {
        for widths in [
            vec![32, 32],
            vec![9, 48, 7],
            vec![64, 1],
            vec![64, 64],
            vec![128, 1],
            vec![128],
        ] {
            let kinds: Vec<(MatchKind, u32)> =
                widths.iter().map(|&w| (MatchKind::Exact, w)).collect();
            let table = table_with(&kinds);
            let mut state = TableState::new(&table);
            let bits = widths.iter().sum::<u32>();
            match &state.index {
                Index::Exact(m) => match m.map {
                    KeyMapInner::Narrow(_) => assert!(bits <= 64, "{widths:?}"),
                    KeyMapInner::Packed(_) => assert!(bits > 64 && bits <= 128, "{widths:?}"),
                    KeyMapInner::Wide(_) => assert!(bits > 128, "{widths:?}"),
                },
                other => panic!("{other:?}"),
            }
            // Keys that would collide if packed naively (a value's bits spilling into another
            // field) stay apart.
            let a: Vec<u128> = widths.iter().map(|&w| width_mask(w)).collect();
            let b: Vec<u128> = widths.iter().map(|_| 1).collect();
            for (i, values) in [&a, &b].into_iter().enumerate() {
                let key = values.iter().map(|&v| MatchValue::Exact(v)).collect();
                let mut e = entry(key, 0);
                e.action.args = vec![i as u128];
                state.insert(&table, e, 0).unwrap();
            }
            for (i, values) in [a, b].into_iter().enumerate() {
                let at = state.lookup(&table, &mut values.clone()).unwrap();
                assert_eq!(state.entries[at].entry.action.args, vec![i as u128]);
                // Keys of at most 64 bits also pack straight from the fields (slot i is key i).
                let from_fields = state.lookup_fields(&values);
                assert_eq!(from_fields, (bits <= 64).then_some(Some(at)), "{widths:?}");
            }
            let zeros: Vec<u128> = widths.iter().map(|_| 0).collect();
            assert_eq!(state.lookup(&table, &mut zeros.clone()), None);
            let from_fields = state.lookup_fields(&zeros);
            assert_eq!(from_fields, (bits <= 64).then_some(None), "{widths:?}");
        }
    }
}
