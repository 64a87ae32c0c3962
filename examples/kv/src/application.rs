//! The KV state machine as a d-engine [`Application`]: what a node runs.
//!
//! A query through the d-engine client API (`Client::query`) is an encoded etcd
//! `RangeRequest`; the answer is the encoded `RangeResponse` (its header carries only the
//! revision). etcd clients use the etcd API instead, which reads through the same state.

use bytes::Bytes;
use d_engine::Application;
use d_engine_core::storage::StateStore;
use prost::Message;

use crate::proto::etcdserverpb::RangeRequest;
use crate::state_machine::KvStateMachine;

impl<S: StateStore + Send + Sync + 'static> Application for KvStateMachine<S> {
    fn query(&self, query: &[u8]) -> Result<Bytes, String> {
        let request = RangeRequest::decode(query).map_err(|error| format!("not a RangeRequest: {error}"))?;
        let response = self.range(&request).map_err(|error| error.to_string())?;
        Ok(Bytes::from(response.encode_to_vec()))
    }
}
