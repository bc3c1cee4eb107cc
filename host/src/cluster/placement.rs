//! Where a connection's clients should run: every instance computes the same answer from the
//! same list of live instances, so no instance has to tell the others.
//!
//! Each slot (`<connection>/<index>`) ranks the instances by a rendezvous hash and goes to the
//! best-ranked one that has fewer than `ceil(slots / instances)` slots of this connection: one
//! client per instance while there are enough instances (as Ditto places a connection's
//! `clientCount` clients), all clients running when there are fewer. When an instance comes or
//! goes, only the slots whose ranking it changes move.

use sha2::{Digest, Sha256};

/// The rank of `node` for `slot` of `connection`: higher is preferred.
fn score(connection: &str, slot: usize, node: &str) -> u64 {
    let mut h = Sha256::new();
    h.update(connection.as_bytes());
    h.update([0]);
    h.update(slot.to_le_bytes());
    h.update([0]);
    h.update(node.as_bytes());
    let digest = h.finalize();
    u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
}

/// The best-ranked of `nodes` for `key` (slot 0): where a thing's commands are applied. The
/// same as `assign(key, 1, nodes)[0]`, without allocating.
pub fn preferred<'a>(key: &str, nodes: &'a [String]) -> Option<&'a String> {
    nodes
        .iter()
        .enumerate()
        .max_by_key(|(i, n)| (score(key, 0, n), *i))
        .map(|(_, n)| n)
}

/// The preferred instance of each of the `slots` clients of `connection`, among `nodes`;
/// empty when there is no instance.
pub fn assign(connection: &str, slots: usize, nodes: &[String]) -> Vec<String> {
    if nodes.is_empty() {
        return Vec::new();
    }
    let cap = slots.div_ceil(nodes.len());
    let mut count = vec![0usize; nodes.len()];
    (0..slots)
        .map(|slot| {
            let mut ranked: Vec<usize> = (0..nodes.len()).collect();
            ranked.sort_by_key(|&n| std::cmp::Reverse((score(connection, slot, &nodes[n]), n)));
            let chosen = ranked
                .into_iter()
                .find(|&n| count[n] < cap)
                .expect("the caps leave room for every slot");
            count[chosen] += 1;
            nodes[chosen].clone()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn nodes(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("n{i}")).collect()
    }

    #[test]
    fn one_client_per_instance_while_there_are_enough() {
        for c in 0..50 {
            let id = format!("conn-{c}");
            let owners = assign(&id, 4, &nodes(4));
            assert_eq!(owners.iter().collect::<HashSet<_>>().len(), 4, "{owners:?}");
            let owners = assign(&id, 3, &nodes(5));
            assert_eq!(owners.iter().collect::<HashSet<_>>().len(), 3, "{owners:?}");
        }
    }

    #[test]
    fn all_clients_run_on_fewer_instances_evenly() {
        let owners = assign("c", 5, &nodes(2));
        assert_eq!(owners.len(), 5);
        let on_first = owners.iter().filter(|o| *o == "n1").count();
        assert!((2..=3).contains(&on_first), "{owners:?}");
        assert_eq!(assign("c", 3, &nodes(1)), vec!["n1"; 3]);
        assert!(assign("c", 3, &[]).is_empty());
    }

    #[test]
    fn the_preferred_instance_is_the_first_placement() {
        for c in 0..100 {
            let key = format!("org.t:thing-{c}");
            for n in 1..5 {
                assert_eq!(
                    preferred(&key, &nodes(n)),
                    Some(&assign(&key, 1, &nodes(n))[0])
                );
            }
        }
        assert_eq!(preferred("k", &[]), None);
    }

    #[test]
    fn every_instance_computes_the_same_placement() {
        assert_eq!(assign("c", 4, &nodes(3)), assign("c", 4, &nodes(3)));
    }

    #[test]
    fn connections_with_one_client_spread_over_the_instances() {
        let mut per_node = std::collections::HashMap::new();
        for c in 0..300 {
            let owner = assign(&format!("conn-{c}"), 1, &nodes(3)).remove(0);
            *per_node.entry(owner).or_insert(0) += 1;
        }
        assert_eq!(per_node.len(), 3);
        assert!(
            per_node.values().all(|&n| (70..=130).contains(&n)),
            "{per_node:?}"
        );
    }

    #[test]
    fn a_lost_instance_moves_only_its_own_clients() {
        let mut moved = 0;
        for c in 0..200 {
            let id = format!("conn-{c}");
            let before = assign(&id, 1, &nodes(4)).remove(0);
            let rest: Vec<String> = nodes(4).into_iter().filter(|n| n != "n4").collect();
            let after = assign(&id, 1, &rest).remove(0);
            if before != "n4" {
                assert_eq!(before, after, "{id} moved although its instance stayed");
            } else {
                moved += 1;
            }
        }
        assert!(moved > 20);
    }
}
