//! Per-peer replication progress: what the leader knows of each follower's log and
//! how much it may send before hearing back.

mod inflights;
mod progress;
mod snapshot_send;

pub(crate) use inflights::Inflights;
pub(crate) use progress::{Progress, ProgressState};
pub(crate) use snapshot_send::{SnapshotSend, SnapshotTick};
