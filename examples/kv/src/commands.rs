//! Small helpers for programs that drive a [`KvStateMachine`] through a d-engine node
//! directly (the examples, tests), without the etcd gRPC service: encode a write as a log
//! command, decode the state machine's output, read one key.

use bytes::Bytes;
use d_engine_core::storage::StateStore;
use prost::Message;

use crate::error::KvError;
use crate::proto::command::{KvCommand, KvOutput, kv_command, kv_output};
use crate::proto::etcdserverpb::{DeleteRangeRequest, PutRequest, RangeRequest};
use crate::state_machine::KvStateMachine;

/// The log command that puts `value` at `key` (an encoded `KvCommand`), for
/// `Node::propose`.
pub fn put_command(key: impl Into<Bytes>, value: impl Into<Bytes>) -> Bytes {
    let put = PutRequest { key: key.into(), value: value.into(), ..PutRequest::default() };
    encode(kv_command::Request::Put(put))
}

/// The log command that deletes `key` (an encoded `KvCommand`), for `Node::propose`.
pub fn delete_command(key: impl Into<Bytes>) -> Bytes {
    let delete = DeleteRangeRequest { key: key.into(), ..DeleteRangeRequest::default() };
    encode(kv_command::Request::DeleteRange(delete))
}

fn encode(request: kv_command::Request) -> Bytes {
    Bytes::from(KvCommand { request: Some(request) }.encode_to_vec())
}

/// The store's revision after the command whose apply output is `output`, or why the
/// command was refused (then nothing changed).
pub fn output_revision(output: &[u8]) -> Result<i64, KvError> {
    let output =
        KvOutput::decode(output).map_err(|error| KvError::Malformed(format!("undecodable output: {error}")))?;
    let header = match output.result {
        Some(kv_output::Result::Put(response)) => response.header,
        Some(kv_output::Result::DeleteRange(response)) => response.header,
        Some(kv_output::Result::Txn(response)) => response.header,
        Some(kv_output::Result::Rejected(rejection)) => {
            return Err(KvError::Malformed(format!("refused (code {}): {}", rejection.code, rejection.message)));
        }
        None => return Err(KvError::Malformed("the output carries no result".into())),
    };
    Ok(header.map_or(0, |header| header.revision))
}

/// The value of `key` in the state machine's current state, if it is set.
pub fn get<S: StateStore>(state_machine: &KvStateMachine<S>, key: impl Into<Bytes>) -> Result<Option<Bytes>, KvError> {
    let response = state_machine.range(&RangeRequest { key: key.into(), ..RangeRequest::default() })?;
    Ok(response.kvs.into_iter().next().map(|kv| kv.value))
}

#[cfg(test)]
mod tests {
    use d_engine_core::storage::StateMachine;
    use d_engine_core::{Entry, EntryPayload, LogId};
    use d_engine_memory::MemStateStore;

    use super::*;

    fn apply(state_machine: &mut KvStateMachine<MemStateStore>, index: u64, command: Bytes) -> Bytes {
        let entry = Entry { log_id: LogId::new(1, index), payload: EntryPayload::Command(command) };
        state_machine.apply(&[entry]).expect("memory never fails").remove(0)
    }

    #[test]
    fn a_put_command_applies_and_get_reads_it_back() {
        let mut state_machine = KvStateMachine::open(MemStateStore::new()).expect("empty store");
        let output = apply(&mut state_machine, 1, put_command("k", "v"));
        assert_eq!(output_revision(&output).expect("applied"), 1);
        assert_eq!(get(&state_machine, "k").expect("valid key"), Some(Bytes::from("v")));
        let output = apply(&mut state_machine, 2, delete_command("k"));
        assert_eq!(output_revision(&output).expect("applied"), 2);
        assert_eq!(get(&state_machine, "k").expect("valid key"), None);
    }

    #[test]
    fn a_refused_command_reports_why() {
        let mut state_machine = KvStateMachine::open(MemStateStore::new()).expect("empty store");
        let output = apply(&mut state_machine, 1, put_command("", "v"));
        let error = output_revision(&output).expect_err("an empty key is refused");
        assert!(error.to_string().contains("key is not provided"), "{error}");
    }
}
