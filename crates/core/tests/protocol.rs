//! One input, exact outputs: the protocol rules of the core, each as a small story.

mod harness;

use d_engine_core::storage::RecoveredLog;
use d_engine_core::{
    AppendOutcome, Config, ConfigError, ConflictHint, LeaseReadConfig, LogId, LogIndex, Membership, Message, NodeId,
    ProposeError, Raft, ReadId, ReadPolicy, ReplicationState, Role, Term, TransferError,
};
use harness::{TestNode, command, config, entry};

fn append(term: u64, prev: LogId, entries: Vec<d_engine_core::Entry>, commit: u64) -> Message {
    Message::AppendRequest { term: Term(term), prev_log_id: prev, entries, leader_commit: LogIndex(commit) }
}

fn success(term: Term, matched: u64) -> Message {
    Message::AppendResponse { term, outcome: AppendOutcome::Success { matched: LogIndex(matched) } }
}

/// A leader of a 3-node cluster whose no-op is committed (n2 acknowledged it).
fn leader_with_committed_noop(config: Config) -> (TestNode, Term) {
    let mut leader = TestNode::new(1, 3, config);
    let term = leader.elect(&[2]);
    leader.receive(2, success(term, 1));
    leader.drain_persisting();
    assert_eq!(leader.raft.status().commit, LogIndex(1));
    (leader, term)
}

#[test]
fn follower_acknowledges_entries_only_once_they_are_durable() {
    let mut follower = TestNode::new(2, 3, config());
    follower.receive(1, append(1, LogId::default(), vec![entry(1, 1, "a")], 0));
    let drained = follower.drain();
    assert_eq!(drained.persists.len(), 1, "one write carries the entry");
    assert!(drained.messages_to(1).is_empty(), "no acknowledgement before the write is durable");
    follower.raft.persisted(drained.persists[0].id);
    let released = follower.drain();
    assert_eq!(released.messages_to(1), vec![&success(Term(1), 1)]);
}

#[test]
fn follower_never_commits_past_the_entries_it_verified() {
    let mut follower = TestNode::new(2, 3, config());
    let stale: Vec<_> = (1..=5).map(|i| entry(1, i, "old")).collect();
    follower.receive(1, append(1, LogId::default(), stale, 0));
    follower.drain_persisting();
    // A leader of term 2 matches our log only up to index 2; its commit index 4 covers
    // entries of its own that we do not have (our 3..5 are stale term-1 entries).
    follower.receive(3, append(2, LogId::new(1, 2), vec![], 4));
    let drained = follower.drain_persisting();
    assert_eq!(follower.raft.status().commit, LogIndex(2), "commit is capped at the verified prefix");
    assert_eq!(drained.applies, vec![(LogIndex(1), LogIndex(2))]);
}

#[test]
fn rejection_hint_lets_the_leader_skip_a_whole_conflicting_term() {
    let mut follower = TestNode::new(2, 3, config());
    let mut entries: Vec<_> = (1..=10).map(|i| entry(1, i, "t1")).collect();
    entries.extend((11..=60).map(|i| entry(2, i, "t2")));
    follower.receive(1, append(2, LogId::default(), entries, 0));
    follower.drain_persisting();
    follower.receive(3, append(3, LogId::new(3, 100), vec![], 0));
    let drained = follower.drain_persisting();
    let expected =
        AppendOutcome::Conflict { rejected: LogIndex(100), hint: ConflictHint { index: LogIndex(60), term: Term(2) } };
    assert_eq!(drained.messages_to(3), vec![&Message::AppendResponse { term: Term(3), outcome: expected }]);
}

#[test]
fn vote_is_sent_only_once_durable_and_survives_a_restart() {
    let mut voter = TestNode::new(2, 3, Config { pre_vote: false, ..config() });
    for _ in 0..5 {
        voter.raft.tick();
    }
    voter.drain_persisting();
    let _ = voter.raft.take_outputs();
    // Outside the start-up grace period of one election timeout, a candidate asks.
    for _ in 0..5 {
        voter.raft.tick();
    }
    let request = |term| Message::VoteRequest {
        term: Term(term),
        last_log_id: LogId::default(),
        pre_vote: false,
        leadership_transfer: false,
    };
    voter.receive(1, request(1));
    let drained = voter.drain();
    let vote_write = drained.persists.iter().find(|w| w.hard_state.is_some_and(|hs| hs.vote == Some(NodeId(1))));
    assert!(vote_write.is_some(), "the vote is written");
    assert!(drained.messages_to(1).is_empty(), "the grant waits for the write");
    for write in &drained.persists {
        voter.store.hard_state = write.hard_state.unwrap();
        voter.raft.persisted(write.id);
    }
    let granted = Message::VoteResponse { term: Term(1), granted: true, pre_vote: false };
    assert_eq!(voter.drain().messages_to(1), vec![&granted]);

    voter.restart();
    for _ in 0..10 {
        voter.raft.tick();
    }
    voter.drain_persisting();
    voter.receive(3, request(1));
    let rejected = Message::VoteResponse { term: Term(1), granted: false, pre_vote: false };
    assert!(voter.drain_persisting().messages_to(3).contains(&&rejected), "one vote per term, even across restarts");
}

#[test]
fn single_node_leads_only_after_its_own_vote_is_durable() {
    let mut node = TestNode::new(1, 1, config());
    let drained = node.tick_until_outputs();
    assert_eq!(node.raft.role(), Role::Candidate, "the campaign write is not durable yet");
    let write = drained.persists.iter().find(|w| w.hard_state.is_some_and(|hs| hs.vote == Some(NodeId(1)))).unwrap();
    node.raft.persisted(write.id);
    assert_eq!(node.raft.role(), Role::Leader);
    let after = node.drain_persisting();
    let noop = after.persists.iter().flat_map(|w| &w.entries).next().expect("a no-op of the new term");
    assert_eq!(noop.log_id, LogId::new(1, 1));
    assert_eq!(node.raft.status().commit, LogIndex(1), "a single node commits once its write is durable");
}

#[test]
fn new_leader_commits_an_old_entry_only_together_with_one_of_its_term() {
    let mut node = TestNode::new(1, 3, config());
    node.receive(2, append(1, LogId::default(), vec![entry(1, 1, "a"), entry(1, 2, "b")], 0));
    node.drain_persisting();
    let term = node.elect(&[3]);
    assert_eq!(node.raft.status().last_log_id, LogId { term, index: LogIndex(3) }, "a no-op of the new term");
    node.receive(3, success(term, 2));
    node.drain_persisting();
    assert_eq!(node.raft.status().commit, LogIndex(0), "index 2 is on a majority but from an older term (Figure 8)");
    node.receive(3, success(term, 3));
    node.drain_persisting();
    assert_eq!(node.raft.status().commit, LogIndex(3), "the no-op commits, and index 2 with it");
}

#[test]
fn leader_counts_itself_only_once_its_write_is_durable() {
    let (mut leader, term) = leader_with_committed_noop(config());
    let proposed = leader.raft.propose(command("x")).unwrap();
    let drained = leader.drain();
    assert_eq!(drained.persists.len(), 1);
    leader.receive(3, success(term, proposed.index.0));
    leader.drain();
    assert_eq!(leader.raft.status().commit, LogIndex(1), "one follower plus an unsynced leader is not a quorum");
    leader.raft.persisted(drained.persists[0].id);
    assert_eq!(leader.raft.status().commit, proposed.index);
}

#[test]
fn proposals_are_refused_off_the_leader_with_a_hint() {
    let mut follower = TestNode::new(2, 3, config());
    follower.receive(1, Message::Heartbeat { term: Term(1), commit: LogIndex(0), read_round: 0 });
    follower.drain_persisting();
    assert_eq!(follower.raft.propose(command("x")), Err(ProposeError::NotLeader { leader: Some(NodeId(1)) }));
}

#[test]
fn leadership_transfer_refuses_proposals_until_done_or_abandoned() {
    let (mut leader, term) = leader_with_committed_noop(config());
    assert_eq!(leader.raft.transfer_leadership(NodeId(9)), Err(TransferError::NotAVoter(NodeId(9))));
    leader.raft.transfer_leadership(NodeId(2)).unwrap();
    let drained = leader.drain_persisting();
    assert_eq!(drained.messages_to(2), vec![&Message::TimeoutNow { term }], "n2 holds the whole log");
    assert_eq!(leader.raft.propose(command("x")), Err(ProposeError::TransferInProgress { target: NodeId(2) }));
    for _ in 0..10 {
        leader.raft.tick();
        leader.receive(2, Message::HeartbeatResponse { term, read_round: 0 });
    }
    leader.drain_persisting();
    assert!(leader.raft.propose(command("x")).is_ok(), "the transfer is abandoned after an election timeout");
}

#[test]
fn timeout_now_starts_an_election_that_ignores_leader_leases() {
    let mut target = TestNode::new(2, 3, config());
    target.receive(1, Message::Heartbeat { term: Term(1), commit: LogIndex(0), read_round: 0 });
    target.drain_persisting();
    target.receive(1, Message::TimeoutNow { term: Term(1) });
    let drained = target.drain_persisting();
    assert_eq!(target.raft.role(), Role::Candidate, "no pre-vote on a transfer");
    let asks = drained.messages_to(3);
    assert!(matches!(asks[..], [Message::VoteRequest { term: Term(2), leadership_transfer: true, .. }]));
}

#[test]
fn reads_wait_for_one_heartbeat_round_that_confirms_them_all() {
    let (mut leader, term) = leader_with_committed_noop(config());
    leader.raft.read(ReadId(1), ReadPolicy::ReadIndex).unwrap();
    leader.raft.read(ReadId(2), ReadPolicy::ReadIndex).unwrap();
    let drained = leader.drain_persisting();
    assert!(drained.reads_ready.is_empty(), "no read before a quorum confirms leadership");
    let rounds: Vec<_> = drained.sent.iter().filter(|e| matches!(e.message, Message::Heartbeat { .. })).collect();
    assert_eq!(rounds.len(), 2, "one heartbeat per peer carries the round for both reads");
    leader.receive(3, Message::HeartbeatResponse { term, read_round: 1 });
    let ready = leader.drain_persisting().reads_ready;
    assert_eq!(ready, vec![(ReadId(1), LogIndex(1)), (ReadId(2), LogIndex(1))]);
}

#[test]
fn a_new_leader_serves_reads_only_after_committing_an_entry_of_its_term() {
    let mut leader = TestNode::new(1, 3, config());
    let term = leader.elect(&[2]);
    leader.raft.read(ReadId(7), ReadPolicy::ReadIndex).unwrap();
    let drained = leader.drain_persisting();
    assert!(drained.reads_ready.is_empty());
    assert!(!drained.sent.iter().any(|e| matches!(e.message, Message::Heartbeat { read_round: 1, .. })));
    leader.receive(2, success(term, 1));
    leader.drain_persisting();
    leader.receive(2, Message::HeartbeatResponse { term, read_round: 1 });
    assert_eq!(leader.drain_persisting().reads_ready, vec![(ReadId(7), LogIndex(1))]);
}

#[test]
fn lease_reads_skip_the_round_only_when_a_lease_is_configured_and_held() {
    let lease = Config { lease_read: Some(LeaseReadConfig { clock_drift_ticks: 2 }), ..config() };
    let (mut leader, term) = leader_with_committed_noop(lease);
    leader.raft.read(ReadId(1), ReadPolicy::Lease).unwrap();
    assert!(leader.drain_persisting().reads_ready.is_empty(), "no lease before a confirmed round");
    leader.receive(2, Message::HeartbeatResponse { term, read_round: 1 });
    leader.drain_persisting();
    leader.raft.read(ReadId(2), ReadPolicy::Lease).unwrap();
    assert_eq!(leader.drain_persisting().reads_ready, vec![(ReadId(2), LogIndex(1))], "served inside the lease");

    let (mut plain, term) = leader_with_committed_noop(config());
    plain.raft.read(ReadId(1), ReadPolicy::ReadIndex).unwrap();
    plain.drain_persisting();
    plain.receive(2, Message::HeartbeatResponse { term, read_round: 1 });
    plain.drain_persisting();
    plain.raft.read(ReadId(2), ReadPolicy::Lease).unwrap();
    assert!(
        plain.drain_persisting().reads_ready.is_empty(),
        "without a configured lease, Lease falls back to ReadIndex"
    );
}

#[test]
fn pre_vote_does_not_bump_the_term() {
    let mut node = TestNode::new(1, 3, config());
    node.tick_until(|d| d.sent.iter().any(|e| matches!(e.message, Message::VoteRequest { pre_vote: true, .. })));
    assert_eq!(node.raft.role(), Role::PreCandidate);
    assert_eq!(node.raft.status().term, Term(0));
    for voter in [2, 3] {
        node.receive(voter, Message::VoteResponse { term: Term(0), granted: false, pre_vote: true });
    }
    node.drain_persisting();
    assert_eq!((node.raft.role(), node.raft.status().term), (Role::Follower, Term(0)));
}

#[test]
fn a_follower_that_hears_its_leader_ignores_vote_requests() {
    let mut follower = TestNode::new(2, 3, config());
    follower.receive(1, Message::Heartbeat { term: Term(1), commit: LogIndex(0), read_round: 0 });
    follower.drain_persisting();
    let request = |transfer| Message::VoteRequest {
        term: Term(2),
        last_log_id: LogId::new(1, 5),
        pre_vote: false,
        leadership_transfer: transfer,
    };
    follower.receive(3, request(false));
    let drained = follower.drain_persisting();
    assert!(drained.messages_to(3).is_empty(), "ignored: the leader is alive");
    assert_eq!(follower.raft.status().term, Term(1), "the term is not disturbed");
    follower.receive(3, request(true));
    let granted = Message::VoteResponse { term: Term(2), granted: true, pre_vote: false };
    assert_eq!(follower.drain_persisting().messages_to(3), vec![&granted], "a leadership transfer is not ignored");
}

#[test]
fn leader_without_a_quorum_for_an_election_timeout_steps_down() {
    let (mut leader, term) = leader_with_committed_noop(config());
    leader.raft.read(ReadId(1), ReadPolicy::ReadIndex).unwrap();
    for _ in 0..20 {
        leader.raft.tick();
    }
    let drained = leader.drain_persisting();
    assert_eq!(leader.raft.role(), Role::Follower);
    assert_eq!(leader.raft.status().term, term, "stepping down does not change the term");
    assert_eq!(drained.reads_failed.len(), 1, "a pending read fails instead of hanging");
}

#[test]
fn heartbeats_carry_a_commit_index_the_follower_can_trust() {
    let (mut leader, _) = leader_with_committed_noop(config());
    let drained = leader.tick_until(|d| d.sent.iter().any(|e| matches!(e.message, Message::Heartbeat { .. })));
    let commit_for = |to| {
        drained.messages_to(to).iter().find_map(|m| match m {
            Message::Heartbeat { commit, .. } => Some(*commit),
            _ => None,
        })
    };
    assert_eq!(commit_for(2), Some(LogIndex(1)), "n2 matched the committed no-op");
    assert_eq!(commit_for(3), Some(LogIndex(0)), "n3's log is unknown: never more than its match");
}

#[test]
fn a_stale_leader_is_told_the_newer_term() {
    let mut follower = TestNode::new(2, 3, config());
    follower.receive(3, Message::Heartbeat { term: Term(5), commit: LogIndex(0), read_round: 0 });
    follower.drain_persisting();
    follower.receive(1, append(4, LogId::default(), vec![], 0));
    let stale = Message::AppendResponse { term: Term(5), outcome: AppendOutcome::StaleTerm };
    assert_eq!(follower.drain_persisting().messages_to(1), vec![&stale]);
}

#[test]
fn a_node_outside_its_membership_or_with_bad_settings_is_refused_at_start() {
    let membership = Membership::with_voters(1..=3).unwrap();
    let start =
        |id, config| Raft::new(NodeId(id), config, membership.clone(), &RecoveredLog::default(), LogIndex(0), 1);
    assert!(matches!(start(4, config()), Err(ConfigError::NotAMember(NodeId(4)))));
    let zero_window = Config { max_inflight_bytes: 0, ..config() };
    assert!(matches!(start(1, zero_window), Err(ConfigError::Zero { field: "max_inflight_bytes" })));
}

#[test]
fn an_acknowledgement_held_across_a_term_change_is_dropped() {
    let mut follower = TestNode::new(2, 3, config());
    follower.receive(1, append(1, LogId::default(), vec![entry(1, 1, "a")], 0));
    let first = follower.drain();
    follower.receive(3, Message::Heartbeat { term: Term(2), commit: LogIndex(0), read_round: 0 });
    let second = follower.drain();
    for write in first.persists.iter().chain(&second.persists) {
        follower.raft.persisted(write.id);
    }
    let released = follower.drain();
    assert!(released.messages_to(1).is_empty(), "the term-1 acknowledgement is stale once the term is 2");
    assert_eq!(released.messages_to(3), vec![&Message::HeartbeatResponse { term: Term(2), read_round: 0 }]);
}

#[test]
fn replication_view_shows_each_followers_match_and_in_flight_window() {
    let (mut leader, term) = leader_with_committed_noop(config());
    assert!(TestNode::new(2, 3, config()).raft.replication().is_empty(), "a follower has no replication view");
    leader.raft.propose(command("a")).unwrap();
    leader.raft.propose(command("b")).unwrap();
    leader.drain_persisting();
    let view = leader.raft.replication();
    let peers: Vec<u64> = view.iter().map(|peer| peer.peer.0).collect();
    assert_eq!(peers, vec![2, 3], "every other member, never the leader itself");
    let n2 = view[0];
    assert_eq!(n2.matched, LogIndex(1), "n2 acknowledged the no-op");
    assert_eq!(n2.state, ReplicationState::Replicate);
    assert!(n2.inflight_messages >= 1 && n2.inflight_bytes >= 2, "entries 2..=3 are in flight to n2: {n2:?}");
    assert_eq!(view[1].matched, LogIndex(0), "n3 never answered");

    leader.receive(2, success(term, 3));
    leader.drain_persisting();
    let n2 = leader.raft.replication()[0];
    assert_eq!(
        (n2.matched, n2.inflight_messages, n2.inflight_bytes),
        (LogIndex(3), 0, 0),
        "acknowledged: window empty"
    );
}
