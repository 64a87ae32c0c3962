//! What the store keeps in memory: the hard state, the bounds of the log, and where each
//! held entry sits in the segment files. Replay at open and the writes of a running store
//! go through the same transitions, so a reopened store answers exactly what the running
//! one did.
//!
//! Invariant: the held entries are `base + 1 ..= last.index`, one [`Location`] each, and
//! `base >= last_purged.index`. In a running store `base == last_purged.index`; during
//! replay `base` may be higher when the first remaining segment starts after entries
//! that lived in removed segments: those entries must all turn out purged by the end of
//! replay ([`LogState::missing`]).

use std::collections::VecDeque;

use d_engine_core::{LogId, LogIndex, Term};

use crate::batch::Shape;

/// Where an entry's codec record is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Location {
    /// The segment's sequence number.
    pub segment: u64,
    /// The file offset of the codec record.
    pub offset: u64,
    /// The codec record's length.
    pub len: u32,
    /// The entry's term, so that `term_of` needs no read.
    pub term: Term,
}

/// The shape of the log and the location of every held entry.
#[derive(Debug)]
pub(crate) struct LogState {
    /// Hard state, last purged and last log id.
    pub shape: Shape,
    base: u64,
    locations: VecDeque<Location>,
}

impl LogState {
    /// A log as a segment start describes it: no entry's location is known yet.
    pub fn starting_at(shape: Shape) -> LogState {
        LogState { shape, base: shape.last.index.0, locations: VecDeque::new() }
    }

    /// Where the held entry at `index` is, or `None` if it is not held.
    pub fn location(&self, index: LogIndex) -> Option<&Location> {
        let offset = index.0.checked_sub(self.base)?.checked_sub(1)?;
        self.locations.get(usize::try_from(offset).ok()?)
    }

    /// The number of held entries.
    pub fn held(&self) -> usize {
        self.locations.len()
    }

    /// Adds the entry `id`, which must follow the last one, at `location`.
    pub fn append(&mut self, id: LogId, location: Location) -> Result<(), String> {
        let last = self.shape.last;
        if last.index.0.checked_add(1) != Some(id.index.0) {
            return Err(format!("entry {id} does not follow the last entry {last}"));
        }
        if id.term < last.term {
            return Err(format!("entry {id} has a lower term than the last entry {last}"));
        }
        debug_assert_eq!(location.term, id.term);
        self.locations.push_back(location);
        self.shape.last = id;
        Ok(())
    }

    /// Removes every entry after `new_last`, which becomes the last entry. `new_last`
    /// must be at or above the purged entry and below the last one.
    pub fn truncate(&mut self, new_last: LogId) -> Result<(), String> {
        let (last_purged, last) = (self.shape.last_purged, self.shape.last);
        if new_last.index < last_purged.index || new_last.index >= last.index {
            return Err(format!("a truncation to {new_last} outside the log {last_purged}..{last}"));
        }
        let known_term = if new_last.index == last_purged.index {
            Some(last_purged.term)
        } else {
            self.location(new_last.index).map(|location| location.term)
        };
        if known_term.is_some_and(|term| term != new_last.term) {
            return Err(format!(
                "a truncation to {new_last}, but that entry has term {}",
                known_term.unwrap_or_default()
            ));
        }
        if new_last.index.0 >= self.base {
            self.locations.truncate((new_last.index.0 - self.base) as usize);
        } else {
            self.locations.clear();
            self.base = new_last.index.0;
        }
        self.shape.last = new_last;
        Ok(())
    }

    /// Removes every entry up to `upto`, which becomes the last purged entry; a purge past
    /// the last entry empties the log, which then continues after `upto`. `upto` must be
    /// above the current purged entry.
    pub fn purge(&mut self, upto: LogId) -> Result<(), String> {
        if upto.index <= self.shape.last_purged.index {
            return Err(format!("a purge to {upto} at or below the purged entry {}", self.shape.last_purged));
        }
        if upto.index >= self.shape.last.index {
            self.locations.clear();
            self.base = upto.index.0;
            self.shape.last = upto;
        } else if upto.index.0 > self.base {
            self.locations.drain(..(upto.index.0 - self.base) as usize);
            self.base = upto.index.0;
        }
        self.shape.last_purged = upto;
        Ok(())
    }

    /// The entries that are neither purged nor held (`first..=last`): replay started in
    /// a segment after the one that held them.
    pub fn missing(&self) -> Option<(u64, u64)> {
        (self.base > self.shape.last_purged.index.0).then(|| (self.shape.last_purged.index.0 + 1, self.base))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(offset: u64, term: u64) -> Location {
        Location { segment: 1, offset, len: 30, term: Term(term) }
    }

    fn with_entries(last: u64) -> LogState {
        let mut state = LogState::starting_at(Shape::default());
        for index in 1..=last {
            state.append(LogId::new(1 + index / 4, index), at(index * 100, 1 + index / 4)).unwrap();
        }
        state
    }

    #[test]
    fn appends_must_follow_the_last_entry() {
        let mut state = with_entries(3);
        assert!(state.append(LogId::new(1, 5), at(0, 1)).is_err(), "a gap");
        assert!(state.append(LogId::new(1, 3), at(0, 1)).is_err(), "an overlap");
        assert!(state.append(LogId::new(0, 4), at(0, 0)).is_err(), "a falling term");
        assert_eq!(state.location(LogIndex(2)), Some(&at(200, 1)));
        assert_eq!(state.location(LogIndex(4)), None);
        assert_eq!(state.location(LogIndex(0)), None);
    }

    #[test]
    fn truncate_and_purge_keep_locations_in_step_with_indices() {
        let mut state = with_entries(10);
        state.purge(LogId::new(1, 3)).unwrap();
        assert_eq!(state.location(LogIndex(3)), None);
        assert_eq!(state.location(LogIndex(4)), Some(&at(400, 2)));
        assert!(state.truncate(LogId::new(1, 6)).is_err(), "entry 6 has term 2");
        state.truncate(LogId::new(2, 6)).unwrap();
        assert_eq!(state.shape.last, LogId::new(2, 6));
        assert_eq!(state.held(), 3);
        state.truncate(LogId::new(1, 3)).unwrap();
        assert_eq!(state.held(), 0, "truncated down to the purged entry");
        state.purge(LogId::new(5, 20)).unwrap();
        assert_eq!(state.shape.last, LogId::new(5, 20), "a purge past the end moves the end");
        assert_eq!(state.missing(), None);
    }

    #[test]
    fn entries_of_removed_segments_must_be_purged_by_the_end_of_replay() {
        let shape = Shape { last_purged: LogId::new(1, 2), last: LogId::new(1, 8), ..Shape::default() };
        let mut state = LogState::starting_at(shape);
        assert_eq!(state.missing(), Some((3, 8)));
        state.purge(LogId::new(1, 5)).unwrap();
        assert_eq!(state.missing(), Some((6, 8)));
        state.append(LogId::new(1, 9), at(900, 1)).unwrap();
        state.purge(LogId::new(1, 8)).unwrap();
        assert_eq!(state.missing(), None);
        assert_eq!(state.location(LogIndex(9)), Some(&at(900, 1)));
    }
}
