//! The simulator's own small key-value state machine and its command encoding.
//!
//! Keys and values are `u64`; a command names the client operation it serves so that
//! the runtime can answer the right client. Determinism: the same entries in the same
//! order give the same map and the same outputs on every replica.

use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};
use d_engine_core::storage::{Snapshot, StateMachine, StorageError};
use d_engine_core::{Entry, EntryPayload, LogId};

/// A write a client asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvWrite {
    /// Set `key` to `value`.
    Put {
        /// The key.
        key: u64,
        /// The value.
        value: u64,
    },
    /// Remove `key`.
    Delete {
        /// The key.
        key: u64,
    },
    /// Set `key` to `new` if its value is `expected` (`None`: absent).
    Cas {
        /// The key.
        key: u64,
        /// The value it must have.
        expected: Option<u64>,
        /// The value to set.
        new: u64,
    },
}

impl KvWrite {
    /// The key it touches.
    pub fn key(&self) -> u64 {
        match self {
            KvWrite::Put { key, .. } | KvWrite::Delete { key } | KvWrite::Cas { key, .. } => *key,
        }
    }

    /// Encodes the command for the log.
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(33);
        match *self {
            KvWrite::Put { key, value } => {
                out.extend_from_slice(&[1]);
                out.extend_from_slice(&key.to_le_bytes());
                out.extend_from_slice(&value.to_le_bytes());
            }
            KvWrite::Delete { key } => {
                out.extend_from_slice(&[2]);
                out.extend_from_slice(&key.to_le_bytes());
            }
            KvWrite::Cas { key, expected, new } => {
                out.extend_from_slice(&[3]);
                out.extend_from_slice(&key.to_le_bytes());
                out.extend_from_slice(&[u8::from(expected.is_some())]);
                out.extend_from_slice(&expected.unwrap_or(0).to_le_bytes());
                out.extend_from_slice(&new.to_le_bytes());
            }
        }
        out.freeze()
    }

    /// Decodes `encode`'s format; `None` for anything else.
    pub fn decode(data: &[u8]) -> Option<KvWrite> {
        let u64_at = |at: usize| data.get(at..at + 8).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
        match data.first()? {
            1 if data.len() == 17 => Some(KvWrite::Put { key: u64_at(1)?, value: u64_at(9)? }),
            2 if data.len() == 9 => Some(KvWrite::Delete { key: u64_at(1)? }),
            3 if data.len() == 26 => {
                let expected = (data[9] == 1).then(|| u64_at(10)).flatten();
                Some(KvWrite::Cas { key: u64_at(1)?, expected, new: u64_at(18)? })
            }
            _ => None,
        }
    }
}

/// The replicated map. Volatile: a crashed node rebuilds it by re-applying its log.
#[derive(Debug, Default)]
pub struct KvStateMachine {
    map: BTreeMap<u64, u64>,
    last_applied: LogId,
}

impl KvStateMachine {
    /// The value of `key`.
    pub fn get(&self, key: u64) -> Option<u64> {
        self.map.get(&key).copied()
    }

    /// The whole map, for end-of-run comparisons.
    pub fn map(&self) -> &BTreeMap<u64, u64> {
        &self.map
    }

    fn apply_one(&mut self, entry: &Entry) -> Bytes {
        let EntryPayload::Command(data) = &entry.payload else {
            return Bytes::new();
        };
        match KvWrite::decode(data) {
            Some(KvWrite::Put { key, value }) => {
                self.map.insert(key, value);
                Bytes::new()
            }
            Some(KvWrite::Delete { key }) => {
                self.map.remove(&key);
                Bytes::new()
            }
            Some(KvWrite::Cas { key, expected, new }) => {
                let swapped = self.map.get(&key).copied() == expected;
                if swapped {
                    self.map.insert(key, new);
                }
                Bytes::from(vec![u8::from(swapped)])
            }
            None => Bytes::new(),
        }
    }
}

impl StateMachine for KvStateMachine {
    fn apply(&mut self, entries: &[Entry]) -> Result<Vec<Bytes>, StorageError> {
        let mut outputs = Vec::with_capacity(entries.len());
        for entry in entries {
            assert_eq!(
                entry.log_id.index,
                self.last_applied.index.next(),
                "entries are applied in order, each exactly once"
            );
            outputs.push(self.apply_one(entry));
            self.last_applied = entry.log_id;
        }
        Ok(outputs)
    }

    fn last_applied(&self) -> LogId {
        self.last_applied
    }

    fn build_snapshot(&mut self) -> Result<(LogId, Bytes), StorageError> {
        let mut data = BytesMut::new();
        for (key, value) in &self.map {
            data.extend_from_slice(&key.to_le_bytes());
            data.extend_from_slice(&value.to_le_bytes());
        }
        Ok((self.last_applied, data.freeze()))
    }

    fn install_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), StorageError> {
        if snapshot.data.len() % 16 != 0 {
            return Err(StorageError::Corrupt { location: "kv snapshot".into(), reason: "length".into() });
        }
        self.map = snapshot
            .data
            .chunks(16)
            .map(|pair| {
                let key = u64::from_le_bytes(pair[..8].try_into().expect("8 bytes"));
                let value = u64::from_le_bytes(pair[8..].try_into().expect("8 bytes"));
                (key, value)
            })
            .collect();
        self.last_applied = snapshot.meta.last_included;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_round_trip_through_their_encoding() {
        for write in [
            KvWrite::Put { key: 1, value: 2 },
            KvWrite::Delete { key: 3 },
            KvWrite::Cas { key: 4, expected: None, new: 5 },
            KvWrite::Cas { key: 4, expected: Some(0), new: 5 },
        ] {
            assert_eq!(KvWrite::decode(&write.encode()), Some(write));
        }
        assert_eq!(KvWrite::decode(b"garbage"), None);
    }
}
