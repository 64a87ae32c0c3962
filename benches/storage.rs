//! Append + sync throughput of each log store, next to the physical limit of the disk;
//! and the cost of one deferred state-store batch, the state machine's apply path.
//!
//! Every iteration appends one batch of 256-byte entries and syncs it: 1, 16 or 256
//! entries per sync, the range a group-committing runtime sees from one client to many.
//! `raw_fdatasync` appends the same payload bytes to a plain file and calls `fdatasync`
//! (`File::sync_data`); every sync also commits the file's new length to the file
//! system's journal. `raw_fdatasync_preallocated` overwrites a file whose blocks were
//! written beforehand, so `fdatasync` flushes data only: the physical limit of the
//! disk. A store that writes into space it allocated earlier (sled's segments, redb's
//! pages) can approach the second; none can beat it.
//!
//! `state_deferred_batch` writes one 256-byte put per `write_batch_deferred` and syncs
//! every [`SYNC_EVERY_BATCHES`] batches, as the reference KV state machine does, so the
//! time per batch includes its share of the sync. `redb_call_only` times the
//! `write_batch_deferred` call alone: what the apply thread pays between two syncs.
//!
//! ```sh
//! cargo bench -p d-engine-benches --bench storage -- --warm-up-time 1 --measurement-time 3
//! ```

use std::fs::File;
use std::hint::black_box;
use std::io::{Seek, SeekFrom, Write};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use d_engine_core::storage::{LogStore, StateStore, StateWrite};
use d_engine_core::{Entry, EntryPayload, LogId};
use d_engine_memory::{MemLogStore, MemStateStore};
use d_engine_redb::{RedbLogStore, RedbStateStore};
use d_engine_sled::{SledLogStore, SledStateStore};
use d_engine_wal::{WalLogStore, WalOptions};

const PAYLOAD_BYTES: usize = 256;
const BATCHES: [usize; 3] = [1, 16, 256];
/// Stores purge their prefix every this many entries, so memory and files stay bounded.
const PURGE_EVERY_ENTRIES: u64 = 100_000;
/// The size of the preallocated raw file; writes wrap around inside it.
const PREALLOCATED_BYTES: u64 = 16 << 20;

/// How often the state-store bench syncs its deferred batches (the KV state machine's
/// `SYNC_EVERY_ENTRIES`).
const SYNC_EVERY_BATCHES: u64 = 10_000;
/// The state-store bench writes keys `0..KEY_SPACE` round robin, so the store stays bounded.
const KEY_SPACE: u64 = 100_000;

/// Appends batches of `batch` entries with consecutive indices and syncs each one.
struct Writer<S> {
    store: S,
    next: u64,
    purged: u64,
    payload: Bytes,
}

impl<S: LogStore> Writer<S> {
    fn new(store: S) -> Writer<S> {
        Writer { store, next: 1, purged: 0, payload: Bytes::from(vec![0xab; PAYLOAD_BYTES]) }
    }

    fn append_and_sync(&mut self, batch: usize) {
        let entries: Vec<Entry> = (self.next..self.next + batch as u64)
            .map(|index| Entry { log_id: LogId::new(1, index), payload: EntryPayload::Command(self.payload.clone()) })
            .collect();
        self.next += batch as u64;
        self.store.append(&entries).expect("append");
        if self.next - self.purged > PURGE_EVERY_ENTRIES {
            self.purged = self.next - 1 - PURGE_EVERY_ENTRIES / 2;
            self.store.purge_prefix(LogId::new(1, self.purged)).expect("purge");
        }
        self.store.sync().expect("sync");
    }
}

/// A file of [`PREALLOCATED_BYTES`] whose blocks are written and synced, positioned at 0.
fn preallocated_file(path: &std::path::Path) -> File {
    let mut file = File::create(path).expect("create preallocated file");
    let chunk = vec![0_u8; 1 << 20];
    for _ in 0..PREALLOCATED_BYTES / chunk.len() as u64 {
        file.write_all(&chunk).expect("preallocate");
    }
    file.sync_all().expect("sync preallocated file");
    file.seek(SeekFrom::Start(0)).expect("seek");
    file
}

fn append_sync(c: &mut Criterion) {
    let mut group = c.benchmark_group("append_sync");
    for batch in BATCHES {
        group.throughput(Throughput::Elements(batch as u64));

        let dir = tempfile::tempdir().expect("tempdir");
        let mut file = File::create(dir.path().join("raw.log")).expect("create raw file");
        let bytes = vec![0xab_u8; PAYLOAD_BYTES * batch];
        group.bench_function(BenchmarkId::new("raw_fdatasync", batch), |b| {
            b.iter(|| {
                file.write_all(black_box(&bytes)).expect("write");
                file.sync_data().expect("fdatasync");
            })
        });

        let mut file = preallocated_file(&dir.path().join("preallocated.log"));
        let mut offset = 0;
        group.bench_function(BenchmarkId::new("raw_fdatasync_preallocated", batch), |b| {
            b.iter(|| {
                if offset + bytes.len() as u64 > PREALLOCATED_BYTES {
                    offset = 0;
                    file.seek(SeekFrom::Start(0)).expect("seek");
                }
                file.write_all(black_box(&bytes)).expect("write");
                file.sync_data().expect("fdatasync");
                offset += bytes.len() as u64;
            })
        });

        let mut memory = Writer::new(MemLogStore::new());
        group.bench_function(BenchmarkId::new("memory", batch), |b| b.iter(|| memory.append_and_sync(batch)));

        let dir = tempfile::tempdir().expect("tempdir");
        let mut redb = Writer::new(RedbLogStore::open(dir.path()).expect("open redb"));
        group.bench_function(BenchmarkId::new("redb", batch), |b| b.iter(|| redb.append_and_sync(batch)));

        let dir = tempfile::tempdir().expect("tempdir");
        let mut sled = Writer::new(SledLogStore::open(dir.path()).expect("open sled"));
        group.bench_function(BenchmarkId::new("sled", batch), |b| b.iter(|| sled.append_and_sync(batch)));
    }
    group.finish();
}

/// Applies one-put batches with consecutive applied ids, deferred, syncing every
/// [`SYNC_EVERY_BATCHES`].
struct Applier<S> {
    store: S,
    applied: u64,
    value: Bytes,
}

impl<S: StateStore> Applier<S> {
    fn new(store: S) -> Applier<S> {
        Applier { store, applied: 0, value: Bytes::from(vec![0xcd; PAYLOAD_BYTES]) }
    }

    fn apply_one_put(&mut self) {
        self.apply_one_put_timing_the_call();
    }

    /// Applies one batch (and syncs when due); returns how long `write_batch_deferred` took.
    fn apply_one_put_timing_the_call(&mut self) -> Duration {
        self.applied += 1;
        let key = Bytes::copy_from_slice(&(self.applied % KEY_SPACE).to_be_bytes());
        let writes = [StateWrite::Put { key, value: self.value.clone() }];
        let start = Instant::now();
        self.store.write_batch_deferred(black_box(&writes), LogId::new(1, self.applied)).expect("deferred batch");
        let call = start.elapsed();
        if self.applied.is_multiple_of(SYNC_EVERY_BATCHES) {
            self.store.sync().expect("sync");
        }
        call
    }
}

fn state_deferred_batch(c: &mut Criterion) {
    let mut group = c.benchmark_group("state_deferred_batch");
    group.throughput(Throughput::Elements(1));

    let mut memory = Applier::new(MemStateStore::new());
    group.bench_function("memory", |b| b.iter(|| memory.apply_one_put()));

    let dir = tempfile::tempdir().expect("tempdir");
    let mut redb = Applier::new(RedbStateStore::open(dir.path()).expect("open redb"));
    group.bench_function("redb", |b| b.iter(|| redb.apply_one_put()));
    group.bench_function("redb_call_only", |b| {
        b.iter_custom(|iterations| (0..iterations).map(|_| redb.apply_one_put_timing_the_call()).sum())
    });

    let dir = tempfile::tempdir().expect("tempdir");
    let mut sled = Applier::new(SledStateStore::open(dir.path()).expect("open sled"));
    group.bench_function("sled", |b| b.iter(|| sled.apply_one_put()));
    group.finish();
}

/// Entries per sync in the WAL-against-redb comparison: one client, and a group commit.
const WAL_BATCHES: [usize; 2] = [1, 64];

/// The on-CPU time of the calling thread so far (`/proc/thread-self/schedstat`, in ns):
/// what a sync costs in CPU, apart from the time it sleeps waiting for the disk.
fn thread_cpu() -> Duration {
    let schedstat = std::fs::read_to_string("/proc/thread-self/schedstat").expect("schedstat");
    let nanos = schedstat.split_whitespace().next().and_then(|run| run.parse().ok()).expect("run time");
    Duration::from_nanos(nanos)
}

/// Overwrites the payload bytes of `batch` entries in a preallocated file and
/// `fdatasync`s it: the floor under any log store's sync.
struct RawWriter {
    file: File,
    offset: u64,
    bytes: Vec<u8>,
}

impl RawWriter {
    fn new(path: &std::path::Path, batch: usize) -> RawWriter {
        RawWriter { file: preallocated_file(path), offset: 0, bytes: vec![0xab; PAYLOAD_BYTES * batch] }
    }

    fn write_and_sync(&mut self) {
        if self.offset + self.bytes.len() as u64 > PREALLOCATED_BYTES {
            self.offset = 0;
            self.file.seek(SeekFrom::Start(0)).expect("seek");
        }
        self.file.write_all(black_box(&self.bytes)).expect("write");
        self.file.sync_data().expect("fdatasync");
        self.offset += self.bytes.len() as u64;
    }
}

/// d-engine-wal's `WalLogStore` against `RedbLogStore`, append + sync of 1 and of 64
/// entries of 256 bytes, next to the same bytes written over a preallocated file
/// (`raw`): the wall time per sync (`raw`, `wal`, `wal_buffered`, `redb`), and the calling
/// thread's CPU time per sync (`*_cpu`: the kernel's share of the writes and syncs;
/// encoding, checksums, copy-on-write pages and allocation in the stores; not the time
/// asleep waiting for the disk). `wal` writes directly (`O_DIRECT | O_DSYNC`, its default),
/// `wal_buffered` through the page cache with `fdatasync`, like `raw`.
fn wal_vs_redb(c: &mut Criterion) {
    let mut group = c.benchmark_group("wal_vs_redb");
    for batch in WAL_BATCHES {
        group.throughput(Throughput::Elements(batch as u64));
        let raw_dir = tempfile::tempdir().expect("tempdir");
        let mut raw = RawWriter::new(&raw_dir.path().join("preallocated.log"), batch);
        group.bench_function(BenchmarkId::new("raw", batch), |b| b.iter(|| raw.write_and_sync()));
        group.bench_function(BenchmarkId::new("raw_cpu", batch), |b| {
            b.iter_custom(|iterations| {
                let start = thread_cpu();
                (0..iterations).for_each(|_| raw.write_and_sync());
                thread_cpu() - start
            })
        });
        let wal_dir = tempfile::tempdir().expect("tempdir");
        let mut wal = Writer::new(WalLogStore::open(wal_dir.path()).expect("open wal"));
        let buffered_dir = tempfile::tempdir().expect("tempdir");
        let buffered_options = WalOptions { direct_io: false, ..WalOptions::default() };
        let mut wal_buffered =
            Writer::new(WalLogStore::open_with(buffered_dir.path(), buffered_options).expect("open wal"));
        let redb_dir = tempfile::tempdir().expect("tempdir");
        let mut redb = Writer::new(RedbLogStore::open(redb_dir.path()).expect("open redb"));

        group.bench_function(BenchmarkId::new("wal", batch), |b| b.iter(|| wal.append_and_sync(batch)));
        group.bench_function(BenchmarkId::new("wal_buffered", batch), |b| {
            b.iter(|| wal_buffered.append_and_sync(batch))
        });
        group.bench_function(BenchmarkId::new("redb", batch), |b| b.iter(|| redb.append_and_sync(batch)));
        group.bench_function(BenchmarkId::new("wal_cpu", batch), |b| {
            b.iter_custom(|iterations| {
                let start = thread_cpu();
                (0..iterations).for_each(|_| wal.append_and_sync(batch));
                thread_cpu() - start
            })
        });
        group.bench_function(BenchmarkId::new("wal_buffered_cpu", batch), |b| {
            b.iter_custom(|iterations| {
                let start = thread_cpu();
                (0..iterations).for_each(|_| wal_buffered.append_and_sync(batch));
                thread_cpu() - start
            })
        });
        group.bench_function(BenchmarkId::new("redb_cpu", batch), |b| {
            b.iter_custom(|iterations| {
                let start = thread_cpu();
                (0..iterations).for_each(|_| redb.append_and_sync(batch));
                thread_cpu() - start
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = append_sync, state_deferred_batch, wal_vs_redb
}
criterion_main!(benches);
