//! The longest prefix length that covers an address, for lpm tables keyed by one field of at
//! most 32 bits (IPv4 routes): a multibit trie with strides 16, 8 and 8 (cut to the field's
//! width) whose slots hold, for the addresses under them, the longest length of an entry that
//! covers them (shorter prefixes expanded into the slots of longer ones). A lookup is one to
//! three array reads however many prefix lengths the table holds; the table's hash map of that
//! length then gives the entry. This module keeps lengths only; the table owns the entries, and
//! says which shorter length takes over when an entry is removed.

/// No entry covers the slot.
const NONE: u8 = u8::MAX;

/// A slot: the longest covering length (low 8 bits, `NONE` if none) and the child node holding
/// the next stride under it (high 24 bits; 0: none, as the root is nobody's child).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot(u32);

impl Slot {
    const EMPTY: Slot = Slot(NONE as u32);

    fn len(self) -> u8 {
        self.0 as u8
    }

    fn child(self) -> usize {
        (self.0 >> 8) as usize
    }

    fn with_len(self, len: u8) -> Slot {
        Slot((self.0 & !0xff) | u32::from(len))
    }

    fn with_child(self, child: usize) -> Slot {
        Slot((self.0 & 0xff) | ((child as u32) << 8))
    }
}

/// Children are numbered in 24 bits.
const MAX_NODES: usize = 1 << 24;

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct LengthTrie {
    width: u32,
    /// Per level: its stride (bits) and the prefix length its slots end at.
    levels: Vec<(u32, u32)>,
    /// Node 0 is the root; a node of level k has `1 << levels[k].0` slots.
    nodes: Vec<Vec<Slot>>,
    /// Numbers of freed nodes, for reuse.
    free: Vec<usize>,
}

impl LengthTrie {
    /// An empty trie for a `width`-bit field (1..=32).
    pub fn new(width: u32) -> Option<LengthTrie> {
        if !(1..=32).contains(&width) {
            return None;
        }
        let mut levels = Vec::new();
        let mut end = 0;
        for stride in [16, 8, 8] {
            let stride = stride.min(width - end);
            if stride == 0 {
                break;
            }
            end += stride;
            levels.push((stride, end));
        }
        Some(LengthTrie {
            width,
            nodes: vec![vec![Slot::EMPTY; 1 << levels[0].0]],
            levels,
            free: Vec::new(),
        })
    }

    /// The longest length of a prefix in the trie covering `value`, if any.
    #[inline]
    pub fn longest(&self, value: u32) -> Option<u32> {
        let mut node = &self.nodes[0];
        let mut level = 0;
        loop {
            let (stride, end) = self.levels[level];
            let i = (value >> (self.width - end)) as usize & ((1 << stride) - 1);
            let slot = node.get(i).copied().unwrap_or(Slot::EMPTY);
            match self.nodes.get(slot.child()) {
                Some(child) if slot.child() != 0 => {
                    node = child;
                    level += 1;
                }
                _ => return (slot.len() != NONE).then_some(u32::from(slot.len())),
            }
        }
    }

    /// The level a prefix of length `len` is stored at, and its slot range there.
    fn place(&self, value: u32, len: u32) -> (usize, std::ops::Range<usize>) {
        let level = self
            .levels
            .iter()
            .position(|&(_, end)| len <= end)
            .unwrap_or(self.levels.len() - 1);
        let (stride, end) = self.levels[level];
        let first = (value >> (self.width - end)) as usize & ((1 << stride) - 1);
        let first = first & !((1usize << (end - len)) - 1);
        (level, first..first + (1 << (end - len)))
    }

    /// The nodes from the root down to `level` on the way to `value`, creating missing ones
    /// (which start as copies of their parent slot's length). `None` if no node can be made.
    fn path(&mut self, value: u32, level: usize, create: bool) -> Option<Vec<usize>> {
        let mut path = vec![0];
        for k in 0..level {
            let (stride, end) = self.levels[k];
            let node = *path.last()?;
            let i = (value >> (self.width - end)) as usize & ((1 << stride) - 1);
            let slot = self.nodes[node][i];
            let child = if slot.child() != 0 {
                slot.child()
            } else if create {
                let fresh = vec![Slot::EMPTY.with_len(slot.len()); 1 << self.levels[k + 1].0];
                let child = match self.free.pop() {
                    Some(n) => {
                        self.nodes[n] = fresh;
                        n
                    }
                    None if self.nodes.len() < MAX_NODES => {
                        self.nodes.push(fresh);
                        self.nodes.len() - 1
                    }
                    None => return None,
                };
                self.nodes[node][i] = slot.with_child(child);
                child
            } else {
                return None;
            };
            path.push(child);
        }
        Some(path)
    }

    /// Adds a prefix (`value` with bits below `len` clear); false if the trie is full.
    pub fn insert(&mut self, value: u32, len: u32) -> bool {
        let (level, range) = self.place(value, len);
        let Some(path) = self.path(value, level, true) else {
            return false;
        };
        let node = path[level];
        for i in range {
            self.raise(node, i, len as u8);
        }
        true
    }

    /// Sets slot `i` of `node`, and the slots under it, to `len` where no longer prefix covers
    /// them.
    fn raise(&mut self, node: usize, i: usize, len: u8) {
        let slot = self.nodes[node][i];
        if slot.len() != NONE && slot.len() > len {
            return;
        }
        self.nodes[node][i] = slot.with_len(len);
        let child = slot.child();
        if child != 0 {
            for j in 0..self.nodes[child].len() {
                self.raise(child, j, len);
            }
        }
    }

    /// Removes a prefix; `shorter` is the longest length of another prefix covering it (the
    /// caller's to find), which takes over where the removed one was the longest.
    pub fn remove(&mut self, value: u32, len: u32, shorter: Option<u32>) {
        let (level, range) = self.place(value, len);
        let Some(path) = self.path(value, level, false) else {
            return;
        };
        let to = shorter.map_or(NONE, |s| s as u8);
        let node = path[level];
        for i in range {
            self.lower(node, i, len as u8, to);
        }
        // Nodes on the way that now only repeat their parent slot go.
        for k in (1..=level).rev() {
            let (stride, end) = self.levels[k - 1];
            let i = (value >> (self.width - end)) as usize & ((1 << stride) - 1);
            if !self.free_if_repeating(path[k - 1], i) {
                break;
            }
        }
    }

    /// Frees the child of slot `i` of `node` if it only repeats the slot's length (no longer
    /// prefix under it); true if it did.
    fn free_if_repeating(&mut self, node: usize, i: usize) -> bool {
        let slot = self.nodes[node][i];
        let child = slot.child();
        let repeating = Slot::EMPTY.with_len(slot.len());
        if child == 0 || !self.nodes[child].iter().all(|s| *s == repeating) {
            return false;
        }
        self.nodes[node][i] = slot.with_child(0);
        self.nodes[child] = Vec::new();
        self.free.push(child);
        true
    }

    /// Where slot `i` of `node` (and the slots under it) has `len`, puts `to` instead; a slot
    /// under one of another length cannot have `len` (a longer prefix covering it covers all
    /// under it too).
    fn lower(&mut self, node: usize, i: usize, len: u8, to: u8) {
        let slot = self.nodes[node][i];
        if slot.len() != len {
            return;
        }
        self.nodes[node][i] = slot.with_len(to);
        let child = slot.child();
        if child != 0 {
            for j in 0..self.nodes[child].len() {
                self.lower(child, j, len, to);
            }
            self.free_if_repeating(node, i);
        }
    }

    /// Nodes in use, the root included (for tests).
    pub fn node_count(&self) -> usize {
        self.nodes.len() - self.free.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn covers(value: u32, len: u32, width: u32, address: u32) -> bool {
        len == 0 || (address ^ value) >> (width - len) == 0
    }

    /// The longest length below `below` of the prefixes in `present` covering `address`.
    fn longest_covering(
        present: &[(u32, u32)],
        width: u32,
        address: u32,
        below: u32,
    ) -> Option<u32> {
        present
            .iter()
            .filter(|&&(p, l)| l < below && covers(p, l, width, address))
            .map(|&(_, l)| l)
            .max()
    }

    proptest! {
        /// After any sequence of inserts and removes, every address gets the longest length of
        /// the prefixes present that cover it, and a trie emptied has only its root left.
        #[test]
        fn longest_is_the_longest_covering_prefix(
            width in proptest::sample::select(vec![8u32, 12, 16, 20, 24, 32]),
            ops in proptest::collection::vec((any::<u32>(), 0u32..=32, any::<bool>()), 1..60),
            probes in proptest::collection::vec(any::<u32>(), 32),
        ) {
            let cut = |v: u32| if width == 32 { v } else { v & ((1 << width) - 1) };
            let mut trie = LengthTrie::new(width).unwrap();
            let mut present: Vec<(u32, u32)> = Vec::new();
            for &(v, len, add) in &ops {
                let len = len % (width + 1);
                let value = if len == 0 { 0 } else { cut(v) >> (width - len) << (width - len) };
                let here = present.iter().position(|&p| p == (value, len));
                match (add, here) {
                    (true, None) => {
                        prop_assert!(trie.insert(value, len));
                        present.push((value, len));
                    }
                    (false, Some(at)) => {
                        present.swap_remove(at);
                        trie.remove(value, len, longest_covering(&present, width, value, len));
                    }
                    _ => {}
                }
                // Probe at the prefixes present too, not only at random.
                let addresses: Vec<u32> =
                    probes.iter().map(|p| cut(*p)).chain(present.iter().map(|p| p.0)).collect();
                for address in addresses {
                    let expected = longest_covering(&present, width, address, u32::MAX);
                    prop_assert_eq!(trie.longest(address), expected, "address {:#x}", address);
                }
            }
            for (value, len) in present.clone() {
                present.retain(|&p| p != (value, len));
                trie.remove(value, len, longest_covering(&present, width, value, len));
            }
            prop_assert_eq!(trie.node_count(), 1);
            prop_assert_eq!(trie.longest(cut(probes[0])), None);
        }
    }
}
