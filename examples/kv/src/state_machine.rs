//! The replicated KV state machine with etcd v3 semantics, on top of any [`StateStore`].
//!
//! # Semantics
//! The store has one revision, shared by all keys and identical on every replica because it
//! is derived from the log alone: it starts at 0 and grows by one for each command that
//! changes something (a Put; a DeleteRange that deleted at least one key; a Txn whose
//! executed branch changed something — a Txn is one revision however many writes it holds).
//! Every key carries `create_revision`, `mod_revision`, `version` (1 on creation, +1 per put,
//! gone with a delete) and `lease` (always 0). No history is kept: a Range at an older
//! revision is answered as etcd answers a compacted one.
//!
//! # Layout in the state store
//! `d` + key holds a prost-encoded `mvccpb.KeyValue` without its key; `m/revision` holds the
//! revision as 8 little-endian bytes. The effects of all entries of one `apply` call, the
//! revision and the applied log id go to the store in one atomic `write_batch`.
//!
//! # Determinism
//! A command that is malformed or refused (an empty key, `ignore_value` on a missing key, ...)
//! changes nothing on any replica and its output is a `KvRejection`; only a storage failure
//! is an error of `apply`.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use bytes::Bytes;
use d_engine_core::storage::{Snapshot, SnapshotJob, StateMachine, StateStore, StateWrite, StorageError};
use d_engine_core::{Entry, EntryPayload, LogId};
use prost::Message;

use crate::error::KvError;
use crate::proto::command::{KvCommand, KvOutput, KvRejection, kv_command, kv_output};
use crate::proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use crate::proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use crate::proto::etcdserverpb::{
    Compare, DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse, RangeRequest, RangeResponse, RequestOp,
    ResponseHeader, ResponseOp, TxnRequest, TxnResponse, request_op, response_op,
};
use crate::proto::mvccpb::KeyValue;

/// The most operations etcd accepts in one branch of a Txn (its `--max-txn-ops` default).
pub const MAX_TXN_OPS: usize = 128;

/// How many applied entries may sit in deferred (not yet durable) state-store batches before
/// the state machine starts syncing them in the background (`sync_in_background`: redb
/// writes them out on a thread of its own, ~2-7 µs per key of CPU, while applying goes on);
/// it bounds how much log a restart re-applies. Done on the apply thread, those syncs held
/// up every answer behind them: under 1,000 clients the apply step took ~20 ms on average.
pub const SYNC_EVERY_ENTRIES: u64 = 1_000;

const DATA_PREFIX: &[u8] = b"d";
/// The first store key past every data key.
const DATA_END: &[u8] = b"e";
const REVISION_KEY: &[u8] = b"m/revision";

/// A replicated key-value store with etcd's revisions, versions and transactions.
///
/// Writes arrive only through [`StateMachine::apply`] as encoded [`KvCommand`]s; reads are
/// [`KvStateMachine::range`] on `&self`. It is `Send + Sync` whenever the store is.
#[derive(Debug)]
pub struct KvStateMachine<S> {
    store: S,
    revision: i64,
    applied: LogId,
    /// Entries applied since the store last made its deferred batches durable.
    unsynced_entries: u64,
}

impl<S: StateStore> KvStateMachine<S> {
    /// Opens the state machine over `store`, resuming from the revision and applied id
    /// it holds (an empty store starts at revision 0 and `LogId::default()`).
    pub fn open(store: S) -> Result<KvStateMachine<S>, StorageError> {
        let applied = store.applied()?;
        let revision = read_revision(&store)?;
        Ok(KvStateMachine { store, revision, applied, unsynced_entries: 0 })
    }

    /// The current revision: that of the last change, 0 for a store never written.
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// The state store underneath.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Answers a Range from the current state (a read outside the log; the caller decides
    /// whether the state is fresh enough). The header carries only the revision.
    pub fn range(&self, request: &RangeRequest) -> Result<RangeResponse, KvError> {
        validate_range(request)?;
        let view = View { store: &self.store, overlay: &Overlay::default() };
        let mut response = view.range(request, self.revision)?;
        response.header = Some(revision_header(self.revision));
        Ok(response)
    }

    /// Executes one decoded command against `overlay` at the current revision `revision`;
    /// returns the output and whether the command changed anything (then it took
    /// revision `revision + 1`).
    fn execute(&self, overlay: &mut Overlay, command: &KvCommand, revision: i64) -> Result<KvOutput, KvError> {
        let next = revision + 1;
        let mut writer = Writer { store: &self.store, overlay, revision, changed: false };
        let result = match &command.request {
            Some(kv_command::Request::Put(request)) => {
                validate_put(request)?;
                kv_output::Result::Put(writer.put(request, next)?)
            }
            Some(kv_command::Request::DeleteRange(request)) => {
                validate_delete(request)?;
                kv_output::Result::DeleteRange(writer.delete(request)?)
            }
            Some(kv_command::Request::Txn(request)) => {
                validate_txn(request)?;
                kv_output::Result::Txn(writer.txn(request, next)?)
            }
            None => return Err(KvError::Malformed("command carries no request".into())),
        };
        let revision_after = if writer.changed { next } else { revision };
        Ok(KvOutput { result: Some(with_revision(result, revision_after)) })
    }
}

impl<S: StateStore> StateMachine for KvStateMachine<S> {
    fn apply(&mut self, entries: &[Entry]) -> Result<Vec<Bytes>, StorageError> {
        let Some(last) = entries.last() else { return Ok(Vec::new()) };
        let mut overlay = Overlay::default();
        let mut revision = self.revision;
        let mut outputs = Vec::with_capacity(entries.len());
        for entry in entries {
            let EntryPayload::Command(bytes) = &entry.payload else {
                outputs.push(Bytes::new());
                continue;
            };
            // From the entry's own buffer: the key and value come out as slices of it, uncopied.
            let executed = KvCommand::decode(bytes.clone())
                .map_err(|error| KvError::Malformed(format!("undecodable command: {error}")))
                .and_then(|command| self.execute(&mut overlay, &command, revision));
            let output = match executed {
                Ok(output) => {
                    overlay.keep();
                    if changed_revision(&output) > revision {
                        revision += 1;
                    }
                    output
                }
                Err(KvError::Storage(error)) => return Err(error),
                Err(refusal) => {
                    overlay.undo();
                    rejection(&refusal)
                }
            };
            outputs.push(Bytes::from(output.encode_to_vec()));
        }
        let mut writes: Vec<StateWrite> = overlay
            .changes
            .into_iter()
            .map(|(key, value)| match value {
                Some(value) => StateWrite::Put { key, value },
                None => StateWrite::Delete { key },
            })
            .collect();
        if revision != self.revision {
            let value = Bytes::copy_from_slice(&revision.to_le_bytes());
            writes.push(StateWrite::Put { key: Bytes::from_static(REVISION_KEY), value });
        }
        // Deferred: the fsync stays off the apply path. After a crash the store is at an
        // earlier batch (data, revision and applied id together) and the node re-applies the
        // log from there; a background sync every SYNC_EVERY_ENTRIES bounds that replay.
        self.store.write_batch_deferred(&writes, last.log_id)?;
        self.unsynced_entries += entries.len() as u64;
        if self.unsynced_entries >= SYNC_EVERY_ENTRIES {
            self.store.sync_in_background()?;
            self.unsynced_entries = 0;
        }
        self.revision = revision;
        self.applied = last.log_id;
        Ok(outputs)
    }

    fn last_applied(&self) -> LogId {
        self.applied
    }

    fn build_snapshot(&mut self) -> Result<(LogId, Bytes), StorageError> {
        Ok((self.applied, self.store.export()?))
    }

    /// The store's export job (on redb: a read transaction of the state as of now).
    fn snapshot_job(&mut self) -> Result<SnapshotJob, StorageError> {
        let applied = self.applied;
        let export = self.store.export_job()?;
        Ok(Box::new(move || Ok((applied, export()?))))
    }

    fn install_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), StorageError> {
        if snapshot.meta.last_included.index < self.applied.index {
            return Err(StorageError::Misuse(format!(
                "snapshot at {} is older than the applied {}",
                snapshot.meta.last_included, self.applied
            )));
        }
        self.store.import(&snapshot.data)?;
        self.revision = read_revision(&self.store)?;
        self.applied = self.store.applied()?;
        Ok(())
    }

    /// Syncs the deferred batches: a graceful stop leaves nothing to re-apply.
    fn flush(&mut self) -> Result<(), StorageError> {
        self.store.sync()?;
        self.unsynced_entries = 0;
        Ok(())
    }
}

fn read_revision(store: &impl StateStore) -> Result<i64, StorageError> {
    match store.get(REVISION_KEY)? {
        None => Ok(0),
        Some(bytes) => match <[u8; 8]>::try_from(bytes.as_ref()) {
            Ok(raw) => Ok(i64::from_le_bytes(raw)),
            Err(_) => Err(corrupt("the revision record is not 8 bytes")),
        },
    }
}

fn corrupt(reason: &str) -> StorageError {
    StorageError::Corrupt { location: "kv state".into(), reason: reason.into() }
}

fn rejection(error: &KvError) -> KvOutput {
    let rejected = KvRejection { code: error.code() as i32, message: error.to_string() };
    KvOutput { result: Some(kv_output::Result::Rejected(rejected)) }
}

fn revision_header(revision: i64) -> ResponseHeader {
    ResponseHeader { revision, ..ResponseHeader::default() }
}

fn changed_revision(output: &KvOutput) -> i64 {
    let header = match &output.result {
        Some(kv_output::Result::Put(response)) => response.header.as_ref(),
        Some(kv_output::Result::DeleteRange(response)) => response.header.as_ref(),
        Some(kv_output::Result::Txn(response)) => response.header.as_ref(),
        _ => None,
    };
    header.map_or(0, |header| header.revision)
}

/// Stamps `revision` on the response and, for a Txn, on every nested response.
fn with_revision(result: kv_output::Result, revision: i64) -> kv_output::Result {
    match result {
        kv_output::Result::Put(mut response) => {
            response.header = Some(revision_header(revision));
            kv_output::Result::Put(response)
        }
        kv_output::Result::DeleteRange(mut response) => {
            response.header = Some(revision_header(revision));
            kv_output::Result::DeleteRange(response)
        }
        kv_output::Result::Txn(mut response) => {
            stamp_txn(&mut response, revision);
            kv_output::Result::Txn(response)
        }
        other => other,
    }
}

fn stamp_txn(response: &mut TxnResponse, revision: i64) {
    response.header = Some(revision_header(revision));
    for op in &mut response.responses {
        match &mut op.response {
            Some(response_op::Response::ResponseRange(r)) => r.header = Some(revision_header(revision)),
            Some(response_op::Response::ResponsePut(r)) => r.header = Some(revision_header(revision)),
            Some(response_op::Response::ResponseDeleteRange(r)) => r.header = Some(revision_header(revision)),
            Some(response_op::Response::ResponseTxn(r)) => stamp_txn(r, revision),
            None => {}
        }
    }
}

// ---- validation: pure checks on a request, done by the service before proposing and again
// ---- at apply time (a command may come from anywhere).

/// Checks a Range request without looking at the state.
pub fn validate_range(request: &RangeRequest) -> Result<(), KvError> {
    if request.key.is_empty() {
        return Err(KvError::KeyNotProvided);
    }
    if SortOrder::try_from(request.sort_order).is_err() || SortTarget::try_from(request.sort_target).is_err() {
        return Err(KvError::InvalidSortOption);
    }
    Ok(())
}

/// Checks a Put request without looking at the state.
pub fn validate_put(request: &PutRequest) -> Result<(), KvError> {
    if request.key.is_empty() {
        return Err(KvError::KeyNotProvided);
    }
    if request.ignore_value && !request.value.is_empty() {
        return Err(KvError::ValueProvided);
    }
    if request.lease != 0 {
        return Err(KvError::LeaseNotFound);
    }
    Ok(())
}

/// Checks a DeleteRange request without looking at the state.
pub fn validate_delete(request: &DeleteRangeRequest) -> Result<(), KvError> {
    if request.key.is_empty() {
        return Err(KvError::KeyNotProvided);
    }
    Ok(())
}

/// Checks a Txn request, its compares and both branches (nested Txns included) without
/// looking at the state.
pub fn validate_txn(request: &TxnRequest) -> Result<(), KvError> {
    if request.success.len() > MAX_TXN_OPS || request.failure.len() > MAX_TXN_OPS {
        return Err(KvError::TooManyTxnOps);
    }
    for compare in &request.compare {
        if CompareResult::try_from(compare.result).is_err() || CompareTarget::try_from(compare.target).is_err() {
            return Err(KvError::Malformed("unknown compare result or target".into()));
        }
    }
    for branch in [&request.success, &request.failure] {
        for op in branch {
            match &op.request {
                Some(request_op::Request::RequestRange(r)) => validate_range(r)?,
                Some(request_op::Request::RequestPut(r)) => validate_put(r)?,
                Some(request_op::Request::RequestDeleteRange(r)) => validate_delete(r)?,
                Some(request_op::Request::RequestTxn(r)) => validate_txn(r)?,
                None => return Err(KvError::Malformed("txn operation carries no request".into())),
            }
        }
        check_no_duplicate_writes(branch)?;
    }
    Ok(())
}

/// etcd refuses a branch that puts one key twice, or puts a key that it also deletes.
fn check_no_duplicate_writes(branch: &[RequestOp]) -> Result<(), KvError> {
    let mut put_keys: Vec<&Bytes> = Vec::new();
    let mut deletes: Vec<&DeleteRangeRequest> = Vec::new();
    for op in branch {
        match &op.request {
            Some(request_op::Request::RequestPut(put)) => {
                if put_keys.contains(&&put.key) {
                    return Err(KvError::DuplicateKey);
                }
                put_keys.push(&put.key);
            }
            Some(request_op::Request::RequestDeleteRange(delete)) => deletes.push(delete),
            _ => {}
        }
    }
    let deleted = |key: &Bytes| deletes.iter().any(|d| key_in_range(key, &d.key, &d.range_end));
    if put_keys.into_iter().any(deleted) {
        return Err(KvError::DuplicateKey);
    }
    Ok(())
}

fn key_in_range(key: &[u8], start: &[u8], range_end: &[u8]) -> bool {
    match range_end {
        [] => key == start,
        [0] => key >= start,
        end => key >= start && key < end,
    }
}

// ---- reading: the store seen through the pending changes of the current apply call.

fn data_key(key: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(DATA_PREFIX.len() + key.len());
    out.extend_from_slice(DATA_PREFIX);
    out.extend_from_slice(key);
    Bytes::from(out)
}

/// A key's record as stored: the key is in the store key, not repeated in the value.
fn encode_record(kv: KeyValue) -> Bytes {
    let stored = KeyValue { key: Bytes::new(), ..kv };
    Bytes::from(stored.encode_to_vec())
}

/// A stored record back as a key-value; its value a slice of `value`, uncopied.
fn decode_record(store_key: &Bytes, value: Bytes) -> Result<KeyValue, StorageError> {
    let mut kv = KeyValue::decode(value).map_err(|error| corrupt(&format!("undecodable key record: {error}")))?;
    kv.key = store_key.slice(DATA_PREFIX.len()..);
    Ok(kv)
}

/// The changes of one `apply` call not yet in the store (`None` = deleted), with an undo
/// journal for the command being executed, so that a refused command leaves no trace.
#[derive(Default)]
struct Overlay {
    changes: BTreeMap<Bytes, Option<Bytes>>,
    journal: Vec<(Bytes, Option<Option<Bytes>>)>,
}

impl Overlay {
    fn set(&mut self, key: Bytes, value: Option<Bytes>) {
        let previous = self.changes.insert(key.clone(), value);
        self.journal.push((key, previous));
    }

    fn keep(&mut self) {
        self.journal.clear();
    }

    fn undo(&mut self) {
        while let Some((key, previous)) = self.journal.pop() {
            match previous {
                Some(value) => self.changes.insert(key, value),
                None => self.changes.remove(&key),
            };
        }
    }
}

struct View<'a, S> {
    store: &'a S,
    overlay: &'a Overlay,
}

impl<S: StateStore> View<'_, S> {
    fn get(&self, key: &[u8]) -> Result<Option<KeyValue>, StorageError> {
        self.get_stored(&data_key(key))
    }

    /// [`Self::get`] by store key ([`data_key`]).
    fn get_stored(&self, store_key: &Bytes) -> Result<Option<KeyValue>, StorageError> {
        let value = match self.overlay.changes.get(store_key) {
            Some(pending) => pending.clone(),
            None => self.store.get(store_key)?,
        };
        value.map(|value| decode_record(store_key, value)).transpose()
    }

    /// The keys of etcd's range `key`/`range_end`, in key order.
    fn scan(&self, key: &[u8], range_end: &[u8]) -> Result<Vec<KeyValue>, StorageError> {
        if range_end.is_empty() {
            return Ok(self.get(key)?.into_iter().collect());
        }
        let start = data_key(key);
        let end = if range_end == [0] { Bytes::from_static(DATA_END) } else { data_key(range_end) };
        if start >= end {
            return Ok(Vec::new());
        }
        let mut pairs: BTreeMap<Bytes, Bytes> = self.store.range(&start, Some(&end), 0)?.into_iter().collect();
        for (pending_key, pending) in self.overlay.changes.range(start..end) {
            match pending {
                Some(value) => pairs.insert(pending_key.clone(), value.clone()),
                None => pairs.remove(pending_key),
            };
        }
        pairs.into_iter().map(|(store_key, value)| decode_record(&store_key, value)).collect()
    }

    fn range(&self, request: &RangeRequest, revision: i64) -> Result<RangeResponse, KvError> {
        if request.revision > revision {
            return Err(KvError::FutureRevision);
        }
        if request.revision > 0 && request.revision < revision {
            return Err(KvError::RevisionCompacted);
        }
        let all = self.scan(&request.key, &request.range_end)?;
        Ok(range_response(request, all))
    }
}

fn range_response(request: &RangeRequest, all: Vec<KeyValue>) -> RangeResponse {
    let count = all.len() as i64;
    if request.count_only {
        return RangeResponse { header: None, kvs: Vec::new(), more: false, count };
    }
    let within = |value: i64, min: i64, max: i64| (min <= 0 || value >= min) && (max <= 0 || value <= max);
    let mut kvs: Vec<KeyValue> = all
        .into_iter()
        .filter(|kv| within(kv.mod_revision, request.min_mod_revision, request.max_mod_revision))
        .filter(|kv| within(kv.create_revision, request.min_create_revision, request.max_create_revision))
        .collect();
    sort(&mut kvs, request);
    let limit = usize::try_from(request.limit).ok().filter(|&limit| limit > 0).unwrap_or(usize::MAX);
    let more = kvs.len() > limit;
    kvs.truncate(limit);
    if request.keys_only {
        kvs.iter_mut().for_each(|kv| kv.value = Bytes::new());
    }
    RangeResponse { header: None, kvs, more, count }
}

/// etcd's ordering: key order unless asked otherwise; a target other than the key with no
/// order means ascending. The sort is stable, so ties stay in key order.
fn sort(kvs: &mut [KeyValue], request: &RangeRequest) {
    let target = SortTarget::try_from(request.sort_target).unwrap_or(SortTarget::Key);
    let order = match SortOrder::try_from(request.sort_order).unwrap_or(SortOrder::None) {
        SortOrder::None if target == SortTarget::Key => return,
        SortOrder::None => SortOrder::Ascend,
        order => order,
    };
    let compare = |a: &KeyValue, b: &KeyValue| match target {
        SortTarget::Key => a.key.cmp(&b.key),
        SortTarget::Version => a.version.cmp(&b.version),
        SortTarget::Create => a.create_revision.cmp(&b.create_revision),
        SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
        SortTarget::Value => a.value.cmp(&b.value),
    };
    match order {
        SortOrder::Descend => kvs.sort_by(|a, b| compare(b, a)),
        _ => kvs.sort_by(compare),
    }
}

// ---- writing

/// Executes one command's operations into the overlay. `changed` turns true at the first
/// write, which is when the command takes the next revision.
struct Writer<'a, S> {
    store: &'a S,
    overlay: &'a mut Overlay,
    /// The revision before this command.
    revision: i64,
    changed: bool,
}

impl<S: StateStore> Writer<'_, S> {
    fn view(&self) -> View<'_, S> {
        View { store: self.store, overlay: self.overlay }
    }

    fn put(&mut self, request: &PutRequest, next: i64) -> Result<PutResponse, KvError> {
        let store_key = data_key(&request.key);
        let previous = self.view().get_stored(&store_key)?;
        let value = match (&previous, request.ignore_value || request.ignore_lease) {
            (None, true) => return Err(KvError::KeyNotFound),
            (Some(previous), _) if request.ignore_value => previous.value.clone(),
            _ => request.value.clone(),
        };
        let kv = KeyValue {
            key: request.key.clone(),
            create_revision: previous.as_ref().map_or(next, |previous| previous.create_revision),
            mod_revision: next,
            version: previous.as_ref().map_or(1, |previous| previous.version + 1),
            value,
            lease: 0,
        };
        self.overlay.set(store_key, Some(encode_record(kv)));
        self.changed = true;
        Ok(PutResponse { header: None, prev_kv: previous.filter(|_| request.prev_kv) })
    }

    fn delete(&mut self, request: &DeleteRangeRequest) -> Result<DeleteRangeResponse, KvError> {
        let doomed = self.view().scan(&request.key, &request.range_end)?;
        for kv in &doomed {
            self.overlay.set(data_key(&kv.key), None);
        }
        self.changed |= !doomed.is_empty();
        let deleted = doomed.len() as i64;
        Ok(DeleteRangeResponse { header: None, deleted, prev_kvs: if request.prev_kv { doomed } else { Vec::new() } })
    }

    fn txn(&mut self, request: &TxnRequest, next: i64) -> Result<TxnResponse, KvError> {
        let mut succeeded = true;
        for compare in &request.compare {
            if !self.compare(compare)? {
                succeeded = false;
                break;
            }
        }
        let branch = if succeeded { &request.success } else { &request.failure };
        let mut responses = Vec::with_capacity(branch.len());
        for op in branch {
            let response = match &op.request {
                Some(request_op::Request::RequestRange(r)) => {
                    response_op::Response::ResponseRange(self.view().range(r, self.revision)?)
                }
                Some(request_op::Request::RequestPut(r)) => response_op::Response::ResponsePut(self.put(r, next)?),
                Some(request_op::Request::RequestDeleteRange(r)) => {
                    response_op::Response::ResponseDeleteRange(self.delete(r)?)
                }
                Some(request_op::Request::RequestTxn(r)) => response_op::Response::ResponseTxn(self.txn(r, next)?),
                None => return Err(KvError::Malformed("txn operation carries no request".into())),
            };
            responses.push(ResponseOp { response: Some(response) });
        }
        Ok(TxnResponse { header: None, succeeded, responses })
    }

    /// etcd's rule: every key in the compare's range must satisfy it; with no key there, a
    /// VALUE compare fails and the others compare against zero (version 0, revision 0).
    fn compare(&self, compare: &Compare) -> Result<bool, StorageError> {
        let kvs = self.view().scan(&compare.key, &compare.range_end)?;
        let target = CompareTarget::try_from(compare.target).unwrap_or(CompareTarget::Version);
        if kvs.is_empty() {
            return Ok(target != CompareTarget::Value && compare_holds(&KeyValue::default(), compare));
        }
        Ok(kvs.iter().all(|kv| compare_holds(kv, compare)))
    }
}

fn compare_holds(kv: &KeyValue, compare: &Compare) -> bool {
    let number = |field: fn(&TargetUnion) -> Option<i64>| compare.target_union.as_ref().and_then(field).unwrap_or(0);
    let ordering = match CompareTarget::try_from(compare.target).unwrap_or(CompareTarget::Version) {
        CompareTarget::Version => {
            kv.version.cmp(&number(|t| if let TargetUnion::Version(v) = t { Some(*v) } else { None }))
        }
        CompareTarget::Create => {
            kv.create_revision.cmp(&number(|t| if let TargetUnion::CreateRevision(v) = t { Some(*v) } else { None }))
        }
        CompareTarget::Mod => {
            kv.mod_revision.cmp(&number(|t| if let TargetUnion::ModRevision(v) = t { Some(*v) } else { None }))
        }
        CompareTarget::Lease => kv.lease.cmp(&number(|t| if let TargetUnion::Lease(v) = t { Some(*v) } else { None })),
        CompareTarget::Value => {
            let wanted = match &compare.target_union {
                Some(TargetUnion::Value(value)) => value.as_ref(),
                _ => &[],
            };
            kv.value.as_ref().cmp(wanted)
        }
    };
    match CompareResult::try_from(compare.result).unwrap_or(CompareResult::Equal) {
        CompareResult::Equal => ordering == Ordering::Equal,
        CompareResult::Greater => ordering == Ordering::Greater,
        CompareResult::Less => ordering == Ordering::Less,
        CompareResult::NotEqual => ordering != Ordering::Equal,
    }
}
