//! The format stamp written into every store when it is created and checked at every
//! open: which adapter made the store, what kind of store it is, and the layout
//! version, as the text `<adapter> <kind> <version>`. A store of another adapter,
//! another kind or an unknown version is refused by name instead of being misread.
//!
//! Each adapter keeps the stamp where its database keeps small records, and versions
//! its own layout.

use std::path::Path;

use d_engine_core::storage::StorageError;

use crate::error::corrupt;

/// What a store holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreKind {
    /// A log store (`LogStore`).
    Log,
    /// A state store (`StateStore`).
    State,
}

impl StoreKind {
    /// The kind's name in a stamp: `log` or `state`.
    pub fn name(self) -> &'static str {
        match self {
            StoreKind::Log => "log",
            StoreKind::State => "state",
        }
    }
}

/// The format one adapter writes and reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Format {
    /// The adapter's crate name, such as `d-engine-redb`.
    pub adapter: &'static str,
    /// The layout version this build writes and reads.
    pub version: u32,
}

impl Format {
    /// The stamp of a new store of `kind`: `<adapter> <kind> <version>`.
    pub fn stamp(&self, kind: StoreKind) -> String {
        format!("{} {} {}", self.adapter, kind.name(), self.version)
    }

    /// Checks a stamp read from the store at `path`.
    ///
    /// Errors: `Corrupt`, naming `path`, when the stamp is not three words, was written
    /// by another adapter, is of another kind, or has another or an unreadable version.
    pub fn check(&self, path: &Path, found: &[u8], kind: StoreKind) -> Result<(), StorageError> {
        let adapter_here = self.adapter;
        let text = String::from_utf8_lossy(found);
        let parts: Vec<&str> = text.split(' ').collect();
        let [adapter, found_kind, version] = parts[..] else {
            return Err(corrupt(path, format!("unrecognised format stamp {text:?}")));
        };
        if adapter != adapter_here {
            return Err(corrupt(path, format!("the store was made by {adapter}, not {adapter_here}")));
        }
        if found_kind != kind.name() {
            return Err(corrupt(path, format!("this is a {found_kind} store, not a {} store", kind.name())));
        }
        match version.parse::<u32>() {
            Ok(known) if known == self.version => Ok(()),
            Ok(other) => Err(corrupt(
                path,
                format!(
                    "format version {other} is not known to this build of {adapter_here} (it reads version {})",
                    self.version
                ),
            )),
            Err(_) => Err(corrupt(path, format!("unrecognised format version {version:?}"))),
        }
    }
}

/// The error for a store that exists but carries no stamp. Every store is stamped when
/// it is created, so its data is gone (a file emptied or cut short), or its creation was
/// interrupted before anything was stored. Opening it as a new store could let a node
/// forget its vote and its log, so it is refused.
pub fn missing_stamp(path: &Path) -> StorageError {
    corrupt(
        path,
        "the store exists but has no format stamp: its data is lost or its creation was interrupted; \
         if this node never stored anything, delete it to start afresh",
    )
}
