//! The one place where protobuf messages become core messages and back.
//!
//! Core -> proto is infallible (`From`). Proto -> core is `TryFrom` with a typed
//! [`ConvertError`]: a peer's bytes are untrusted input, so a missing field, a message
//! of a kind this version does not know, or a malformed membership is an error, never a
//! panic and never a silently defaulted value.

use std::collections::BTreeSet;

use d_engine_core::storage::SnapshotMeta;
use d_engine_core::{
    AppendOutcome, ConflictHint, Entry, EntryPayload, Envelope, LogId, LogIndex, Membership, MembershipError, Message,
    NodeId, SnapshotOutcome, Term,
};

use crate::proto;

/// Why a protobuf message does not make a core message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    /// A required field or `oneof` is absent. An unset `oneof` is also what a message kind
    /// unknown to this version decodes to (prost drops unknown fields).
    #[error("missing field `{0}` (absent, or a kind unknown to this version)")]
    MissingField(&'static str),
    /// A membership that the core refuses (no voter, a learner that votes, an id listed twice).
    #[error("invalid membership in `{field}`: {source}")]
    InvalidMembership {
        /// Where the membership was.
        field: &'static str,
        /// What is wrong with it.
        source: MembershipError,
    },
    /// An envelope addressed to its own sender.
    #[error("envelope from node {0} is addressed to itself")]
    SelfAddressed(NodeId),
}

/// An envelope decoded from the wire, with the cluster it claims to come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterEnvelope {
    /// The sender's cluster id, checked by the receiver against its own.
    pub cluster_id: String,
    /// The message and its addresses.
    pub envelope: Envelope,
}

/// Encodes a core envelope for the wire, stamped with `cluster_id`.
pub fn envelope_to_proto(cluster_id: &str, envelope: &Envelope) -> proto::Envelope {
    proto::Envelope {
        cluster_id: cluster_id.to_owned(),
        from: envelope.from.0,
        to: envelope.to.0,
        message: Some(message_to_proto(&envelope.message)),
        entry_traces: Vec::new(),
    }
}

impl TryFrom<proto::Envelope> for ClusterEnvelope {
    type Error = ConvertError;

    fn try_from(wire: proto::Envelope) -> Result<Self, ConvertError> {
        let from = NodeId(wire.from);
        let to = NodeId(wire.to);
        if from == to {
            return Err(ConvertError::SelfAddressed(from));
        }
        let message = message_from_proto(wire.message.ok_or(ConvertError::MissingField("Envelope.message"))?)?;
        Ok(ClusterEnvelope { cluster_id: wire.cluster_id, envelope: Envelope { from, to, message } })
    }
}

impl From<LogId> for proto::LogId {
    fn from(id: LogId) -> Self {
        proto::LogId { term: id.term.0, index: id.index.0 }
    }
}

impl From<proto::LogId> for LogId {
    fn from(id: proto::LogId) -> Self {
        LogId::new(id.term, id.index)
    }
}

fn log_id(field: &'static str, id: Option<proto::LogId>) -> Result<LogId, ConvertError> {
    id.map(LogId::from).ok_or(ConvertError::MissingField(field))
}

impl From<&Membership> for proto::Membership {
    fn from(m: &Membership) -> Self {
        let ids = |set: &BTreeSet<NodeId>| set.iter().map(|id| id.0).collect();
        proto::Membership { incoming: ids(m.incoming()), outgoing: ids(m.outgoing()), learners: ids(m.learners()) }
    }
}

fn membership(field: &'static str, wire: Option<proto::Membership>) -> Result<Membership, ConvertError> {
    let wire = wire.ok_or(ConvertError::MissingField(field))?;
    let invalid = |source| ConvertError::InvalidMembership { field, source };
    let set = |ids: Vec<u64>| -> Result<BTreeSet<NodeId>, ConvertError> {
        let mut set = BTreeSet::new();
        for id in ids {
            if !set.insert(NodeId(id)) {
                return Err(invalid(MembershipError::DuplicateId(NodeId(id))));
            }
        }
        Ok(set)
    };
    let (incoming, outgoing, learners) = (set(wire.incoming)?, set(wire.outgoing)?, set(wire.learners)?);
    Membership::from_parts(incoming, outgoing, learners).map_err(invalid)
}

impl From<&Entry> for proto::Entry {
    fn from(entry: &Entry) -> Self {
        let payload = match &entry.payload {
            EntryPayload::Command(bytes) => proto::entry::Payload::Command(bytes.clone()),
            EntryPayload::Noop => proto::entry::Payload::Noop(proto::Noop {}),
            EntryPayload::Membership(m) => proto::entry::Payload::Membership(m.into()),
        };
        proto::Entry { log_id: Some(entry.log_id.into()), payload: Some(payload) }
    }
}

impl TryFrom<proto::Entry> for Entry {
    type Error = ConvertError;

    fn try_from(wire: proto::Entry) -> Result<Self, ConvertError> {
        let payload = match wire.payload.ok_or(ConvertError::MissingField("Entry.payload"))? {
            proto::entry::Payload::Command(bytes) => EntryPayload::Command(bytes),
            proto::entry::Payload::Noop(proto::Noop {}) => EntryPayload::Noop,
            proto::entry::Payload::Membership(m) => EntryPayload::Membership(membership("Entry.membership", Some(m))?),
        };
        Ok(Entry { log_id: log_id("Entry.log_id", wire.log_id)?, payload })
    }
}

impl From<&SnapshotMeta> for proto::SnapshotMeta {
    fn from(meta: &SnapshotMeta) -> Self {
        proto::SnapshotMeta {
            last_included: Some(meta.last_included.into()),
            membership: Some((&meta.membership).into()),
        }
    }
}

impl TryFrom<proto::SnapshotMeta> for SnapshotMeta {
    type Error = ConvertError;

    fn try_from(wire: proto::SnapshotMeta) -> Result<Self, ConvertError> {
        Ok(SnapshotMeta {
            last_included: log_id("SnapshotMeta.last_included", wire.last_included)?,
            membership: membership("SnapshotMeta.membership", wire.membership)?,
        })
    }
}

impl From<&Message> for proto::envelope::Message {
    fn from(message: &Message) -> Self {
        message_to_proto(message)
    }
}

impl TryFrom<proto::envelope::Message> for Message {
    type Error = ConvertError;

    fn try_from(wire: proto::envelope::Message) -> Result<Self, ConvertError> {
        message_from_proto(wire)
    }
}

fn message_to_proto(message: &Message) -> proto::envelope::Message {
    use proto::envelope::Message as Wire;
    match message {
        &Message::VoteRequest { term, last_log_id, pre_vote, leadership_transfer } => {
            Wire::VoteRequest(proto::VoteRequest {
                term: term.0,
                last_log_id: Some(last_log_id.into()),
                pre_vote,
                leadership_transfer,
            })
        }
        &Message::VoteResponse { term, granted, pre_vote } => {
            Wire::VoteResponse(proto::VoteResponse { term: term.0, granted, pre_vote })
        }
        Message::AppendRequest { term, prev_log_id, entries, leader_commit } => {
            Wire::AppendRequest(proto::AppendRequest {
                term: term.0,
                prev_log_id: Some((*prev_log_id).into()),
                entries: entries.iter().map(proto::Entry::from).collect(),
                leader_commit: leader_commit.0,
            })
        }
        &Message::AppendResponse { term, outcome } => {
            use proto::append_response::Outcome;
            let outcome = match outcome {
                AppendOutcome::Success { matched } => Outcome::Success(proto::AppendSuccess { matched: matched.0 }),
                AppendOutcome::Conflict { rejected, hint } => Outcome::Conflict(proto::AppendConflict {
                    rejected: rejected.0,
                    hint: Some(proto::ConflictHint { index: hint.index.0, term: hint.term.0 }),
                }),
                AppendOutcome::StaleTerm => Outcome::StaleTerm(proto::StaleTerm {}),
            };
            Wire::AppendResponse(proto::AppendResponse { term: term.0, outcome: Some(outcome) })
        }
        &Message::Heartbeat { term, commit, read_round } => {
            Wire::Heartbeat(proto::Heartbeat { term: term.0, commit: commit.0, read_round })
        }
        &Message::HeartbeatResponse { term, read_round } => {
            Wire::HeartbeatResponse(proto::HeartbeatResponse { term: term.0, read_round })
        }
        &Message::TimeoutNow { term } => Wire::TimeoutNow(proto::TimeoutNow { term: term.0 }),
        Message::InstallSnapshot { term, meta, offset, data, total_bytes, checksum } => {
            Wire::InstallSnapshot(proto::InstallSnapshot {
                term: term.0,
                meta: Some(meta.into()),
                offset: *offset,
                data: data.clone(),
                total_bytes: *total_bytes,
                checksum: *checksum,
            })
        }
        &Message::InstallSnapshotResponse { term, last_included, outcome } => {
            use proto::install_snapshot_response::Outcome;
            let outcome = match outcome {
                SnapshotOutcome::Continue { next_offset } => {
                    Outcome::ContinueFrom(proto::SnapshotContinue { next_offset })
                }
                SnapshotOutcome::Done => Outcome::Done(proto::SnapshotDone {}),
            };
            Wire::InstallSnapshotResponse(proto::InstallSnapshotResponse {
                term: term.0,
                last_included: Some(last_included.into()),
                outcome: Some(outcome),
            })
        }
    }
}

fn message_from_proto(wire: proto::envelope::Message) -> Result<Message, ConvertError> {
    use proto::envelope::Message as Wire;
    Ok(match wire {
        Wire::VoteRequest(m) => Message::VoteRequest {
            term: Term(m.term),
            last_log_id: log_id("VoteRequest.last_log_id", m.last_log_id)?,
            pre_vote: m.pre_vote,
            leadership_transfer: m.leadership_transfer,
        },
        Wire::VoteResponse(m) => Message::VoteResponse { term: Term(m.term), granted: m.granted, pre_vote: m.pre_vote },
        Wire::AppendRequest(m) => Message::AppendRequest {
            term: Term(m.term),
            prev_log_id: log_id("AppendRequest.prev_log_id", m.prev_log_id)?,
            entries: m.entries.into_iter().map(Entry::try_from).collect::<Result<_, _>>()?,
            leader_commit: LogIndex(m.leader_commit),
        },
        Wire::AppendResponse(m) => {
            use proto::append_response::Outcome;
            let outcome = match m.outcome.ok_or(ConvertError::MissingField("AppendResponse.outcome"))? {
                Outcome::Success(s) => AppendOutcome::Success { matched: LogIndex(s.matched) },
                Outcome::Conflict(c) => {
                    let hint = c.hint.ok_or(ConvertError::MissingField("AppendConflict.hint"))?;
                    AppendOutcome::Conflict {
                        rejected: LogIndex(c.rejected),
                        hint: ConflictHint { index: LogIndex(hint.index), term: Term(hint.term) },
                    }
                }
                Outcome::StaleTerm(proto::StaleTerm {}) => AppendOutcome::StaleTerm,
            };
            Message::AppendResponse { term: Term(m.term), outcome }
        }
        Wire::Heartbeat(m) => {
            Message::Heartbeat { term: Term(m.term), commit: LogIndex(m.commit), read_round: m.read_round }
        }
        Wire::HeartbeatResponse(m) => Message::HeartbeatResponse { term: Term(m.term), read_round: m.read_round },
        Wire::TimeoutNow(m) => Message::TimeoutNow { term: Term(m.term) },
        Wire::InstallSnapshot(m) => Message::InstallSnapshot {
            term: Term(m.term),
            meta: m.meta.ok_or(ConvertError::MissingField("InstallSnapshot.meta"))?.try_into()?,
            offset: m.offset,
            data: m.data,
            total_bytes: m.total_bytes,
            checksum: m.checksum,
        },
        Wire::InstallSnapshotResponse(m) => {
            use proto::install_snapshot_response::Outcome;
            let outcome = match m.outcome.ok_or(ConvertError::MissingField("InstallSnapshotResponse.outcome"))? {
                Outcome::ContinueFrom(c) => SnapshotOutcome::Continue { next_offset: c.next_offset },
                Outcome::Done(proto::SnapshotDone {}) => SnapshotOutcome::Done,
            };
            Message::InstallSnapshotResponse {
                term: Term(m.term),
                last_included: log_id("InstallSnapshotResponse.last_included", m.last_included)?,
                outcome,
            }
        }
    })
}
