//! Maximum flow by Dinic's algorithm, for the optimal placement's feasibility tests. It owns
//! nothing but the residual network; what the nodes mean is the caller's business.
//!
//! Written here rather than taken from petgraph (`petgraph::algo::dinics`) for two reasons the
//! placement benchmark showed: the binary search re-solves the same network ~50 times with only
//! some capacities raised, and this network can continue from the previous flow (capacities only
//! grow between a state and its successor), while petgraph's starts from zero each time; and
//! petgraph's augmenting-path search clears an O(nodes) visited map per path, which made one
//! solve of the 100,000-pair fat-tree network take ~0.4 s. The tests compare both on random
//! networks.

/// A residual network. Edges are stored in pairs: `e` forward, `e ^ 1` its reverse, so the flow
/// on a forward edge is the reverse edge's residual capacity.
#[derive(Debug, Clone)]
pub(super) struct FlowNetwork {
    /// Head node of each edge.
    to: Vec<u32>,
    /// Residual capacity of each edge.
    residual: Vec<u64>,
    /// Per node, its outgoing edges (forward and reverse).
    adjacency: Vec<Vec<u32>>,
}

/// A forward edge of a [`FlowNetwork`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct EdgeId(u32);

/// Nodes the breadth-first search did not reach, or dead ends the search gave up on.
const UNREACHED: u32 = u32::MAX;

impl FlowNetwork {
    pub(super) fn new(nodes: usize) -> FlowNetwork {
        FlowNetwork {
            to: Vec::new(),
            residual: Vec::new(),
            adjacency: vec![Vec::new(); nodes],
        }
    }

    pub(super) fn add_edge(&mut self, from: usize, to: usize, capacity: u64) -> EdgeId {
        let e = self.to.len() as u32;
        self.to.extend([to as u32, from as u32]);
        self.residual.extend([capacity, 0]);
        self.adjacency[from].push(e);
        self.adjacency[to].push(e + 1);
        EdgeId(e)
    }

    pub(super) fn flow(&self, edge: EdgeId) -> u64 {
        self.residual[edge.0 as usize ^ 1]
    }

    /// Sets an edge's capacity, keeping its flow, which must fit: capacities only grow between
    /// solves that continue from a previous flow.
    pub(super) fn set_capacity(&mut self, edge: EdgeId, capacity: u64) {
        let flow = self.flow(edge);
        debug_assert!(capacity >= flow, "capacity below the flow already sent");
        self.residual[edge.0 as usize] = capacity.saturating_sub(flow);
    }

    /// Augments the current flow to a maximum one; returns how much it added.
    pub(super) fn augment(&mut self, source: usize, sink: usize) -> u64 {
        let nodes = self.adjacency.len();
        let mut level = vec![UNREACHED; nodes];
        let mut next_arc = vec![0usize; nodes];
        let mut queue = Vec::with_capacity(nodes);
        let mut path: Vec<u32> = Vec::new();
        let mut added = 0u64;
        if source == sink {
            return 0;
        }
        loop {
            // Levels by breadth-first search over edges with residual capacity.
            level.fill(UNREACHED);
            level[source] = 0;
            queue.clear();
            queue.push(source as u32);
            let mut head = 0;
            while head < queue.len() {
                let u = queue[head] as usize;
                head += 1;
                for &e in &self.adjacency[u] {
                    let v = self.to[e as usize] as usize;
                    if self.residual[e as usize] > 0 && level[v] == UNREACHED {
                        level[v] = level[u] + 1;
                        queue.push(v as u32);
                    }
                }
            }
            if level[sink] == UNREACHED {
                return added;
            }
            // A blocking flow by depth-first search along increasing levels, iteratively (paths
            // may be as long as the node count), each node resuming at its next untried edge.
            next_arc.fill(0);
            path.clear();
            let mut u = source;
            loop {
                if u == sink {
                    let bottleneck = path
                        .iter()
                        .map(|&e| self.residual[e as usize])
                        .min()
                        .unwrap_or(0);
                    for &e in &path {
                        self.residual[e as usize] -= bottleneck;
                        self.residual[e as usize ^ 1] += bottleneck;
                    }
                    added += bottleneck;
                    // Back up to before the first saturated edge and search on from there.
                    let first_saturated = path
                        .iter()
                        .position(|&e| self.residual[e as usize] == 0)
                        .unwrap_or(0);
                    path.truncate(first_saturated);
                    u = path
                        .last()
                        .map_or(source, |&e| self.to[e as usize] as usize);
                    continue;
                }
                let mut advanced = false;
                while next_arc[u] < self.adjacency[u].len() {
                    let e = self.adjacency[u][next_arc[u]];
                    let v = self.to[e as usize] as usize;
                    if self.residual[e as usize] > 0
                        && level[v] != UNREACHED
                        && level[v] == level[u] + 1
                    {
                        path.push(e);
                        u = v;
                        advanced = true;
                        break;
                    }
                    next_arc[u] += 1;
                }
                if advanced {
                    continue;
                }
                // Dead end: no more flow goes through u in this phase.
                if u == source {
                    break;
                }
                level[u] = UNREACHED;
                let e = path
                    .pop()
                    .expect("a node other than the source was reached by an edge");
                u = self.to[e as usize ^ 1] as usize;
                next_arc[u] += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn textbook_network() {
        // CLRS figure 26.1: maximum flow 23.
        let mut n = FlowNetwork::new(6);
        for (a, b, c) in [
            (0, 1, 16),
            (0, 2, 13),
            (1, 3, 12),
            (2, 1, 4),
            (2, 4, 14),
            (3, 2, 9),
            (3, 5, 20),
            (4, 3, 7),
            (4, 5, 4),
        ] {
            n.add_edge(a, b, c);
        }
        assert_eq!(n.augment(0, 5), 23);
        assert_eq!(n.augment(0, 5), 0, "a maximum flow has no augmenting path");
    }

    #[test]
    fn raising_a_capacity_continues_from_the_flow() {
        let mut n = FlowNetwork::new(4);
        n.add_edge(0, 1, 5);
        n.add_edge(0, 2, 5);
        let a = n.add_edge(1, 3, 2);
        let b = n.add_edge(2, 3, 1);
        assert_eq!(n.augment(0, 3), 3);
        assert_eq!((n.flow(a), n.flow(b)), (2, 1));
        n.set_capacity(a, 4);
        assert_eq!(n.augment(0, 3), 2);
        assert_eq!(n.flow(a), 4);
    }

    fn arb_network() -> impl Strategy<Value = (usize, Vec<(usize, usize, u64)>)> {
        (2usize..9).prop_flat_map(|nodes| {
            let edge = (0..nodes, 0..nodes, 0u64..6);
            (Just(nodes), prop::collection::vec(edge, 0..30))
        })
    }

    proptest! {
        /// Same maximum as petgraph's Dinic; the flow respects capacities and is conserved;
        /// raising capacities and continuing gives the same value as solving from scratch.
        #[test]
        fn agrees_with_petgraph(
            (nodes, edges) in arb_network(),
            raise in prop::collection::vec(0u64..4, 30),
        ) {
            let (source, sink) = (0, nodes - 1);
            let solve_petgraph = |edges: &[(usize, usize, u64)]| {
                let mut g = petgraph::Graph::<(), u64>::new();
                let ids: Vec<_> = (0..nodes).map(|_| g.add_node(())).collect();
                for &(a, b, c) in edges {
                    g.add_edge(ids[a], ids[b], c);
                }
                petgraph::algo::dinics(&g, ids[source], ids[sink]).0
            };
            let mut n = FlowNetwork::new(nodes);
            let ids: Vec<EdgeId> = edges.iter().map(|&(a, b, c)| n.add_edge(a, b, c)).collect();
            let value = n.augment(source, sink);
            prop_assert_eq!(value, solve_petgraph(&edges));
            let mut balance = vec![0i128; nodes];
            for (&(a, b, c), &id) in edges.iter().zip(&ids) {
                let f = n.flow(id);
                prop_assert!(f <= c);
                balance[a] -= i128::from(f);
                balance[b] += i128::from(f);
            }
            for (v, &b) in balance.iter().enumerate() {
                if v != source && v != sink {
                    prop_assert_eq!(b, 0);
                }
            }
            prop_assert_eq!(balance[sink], i128::from(value));

            let raised: Vec<(usize, usize, u64)> = edges
                .iter()
                .zip(&raise)
                .map(|(&(a, b, c), &r)| (a, b, c + r))
                .collect();
            for ((_, _, c), &id) in raised.iter().zip(&ids) {
                n.set_capacity(id, *c);
            }
            let more = n.augment(source, sink);
            prop_assert_eq!(value + more, solve_petgraph(&raised));
        }
    }
}
