//! The KV state machine's apply path on redb, without disks in the way of the measurement
//! (deferred writes; the periodic background sync as in the server): one put per batch, as
//! a follower's event loop applies them under a single client, and 64 per batch, as the
//! apply thread sees them under load. 8-byte keys cycling through 100,000 (so every put
//! after the first lap overwrites, reading the previous version), 256-byte values: the
//! shape of `cargo xtask bench`'s writes.
//!
//! `cargo bench -p d-engine-kv --bench apply`

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use d_engine_core::storage::StateMachine;
use d_engine_core::{Entry, EntryPayload, LogId};
use d_engine_kv::{KvStateMachine, put_command};
use d_engine_redb::RedbStateStore;

const KEY_SPACE: u64 = 100_000;
const VALUE_BYTES: usize = 256;

struct Puts {
    state_machine: KvStateMachine<RedbStateStore>,
    index: u64,
    value: Bytes,
}

impl Puts {
    fn batch(&mut self, size: usize) -> Vec<Entry> {
        (0..size)
            .map(|_| {
                self.index += 1;
                let key = Bytes::copy_from_slice(&(self.index % KEY_SPACE).to_be_bytes());
                let payload = EntryPayload::Command(put_command(key, self.value.clone()));
                Entry { log_id: LogId::new(1, self.index), payload }
            })
            .collect()
    }
}

fn apply(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = RedbStateStore::open(dir.path()).expect("open redb");
    let state_machine = KvStateMachine::open(store).expect("open the state machine");
    let mut puts = Puts { state_machine, index: 0, value: Bytes::from(vec![0xab; VALUE_BYTES]) };
    // Every key present: the measured puts overwrite, as in a long benchmark run.
    for _ in 0..KEY_SPACE / 1_000 {
        let batch = puts.batch(1_000);
        puts.state_machine.apply(&batch).expect("fill");
    }

    let mut group = c.benchmark_group("kv_apply_put");
    for size in [1usize, 64] {
        group.throughput(Throughput::Elements(size as u64));
        // Only the apply call is timed, not the making of the batch.
        group.bench_function(BenchmarkId::new("redb", size), |b| {
            b.iter_custom(|iterations| {
                let mut spent = Duration::ZERO;
                for _ in 0..iterations {
                    let batch = puts.batch(size);
                    let start = Instant::now();
                    black_box(puts.state_machine.apply(&batch).expect("apply"));
                    spent += start.elapsed();
                }
                spent
            })
        });
    }
    group.finish();
}

criterion_group!(benches, apply);
criterion_main!(benches);
