//! The one convention for "not the leader" answers of the client API (`proto/client.proto`),
//! shared by the node that sends them and the client that reads them.
//!
//! A node that refuses a request because it is not the leader answers `FAILED_PRECONDITION`
//! with the message "not the leader; ..." and, when it knows the leader, the metadata keys
//! [`LEADER_ID_KEY`] and [`LEADER_ADDRESS_KEY`]. Such a refusal promises that the request
//! was not executed, so a client may retry it anywhere, a proposal included. A node should
//! answer this way also when no leader is known (both hints `None`): the client then tries
//! other nodes after a backoff instead of giving up.

use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Code, Status};

/// The metadata key carrying the leader's node id (decimal).
pub const LEADER_ID_KEY: &str = "d-engine-leader-id";
/// The metadata key carrying the leader's client address, a URL such as `http://127.0.0.1:9081`.
pub const LEADER_ADDRESS_KEY: &str = "d-engine-leader-address";
/// How the message of every not-leader status starts.
pub const NOT_LEADER_MESSAGE: &str = "not the leader";

/// The status a node that is not the leader answers: `FAILED_PRECONDITION`, the message
/// "not the leader; leader is node N at ADDR", and the leader hint as metadata.
///
/// An address that is not a valid metadata value (non-printable ASCII) is left out of the
/// metadata; it still appears in the message.
pub fn not_leader_status(leader_id: Option<u64>, leader_address: Option<&str>) -> Status {
    let message = match (leader_id, leader_address) {
        (Some(id), Some(address)) => format!("{NOT_LEADER_MESSAGE}; leader is node {id} at {address}"),
        (Some(id), None) => format!("{NOT_LEADER_MESSAGE}; leader is node {id}"),
        (None, Some(address)) => format!("{NOT_LEADER_MESSAGE}; leader is at {address}"),
        (None, None) => format!("{NOT_LEADER_MESSAGE}; no leader is known"),
    };
    let mut metadata = MetadataMap::new();
    if let Some(id) = leader_id {
        metadata.insert(LEADER_ID_KEY, MetadataValue::from(id));
    }
    if let Some(value) = leader_address.and_then(|address| MetadataValue::try_from(address).ok()) {
        metadata.insert(LEADER_ADDRESS_KEY, value);
    }
    Status::with_metadata(Code::FailedPrecondition, message, metadata)
}

/// Whether `status` is a not-leader refusal (made by [`not_leader_status`]), with or
/// without a leader hint.
pub fn is_not_leader(status: &Status) -> bool {
    status.code() == Code::FailedPrecondition
        && (status.message().starts_with(NOT_LEADER_MESSAGE) || status.metadata().contains_key(LEADER_ID_KEY))
}

/// The leader hint of a not-leader refusal: the leader's id and, when given, its address.
/// `None` when `status` is not such a refusal or names no leader id.
pub fn leader_hint(status: &Status) -> Option<(u64, Option<String>)> {
    if status.code() != Code::FailedPrecondition {
        return None;
    }
    let metadata = status.metadata();
    let id = metadata.get(LEADER_ID_KEY)?.to_str().ok()?.trim().parse::<u64>().ok()?;
    let address = metadata
        .get(LEADER_ADDRESS_KEY)
        .and_then(|value| value.to_str().ok())
        .filter(|address| !address.is_empty())
        .map(str::to_owned);
    Some((id, address))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_hint_round_trips() {
        let status = not_leader_status(Some(3), Some("http://127.0.0.1:9081"));
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert_eq!(status.message(), "not the leader; leader is node 3 at http://127.0.0.1:9081");
        assert!(is_not_leader(&status));
        assert_eq!(leader_hint(&status), Some((3, Some("http://127.0.0.1:9081".to_owned()))));
    }

    #[test]
    fn a_hint_without_address_keeps_the_id() {
        let status = not_leader_status(Some(7), None);
        assert_eq!(leader_hint(&status), Some((7, None)));
    }

    #[test]
    fn an_unknown_leader_is_still_a_not_leader_refusal() {
        let status = not_leader_status(None, None);
        assert!(is_not_leader(&status));
        assert_eq!(leader_hint(&status), None);
    }

    #[test]
    fn other_statuses_carry_no_hint() {
        let status = Status::failed_precondition("cluster id mismatch");
        assert!(!is_not_leader(&status));
        assert_eq!(leader_hint(&status), None);
        assert_eq!(leader_hint(&Status::unavailable("down")), None);
    }

    #[test]
    fn a_hint_survives_the_wire_encoding() {
        let status = not_leader_status(Some(2), Some("http://10.0.0.2:9081"));
        let response = status.into_http::<()>();
        let decoded = Status::from_header_map(response.headers()).expect("a status in the headers");
        assert_eq!(leader_hint(&decoded), Some((2, Some("http://10.0.0.2:9081".to_owned()))));
        assert!(is_not_leader(&decoded));
    }
}
