//! The pre-analysis: from one window's sFlow samples, per directed VM pair, to traffic
//! estimates with their error bound, and the choice of the pairs worth an exact count. It owns
//! the estimates and the set of measured pairs; it does not decode sFlow (the collector feeds it
//! samples) and does not place counters ([`super::placement`]).
//!
//! Estimates follow sFlow's sampling theory (sFlow.org, "Packet Sampling Basics"): a pair seen
//! in `c` samples, each taken with 1-in-`N` sampling, sent about `Σ N` packets and
//! `Σ frame_length × N` bytes; with 95 % confidence the packet estimate is within
//! `196 × sqrt(1 / c)` percent.
//!
//! Selection, once per window ([`PairSelector::step`]):
//! 1. a measured pair that neither was sampled nor had its exact counter grow in the window is
//!    idle for one more window; after `idle_windows` idle windows in a row it is released;
//! 2. candidates are the pairs between VMs on different servers (pairs on one server cross no
//!    switch: the server counts them exactly) whose estimate reaches the threshold, or which are
//!    among the `top_k` largest estimates of the window;
//! 3. new candidates are taken in decreasing estimate, ties by pair, while the global entry
//!    budget (pairs measured at once) has room; the others wait for a later window.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::topology::Topology;
use super::VmPair;

/// What the samples of a window say about one directed pair.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairSamples {
    /// Samples of the pair (`c`).
    pub samples: u64,
    /// Σ N over its samples: the estimated packets.
    pub packets: u64,
    /// Σ frame_length × N over its samples: the estimated bytes.
    pub bytes: u64,
}

impl PairSamples {
    /// The 95 % confidence bound of the packet estimate's relative error, in percent.
    pub fn error_percent(&self) -> Option<f64> {
        error_bound_percent(self.samples)
    }
}

/// `196 × sqrt(1 / c)`: sFlow's 95 % confidence bound, in percent, on the error of an estimate
/// made from `c` samples; none without samples.
pub fn error_bound_percent(samples: u64) -> Option<f64> {
    (samples > 0).then(|| 196.0 * (1.0 / samples as f64).sqrt())
}

/// A sample that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EstimateError {
    #[error("sample of {pair} has sampling rate 0 (sFlow rates are 1 in N, N ≥ 1)")]
    ZeroSamplingRate { pair: VmPair },
    #[error("selection policy: idle_windows must be at least 1")]
    ZeroIdleWindows,
}

/// One window's samples, per directed pair.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WindowSamples {
    pairs: BTreeMap<VmPair, PairSamples>,
}

impl WindowSamples {
    pub fn new() -> WindowSamples {
        WindowSamples::default()
    }

    /// One sampled frame of `frame_length` bytes of `pair`, taken with 1-in-`sampling_rate`
    /// sampling. The sums saturate rather than wrap (they would need 2^64 packets).
    pub fn record(
        &mut self,
        pair: VmPair,
        frame_length: u32,
        sampling_rate: u32,
    ) -> Result<(), EstimateError> {
        if sampling_rate == 0 {
            return Err(EstimateError::ZeroSamplingRate { pair });
        }
        let s = self.pairs.entry(pair).or_default();
        let rate = u64::from(sampling_rate);
        s.samples = s.samples.saturating_add(1);
        s.packets = s.packets.saturating_add(rate);
        s.bytes = s
            .bytes
            .saturating_add(u64::from(frame_length).saturating_mul(rate));
        Ok(())
    }

    /// The pair's samples; all zero when it was not sampled.
    pub fn get(&self, pair: VmPair) -> PairSamples {
        self.pairs.get(&pair).copied().unwrap_or_default()
    }

    /// Sampled pairs in pair order.
    pub fn iter(&self) -> impl Iterator<Item = (VmPair, PairSamples)> + '_ {
        self.pairs.iter().map(|(&p, &s)| (p, s))
    }

    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }
}

/// Which estimate ranks pairs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    Packets,
    Bytes,
}

impl Metric {
    fn of(self, s: &PairSamples) -> u64 {
        match self {
            Metric::Packets => s.packets,
            Metric::Bytes => s.bytes,
        }
    }
}

/// The selection rule's parameters (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SelectionPolicy {
    pub metric: Metric,
    /// Estimate per window (in `metric` units) from which a pair is selected.
    pub threshold: u64,
    /// The window's `top_k` largest estimates are selected whatever the threshold.
    pub top_k: usize,
    /// Most pairs measured at once, fabric-wide: one vm_pair entry each.
    pub entry_budget: usize,
    /// Consecutive idle windows after which a measured pair is released (≥ 1).
    pub idle_windows: u32,
}

/// Where a pair's traffic can be counted exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PairScope {
    /// VMs on different servers: the pair crosses switches.
    Fabric,
    /// VMs on the same server: only its virtual switch sees the pair.
    SameServer,
    /// An address that is no VM of the topology.
    Unknown,
}

pub fn pair_scope(topology: &Topology, pair: VmPair) -> PairScope {
    match (topology.vm_by_ipv4(pair.src), topology.vm_by_ipv4(pair.dst)) {
        (Some(s), Some(d)) if topology.vm(s).server == topology.vm(d).server => {
            PairScope::SameServer
        }
        (Some(_), Some(_)) => PairScope::Fabric,
        _ => PairScope::Unknown,
    }
}

/// What one window changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct WindowDecision {
    /// Newly selected pairs, by decreasing estimate, ties by pair: install their counters.
    pub selected: Vec<VmPair>,
    /// Pairs released after staying idle, in pair order: remove their counters.
    pub released: Vec<VmPair>,
    /// Candidates left out because the entry budget was full, in selection order.
    pub deferred: Vec<VmPair>,
    /// Sampled pairs on one server (counted by the server) and with unknown addresses.
    pub same_server: usize,
    pub unknown: usize,
}

/// The set of measured pairs, updated window by window.
#[derive(Debug, Clone)]
pub struct PairSelector {
    policy: SelectionPolicy,
    /// Measured pairs and how many windows in a row each has been idle.
    measured: BTreeMap<VmPair, u32>,
}

impl PairSelector {
    pub fn new(policy: SelectionPolicy) -> Result<PairSelector, EstimateError> {
        if policy.idle_windows == 0 {
            return Err(EstimateError::ZeroIdleWindows);
        }
        Ok(PairSelector {
            policy,
            measured: BTreeMap::new(),
        })
    }

    /// Measured pairs in pair order.
    pub fn measured(&self) -> impl Iterator<Item = VmPair> + '_ {
        self.measured.keys().copied()
    }

    pub fn is_measured(&self, pair: VmPair) -> bool {
        self.measured.contains_key(&pair)
    }

    /// Drops a pair whose counter is gone for another reason (a switch's idle-timeout
    /// notification, or no switch of its path had room); it may be selected again later.
    pub fn release(&mut self, pair: VmPair) -> bool {
        self.measured.remove(&pair).is_some()
    }

    /// One window: `samples` are its samples, `counted` the measured pairs whose exact
    /// counter grew during it.
    pub fn step(
        &mut self,
        topology: &Topology,
        samples: &WindowSamples,
        counted: &BTreeSet<VmPair>,
    ) -> WindowDecision {
        let mut decision = WindowDecision::default();

        for (pair, idle) in self.measured.iter_mut() {
            let active = counted.contains(pair) || samples.get(*pair).samples > 0;
            *idle = if active { 0 } else { idle.saturating_add(1) };
            if *idle >= self.policy.idle_windows {
                decision.released.push(*pair);
            }
        }
        for pair in &decision.released {
            self.measured.remove(pair);
        }

        let metric = self.policy.metric;
        let mut ranked: Vec<(VmPair, u64)> = Vec::new();
        for (pair, s) in samples.iter() {
            match pair_scope(topology, pair) {
                PairScope::Fabric => ranked.push((pair, metric.of(&s))),
                PairScope::SameServer => decision.same_server += 1,
                PairScope::Unknown => decision.unknown += 1,
            }
        }
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let top: HashSet<VmPair> = ranked
            .iter()
            .take(self.policy.top_k)
            .map(|(p, _)| *p)
            .collect();
        let mut room = self.policy.entry_budget.saturating_sub(self.measured.len());
        for (pair, estimate) in ranked {
            if self.measured.contains_key(&pair)
                || (estimate < self.policy.threshold && !top.contains(&pair))
            {
                continue;
            }
            if room == 0 {
                decision.deferred.push(pair);
            } else {
                room -= 1;
                self.measured.insert(pair, 0);
                decision.selected.push(pair);
            }
        }
        decision
    }
}

#[cfg(test)]
mod tests;
