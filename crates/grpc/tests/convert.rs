//! proto <-> core conversion: every core message survives the round trip (through the
//! wire bytes, too), and malformed protos give the typed error instead of a panic.

use std::collections::BTreeSet;

use bytes::Bytes;
use d_engine_core::storage::SnapshotMeta;
use d_engine_core::{
    AppendOutcome, ConflictHint, Entry, EntryPayload, Envelope, LogId, LogIndex, Membership, MembershipError, Message,
    NodeId, SnapshotOutcome, Term,
};
use d_engine_grpc::convert::envelope_to_proto;
use d_engine_grpc::{ClusterEnvelope, ConvertError, proto};
use proptest::prelude::*;
use prost::Message as _;

fn ids(max_len: usize) -> impl Strategy<Value = BTreeSet<u64>> {
    proptest::collection::btree_set(1u64..20, 0..=max_len)
}

/// Simple and joint memberships, with and without learners.
fn membership() -> impl Strategy<Value = Membership> {
    (proptest::collection::btree_set(1u64..20, 1..=5), ids(5), ids(3)).prop_map(|(incoming, outgoing, learners)| {
        let voters: BTreeSet<u64> = incoming.union(&outgoing).copied().collect();
        let to_set = |s: &BTreeSet<u64>| s.iter().copied().map(NodeId).collect::<BTreeSet<_>>();
        let learners: BTreeSet<u64> = learners.difference(&voters).copied().collect();
        Membership::from_parts(to_set(&incoming), to_set(&outgoing), to_set(&learners)).unwrap()
    })
}

fn log_id() -> impl Strategy<Value = LogId> {
    (any::<u64>(), any::<u64>()).prop_map(|(term, index)| LogId::new(term, index))
}

/// Empty, small and (occasionally) large payloads.
fn payload_bytes() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        Just(Bytes::new()),
        proptest::collection::vec(any::<u8>(), 1..64).prop_map(Bytes::from),
        (any::<u8>(), 100_000usize..300_000).prop_map(|(byte, len)| Bytes::from(vec![byte; len])),
    ]
}

fn entry() -> impl Strategy<Value = Entry> {
    let payload = prop_oneof![
        payload_bytes().prop_map(EntryPayload::Command),
        Just(EntryPayload::Noop),
        membership().prop_map(EntryPayload::Membership),
    ];
    (log_id(), payload).prop_map(|(log_id, payload)| Entry { log_id, payload })
}

fn message() -> impl Strategy<Value = Message> {
    let term = any::<u64>().prop_map(Term);
    let index = any::<u64>().prop_map(LogIndex);
    let append_outcome = prop_oneof![
        index.clone().prop_map(|matched| AppendOutcome::Success { matched }),
        (index.clone(), index.clone(), term.clone()).prop_map(|(rejected, index, term)| AppendOutcome::Conflict {
            rejected,
            hint: ConflictHint { index, term }
        }),
        Just(AppendOutcome::StaleTerm),
    ];
    let snapshot_outcome = prop_oneof![
        any::<u64>().prop_map(|next_offset| SnapshotOutcome::Continue { next_offset }),
        Just(SnapshotOutcome::Done),
    ];
    prop_oneof![
        (term.clone(), log_id(), any::<bool>(), any::<bool>()).prop_map(
            |(term, last_log_id, pre_vote, leadership_transfer)| Message::VoteRequest {
                term,
                last_log_id,
                pre_vote,
                leadership_transfer
            }
        ),
        (term.clone(), any::<bool>(), any::<bool>()).prop_map(|(term, granted, pre_vote)| Message::VoteResponse {
            term,
            granted,
            pre_vote
        }),
        (term.clone(), log_id(), proptest::collection::vec(entry(), 0..4), index.clone()).prop_map(
            |(term, prev_log_id, entries, leader_commit)| Message::AppendRequest {
                term,
                prev_log_id,
                entries,
                leader_commit
            }
        ),
        (term.clone(), append_outcome).prop_map(|(term, outcome)| Message::AppendResponse { term, outcome }),
        (term.clone(), index, any::<u64>()).prop_map(|(term, commit, read_round)| Message::Heartbeat {
            term,
            commit,
            read_round
        }),
        (term.clone(), any::<u64>()).prop_map(|(term, read_round)| Message::HeartbeatResponse { term, read_round }),
        term.clone().prop_map(|term| Message::TimeoutNow { term }),
        (term.clone(), log_id(), membership(), any::<u64>(), payload_bytes(), any::<u64>(), any::<u64>()).prop_map(
            |(term, last_included, membership, offset, data, total_bytes, checksum)| Message::InstallSnapshot {
                term,
                meta: SnapshotMeta { last_included, membership },
                offset,
                data,
                total_bytes,
                checksum
            }
        ),
        (term, log_id(), snapshot_outcome).prop_map(|(term, last_included, outcome)| {
            Message::InstallSnapshotResponse { term, last_included, outcome }
        }),
    ]
}

fn envelope() -> impl Strategy<Value = Envelope> {
    (1u64..10, 1u64..10, message())
        .prop_filter("never self-addressed", |(from, to, _)| from != to)
        .prop_map(|(from, to, message)| Envelope { from: NodeId(from), to: NodeId(to), message })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn every_core_envelope_survives_the_round_trip(envelope in envelope(), cluster in "[a-z0-9-]{0,12}") {
        let wire = envelope_to_proto(&cluster, &envelope);
        let back = ClusterEnvelope::try_from(wire.clone()).unwrap();
        prop_assert_eq!(&back, &ClusterEnvelope { cluster_id: cluster.clone(), envelope: envelope.clone() });

        // And through the encoded bytes, as a peer receives it.
        let decoded = proto::Envelope::decode(wire.encode_to_vec().as_slice()).unwrap();
        prop_assert_eq!(ClusterEnvelope::try_from(decoded).unwrap().envelope, envelope);
    }

    #[test]
    fn arbitrary_wire_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        if let Ok(wire) = proto::Envelope::decode(bytes.as_slice()) {
            let _ = ClusterEnvelope::try_from(wire);
        }
    }
}

fn wire(message: proto::envelope::Message) -> proto::Envelope {
    proto::Envelope { cluster_id: "c".into(), from: 1, to: 2, message: Some(message), entry_traces: vec![] }
}

fn decode(wire: proto::Envelope) -> Result<ClusterEnvelope, ConvertError> {
    ClusterEnvelope::try_from(wire)
}

fn meta(membership: proto::Membership) -> proto::SnapshotMeta {
    proto::SnapshotMeta { last_included: Some(proto::LogId { term: 1, index: 1 }), membership: Some(membership) }
}

fn snapshot_chunk(meta: proto::SnapshotMeta) -> proto::envelope::Message {
    proto::envelope::Message::InstallSnapshot(proto::InstallSnapshot {
        term: 1,
        meta: Some(meta),
        offset: 0,
        data: Bytes::new(),
        total_bytes: 0,
        checksum: 0,
    })
}

#[test]
fn an_envelope_without_a_message_is_a_missing_field() {
    let empty = proto::Envelope { cluster_id: "c".into(), from: 1, to: 2, message: None, entry_traces: vec![] };
    assert_eq!(decode(empty), Err(ConvertError::MissingField("Envelope.message")));
}

#[test]
fn a_message_of_a_kind_unknown_to_this_version_is_a_missing_field() {
    // Field 99 is no `oneof` case this version knows: prost skips it, the `oneof` stays unset.
    let mut bytes =
        proto::Envelope { cluster_id: "c".into(), from: 1, to: 2, message: None, entry_traces: vec![] }.encode_to_vec();
    bytes.extend_from_slice(&[0x9a, 0x06, 0x00]); // field 99, length-delimited, empty
    let wire = proto::Envelope::decode(bytes.as_slice()).unwrap();
    assert_eq!(decode(wire), Err(ConvertError::MissingField("Envelope.message")));
}

#[test]
fn missing_nested_fields_are_named() {
    let vote = proto::envelope::Message::VoteRequest(proto::VoteRequest {
        term: 1,
        last_log_id: None,
        pre_vote: false,
        leadership_transfer: false,
    });
    assert_eq!(decode(wire(vote)), Err(ConvertError::MissingField("VoteRequest.last_log_id")));

    let append = proto::envelope::Message::AppendRequest(proto::AppendRequest {
        term: 1,
        prev_log_id: Some(proto::LogId::default()),
        entries: vec![proto::Entry { log_id: Some(proto::LogId { term: 1, index: 1 }), payload: None }],
        leader_commit: 0,
    });
    assert_eq!(decode(wire(append)), Err(ConvertError::MissingField("Entry.payload")));

    let response = proto::envelope::Message::AppendResponse(proto::AppendResponse { term: 1, outcome: None });
    assert_eq!(decode(wire(response)), Err(ConvertError::MissingField("AppendResponse.outcome")));

    let conflict = proto::envelope::Message::AppendResponse(proto::AppendResponse {
        term: 1,
        outcome: Some(proto::append_response::Outcome::Conflict(proto::AppendConflict { rejected: 3, hint: None })),
    });
    assert_eq!(decode(wire(conflict)), Err(ConvertError::MissingField("AppendConflict.hint")));

    let snapshot = proto::envelope::Message::InstallSnapshotResponse(proto::InstallSnapshotResponse {
        term: 1,
        last_included: Some(proto::LogId::default()),
        outcome: None,
    });
    assert_eq!(decode(wire(snapshot)), Err(ConvertError::MissingField("InstallSnapshotResponse.outcome")));

    let no_membership = proto::SnapshotMeta { last_included: Some(proto::LogId::default()), membership: None };
    assert_eq!(decode(wire(snapshot_chunk(no_membership))), Err(ConvertError::MissingField("SnapshotMeta.membership")));
}

#[test]
fn invalid_memberships_are_refused_with_the_reason() {
    let cases = [
        (proto::Membership { incoming: vec![], outgoing: vec![1], learners: vec![] }, MembershipError::NoVoters),
        (
            proto::Membership { incoming: vec![1, 2, 1], outgoing: vec![], learners: vec![] },
            MembershipError::DuplicateId(NodeId(1)),
        ),
        (
            proto::Membership { incoming: vec![1], outgoing: vec![2], learners: vec![2] },
            MembershipError::VoterIsLearner(NodeId(2)),
        ),
    ];
    for (membership, reason) in cases {
        assert_eq!(
            decode(wire(snapshot_chunk(meta(membership.clone())))),
            Err(ConvertError::InvalidMembership { field: "SnapshotMeta.membership", source: reason.clone() })
        );
        let entry = proto::envelope::Message::AppendRequest(proto::AppendRequest {
            term: 1,
            prev_log_id: Some(proto::LogId::default()),
            entries: vec![proto::Entry {
                log_id: Some(proto::LogId { term: 1, index: 1 }),
                payload: Some(proto::entry::Payload::Membership(membership)),
            }],
            leader_commit: 0,
        });
        assert_eq!(
            decode(wire(entry)),
            Err(ConvertError::InvalidMembership { field: "Entry.membership", source: reason })
        );
    }
}

#[test]
fn a_self_addressed_envelope_is_refused() {
    let mut heartbeat = wire(proto::envelope::Message::TimeoutNow(proto::TimeoutNow { term: 1 }));
    heartbeat.to = heartbeat.from;
    assert_eq!(decode(heartbeat), Err(ConvertError::SelfAddressed(NodeId(1))));
}
