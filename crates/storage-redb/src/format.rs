//! The format stamp written into every store when it is created and checked at every
//! open: which adapter made the store, what kind of store it is, and the layout
//! version. A store of another adapter, another kind or an unknown version is refused
//! by name instead of being misread.

use std::path::Path;

use d_engine_core::storage::StorageError;

use crate::error::corrupt;

/// The layout version of the stores this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

const ADAPTER: &str = "d-engine-redb";

/// What a store holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StoreKind {
    /// A [`RedbLogStore`](crate::RedbLogStore).
    Log,
    /// A [`RedbStateStore`](crate::RedbStateStore).
    State,
}

impl StoreKind {
    fn name(self) -> &'static str {
        match self {
            StoreKind::Log => "log",
            StoreKind::State => "state",
        }
    }
}

/// The stamp of a new store of `kind`: `d-engine-redb <kind> <version>`.
pub(crate) fn stamp(kind: StoreKind) -> String {
    format!("{ADAPTER} {} {FORMAT_VERSION}", kind.name())
}

/// The error for a store that exists but carries no stamp. Every store is stamped when
/// it is created, so its data is gone (a file emptied or cut short), or its creation was
/// interrupted before anything was stored. Opening it as a new store could let a node
/// forget its vote and its log, so it is refused.
pub(crate) fn missing_stamp(path: &Path) -> StorageError {
    corrupt(
        path,
        "the store exists but has no format stamp: its data is lost or its creation was interrupted; \
         if this node never stored anything, delete it to start afresh",
    )
}

/// Checks a stamp read from the store at `path`.
pub(crate) fn check(path: &Path, found: &[u8], kind: StoreKind) -> Result<(), StorageError> {
    let text = String::from_utf8_lossy(found);
    let parts: Vec<&str> = text.split(' ').collect();
    let [adapter, found_kind, version] = parts[..] else {
        return Err(corrupt(path, format!("unrecognised format stamp {text:?}")));
    };
    if adapter != ADAPTER {
        return Err(corrupt(path, format!("the store was made by {adapter}, not {ADAPTER}")));
    }
    if found_kind != kind.name() {
        return Err(corrupt(path, format!("this is a {found_kind} store, not a {} store", kind.name())));
    }
    match version.parse::<u32>() {
        Ok(FORMAT_VERSION) => Ok(()),
        Ok(other) => Err(corrupt(
            path,
            format!(
                "format version {other} is not known to this build of {ADAPTER} (it reads version {FORMAT_VERSION})"
            ),
        )),
        Err(_) => Err(corrupt(path, format!("unrecognised format version {version:?}"))),
    }
}
