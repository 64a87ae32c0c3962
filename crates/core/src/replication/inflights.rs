//! The in-flight window of one peer: append messages sent and not yet acknowledged,
//! bounded both in count and in payload bytes.

use std::collections::VecDeque;

use crate::types::LogIndex;

#[derive(Debug)]
pub(crate) struct Inflights {
    /// (last index carried, payload bytes) of each unacknowledged message, oldest first.
    messages: VecDeque<(LogIndex, u64)>,
    bytes: u64,
    max_messages: usize,
    max_bytes: u64,
}

impl Inflights {
    pub(crate) fn new(max_messages: usize, max_bytes: u64) -> Inflights {
        Inflights { messages: VecDeque::new(), bytes: 0, max_messages, max_bytes }
    }

    /// Whether another message may be sent now.
    pub(crate) fn is_full(&self) -> bool {
        self.messages.len() >= self.max_messages || self.bytes >= self.max_bytes
    }

    pub(crate) fn add(&mut self, last: LogIndex, bytes: u64) {
        debug_assert!(self.messages.back().is_none_or(|(previous, _)| *previous < last), "in-flight messages grow");
        self.messages.push_back((last, bytes));
        self.bytes += bytes;
    }

    /// Frees every message whose entries are all acknowledged by `matched`.
    pub(crate) fn free_up_to(&mut self, matched: LogIndex) {
        while let Some((last, bytes)) = self.messages.front().copied() {
            if last > matched {
                break;
            }
            self.messages.pop_front();
            self.bytes -= bytes;
        }
    }

    /// Unacknowledged messages.
    pub(crate) fn len(&self) -> usize {
        self.messages.len()
    }

    /// Payload bytes of the unacknowledged messages.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    pub(crate) fn clear(&mut self) {
        self.messages.clear();
        self.bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_fills_by_count_and_by_bytes_and_frees_by_acknowledgement() {
        let mut window = Inflights::new(2, 100);
        window.add(LogIndex(3), 10);
        assert!(!window.is_full());
        window.add(LogIndex(5), 10);
        assert!(window.is_full(), "two messages fill a window of two");
        window.free_up_to(LogIndex(4));
        assert_eq!(window.messages.len(), 1, "the message ending at 5 is still unacknowledged");
        window.free_up_to(LogIndex(5));
        window.add(LogIndex(6), 100);
        assert!(window.is_full(), "100 bytes fill a window of 100 bytes");
    }
}
