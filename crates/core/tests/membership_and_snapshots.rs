//! Membership changes and snapshots, one input at a time.

mod harness;

use bytes::Bytes;
use d_engine_core::storage::{Snapshot, SnapshotMeta};
use d_engine_core::{
    AppendOutcome, Config, LogId, LogIndex, Membership, MembershipChange, MembershipChangeError, Message, NodeId, Role,
    SnapshotOutcome, SnapshotPolicy, Term,
};
use harness::{TestNode, config, entry};

fn success(term: Term, matched: u64) -> Message {
    Message::AppendResponse { term, outcome: AppendOutcome::Success { matched: LogIndex(matched) } }
}

fn append(term: u64, prev: LogId, entries: Vec<d_engine_core::Entry>, commit: u64) -> Message {
    Message::AppendRequest { term: Term(term), prev_log_id: prev, entries, leader_commit: LogIndex(commit) }
}

fn ids(ids: &[u64]) -> std::collections::BTreeSet<NodeId> {
    ids.iter().map(|id| NodeId(*id)).collect()
}

/// Leader n1 of {1,2,3} with its no-op committed.
fn leader(config: Config) -> (TestNode, Term) {
    let mut leader = TestNode::new(1, 3, config);
    let term = leader.elect(&[2]);
    leader.receive(2, success(term, 1));
    leader.drain_persisting();
    (leader, term)
}

fn last_membership(node: &TestNode) -> Membership {
    node.raft.membership().clone()
}

#[test]
fn a_new_leader_refuses_membership_changes_until_it_committed_an_entry_of_its_term() {
    let mut node = TestNode::new(1, 3, config());
    node.elect(&[2]);
    assert_eq!(
        node.raft.change_membership(MembershipChange::AddLearner(NodeId(4))),
        Err(MembershipChangeError::LeaderNotReady)
    );
}

#[test]
fn one_change_at_a_time() {
    let (mut leader, _) = leader(config());
    leader.raft.change_membership(MembershipChange::AddLearner(NodeId(4))).unwrap();
    leader.drain_persisting();
    assert!(leader.raft.membership().learners().contains(&NodeId(4)), "a learner takes effect when appended");
    assert_eq!(
        leader.raft.change_membership(MembershipChange::AddLearner(NodeId(5))),
        Err(MembershipChangeError::ChangeInProgress)
    );
}

#[test]
fn a_learner_is_promoted_only_once_caught_up() {
    let (mut leader, term) = leader(Config { learner_catchup_entries: 0, ..config() });
    let added = leader.raft.change_membership(MembershipChange::AddLearner(NodeId(4))).unwrap();
    leader.drain_persisting();
    leader.receive(2, success(term, added.index.0));
    leader.drain_persisting();
    let behind = leader.raft.change_membership(MembershipChange::Promote(NodeId(4)));
    assert_eq!(behind, Err(MembershipChangeError::LearnerBehind { id: NodeId(4), lag: 2, allowed: 0 }));
    leader.receive(4, success(term, added.index.0));
    leader.drain_persisting();
    leader.raft.change_membership(MembershipChange::Promote(NodeId(4))).unwrap();
    let joint = last_membership(&leader);
    assert_eq!((joint.incoming(), joint.outgoing()), (&ids(&[1, 2, 3, 4]), &ids(&[1, 2, 3])));
}

#[test]
fn a_joint_configuration_commits_only_with_both_majorities_and_is_then_left() {
    let (mut leader, term) = leader(Config { learner_catchup_entries: 10, ..config() });
    let added = leader.raft.change_membership(MembershipChange::AddLearner(NodeId(4))).unwrap();
    leader.drain_persisting();
    leader.receive(2, success(term, added.index.0));
    leader.receive(4, success(term, added.index.0));
    leader.drain_persisting();
    let joint = leader.raft.change_membership(MembershipChange::Replace { remove: NodeId(3), add: NodeId(4) }).unwrap();
    leader.drain_persisting();
    leader.receive(4, success(term, joint.index.0));
    leader.drain_persisting();
    assert!(
        leader.raft.status().commit < joint.index,
        "n1 and n4 are a majority of the new voters {{1,2,4}} but not of the old {{1,2,3}}"
    );
    leader.receive(2, success(term, joint.index.0));
    leader.drain_persisting();
    assert_eq!(leader.raft.status().commit, joint.index);
    let new = last_membership(&leader);
    assert!(!new.is_joint(), "the leader left the joint configuration by itself");
    assert_eq!(new.incoming(), &ids(&[1, 2, 4]));
    assert_eq!(leader.raft.status().last_log_id.index, joint.index.next());
}

#[test]
fn a_leader_that_removes_itself_leads_until_the_new_configuration_commits() {
    let (mut leader, term) = leader(config());
    let joint = leader.raft.change_membership(MembershipChange::Remove(NodeId(1))).unwrap();
    leader.drain_persisting();
    for voter in [2, 3] {
        leader.receive(voter, success(term, joint.index.0));
    }
    leader.drain_persisting();
    assert_eq!(leader.raft.role(), Role::Leader, "it still leads: C(new) is not committed yet");
    let new_config = joint.index.next();
    leader.receive(2, success(term, new_config.0));
    leader.drain_persisting();
    assert_eq!(leader.raft.role(), Role::Leader, "one of {{2,3}} is not a majority of the new voters");
    leader.receive(3, success(term, new_config.0));
    leader.drain_persisting();
    assert_eq!(leader.raft.role(), Role::Follower, "removed: it steps down once C(new) commits");
    for _ in 0..100 {
        leader.raft.tick();
    }
    let drained = leader.drain_persisting();
    assert!(
        !drained.sent.iter().any(|e| matches!(e.message, Message::VoteRequest { .. })),
        "a removed node never campaigns"
    );
}

fn snapshot_at(term: u64, index: u64, voters: u64) -> Snapshot {
    let meta = SnapshotMeta {
        last_included: LogId::new(term, index),
        membership: Membership::with_voters(1..=voters).unwrap(),
    };
    Snapshot { meta, data: Bytes::from_static(b"state") }
}

fn install(follower: &mut TestNode, from: u64, snapshot: &Snapshot) -> harness::Drained {
    let checksum = d_engine_core::storage::codec::bulk_checksum(&snapshot.data);
    follower.receive(
        from,
        Message::InstallSnapshot {
            term: Term(2),
            meta: snapshot.meta.clone(),
            offset: 0,
            data: snapshot.data.clone(),
            total_bytes: snapshot.data.len() as u64,
            checksum,
        },
    );
    follower.drain_persisting()
}

#[test]
fn installing_a_snapshot_discards_a_log_that_conflicts_at_its_last_entry() {
    let mut follower = TestNode::new(2, 3, config());
    follower.receive(1, append(1, LogId::default(), (1..=6).map(|i| entry(1, i, "old")).collect(), 2));
    follower.drain_persisting();
    let snapshot = snapshot_at(2, 5, 3);
    let drained = install(&mut follower, 3, &snapshot);
    assert_eq!(drained.install_snapshot, vec![snapshot.clone()], "handed to the runtime once complete");
    follower.raft.snapshot_installed(snapshot.meta.clone());
    let drained = follower.drain_persisting();
    let write = drained.persists.last().expect("the log is fitted to the snapshot");
    assert_eq!(write.truncate_from, Some(LogIndex(1)), "entry 5 has another term: nothing of the log is kept");
    assert_eq!(write.purge_upto, Some(LogId::new(2, 5)));
    let status = follower.raft.status();
    assert_eq!((status.last_log_id, status.commit, status.applied), (LogId::new(2, 5), LogIndex(5), LogIndex(5)));
    let done = Message::InstallSnapshotResponse {
        term: Term(2),
        last_included: LogId::new(2, 5),
        outcome: SnapshotOutcome::Done,
    };
    assert!(drained.messages_to(3).contains(&&done));
}

#[test]
fn installing_a_snapshot_keeps_the_log_after_a_matching_last_entry() {
    let mut follower = TestNode::new(2, 3, config());
    follower.receive(1, append(2, LogId::default(), (1..=8).map(|i| entry(2, i, "x")).collect(), 2));
    follower.drain_persisting();
    let snapshot = snapshot_at(2, 5, 3);
    install(&mut follower, 1, &snapshot);
    follower.raft.snapshot_installed(snapshot.meta.clone());
    let write = follower.drain_persisting().persists.pop().expect("a purge");
    assert_eq!((write.truncate_from, write.purge_upto), (None, Some(LogId::new(2, 5))));
    assert_eq!(follower.raft.status().last_log_id, LogId::new(2, 8), "entries 6-8 are kept");
}

#[test]
fn a_snapshot_behind_the_commit_index_is_answered_as_held_and_never_installed() {
    let mut follower = TestNode::new(2, 3, config());
    follower.receive(1, append(2, LogId::default(), (1..=8).map(|i| entry(2, i, "x")).collect(), 8));
    follower.drain_persisting();
    let drained = install(&mut follower, 1, &snapshot_at(2, 5, 3));
    assert!(drained.install_snapshot.is_empty());
    let done = Message::InstallSnapshotResponse {
        term: Term(2),
        last_included: LogId::new(2, 5),
        outcome: SnapshotOutcome::Done,
    };
    assert!(drained.messages_to(1).contains(&&done));
    assert_eq!(follower.raft.status().last_log_id, LogId::new(2, 8), "the log never goes back");
}

#[test]
fn a_lost_chunk_is_resumed_from_the_last_confirmed_offset() {
    let mut follower = TestNode::new(2, 3, config());
    let snapshot = Snapshot { data: Bytes::from_static(b"0123456789"), ..snapshot_at(2, 5, 3) };
    let checksum = d_engine_core::storage::codec::bulk_checksum(&snapshot.data);
    let chunk = |offset: usize, end: usize| Message::InstallSnapshot {
        term: Term(2),
        meta: snapshot.meta.clone(),
        offset: offset as u64,
        data: snapshot.data.slice(offset..end),
        total_bytes: 10,
        checksum,
    };
    follower.receive(1, chunk(0, 4));
    follower.drain_persisting();
    follower.receive(1, chunk(8, 10)); // the chunk at 4 was lost
    let resume = Message::InstallSnapshotResponse {
        term: Term(2),
        last_included: LogId::new(2, 5),
        outcome: SnapshotOutcome::Continue { next_offset: 4 },
    };
    assert!(follower.drain_persisting().messages_to(1).contains(&&resume));
    follower.receive(1, chunk(4, 8));
    follower.receive(1, chunk(8, 10));
    assert_eq!(follower.drain_persisting().install_snapshot, vec![snapshot]);
}

#[test]
fn the_leader_snapshots_by_policy_compacts_and_sends_the_snapshot_to_a_peer_behind_it() {
    let policy = SnapshotPolicy { every_applied_entries: Some(3), max_log_bytes: None, keep_entries: 0 };
    let (mut leader, term) = leader(Config { snapshot_policy: policy, ..config() });
    for _ in 0..3 {
        leader.raft.propose(Bytes::from_static(b"x")).unwrap();
    }
    leader.drain_persisting();
    leader.receive(2, success(term, 4));
    let drained = leader.drain_persisting();
    let (_, last) = *drained.applies.last().expect("committed entries are applied");
    assert_eq!(last, LogIndex(4));
    leader.raft.applied(last);
    assert_eq!(leader.drain_persisting().build_snapshot, 1, "three entries applied since the last snapshot");
    let meta = leader.raft.snapshot_built(LogId { term, index: LogIndex(4) }).unwrap();
    assert_eq!(meta.membership, Membership::with_voters(1..=3).unwrap());
    let purge = leader.drain_persisting().persists.pop().expect("the log is compacted");
    assert_eq!(purge.purge_upto, Some(LogId { term, index: LogIndex(4) }));
    // n3 never acknowledged anything; when it shows up, the entries it needs are gone.
    leader.receive(3, Message::HeartbeatResponse { term, read_round: 0 });
    let drained = leader.drain_persisting();
    assert_eq!(drained.load_snapshot, vec![NodeId(3)], "n3 needs the snapshot");
    leader.raft.snapshot_loaded(NodeId(3), term, Snapshot { meta, data: Bytes::from_static(b"state") });
    let drained = leader.drain_persisting();
    assert!(
        matches!(drained.messages_to(3)[..], [Message::InstallSnapshot { offset: 0, total_bytes: 5, .. }]),
        "the first chunk leaves: {:?}",
        drained.messages_to(3)
    );
}

#[test]
fn the_old_voters_alone_never_commit_during_a_joint_change() {
    let (mut leader, term) = leader(Config { learner_catchup_entries: 10, ..config() });
    for learner in [4, 5] {
        let added = leader.raft.change_membership(MembershipChange::AddLearner(NodeId(learner))).unwrap();
        leader.drain_persisting();
        for peer in [2, 4, 5] {
            leader.receive(peer, success(term, added.index.0));
        }
        leader.drain_persisting();
    }
    let joint = leader.raft.change_membership(MembershipChange::ChangeVoters(ids(&[1, 4, 5]))).unwrap();
    leader.drain_persisting();
    for old in [2, 3] {
        leader.receive(old, success(term, joint.index.0));
    }
    leader.drain_persisting();
    assert!(leader.raft.status().commit < joint.index, "{{1,2,3}} agree, but only n1 of the new voters {{1,4,5}}");
    leader.receive(4, success(term, joint.index.0));
    leader.drain_persisting();
    assert_eq!(leader.raft.status().commit, joint.index, "now a majority of both");
}
