//! The consistent hash ring of the frontends (and of reservations'
//! placement): every live node at many points
//! (virtual nodes) on a 64-bit circle; a group key's arc is the run of `k`
//! distinct nodes clockwise from the key's point. A node that joins or
//! leaves moves only the keys whose arcs it enters or leaves — about 1/n of
//! them.

use sha2::{Digest, Sha256};

/// Points per node unless a frontend's `--vnodes` says otherwise; the
/// placement of reservations always uses this many.
pub const VNODES: usize = 128;

/// Where a string lands on the circle.
pub fn point(text: &[u8]) -> u64 {
    let digest = Sha256::digest(text);
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// The ring over a set of nodes.
#[derive(Debug, Clone, Default)]
pub struct Ring {
    /// (point, index into `nodes`), sorted by point.
    points: Vec<(u64, usize)>,
    nodes: Vec<String>,
}

impl Ring {
    /// The ring of `nodes` (their ids), each at `vnodes` points.
    pub fn new(nodes: &[String], vnodes: usize) -> Self {
        let mut nodes = nodes.to_vec();
        nodes.sort();
        nodes.dedup();
        let mut points = Vec::with_capacity(nodes.len() * vnodes);
        for (index, node) in nodes.iter().enumerate() {
            for v in 0..vnodes.max(1) {
                points.push((point(format!("{node}#{v}").as_bytes()), index));
            }
        }
        points.sort_unstable();
        Self { points, nodes }
    }

    /// The nodes on the ring.
    pub fn nodes(&self) -> &[String] {
        &self.nodes
    }

    /// Each node's part of the circle (the keys whose first node it is),
    /// 0 to 1, in node order.
    pub fn shares(&self) -> Vec<(String, f64)> {
        let mut owned = vec![0u64; self.nodes.len()];
        for (i, (at, _)) in self.points.iter().enumerate() {
            // The keys from the previous point (exclusive) up to this one
            // land here.
            let previous = if i == 0 {
                self.points[self.points.len() - 1].0
            } else {
                self.points[i - 1].0
            };
            let width = at.wrapping_sub(previous);
            owned[self.points[i].1] = owned[self.points[i].1].wrapping_add(width);
        }
        let whole = 2f64.powi(64);
        self.nodes
            .iter()
            .zip(owned)
            .map(|(node, width)| {
                let part = if self.nodes.len() == 1 {
                    1.0
                } else {
                    width as f64 / whole
                };
                (node.clone(), part)
            })
            .collect()
    }

    /// The first `k` distinct nodes clockwise from `key`'s point.
    pub fn arc(&self, key: &[u8], k: usize) -> Vec<&str> {
        let want = k.max(1).min(self.nodes.len());
        let mut arc: Vec<&str> = Vec::with_capacity(want);
        if self.points.is_empty() {
            return arc;
        }
        let at = point(key);
        let start = self.points.partition_point(|(p, _)| *p < at);
        // Seen nodes by index: all of them are met within about n·ln n
        // points, so even the whole ring's order is cheap.
        let mut seen = vec![false; self.nodes.len()];
        for step in 0..self.points.len() {
            let (_, index) = self.points[(start + step) % self.points.len()];
            if !seen[index] {
                seen[index] = true;
                arc.push(self.nodes[index].as_str());
                if arc.len() == want {
                    break;
                }
            }
        }
        arc
    }
}

/// Bounded-load choice inside an arc: the first node (in arc order) whose
/// calls in flight are under ⌈c · (total in flight + 1) / |arc|⌉, so a hot
/// group spills to the next nodes of its arc instead of piling on one.
/// `in_flight` gives a node's count; `total` is the frontend's over all.
pub fn choose<'a>(arc: &[&'a str], in_flight: impl Fn(&str) -> u64, total: u64, c: f64) -> Option<&'a str> {
    let first = *arc.first()?;
    let bound = (c * (total + 1) as f64 / arc.len() as f64).ceil() as u64;
    Some(
        arc.iter()
            .copied()
            .find(|node| in_flight(node) < bound)
            .unwrap_or(first),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("node-{i}")).collect()
    }

    #[test]
    fn an_arc_holds_distinct_nodes_and_is_stable() {
        let ring = Ring::new(&ids(5), 64);
        let arc = ring.arc(b"acme/hello", 3);
        assert_eq!(arc.len(), 3);
        let mut distinct = arc.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), 3);
        assert_eq!(
            arc,
            Ring::new(&ids(5), 64).arc(b"acme/hello", 3),
            "the same ring gives the same arc"
        );
        assert_eq!(ring.arc(b"x", 9).len(), 5, "an arc is at most every node");
        assert!(Ring::new(&[], 64).arc(b"x", 2).is_empty());
    }

    #[test]
    fn a_node_joining_moves_about_one_in_n_of_the_keys() {
        for n in [3, 4, 8] {
            let before = Ring::new(&ids(n), 128);
            let after = Ring::new(&ids(n + 1), 128);
            let keys = 10_000;
            let moved = (0..keys)
                .filter(|i| {
                    let key = format!("acct/fn/sub-{i}");
                    before.arc(key.as_bytes(), 1) != after.arc(key.as_bytes(), 1)
                })
                .count();
            let bound = 1.1 / (n + 1) as f64;
            assert!(
                (moved as f64 / keys as f64) <= bound,
                "{moved} of {keys} keys moved when node {} joined {n}: over {bound:.3}",
                n + 1
            );
            // Every moved key moved to the new node, none between old ones.
            for i in 0..keys {
                let key = format!("acct/fn/sub-{i}");
                let (old, new) = (before.arc(key.as_bytes(), 1), after.arc(key.as_bytes(), 1));
                assert!(old == new || new == [format!("node-{n}").as_str()]);
            }
        }
    }

    #[test]
    fn the_bounded_load_choice_spills_a_hot_group_along_its_arc() {
        let arc = ["a", "b", "c"];
        // Idle: the first node.
        assert_eq!(choose(&arc, |_| 0, 0, 1.25), Some("a"));
        // 8 in flight, all on a: the bound is ⌈1.25 · 9 / 3⌉ = 4, so b.
        let counts = |node: &str| if node == "a" { 8 } else { 0 };
        assert_eq!(choose(&arc, counts, 8, 1.25), Some("b"));
        assert_eq!(choose(&[], |_| 0, 0, 1.25), None);
    }
}
