//! # d-engine-wal
//!
//! A write-ahead-log [`LogStore`](d_engine_core::storage::LogStore) for d-engine, built
//! like etcd's WAL or a Kafka log segment: the log is a directory of append-only segment
//! files, and a [`sync`](d_engine_core::storage::LogStore::sync) is one `pwrite` of
//! everything written since the last one followed by one `fdatasync`. There is no
//! B-tree, no page to copy on write and no allocator on the write path, which is where
//! redb spends its time per commit. The log only: pair it with any state store.
//!
//! ```
//! use bytes::Bytes;
//! use d_engine_core::storage::LogStore;
//! use d_engine_core::{Entry, EntryPayload, LogId};
//! use d_engine_wal::WalLogStore;
//!
//! let dir = tempfile::tempdir().unwrap();
//! let entry = |index| Entry { log_id: LogId::new(1, index), payload: EntryPayload::Command(Bytes::new()) };
//!
//! let mut log = WalLogStore::open(dir.path())?;
//! log.append(&[entry(1), entry(2)])?;
//! log.sync()?; // entries 1 and 2 are durable: one pwrite, one fdatasync
//! log.append(&[entry(3)])?;
//! drop(log); // entry 3 was never synced
//!
//! let log = WalLogStore::open(dir.path())?;
//! assert_eq!(log.last_log_id()?, LogId::new(1, 2));
//! # Ok::<(), d_engine_core::storage::StorageError>(())
//! ```
//!
//! # Files
//! Inside the store directory `<dir>` (which may also hold a state store), the log is
//! the directory `log.wal/`:
//!
//! - `FORMAT`: the format stamp `d-engine-wal log <version>` ([`FORMAT_VERSION`]),
//!   checked at every open, so that another adapter's store, a state store or a layout
//!   this build does not know is refused by name. A `log.redb` or `log.sled` where
//!   `log.wal` should be is refused too.
//! - `<seq>-<first index>.wal`: the segments, both numbers zero-padded to 20 digits.
//!   `seq` counts segments from 1 and is the order of replay; `first index` is the index
//!   that followed the last entry when the segment was started (a later truncation can
//!   make it hold lower indices, which is why the sequence number names it too).
//!
//! The directory is created whole or not at all (`log.wal.creating/`, renamed into
//! place), and locked with an exclusive `flock` while a store has it open, so two
//! handles or processes never write one log.
//!
//! # Segment format
//! A segment is a sequence of batches, each the writes of one sync, followed by zeros:
//!
//! ```text
//! batch  = header(20) body
//! header = magic "dWAL"(4) body_len u64(8) body_crc u32(4) header_crc u32(4)
//! body   = record*
//! record = kind u8(1) len u32(4) payload(len)
//! ```
//!
//! Integers are little-endian, checksums are CRC-32: `body_crc` of the body,
//! `header_crc` of the 16 header bytes before it (so a damaged length is never
//! followed). Payloads are the core's codec records, each with its own checksum
//! ([`d_engine_core::storage::codec`]):
//!
//! | kind | record | payload |
//! |---|---|---|
//! | 1 | segment start | `seq u64`, the hard state, the last purged id and the last log id when the segment was started |
//! | 2 | entry | the codec entry |
//! | 3 | hard state | the codec hard state |
//! | 4 | truncate | the codec log id of the new last entry (the one before the truncation point) |
//! | 5 | purge | the codec log id of the last purged entry |
//!
//! Every segment's first batch begins with its start record, which repeats what the
//! segments before it add up to, so replay can begin at any segment once the ones
//! before it are removed.
//!
//! # Writes and durability
//! `append`, `save_hard_state`, `truncate_suffix` and `purge_prefix` add records to one
//! batch in memory and update the in-memory state at once, which every read answers
//! from: the hard state, the bounds of the log and, for each held entry, its segment,
//! offset, length and term (32 bytes per entry; no payload is kept in memory).
//! `term_of` needs no I/O; `entries` reads unsynced entries from the batch and synced
//! ones with `pread`, merging neighbours into one read. Truncated entries stay in the
//! file, dead: the truncate record hides them from replay.
//!
//! `sync` writes the batch at the end of the current segment with one direct synchronous
//! write (`O_DIRECT | O_DSYNC`: from an aligned buffer straight to the device, durable when
//! it returns), or, where [`WalOptions::direct_io`] is off or the file system refuses
//! direct I/O, with one `pwrite` and an `fdatasync` of that file: that is the durability
//! point, and the batch survives a crash whole or not at all (one checksum covers it). A
//! direct write covers whole 4 KiB blocks: it starts with the synced bytes of the last,
//! partial block, written again unchanged, and pads the batch's last block with zeros
//! (which replay reads as the end of the data, like the zeros written ahead of need). The
//! first sync after the current segment reached [`WalOptions::segment_bytes`] (64 MiB by
//! default) creates the next segment instead, with the batch after its start record, and
//! fsyncs the directory before it returns. Each time a batch passes the zeros written ahead
//! of it, the same sync writes [`WalOptions::preallocate_bytes`] (1 MiB) more zeros after
//! it: the following syncs overwrite blocks that already exist, so their `fdatasync`
//! flushes data only, not the file's size. After a sync has made a purge durable, the
//! segments that hold only purged entries (every segment before the first one started after
//! the purged entry) are removed and the directory fsynced. A failed write or sync leaves
//! what is durable unknown: the store then refuses every call until it is reopened (fail
//! closed).
//!
//! # Recovery
//! Opening replays every segment in sequence order, checking that the sequence numbers
//! are consecutive, that each segment starts with a start record naming it and matching
//! the state the segments before it ended in, and that every record follows the last
//! (entries consecutive with non-decreasing terms, truncations and purges within the
//! log). A batch whose checksums fail, or any such inconsistency, is `Corrupt` naming
//! the segment file and the offset, with one exception: the remains of an interrupted
//! write at the end of the last segment.
//!
//! At most one batch is in flight at a crash, the last one of the last segment, since
//! a batch is written only after the previous sync returned. A damaged batch there is
//! taken for the remains of that write, never reported durable, and cut off (the file
//! truncated at its start; the segment removed if it was the segment's first batch)
//! when
//!
//! - no intact batch follows it anywhere in the file, and
//! - it shows a sector that was never written: the file ends inside it, or an aligned
//!   512-byte sector inside it reads as zeros (the old content of space written ahead
//!   of need), or its header is zeros on one side of a sector boundary. A killed
//!   process's `write` stops at a page boundary and a disk persists whole sectors, so an
//!   interrupted write always shows one.
//!
//! Any other damage (a flipped bit, a checksum mismatch followed by valid batches, a
//! damaged batch in an earlier segment) is `Corrupt`. The limits of telling the two
//! apart, written down: damage to the very last batch whose own payloads hold a whole
//! aligned sector of zeros is cut like an interrupted write; a last segment cut short
//! exactly at a batch boundary looks like a log that ended there; and a payload that
//! embeds a whole valid batch of this format inside an interrupted write makes the open
//! fail rather than cut.
//!
//! After replay, the open fsyncs the last segment and the directory (a crash of the
//! previous process may have left written but unsynced batches in the page cache, which
//! this store then reports, so they must be durable first) and removes segments a
//! durable purge left behind. Opening reads every segment once, sequentially; a log of
//! 100,000 entries opens in milliseconds.

mod batch;
mod direct;
mod directory;
mod log_store;
mod replay;
mod segment;
mod state;

pub use d_engine_storage_fs::AtPath;
pub use log_store::WalLogStore;

/// The layout version of the logs this build writes and reads, in the format stamp
/// (`d-engine-wal log <version>`).
pub const FORMAT_VERSION: u32 = 1;

/// The default [`WalOptions::segment_bytes`]: 64 MiB, as etcd's WAL.
pub const SEGMENT_BYTES: u64 = 64 << 20;

/// The default [`WalOptions::preallocate_bytes`]: 1 MiB.
pub const PREALLOCATE_BYTES: u64 = 1 << 20;

/// How a [`WalLogStore`] lays out its segments. Neither is part of the format: a log
/// may be reopened with other options.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalOptions {
    /// The first sync after the current segment reached this size starts a new segment.
    /// Segments are removed whole, so this is also the granularity of purges.
    pub segment_bytes: u64,
    /// How many zeros a sync writes past its batch when the batch passes the zeros
    /// written before, so that the following syncs' `fdatasync` has no file size to
    /// update; 0 writes none. Never past `segment_bytes`.
    pub preallocate_bytes: u64,
    /// Whether a sync is one direct synchronous write (`O_DIRECT | O_DSYNC`, the default)
    /// rather than a `pwrite` through the page cache and an `fdatasync`. Where the file
    /// system refuses direct I/O (tmpfs, some network file systems) the store writes
    /// through the page cache whatever this says.
    pub direct_io: bool,
}

impl Default for WalOptions {
    fn default() -> WalOptions {
        WalOptions { segment_bytes: SEGMENT_BYTES, preallocate_bytes: PREALLOCATE_BYTES, direct_io: true }
    }
}
