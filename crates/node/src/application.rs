//! What a node runs: the user's state machine, plus a read-only query entry point for
//! clients that speak bytes (the d-engine client API).

use bytes::Bytes;
use d_engine_core::storage::StateMachine;

/// A state machine a node can run and serve reads from.
///
/// `apply`, `build_snapshot` and `install_snapshot` run on the node's apply thread, one at a
/// time; `query` runs concurrently on any thread while no `&mut` method runs (the node keeps
/// the state machine behind a read-write lock), hence `Send + Sync`.
pub trait Application: StateMachine + Send + Sync + 'static {
    /// Answers a read-only `query` from the current state. Must not change state. An
    /// error is returned to the client as it is (e.g. a malformed query).
    fn query(&self, query: &[u8]) -> Result<Bytes, String>;
}
