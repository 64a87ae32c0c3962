//! The `node{id, term}` span every line a node logs sits in.
//!
//! The event loop owns the term; it publishes it in a [`SharedTerm`]. The storage and apply
//! threads hold a [`TermSpan`] and call [`TermSpan::enter_current`] before each batch of
//! work: when the term moved on it leaves the old span and enters a new one, so their lines
//! name the term they were written in (a new span per term, rather than one span with the
//! term recorded again and again, keeps the human format to one `term=` per line).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tracing::span::EnteredSpan;

/// The node's current term, written by the event loop, read by its threads.
#[derive(Clone, Debug, Default)]
pub(crate) struct SharedTerm(Arc<AtomicU64>);

impl SharedTerm {
    pub(crate) fn set(&self, term: u64) {
        self.0.store(term, Ordering::Relaxed);
    }

    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The span a node logs in during `term`.
pub(crate) fn node_span(id: u64, term: u64) -> tracing::Span {
    tracing::info_span!("node", id, term)
}

/// A thread's entered `node{id, term}` span, renewed when the term changes.
pub(crate) struct TermSpan {
    id: u64,
    term: SharedTerm,
    entered: Option<(u64, EnteredSpan)>,
}

impl TermSpan {
    pub(crate) fn new(id: u64, term: SharedTerm) -> TermSpan {
        TermSpan { id, term, entered: None }
    }

    /// Makes sure the span of the current term is the one entered.
    pub(crate) fn enter_current(&mut self) {
        let term = self.term.get();
        if self.entered.as_ref().is_some_and(|(entered_term, _)| *entered_term == term) {
            return;
        }
        // Leave the old span before entering the new one: they are siblings, not nested.
        self.entered = None;
        self.entered = Some((term, node_span(self.id, term).entered()));
    }
}
