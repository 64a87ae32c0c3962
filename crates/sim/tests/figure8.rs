//! Raft Figure 8, staged step by step: an entry from an older term that sits on a
//! majority must not be committed by counting replicas, because a node that never had
//! it can still win an election and overwrite it.
//!
//! Five nodes, one append per message and one message in flight, so that the old
//! entry reaches a majority before the new leader's no-op does:
//! 1. leader A (term a) appends X at index 2 and reaches only B, then crashes;
//! 2. M wins a later term among the other three, appends its no-op at index 2, is cut
//!    off before sending it, and crashes once the no-op is durable;
//! 3. A or B wins the next term (call it L), replicates X to C and D, and is cut off
//!    from them before its own no-op arrives: X is now on four nodes;
//! 4. L crashes; M restarts and wins with C and D, and overwrites X at index 2.
//!
//! Committing X in step 3 would make step 4 overwrite a committed entry; the simulator's
//! checker panics on that. The test asserts the overwrite happened and nothing broke.

use d_engine_core::{LogId, LogIndex, NodeId, Role};
use d_engine_sim::kv::KvWrite;
use d_engine_sim::{Cluster, SimConfig};

const SECOND: u64 = 1_000_000;

fn id(i: usize) -> NodeId {
    NodeId(i as u64 + 1)
}

fn leader_among(cluster: &Cluster, nodes: &[usize]) -> Option<usize> {
    nodes.iter().copied().find(|i| cluster.status(*i).is_some_and(|s| s.role == Role::Leader))
}

fn figure_8(seed: u64) {
    let mut config = SimConfig::new(5, seed);
    config.raft.max_entries_per_message = 1;
    config.raft.max_inflight_messages = 1;
    let mut cluster = Cluster::new(config);
    let all: Vec<usize> = (0..5).collect();

    assert!(cluster.run_until(2 * SECOND, |c| c.leader().is_some()), "[seed {seed}] no first leader");
    let a = cluster.leader().expect("leader");
    let noop = LogId { term: cluster.status(a).expect("up").term, index: LogIndex(1) };
    assert!(cluster.run_until(2 * SECOND, |c| c.applied_on(noop) == 5), "[seed {seed}] first no-op not applied");

    // Step 1: A's entry X reaches only B.
    let b = (a + 1) % 5;
    let rest: Vec<usize> = all.iter().copied().filter(|i| *i != a && *i != b).collect();
    cluster.network().partition(&[vec![id(a), id(b)], rest.iter().map(|i| id(*i)).collect()]);
    let x = cluster.propose(a, KvWrite::Put { key: 0, value: 1 }.encode()).expect("A leads");
    assert_eq!(x.index, LogIndex(2));
    assert!(
        cluster.run_until(SECOND, |c| c.status(b).is_some_and(|s| s.last_log_id == x)),
        "[seed {seed}] X did not reach B"
    );
    cluster.crash(a);

    // Step 2: M wins among the other three and is cut off before its no-op leaves.
    assert!(cluster.run_until(3 * SECOND, |c| leader_among(c, &rest).is_some()), "[seed {seed}] no leader in the rest");
    let m = leader_among(&cluster, &rest).expect("leader");
    cluster.disconnect(m);
    let m_noop = cluster.status(m).expect("up").last_log_id;
    assert_eq!(m_noop.index, LogIndex(2), "[seed {seed}] M's no-op sits at index 2");
    assert!(
        cluster.run_until(SECOND, |cl| cl.node(m).store().durable_log_id(LogIndex(2)) == Some(m_noop)),
        "[seed {seed}] M's no-op never became durable"
    );
    cluster.crash(m);
    let (c, d) = {
        let others: Vec<usize> = rest.iter().copied().filter(|i| *i != m).collect();
        (others[0], others[1])
    };

    // Step 3: A restarts; A or B wins and replicates X to C and D, but not its no-op.
    cluster.restart(a);
    cluster.network().heal();
    cluster.disconnect(m);
    let ab = [a, b];
    assert!(cluster.run_until(3 * SECOND, |cl| leader_among(cl, &ab).is_some()), "[seed {seed}] A or B should win");
    let l = leader_among(&cluster, &ab).expect("leader");
    let holds_x = |cl: &Cluster, i: usize| cl.node(i).store().durable_log_id(LogIndex(2)) == Some(x);
    // Cut L -> C and L -> D the moment each holds X, before L's no-op can follow it.
    let mut cut = Vec::new();
    while cut.len() < 2 {
        let reached = cluster.run_until(2 * SECOND, |cl| [c, d].iter().any(|i| !cut.contains(i) && holds_x(cl, *i)));
        assert!(reached, "[seed {seed}] X did not reach C and D");
        for i in [c, d] {
            if !cut.contains(&i) && holds_x(&cluster, i) {
                cluster.network().block(id(l), id(i));
                cut.push(i);
            }
        }
    }
    // Acknowledgements from C and D still reach L.
    cluster.run_for(50_000);
    let l_commit = cluster.status(l).expect("up").commit;
    assert!(l_commit < LogIndex(3), "[seed {seed}] L's no-op is only on two nodes, so nothing of its term committed");
    cluster.crash(l);

    // Step 4: M comes back and wins with C and D; it overwrites X.
    let f = if l == a { b } else { a };
    cluster.network().heal();
    cluster.disconnect(f);
    cluster.restart(m);
    let mcd = [m, c, d];
    assert!(
        cluster.run_until(5 * SECOND, |cl| leader_among(cl, &mcd) == Some(m)),
        "[seed {seed}] M should win again (M = {}):\n{}",
        id(m),
        cluster.describe()
    );
    let overwritten = |cl: &Cluster| {
        [m, c, d].iter().all(|i| cl.status(*i).is_some_and(|s| s.commit >= LogIndex(3)))
            && cl.node(c).store().durable_log_id(LogIndex(2)) == Some(m_noop)
    };
    assert!(cluster.run_until(3 * SECOND, overwritten), "[seed {seed}] M's entries did not commit over X");

    // Everyone heals and converges on M's history.
    cluster.network().heal();
    cluster.restart(l);
    let probe = loop {
        if let Some(leader) = cluster.leader()
            && let Ok(log_id) = cluster.propose(leader, KvWrite::Put { key: 1, value: 2 }.encode())
        {
            break log_id;
        }
        cluster.run_for(100_000);
    };
    assert!(cluster.run_until(5 * SECOND, |cl| cl.applied_on(probe) == 5), "[seed {seed}] cluster did not converge");
    assert_eq!(cluster.committed()[1], m_noop, "[seed {seed}] index 2 holds M's no-op, not the old-term X");
}

#[test]
fn figure_8_old_term_entry_on_a_majority_is_not_committed_by_counting() {
    for seed in 0..20 {
        figure_8(seed);
    }
}
