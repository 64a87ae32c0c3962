//! Real process crashes in the middle of large writes: a child process syncs batches of
//! 2 MiB (16 entries of 128 KiB) into 4 MiB segments and is killed with SIGKILL at random
//! moments, so that some kills land inside a `pwrite` and leave half a batch at the end
//! of the last segment. After each kill the parent reopens the log and checks that every
//! batch the child reported synced is there, that every entry is the one written, and
//! counts the reopens that cut off the remains of an interrupted write.
//!
//! The shared crash test (`crash.rs`) writes batches of a few hundred bytes, which a
//! kill almost never interrupts; this one exercises the cut-off under real crashes.

mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use common::segment_files;
use d_engine_core::storage::LogStore;
use d_engine_core::{Entry, EntryPayload, LogId, LogIndex};
use d_engine_wal::{WalLogStore, WalOptions};

const CHILD_TEST: &str = "large_batch_child_writes_until_killed";
const CHILD_DIRECTORY_VAR: &str = "D_ENGINE_WAL_LARGE_BATCH_CHILD_DIRECTORY";
const OPTIONS: WalOptions = WalOptions { segment_bytes: 4 << 20, preallocate_bytes: 1 << 20, direct_io: true };
const ENTRIES_PER_BATCH: u64 = 16;
const PAYLOAD_BYTES: usize = 128 << 10;
/// The child purges all but this many entries every few batches, so the disk use stays
/// bounded and segments are removed while it is killed.
const ENTRIES_KEPT: u64 = 48;
const KILLS: usize = 30;

fn entry(index: u64) -> Entry {
    let payload: Vec<u8> =
        (0..PAYLOAD_BYTES).map(|at| (index as usize).wrapping_mul(131).wrapping_add(at) as u8).collect();
    Entry { log_id: LogId::new(1, index), payload: EntryPayload::Command(Bytes::from(payload)) }
}

/// The child: continue the log in the directory the parent names, until killed. A no-op
/// in a normal test run.
#[test]
fn large_batch_child_writes_until_killed() {
    let Ok(dir) = std::env::var(CHILD_DIRECTORY_VAR) else {
        return;
    };
    let mut store = WalLogStore::open_with(&dir, OPTIONS).expect("the child opens the log");
    let mut stdout = std::io::stdout().lock();
    loop {
        let first = store.last_log_id().unwrap().index.0 + 1;
        let last = first + ENTRIES_PER_BATCH - 1;
        store.append(&(first..=last).map(entry).collect::<Vec<_>>()).unwrap();
        if last.is_multiple_of(4 * ENTRIES_PER_BATCH) {
            store.purge_prefix(LogId::new(1, last - ENTRIES_KEPT)).unwrap();
        }
        store.sync().unwrap();
        writeln!(stdout, "synced {last}").and_then(|()| stdout.flush()).unwrap();
    }
}

/// Checks every entry the log holds; returns the last index.
fn verify(dir: &Path, acknowledged: u64) -> Result<u64, String> {
    let store = WalLogStore::open_with(dir, OPTIONS).map_err(|error| format!("reopen failed: {error}"))?;
    let last = store.last_log_id().unwrap().index.0;
    if last < acknowledged {
        return Err(format!("the child acknowledged {acknowledged} as synced but the log ends at {last}"));
    }
    if !last.is_multiple_of(ENTRIES_PER_BATCH) {
        return Err(format!("the log ends at {last}, inside a batch: a sync was torn"));
    }
    let first = store.last_purged().unwrap().index.0 + 1;
    for index in first..=last {
        let read = store.entries(LogIndex(index)..=LogIndex(index)).map_err(|error| error.to_string())?;
        if read[0] != entry(index) {
            return Err(format!("entry {index} is not the one written"));
        }
    }
    Ok(last)
}

#[test]
fn every_synced_batch_survives_sigkill_in_the_middle_of_large_writes() {
    let seed = SystemTime::now().duration_since(UNIX_EPOCH).map_or(1, |elapsed| elapsed.as_nanos() as u64);
    println!("large-batch crash test seed {seed}");
    let mut random = seed | 1;
    let dir = tempfile::tempdir().unwrap();
    let (mut acknowledged, mut cut, mut removed) = (0, 0, 0);
    for kill in 1..=KILLS {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", CHILD_TEST, "--nocapture", "--test-threads", "1"])
            .env(CHILD_DIRECTORY_VAR, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        random ^= random << 13;
        random ^= random >> 7;
        random ^= random << 17;
        std::thread::sleep(Duration::from_millis(20 + random % 200));
        child.kill().unwrap();
        let status = child.wait().unwrap();
        let (mut output, mut errors) = (String::new(), String::new());
        child.stdout.take().unwrap().read_to_string(&mut output).unwrap();
        child.stderr.take().unwrap().read_to_string(&mut errors).unwrap();
        assert!(status.code().is_none(), "seed {seed}, kill {kill}: the child ended by itself ({status}):\n{errors}");
        let whole_lines = output.rsplit_once('\n').map_or("", |(whole, _)| whole);
        for line in whole_lines.lines() {
            if let Some(index) = line.strip_prefix("synced ").and_then(|index| index.parse().ok()) {
                acknowledged = acknowledged.max(index);
            }
        }
        let before = segment_files(dir.path());
        let last_len = std::fs::metadata(before.last().unwrap()).unwrap().len();

        acknowledged =
            verify(dir.path(), acknowledged).unwrap_or_else(|error| panic!("seed {seed}, kill {kill}: {error}"));

        let after = segment_files(dir.path());
        if after.last() != before.last() {
            removed += 1;
        } else if std::fs::metadata(after.last().unwrap()).unwrap().len() < last_len {
            cut += 1;
        }
    }
    println!(
        "{KILLS} kills: the log reached index {acknowledged}; {cut} reopens cut off half a batch, \
         {removed} removed a segment whose first batch was interrupted"
    );
    assert!(acknowledged > 0, "seed {seed}: the children never synced a batch");
}
