//! Segment files: their names and the list of them in a log directory.
//!
//! A segment is named `<seq>-<first index>.wal`, both numbers zero-padded to 20 digits so
//! that names sort like numbers. `seq` counts segments from 1 and orders them: it is
//! what replay goes by, and the remaining segments' sequence numbers must be
//! consecutive. `first index` is the index that followed the log's last entry when the
//! segment was started; it is for people (which file holds index N), since a truncation
//! can make a later segment hold entries below its name.

use std::path::{Path, PathBuf};

use d_engine_core::storage::StorageError;
use d_engine_storage_fs::error::{corrupt, io};

/// The file name extension of segments.
const EXTENSION: &str = ".wal";
const DIGITS: usize = 20;

/// A segment file found in a log directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SegmentFile {
    /// The sequence number.
    pub seq: u64,
    /// The first index its name gives.
    pub first_index: u64,
    /// The file.
    pub path: PathBuf,
}

/// The file name of segment `seq` started before index `first_index`.
pub(crate) fn file_name(seq: u64, first_index: u64) -> String {
    format!("{seq:0DIGITS$}-{first_index:0DIGITS$}{EXTENSION}")
}

fn parse_name(name: &str) -> Option<(u64, u64)> {
    let stem = name.strip_suffix(EXTENSION)?;
    let (seq, first_index) = stem.split_once('-')?;
    let number = |digits: &str| {
        (digits.len() == DIGITS && digits.bytes().all(|byte| byte.is_ascii_digit()))
            .then(|| digits.parse().ok())
            .flatten()
    };
    Some((number(seq)?, number(first_index)?))
}

/// The segments in log directory `dir`, in sequence order.
///
/// Errors: `Io` naming `dir` when it cannot be read; `Corrupt` naming the file when a
/// `.wal` file has a name that is not a segment's, and naming `dir` when there is no
/// segment or the sequence numbers have a gap (a segment file was lost).
pub(crate) fn list(dir: &Path) -> Result<Vec<SegmentFile>, StorageError> {
    let mut segments = Vec::new();
    for item in std::fs::read_dir(dir).map_err(|error| io(dir, "list segments", error))? {
        let item = item.map_err(|error| io(dir, "list segments", error))?;
        let name = item.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.ends_with(EXTENSION) {
            continue;
        }
        let Some((seq, first_index)) = parse_name(name) else {
            return Err(corrupt(&item.path(), "a .wal file whose name is not <seq>-<first index>.wal"));
        };
        segments.push(SegmentFile { seq, first_index, path: item.path() });
    }
    segments.sort_by_key(|segment| segment.seq);
    if segments.is_empty() {
        return Err(corrupt(dir, "the log holds no segment file: its data is lost"));
    }
    for pair in segments.windows(2) {
        if pair[0].seq.checked_add(1) != Some(pair[1].seq) {
            return Err(corrupt(
                dir,
                format!(
                    "segment files {} and {} are not consecutive: the segments between them are lost",
                    pair[0].path.display(),
                    pair[1].path.display()
                ),
            ));
        }
    }
    Ok(segments)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_sort_like_numbers() {
        assert_eq!(file_name(1, 1), "00000000000000000001-00000000000000000001.wal");
        assert_eq!(parse_name(&file_name(u64::MAX, 42)), Some((u64::MAX, 42)));
        assert!(file_name(9, 1) < file_name(10, 1));
        for bad in ["1-1.wal", "00000000000000000001.wal", "0000000000000000000a-00000000000000000001.wal"] {
            assert_eq!(parse_name(bad), None, "{bad}");
        }
    }
}
