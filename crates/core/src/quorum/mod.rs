//! Quorum math, kept apart from the protocol so that it can be read and tested on its own.
//!
//! A configuration answers two questions: which value has a quorum acknowledged
//! (commit index, read-index round) and has an election been won, lost or not
//! decided yet. `majority` answers them for one voter set, `joint` for the
//! two sets of a joint configuration (both must agree).

mod joint;
mod majority;

pub use joint::JointConfig;
pub use majority::MajorityConfig;

/// The outcome of counting votes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VoteResult {
    /// A quorum granted.
    Won,
    /// A quorum can no longer grant.
    Lost,
    /// Neither yet: keep waiting for answers.
    Pending,
}
