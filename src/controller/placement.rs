//! Which switch of its path counts each measured VM pair. It owns the placement strategies and
//! the switches' entry accounting; it neither computes paths ([`super::paths`]) nor talks to
//! switches (the P4Runtime sessions drive it and report refusals back).
//!
//! A switch's load is `entries in use / vm_pair capacity`, compared exactly as a fraction.
//!
//! - **Greedy** ([`GreedyPlacer`]), the method's rule, incremental: a pair goes to the
//!   least-loaded switch of its path that still has room, ties to the lowest device id. A switch
//!   that refused an entry (P4Runtime `RESOURCE_EXHAUSTED`, reported with
//!   [`GreedyPlacer::mark_exhausted`]) is skipped until one of its entries is released.
//! - **Optimal** ([`PlacementProblem::optimal`]), for a batch: first place as many pairs as
//!   possible, then minimise the maximum load. Binary search on the load bound `t`; for a given
//!   `t`, a max-flow (Dinic's algorithm, `placement/flow.rs`) over source → path class → switch
//!   → sink, where switch `s` may take `floor(t · capacity_s) − used_s` more entries, tells
//!   whether the best count fits. Pairs whose paths cross the same switch set form one class,
//!   which shrinks the network from one node per pair to one per distinct path.
//! - **Naive** ([`PlacementProblem::naive`]): every pair on its first switch, for comparison.
//!
//! [`PlacementProblem::report`] compares the three, and the cost of measuring every pair on every
//! switch of its path.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;
use thiserror::Error;

use super::paths::PairPath;
use super::topology::{SwitchId, Topology};
use super::VmPair;
use flow::{EdgeId, FlowNetwork};

mod flow;

/// What placement knows of a switch: its device id (for ties), how many vm_pair entries it
/// offers and how many are already in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SwitchBudget {
    pub device_id: u16,
    pub capacity: u32,
    pub used: u32,
}

/// Every switch of the topology, empty.
pub fn empty_budgets(topology: &Topology) -> Vec<SwitchBudget> {
    topology
        .switches()
        .iter()
        .map(|s| SwitchBudget {
            device_id: s.device_id,
            capacity: s.vm_pair_capacity,
            used: 0,
        })
        .collect()
}

/// A switch's load, `entries / capacity`, ordered exactly (no floating point). A switch without
/// capacity has load 0: it holds nothing and is never chosen.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Load {
    pub entries: u32,
    pub capacity: u32,
}

impl Load {
    pub fn new(entries: u32, capacity: u32) -> Load {
        Load { entries, capacity }
    }

    pub fn ratio(self) -> f64 {
        if self.capacity == 0 {
            0.0
        } else {
            f64::from(self.entries) / f64::from(self.capacity)
        }
    }

    /// (numerator, denominator) with zero capacity as 0/1, so cross-multiplying orders them.
    fn fraction(self) -> (u64, u64) {
        if self.capacity == 0 {
            (0, 1)
        } else {
            (u64::from(self.entries), u64::from(self.capacity))
        }
    }
}

impl PartialEq for Load {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Load {}
impl PartialOrd for Load {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Load {
    fn cmp(&self, other: &Self) -> Ordering {
        let (a, b) = self.fraction();
        let (c, d) = other.fraction();
        (a * d).cmp(&(c * b))
    }
}

/// Why a pair was not placed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PlaceError {
    #[error("pair {pair} is already counted on switch {}", switch.0)]
    AlreadyPlaced { pair: VmPair, switch: SwitchId },
    #[error("pair {0} crosses no switch (same server): its server counts it")]
    EmptyPath(VmPair),
    #[error("pair {pair}: switch index {} is not in the topology", switch.0)]
    UnknownSwitch { pair: VmPair, switch: SwitchId },
    #[error("pair {0}: every switch of its path is full")]
    NoRoom(VmPair),
}

/// The greedy rule, one pair at a time with the current loads.
#[derive(Debug, Clone)]
pub struct GreedyPlacer {
    switches: Vec<SwitchBudget>,
    /// Switches that refused an entry; skipped until an entry of theirs is released.
    exhausted: Vec<bool>,
    placed: HashMap<VmPair, SwitchId>,
}

impl GreedyPlacer {
    pub fn new(switches: Vec<SwitchBudget>) -> GreedyPlacer {
        let exhausted = vec![false; switches.len()];
        GreedyPlacer {
            switches,
            exhausted,
            placed: HashMap::new(),
        }
    }

    /// Chooses the switch of `path` that counts `pair` and books the entry there.
    pub fn place(&mut self, pair: VmPair, path: &[SwitchId]) -> Result<SwitchId, PlaceError> {
        if let Some(&switch) = self.placed.get(&pair) {
            return Err(PlaceError::AlreadyPlaced { pair, switch });
        }
        if path.is_empty() {
            return Err(PlaceError::EmptyPath(pair));
        }
        if let Some(&switch) = path.iter().find(|s| s.0 >= self.switches.len()) {
            return Err(PlaceError::UnknownSwitch { pair, switch });
        }
        let best = path
            .iter()
            .copied()
            .filter(|s| {
                let b = self.switches[s.0];
                !self.exhausted[s.0] && b.used < b.capacity
            })
            .min_by_key(|s| {
                let b = self.switches[s.0];
                (Load::new(b.used, b.capacity), b.device_id)
            })
            .ok_or(PlaceError::NoRoom(pair))?;
        self.switches[best.0].used += 1;
        self.placed.insert(pair, best);
        Ok(best)
    }

    /// Frees the pair's entry (its pair went idle, or its switch refused it); returns where it
    /// was. A release makes room, so the switch is tried again.
    pub fn release(&mut self, pair: VmPair) -> Option<SwitchId> {
        let switch = self.placed.remove(&pair)?;
        self.switches[switch.0].used -= 1;
        self.exhausted[switch.0] = false;
        Some(switch)
    }

    /// The switch refused an entry (`RESOURCE_EXHAUSTED`): it has less room than it declared.
    /// The caller releases the refused pair and places it again, which picks the next switch.
    pub fn mark_exhausted(&mut self, switch: SwitchId) {
        if let Some(flag) = self.exhausted.get_mut(switch.0) {
            *flag = true;
        }
    }

    pub fn switch_of(&self, pair: VmPair) -> Option<SwitchId> {
        self.placed.get(&pair).copied()
    }

    pub fn budgets(&self) -> &[SwitchBudget] {
        &self.switches
    }

    pub fn placed_count(&self) -> usize {
        self.placed.len()
    }
}

/// A batch that cannot be placed as given.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProblemError {
    #[error("pair {0} appears twice in the batch")]
    DuplicatePair(VmPair),
    #[error(transparent)]
    Pair(#[from] PlaceError),
    #[error("switch {device_id} has {used} entries in use but offers only {capacity}")]
    OverBudget {
        device_id: u16,
        used: u32,
        capacity: u32,
    },
}

/// A batch of pairs to place on switches with given budgets.
#[derive(Debug, Clone)]
pub struct PlacementProblem {
    switches: Vec<SwitchBudget>,
    pairs: Vec<PairPath>,
}

/// Where each pair of a batch went, in the batch's order, and the resulting entries per switch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub switch_of: Vec<Option<SwitchId>>,
    /// Entries in use per switch after placing, the budgets' `used` included.
    pub entries: Vec<u32>,
}

impl Placement {
    pub fn placed_count(&self) -> usize {
        self.switch_of.iter().filter(|s| s.is_some()).count()
    }
}

/// 2^48: load bounds are searched on the grid m / 2^48. Distinct loads u/c and u'/c' with
/// capacities ≤ 2^24 differ by at least 1/(c·c') ≥ 2^-48, so the first grid point at or above
/// the optimal load gives every switch the same floor as the optimal load itself.
const BOUND_SCALE_BITS: u32 = 48;

impl PlacementProblem {
    pub fn new(
        switches: Vec<SwitchBudget>,
        pairs: Vec<PairPath>,
    ) -> Result<PlacementProblem, ProblemError> {
        if let Some(b) = switches.iter().find(|b| b.used > b.capacity) {
            return Err(ProblemError::OverBudget {
                device_id: b.device_id,
                used: b.used,
                capacity: b.capacity,
            });
        }
        let mut seen = HashSet::with_capacity(pairs.len());
        for p in &pairs {
            if !seen.insert(p.pair) {
                return Err(ProblemError::DuplicatePair(p.pair));
            }
            if p.path.is_empty() {
                return Err(PlaceError::EmptyPath(p.pair).into());
            }
            if let Some(&switch) = p.path.iter().find(|s| s.0 >= switches.len()) {
                return Err(PlaceError::UnknownSwitch {
                    pair: p.pair,
                    switch,
                }
                .into());
            }
        }
        Ok(PlacementProblem { switches, pairs })
    }

    pub fn pairs(&self) -> &[PairPath] {
        &self.pairs
    }

    pub fn switches(&self) -> &[SwitchBudget] {
        &self.switches
    }

    /// The greedy rule applied to the batch in its order.
    pub fn greedy(&self) -> Placement {
        let mut placer = GreedyPlacer::new(self.switches.clone());
        let switch_of = self
            .pairs
            .iter()
            .map(|p| placer.place(p.pair, &p.path).ok())
            .collect();
        Placement {
            switch_of,
            entries: placer.switches.iter().map(|b| b.used).collect(),
        }
    }

    /// Every pair on the first switch of its path, if it has room.
    pub fn naive(&self) -> Placement {
        let mut entries: Vec<u32> = self.switches.iter().map(|b| b.used).collect();
        let switch_of = self
            .pairs
            .iter()
            .map(|p| {
                let first = p.path[0];
                (entries[first.0] < self.switches[first.0].capacity).then(|| {
                    entries[first.0] += 1;
                    first
                })
            })
            .collect();
        Placement { switch_of, entries }
    }

    /// As many pairs as can be placed at all, with the smallest maximum load among such
    /// placements (see the module documentation).
    pub fn optimal(&self) -> Placement {
        // Binary search for the smallest grid bound that still places the most pairs; the
        // count only grows with the bound. Every solve continues from the flow of the largest
        // bound known to be too small (`below`), whose capacities are all lower.
        let full = 1u64 << BOUND_SCALE_BITS;
        let mut below = PlacementFlow::new(self);
        let at_zero = below.raise_bound(0);
        let mut at = below.clone();
        let best = at.raise_bound(full);
        if at_zero == best {
            return below.placement(self);
        }
        let (mut lo, mut hi) = (0u64, full);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            let mut trial = below.clone();
            if trial.raise_bound(mid) == best {
                (hi, at) = (mid, trial);
            } else {
                (lo, below) = (mid, trial);
            }
        }
        at.placement(self)
    }

    /// The three strategies side by side, and the cost of counting every pair everywhere.
    pub fn report(&self) -> PlacementReport {
        let summarize = |strategy: Strategy, placement: Placement| {
            let max_load = self.max_load(&placement.entries);
            StrategySummary {
                strategy,
                placed: placement.placed_count(),
                unplaced: placement
                    .switch_of
                    .iter()
                    .zip(&self.pairs)
                    .filter(|(s, _)| s.is_none())
                    .map(|(_, p)| p.pair)
                    .collect(),
                max_load: max_load.ratio(),
                max_load_exact: max_load,
                entries: self.switch_entries(&placement.entries),
            }
        };
        let mut everywhere: Vec<u32> = self.switches.iter().map(|b| b.used).collect();
        for p in &self.pairs {
            let mut on_path = p.path.clone();
            on_path.sort();
            on_path.dedup();
            for s in on_path {
                everywhere[s.0] += 1;
            }
        }
        let max_load = self.max_load(&everywhere);
        PlacementReport {
            pairs: self.pairs.len(),
            strategies: vec![
                summarize(Strategy::Greedy, self.greedy()),
                summarize(Strategy::Optimal, self.optimal()),
                summarize(Strategy::Naive, self.naive()),
            ],
            every_switch_of_path: EverywhereSummary {
                total_entries: everywhere.iter().map(|&e| u64::from(e)).sum(),
                max_load: max_load.ratio(),
                switches_over_capacity: everywhere
                    .iter()
                    .zip(&self.switches)
                    .filter(|(e, b)| **e > b.capacity)
                    .count(),
                entries: self.switch_entries(&everywhere),
            },
        }
    }

    /// The highest load over all switches for these entry counts.
    pub fn max_load(&self, entries: &[u32]) -> Load {
        entries
            .iter()
            .zip(&self.switches)
            .map(|(&e, b)| Load::new(e, b.capacity))
            .max()
            .unwrap_or(Load::new(0, 0))
    }

    fn switch_entries(&self, entries: &[u32]) -> Vec<SwitchEntries> {
        entries
            .iter()
            .zip(&self.switches)
            .map(|(&entries, b)| SwitchEntries {
                device_id: b.device_id,
                entries,
                capacity: b.capacity,
            })
            .collect()
    }
}

/// The max-flow network of [`PlacementProblem::optimal`]: source → path class (capacity: its
/// pair count) → each switch of the class → sink (capacity: what the bound allows the switch).
#[derive(Clone)]
struct PlacementFlow {
    network: FlowNetwork,
    classes: Vec<PathClass>,
    /// Per switch: its switch → sink edge, capacity and entries already used.
    sink_edges: Vec<(EdgeId, u32, u32)>,
    /// Flow sent so far, which is the number of pairs placed.
    value: u64,
}

/// The pairs whose paths cross the same set of switches.
#[derive(Clone)]
struct PathClass {
    /// Batch indices, in order.
    pairs: Vec<usize>,
    /// The class → switch edges, in switch order.
    edges: Vec<(SwitchId, EdgeId)>,
}

const SOURCE: usize = 0;
const SINK: usize = 1;

impl PlacementFlow {
    /// The network with the bound 0 and no flow.
    fn new(problem: &PlacementProblem) -> PlacementFlow {
        let mut by_class: BTreeMap<Vec<SwitchId>, Vec<usize>> = BTreeMap::new();
        for (i, p) in problem.pairs.iter().enumerate() {
            let mut set = p.path.clone();
            set.sort();
            set.dedup();
            by_class.entry(set).or_default().push(i);
        }
        let switch_node = |s: SwitchId| 2 + s.0;
        let first_class_node = 2 + problem.switches.len();
        let mut network = FlowNetwork::new(first_class_node + by_class.len());
        let sink_edges = problem
            .switches
            .iter()
            .enumerate()
            .map(|(s, b)| {
                (
                    network.add_edge(switch_node(SwitchId(s)), SINK, 0),
                    b.capacity,
                    b.used,
                )
            })
            .collect();
        let classes = by_class
            .into_iter()
            .enumerate()
            .map(|(c, (set, pairs))| {
                let size = pairs.len() as u64;
                let node = first_class_node + c;
                network.add_edge(SOURCE, node, size);
                let edges = set
                    .into_iter()
                    .map(|s| (s, network.add_edge(node, switch_node(s), size)))
                    .collect();
                PathClass { pairs, edges }
            })
            .collect();
        PlacementFlow {
            network,
            classes,
            sink_edges,
            value: 0,
        }
    }

    /// Raises every switch's allowance to load ≤ bound / 2^48 and augments: the result is the
    /// most pairs that fit under that bound. The bound must not be below the current one.
    fn raise_bound(&mut self, bound: u64) -> u64 {
        for &(edge, capacity, used) in &self.sink_edges {
            let allowed = (u128::from(bound) * u128::from(capacity)) >> BOUND_SCALE_BITS;
            // allowed ≤ capacity ≤ 2^24.
            self.network
                .set_capacity(edge, (allowed as u64).saturating_sub(u64::from(used)));
        }
        self.value += self.network.augment(SOURCE, SINK);
        self.value
    }

    /// The pairs of each class go, in batch order, to the class's switches in switch order,
    /// as many to each as the flow sends there.
    fn placement(&self, problem: &PlacementProblem) -> Placement {
        let mut switch_of = vec![None; problem.pairs.len()];
        let mut entries: Vec<u32> = problem.switches.iter().map(|b| b.used).collect();
        for class in &self.classes {
            let mut pairs = class.pairs.iter();
            for &(switch, edge) in &class.edges {
                for _ in 0..self.network.flow(edge) {
                    // Flow into the class is at most its size, so there is a pair for each unit.
                    if let Some(&i) = pairs.next() {
                        switch_of[i] = Some(switch);
                        entries[switch.0] += 1;
                    }
                }
            }
        }
        Placement { switch_of, entries }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    Greedy,
    Optimal,
    Naive,
}

#[derive(Debug, Clone, Serialize)]
pub struct SwitchEntries {
    pub device_id: u16,
    pub entries: u32,
    pub capacity: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct StrategySummary {
    pub strategy: Strategy,
    pub placed: usize,
    pub unplaced: Vec<VmPair>,
    pub max_load: f64,
    pub max_load_exact: Load,
    pub entries: Vec<SwitchEntries>,
}

/// Counting every pair on every switch of its path (what per-pair counters without placement
/// would cost).
#[derive(Debug, Clone, Serialize)]
pub struct EverywhereSummary {
    pub total_entries: u64,
    pub max_load: f64,
    pub switches_over_capacity: usize,
    pub entries: Vec<SwitchEntries>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlacementReport {
    pub pairs: usize,
    pub strategies: Vec<StrategySummary>,
    pub every_switch_of_path: EverywhereSummary,
}

#[cfg(test)]
mod tests;
