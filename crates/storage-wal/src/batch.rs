//! The bytes of a segment file: batches of records.
//!
//! A segment is a sequence of batches, each the writes of one `sync`, followed by zeros
//! (space written ahead of need, see [`crate::WalOptions::preallocate_bytes`]):
//!
//! ```text
//! batch  = header(20) body
//! header = magic "dWAL"(4) body_len u64(8) body_crc u32(4) header_crc u32(4)
//! body   = record*
//! record = kind u8(1) len u32(4) payload(len)
//! ```
//!
//! Integers are little-endian; both checksums are CRC-32 (IEEE): `body_crc` of the body,
//! `header_crc` of the 16 header bytes before it. The header has a checksum of its own so
//! that a damaged length is never trusted, and a magic so that zeros never read as a
//! header. Record payloads are the core's checksummed codec records
//! ([`d_engine_core::storage::codec`]):
//!
//! | kind | record | payload |
//! |---|---|---|
//! | 1 | segment start | `seq u64`, then the hard state, the last purged id and the last log id when the segment was started (codec records of 34, 25 and 25 bytes) |
//! | 2 | entry | the codec entry |
//! | 3 | hard state | the codec hard state |
//! | 4 | truncate | the codec log id of the entry before the truncation point (the new last entry) |
//! | 5 | purge | the codec log id of the last purged entry |

use d_engine_core::storage::codec;
use d_engine_core::{HardState, LogId, LogIndex, Term};

/// The first bytes of every batch: never zeros, each byte with several bits set, so a
/// single flipped bit cannot turn a header into zeros or zeros into a header.
pub(crate) const MAGIC: [u8; 4] = *b"dWAL";
/// The length of a batch header.
pub(crate) const HEADER_BYTES: usize = 20;
/// The length of a record's kind and length fields.
pub(crate) const RECORD_HEADER_BYTES: usize = 5;

const CODEC_HARD_STATE_BYTES: usize = 34;
const CODEC_LOG_ID_BYTES: usize = 25;
const START_BYTES: usize = 8 + CODEC_HARD_STATE_BYTES + 2 * CODEC_LOG_ID_BYTES;
/// The shortest codec entry: version, term, index, kind, checksum.
const CODEC_ENTRY_MIN_BYTES: usize = 1 + 8 + 8 + 1 + 8;

/// What a record is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RecordKind {
    /// The first record of a segment: where the log stood when the segment was started.
    Start = 1,
    /// A log entry.
    Entry = 2,
    /// A hard state.
    HardState = 3,
    /// A truncation: the log now ends at the recorded id.
    Truncate = 4,
    /// A purge up to the recorded id.
    Purge = 5,
}

impl RecordKind {
    fn from_byte(byte: u8) -> Option<RecordKind> {
        Some(match byte {
            1 => RecordKind::Start,
            2 => RecordKind::Entry,
            3 => RecordKind::HardState,
            4 => RecordKind::Truncate,
            5 => RecordKind::Purge,
            _ => return None,
        })
    }
}

/// The hard state and the bounds of the log: what a segment start records, and what the
/// store keeps in memory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Shape {
    /// The last saved hard state.
    pub hard_state: HardState,
    /// The last purged entry.
    pub last_purged: LogId,
    /// The last entry (or `last_purged` when the log holds none).
    pub last: LogId,
}

/// The payload of a segment start record.
pub(crate) fn encode_start(seq: u64, shape: &Shape) -> Vec<u8> {
    let mut out = Vec::with_capacity(START_BYTES);
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&codec::encode_hard_state(&shape.hard_state));
    out.extend_from_slice(&codec::encode_log_id(shape.last_purged));
    out.extend_from_slice(&codec::encode_log_id(shape.last));
    debug_assert_eq!(out.len(), START_BYTES);
    out
}

/// Decodes a segment start record's payload into its sequence number and shape.
pub(crate) fn decode_start(payload: &[u8]) -> Result<(u64, Shape), String> {
    if payload.len() != START_BYTES {
        return Err(format!("a segment start record of {} bytes (expected {START_BYTES})", payload.len()));
    }
    let seq = u64::from_le_bytes(payload[..8].try_into().expect("8 bytes"));
    let (hard_state, rest) = payload[8..].split_at(CODEC_HARD_STATE_BYTES);
    let (last_purged, last) = rest.split_at(CODEC_LOG_ID_BYTES);
    let shape = Shape {
        hard_state: codec::decode_hard_state(hard_state).map_err(|error| error.to_string())?,
        last_purged: codec::decode_log_id(last_purged).map_err(|error| error.to_string())?,
        last: codec::decode_log_id(last).map_err(|error| error.to_string())?,
    };
    Ok((seq, shape))
}

/// The log id of a codec entry, read from its fixed-position fields without decoding
/// (and copying) the payload: replay reads every entry of the log, and the batch
/// checksum already vouches for the bytes. The full decode, with the codec's own
/// checksum, happens when an entry is read. The layout is the one
/// [`codec`](d_engine_core::storage::codec) documents: `version(1) term(8) index(8) ...`.
pub(crate) fn entry_log_id(payload: &[u8]) -> Result<LogId, String> {
    if payload.len() < CODEC_ENTRY_MIN_BYTES {
        return Err(format!("an entry record of {} bytes is too short", payload.len()));
    }
    if payload[0] != codec::FORMAT_VERSION {
        return Err(format!("entry format version {} is not known to this build", payload[0]));
    }
    let term = u64::from_le_bytes(payload[1..9].try_into().expect("8 bytes"));
    let index = u64::from_le_bytes(payload[9..17].try_into().expect("8 bytes"));
    Ok(LogId { term: Term(term), index: LogIndex(index) })
}

/// One sync's writes while they are gathered: a batch header to be filled in at
/// [`seal`](Batch::seal), then records.
#[derive(Debug)]
pub(crate) struct Batch {
    bytes: Vec<u8>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Batch {
        let mut bytes = Vec::with_capacity(4096);
        bytes.resize(HEADER_BYTES, 0);
        Batch { bytes }
    }

    /// The batch's length so far, header included.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Appends a record and returns where its payload starts, counted from the start of
    /// the batch. The payload must fit a `u32` (callers check with [`payload_fits`]).
    pub fn push(&mut self, kind: RecordKind, payload: &[u8]) -> usize {
        let len = u32::try_from(payload.len()).expect("record payloads are checked to fit a u32");
        self.bytes.push(kind as u8);
        self.bytes.extend_from_slice(&len.to_le_bytes());
        let at = self.bytes.len();
        self.bytes.extend_from_slice(payload);
        at
    }

    /// The bytes from `at` (counted from the start of the batch), `len` long.
    pub fn slice(&self, at: usize, len: usize) -> &[u8] {
        &self.bytes[at..at + len]
    }

    /// Fills in the header and returns the whole batch, ready to be written.
    pub fn seal(&mut self) -> &[u8] {
        let body_len = (self.bytes.len() - HEADER_BYTES) as u64;
        let body_crc = crc32fast::hash(&self.bytes[HEADER_BYTES..]);
        let header = header(body_len, body_crc);
        self.bytes[..HEADER_BYTES].copy_from_slice(&header);
        &self.bytes
    }
}

/// Whether a record payload of `len` bytes fits the record's `u32` length field.
pub(crate) fn payload_fits(len: usize) -> bool {
    u32::try_from(len).is_ok()
}

fn header(body_len: u64, body_crc: u32) -> [u8; HEADER_BYTES] {
    let mut header = [0; HEADER_BYTES];
    header[..4].copy_from_slice(&MAGIC);
    header[4..12].copy_from_slice(&body_len.to_le_bytes());
    header[12..16].copy_from_slice(&body_crc.to_le_bytes());
    let header_crc = crc32fast::hash(&header[..16]);
    header[16..].copy_from_slice(&header_crc.to_le_bytes());
    header
}

/// The body length a header at the start of `bytes` declares, if it is a whole, intact
/// header (magic and header checksum).
pub(crate) fn parse_header(bytes: &[u8]) -> Option<(u64, u32)> {
    let header = bytes.get(..HEADER_BYTES)?;
    if header[..4] != MAGIC {
        return None;
    }
    let header_crc = u32::from_le_bytes(header[16..20].try_into().expect("4 bytes"));
    if crc32fast::hash(&header[..16]) != header_crc {
        return None;
    }
    let body_len = u64::from_le_bytes(header[4..12].try_into().expect("8 bytes"));
    let body_crc = u32::from_le_bytes(header[12..16].try_into().expect("4 bytes"));
    Some((body_len, body_crc))
}

/// What starts at an offset of a segment.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Found<'a> {
    /// A whole batch whose checksums hold: its body, and where the next batch starts.
    Batch { body: &'a [u8], end: usize },
    /// Nothing but zeros (or nothing at all) up to the end of the file.
    End,
    /// Something that is not a whole, intact batch.
    Damaged(Damage),
}

/// How the bytes at an offset fail to be a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Damage {
    /// The header is cut short, or fails its magic or checksum.
    Header,
    /// The header holds, but the body runs past the end of the file.
    PastEnd { body_len: u64 },
    /// The header holds, but the body fails its checksum.
    Body { body_len: u64 },
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Damage::Header => write!(f, "the batch header is cut short or fails its checksum"),
            Damage::PastEnd { body_len } => write!(f, "a batch of {body_len} bytes runs past the end of the file"),
            Damage::Body { body_len } => write!(f, "a batch of {body_len} bytes fails its checksum"),
        }
    }
}

/// Reads what starts at `at` in a segment's bytes.
pub(crate) fn read_at(data: &[u8], at: usize) -> Found<'_> {
    let rest = &data[at..];
    if is_zero(rest) {
        return Found::End;
    }
    let Some((body_len, body_crc)) = parse_header(rest) else {
        return Found::Damaged(Damage::Header);
    };
    let available = (rest.len() - HEADER_BYTES) as u64;
    if body_len > available {
        return Found::Damaged(Damage::PastEnd { body_len });
    }
    let body = &rest[HEADER_BYTES..HEADER_BYTES + body_len as usize];
    if crc32fast::hash(body) != body_crc {
        return Found::Damaged(Damage::Body { body_len });
    }
    Found::Batch { body, end: at + HEADER_BYTES + body.len() }
}

/// Whether every byte is zero.
pub(crate) fn is_zero(bytes: &[u8]) -> bool {
    bytes.iter().all(|byte| *byte == 0)
}

/// Splits a batch body into records: `(kind, offset of the payload within the body,
/// payload)`. Errors name the offset within the body.
pub(crate) fn records(body: &[u8]) -> impl Iterator<Item = Result<(RecordKind, usize, &[u8]), (usize, String)>> + '_ {
    let mut at = 0;
    std::iter::from_fn(move || {
        if at == body.len() {
            return None;
        }
        let start = at;
        let Some(head) = body.get(at..at + RECORD_HEADER_BYTES) else {
            at = body.len();
            return Some(Err((start, "a record header is cut short".to_string())));
        };
        let len = u32::from_le_bytes(head[1..5].try_into().expect("4 bytes")) as usize;
        let payload_at = at + RECORD_HEADER_BYTES;
        let Some(payload) = body.get(payload_at..payload_at + len) else {
            at = body.len();
            return Some(Err((start, format!("a record of {len} bytes runs past its batch"))));
        };
        let Some(kind) = RecordKind::from_byte(head[0]) else {
            at = body.len();
            return Some(Err((start, format!("unknown record kind {}", head[0]))));
        };
        at = payload_at + len;
        Some(Ok((kind, payload_at, payload)))
    })
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use d_engine_core::{Entry, EntryPayload, NodeId};

    use super::*;

    #[test]
    fn a_sealed_batch_reads_back_with_its_records_in_order() {
        let mut batch = Batch::new();
        let hard_state =
            codec::encode_hard_state(&HardState { term: Term(3), vote: Some(NodeId(2)), commit: LogIndex(1) });
        batch.push(RecordKind::HardState, &hard_state);
        let entry = codec::encode_entry(&Entry {
            log_id: LogId::new(3, 7),
            payload: EntryPayload::Command(Bytes::from_static(b"put x")),
        });
        let entry_at = batch.push(RecordKind::Entry, &entry);
        let mut data = batch.seal().to_vec();
        data.extend_from_slice(&[0; 100]);

        let Found::Batch { body, end } = read_at(&data, 0) else { panic!("a whole batch") };

        assert_eq!(end, data.len() - 100);
        assert_eq!(read_at(&data, end), Found::End, "zeros after the batch are the end");
        let records: Vec<_> = records(body).map(Result::unwrap).collect();
        assert_eq!(records.len(), 2);
        assert_eq!((records[0].0, records[0].2), (RecordKind::HardState, &hard_state[..]));
        assert_eq!((records[1].0, records[1].2), (RecordKind::Entry, &entry[..]));
        assert_eq!(records[1].1 + HEADER_BYTES, entry_at);
        assert_eq!(entry_log_id(records[1].2).unwrap(), LogId::new(3, 7));
    }

    #[test]
    fn entry_log_id_agrees_with_the_codec() {
        for (term, index, payload) in [(1, 1, &b""[..]), (u64::MAX, u64::MAX, b"x"), (7, 300, &[0xff; 300])] {
            let entry = Entry {
                log_id: LogId::new(term, index),
                payload: EntryPayload::Command(Bytes::copy_from_slice(payload)),
            };
            let encoded = codec::encode_entry(&entry);
            assert_eq!(entry_log_id(&encoded).unwrap(), codec::decode_entry(&encoded).unwrap().log_id);
        }
        let noop = codec::encode_entry(&Entry { log_id: LogId::new(2, 9), payload: EntryPayload::Noop });
        assert_eq!(entry_log_id(&noop).unwrap(), LogId::new(2, 9));
    }

    #[test]
    fn every_flipped_bit_of_a_batch_is_damage_never_another_batch() {
        let mut batch = Batch::new();
        batch.push(RecordKind::Purge, &codec::encode_log_id(LogId::new(1, 4)));
        let data = batch.seal().to_vec();
        for bit in 0..data.len() * 8 {
            let mut damaged = data.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(matches!(read_at(&damaged, 0), Found::Damaged(_)), "bit {bit}");
        }
        for len in 1..data.len() {
            assert!(matches!(read_at(&data[..len], 0), Found::Damaged(_)), "cut to {len}");
        }
    }

    #[test]
    fn a_segment_start_round_trips() {
        let shape = Shape {
            hard_state: HardState { term: Term(9), vote: None, commit: LogIndex(40) },
            last_purged: LogId::new(2, 30),
            last: LogId::new(9, 41),
        };
        assert_eq!(decode_start(&encode_start(12, &shape)).unwrap(), (12, shape));
        assert!(decode_start(&encode_start(12, &shape)[1..]).is_err());
    }
}
