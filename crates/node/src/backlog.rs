//! How much work handed to a thread is not yet done: what lets the event loop do a piece of
//! that thread's work itself, in order, when nothing is ahead of it.
//!
//! The side that hands work over counts it before the thread can see it ([`Backlog::add`]);
//! the thread counts it off only after it carried it out and sent its completions
//! ([`Backlog::done`]). So a clear backlog means every completion is already in the
//! channel, and whatever the caller does next comes after all of it. Used by the storage
//! thread's queue (a follower's inline write) and the apply thread's sequence numbers (a
//! leader's inline apply).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Work handed to a thread and not yet carried out (shared; clones count together).
#[derive(Clone, Debug, Default)]
pub(crate) struct Backlog(Arc<AtomicUsize>);

impl Backlog {
    /// One more piece of work handed over.
    pub(crate) fn add(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }

    /// `count` pieces carried out, their completions sent.
    pub(crate) fn done(&self, count: usize) {
        self.0.fetch_sub(count, Ordering::SeqCst);
    }

    /// Whether everything handed over is carried out and reported.
    pub(crate) fn is_clear(&self) -> bool {
        self.0.load(Ordering::SeqCst) == 0
    }
}
