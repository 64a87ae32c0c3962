//! Linearizability checking of the key-value histories the simulator records.
//!
//! A history is linearizable when every operation can be given one instant between its call and its
//! return such that running the operations one at a time, in the order of those instants, against a plain
//! register per key reproduces exactly what the clients observed. Every key starts absent. Keys are
//! independent registers and linearizability is compositional, so each key is checked on its own, in
//! ascending key order, and the first failing key is reported.
//!
//! # Search
//! The per-key search is Wing & Gong's algorithm with Lowe's memoization, as in Porcupine. The calls and
//! returns of the operations sit in one time-ordered linked list. An operation may be linearized next when
//! its call comes before the first return still in the list, that is, when every operation that returned
//! before it was called is already linearized. Linearizing an operation applies it to the register, lifts
//! its call and return out of the list and pushes it on a stack; when no candidate fits, the search pops the
//! stack and tries the next candidate after the popped one. A cache of visited configurations (the set of
//! linearized operations as a bitset, and the register state) prunes every subtree already explored from
//! an equal configuration. A return and a call at the same instant are not concurrent: the return comes
//! first.
//!
//! # Unknown outcomes
//! A client that timed out does not know whether its operation took effect, and the request may still be
//! in flight. Such an operation may take effect at any single instant after its call, or never. It gets an
//! infinite return time, so it never forces another operation to wait for it, and the search succeeds as
//! soon as every operation with a known outcome is linearized: the unknown ones left over never happened,
//! which is the same as happening at the very end.
//!
//! Operations that stay open forever widen every concurrency window, and a plain search would try every
//! subset of them at every step. These reductions, each exact (it keeps a linearization whenever one
//! exists), keep them cheap:
//! - An unknown operation nobody could have observed is ignored: an unknown Get, and an unknown write of a
//!   value that no Get returns and no successful or unknown Cas expects, when no failed Cas returns after its
//!   call (a failed Cas is the only other witness of a write). Wherever it took effect, the next write hid
//!   it before anyone looked, so dropping it from a linearization leaves a linearization.
//! - An unknown operation must be followed directly by one that needs its effect: a Get or a successful
//!   Cas that reads the value it wrote, or a failed Cas that expects the value it overwrote. Take a
//!   linearization with the fewest unknown operations, and among those the one with its unknown operations
//!   as late as possible: an unknown operation followed by a blind write, a no-op or nothing could be
//!   dropped, and one followed by a failed Cas that fails either way could move one step later.
//! - Unknown operations are tried only after every known candidate, and only when a pending candidate
//!   could need their effect, so an unknown write that nothing reads costs nothing.
//! - Unknown writes with the same effect are interchangeable, so they are used in call order: unknown
//!   Deletes, unknown Puts of one value, and unknown Puts whose value nothing reads and no failed Cas expects
//!   (they can only make a failed Cas fail).
//! - Unknown operations are optional, so a configuration that used a subset of the unknown operations of
//!   an explored one, with the same known operations and register, is explored; one that used a superset
//!   is pruned.
//!
//! The search counts every attempt to linearize one operation; a key whose search needs more attempts than
//! the budget is reported as [`CheckResult::BudgetExhausted`], which callers must treat as a failure.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

/// An operation a simulated key-value client sends for one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KvInput {
    /// Read the current value.
    Get,
    /// Set the value.
    Put(u64),
    /// Remove the value.
    Delete,
    /// Set the value to `new` if and only if the current value equals `expected`.
    Cas {
        /// The value the key must hold for the swap to happen; `None` means the key must be absent.
        expected: Option<u64>,
        /// The value stored when the swap happens.
        new: u64,
    },
}

/// What a client observed when its operation completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KvOutput {
    /// The value a Get returned; `None` when the key was absent.
    Get(Option<u64>),
    /// A Put was acknowledged.
    Put,
    /// A Delete was acknowledged.
    Delete,
    /// Whether a Cas swapped the value.
    Cas(bool),
    /// The client timed out: the operation may or may not have taken effect.
    Unknown,
}

/// One client operation on one key, as recorded by the simulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Operation {
    /// The client that sent the operation.
    pub client: u64,
    /// The key the operation reads or writes.
    pub key: u64,
    /// What the client asked for.
    pub input: KvInput,
    /// What the client observed.
    pub output: KvOutput,
    /// Virtual time the client sent the request.
    pub call: u64,
    /// Virtual time the client received the answer; `None` when the outcome is unknown (output == Unknown).
    pub ret: Option<u64>,
}

/// The verdict on a whole history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckResult {
    /// Every key has a linearization.
    Linearizable,
    /// No linearization exists for this key.
    NotLinearizable {
        /// The first key, in ascending order, without a linearization.
        key: u64,
        /// The key's operations sorted by call, one per line, around the longest linearizable prefix found.
        explanation: String,
    },
    /// The search on this key needed more attempts than its budget: the caller treats this as a failure,
    /// never as a pass.
    BudgetExhausted {
        /// The first key, in ascending order, whose search ran out of budget.
        key: u64,
        /// The attempts made before giving up.
        explored: u64,
    },
}

/// Checks that `history` is linearizable with respect to one register per key.
///
/// Each key gets its own budget of `budget_per_key` attempts (one attempt = trying to linearize one
/// operation in one configuration). Keys are checked in ascending order and the first failure is returned.
///
/// An operation whose output is [`KvOutput::Unknown`] may take effect at any instant after its call, or
/// never, whatever its `ret` says. An operation with a known output and `ret == None` must take effect at
/// some instant after its call. An output that does not match the input's kind (a Put answered by
/// `KvOutput::Get`, say) can never be explained and makes its key not linearizable.
///
/// # Panics
/// Panics when an operation returned before it was called: the recorder that built the history is broken.
pub fn check(history: &[Operation], budget_per_key: u64) -> CheckResult {
    let mut operations_by_key: BTreeMap<u64, Vec<&Operation>> = BTreeMap::new();
    for operation in history {
        operations_by_key.entry(operation.key).or_default().push(operation);
    }
    for (key, operations) in operations_by_key {
        let verdict = check_key(key, operations, budget_per_key);
        if verdict.result != CheckResult::Linearizable {
            return verdict.result;
        }
    }
    CheckResult::Linearizable
}

impl fmt::Display for KvInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KvInput::Get => write!(f, "get"),
            KvInput::Put(value) => write!(f, "put({value})"),
            KvInput::Delete => write!(f, "delete"),
            KvInput::Cas { expected, new } => write!(f, "cas({} -> {new})", DisplayValue(*expected)),
        }
    }
}

impl fmt::Display for KvOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KvOutput::Get(value) => write!(f, "{}", DisplayValue(*value)),
            KvOutput::Put | KvOutput::Delete | KvOutput::Cas(true) => write!(f, "ok"),
            KvOutput::Cas(false) => write!(f, "failed"),
            KvOutput::Unknown => write!(f, "unknown (timed out)"),
        }
    }
}

/// Shows an operation the way the checker's explanations list it: `client 2 [call 10, ret 15] put(7) -> ok`.
impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "client {} [call {}, ret ", self.client, self.call)?;
        match self.ret {
            Some(ret) => write!(f, "{ret}")?,
            None => write!(f, "-")?,
        }
        write!(f, "] {} -> {}", self.input, self.output)
    }
}

/// A register value shown as `absent` or as the number itself.
struct DisplayValue(Option<u64>);

impl fmt::Display for DisplayValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(value) => write!(f, "{value}"),
            None => write!(f, "absent"),
        }
    }
}

/// The register after `input` took effect on `state` and produced `output`, or `None` when it cannot have.
///
/// An unknown Cas that finds another value than it expects changes nothing, which is the same as never
/// happening: it is rejected here so the search does not try it for nothing.
fn apply(state: Option<u64>, input: KvInput, output: KvOutput) -> Option<Option<u64>> {
    match (input, output) {
        (KvInput::Get, KvOutput::Get(seen)) => (seen == state).then_some(state),
        (KvInput::Put(value), KvOutput::Put | KvOutput::Unknown) => Some(Some(value)),
        (KvInput::Delete, KvOutput::Delete | KvOutput::Unknown) => Some(None),
        (KvInput::Cas { expected, new }, KvOutput::Cas(true) | KvOutput::Unknown) => {
            (state == expected).then_some(Some(new))
        }
        (KvInput::Cas { expected, .. }, KvOutput::Cas(false)) => (state != expected).then_some(state),
        _ => None,
    }
}

/// Time in the event list: virtual time widened so that an unknown return can be later than any real one.
type EventTime = u128;

/// The return time of an operation that may take effect at any time after its call.
const RETURN_NEVER: EventTime = EventTime::MAX;

/// The outcome of one key's search, with its cost.
struct KeyVerdict {
    result: CheckResult,
    #[cfg_attr(not(test), expect(dead_code, reason = "read by the tests that measure the search's cost"))]
    explored: u64,
}

fn check_key(key: u64, operations: Vec<&Operation>, budget: u64) -> KeyVerdict {
    let history = KeyHistory::new(key, operations);
    Search::new(&history, budget).run()
}

/// How the search treats an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Its outcome is known: it must be linearized, between its call and its return.
    Known,
    /// Its outcome is unknown: it may be linearized at any point after its call, or never.
    Unknown,
    /// An unknown Put of a value that nothing reads and no failed Cas expects, which matters only because a
    /// failed Cas may come after it: all of these are interchangeable, so the search uses them in call order
    /// (see [`LastLinearized`]).
    Unobserved,
    /// Its outcome is unknown and nobody could have observed its effect: it is assumed never to have happened.
    Ignored,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EventKind {
    Call,
    Return,
}

/// A call or return of an operation with a known outcome, in the time-ordered event list.
#[derive(Debug, Clone, Copy)]
struct Event {
    op: usize,
    kind: EventKind,
    time: EventTime,
}

/// One key's operations, prepared for the search. Operations are named everywhere by their index in
/// `operations`, which is sorted by call time.
struct KeyHistory<'a> {
    key: u64,
    operations: Vec<&'a Operation>,
    roles: Vec<Role>,
    /// Calls and returns of the known operations; node `n` of the event list holds `events[n - 1]`.
    events: Vec<Event>,
    /// The event-list nodes of each known operation's call and return.
    call_nodes: Vec<usize>,
    return_nodes: Vec<usize>,
    /// The unknown operations by call time; node `n` of the unknown list holds `unknown_ops[n - 1]`.
    unknown_ops: Vec<usize>,
    /// The unknown-list node of each unknown operation.
    unknown_nodes: Vec<usize>,
    /// The unobserved unknown Puts by call time.
    unobserved_ops: Vec<usize>,
    /// For an unknown blind write (Put or Delete), the previous one by call time that writes the same value.
    /// Such writes are interchangeable, so the search uses them in call order.
    previous_same_write: Vec<Option<usize>>,
}

impl<'a> KeyHistory<'a> {
    fn new(key: u64, mut operations: Vec<&'a Operation>) -> Self {
        for operation in &operations {
            if let Some(ret) = operation.ret {
                assert!(ret >= operation.call, "operation returned before it was called: {operation}");
            }
        }
        operations.sort_by_key(|operation| (operation.call, operation.ret.unwrap_or(u64::MAX)));
        let roles = assign_roles(&operations);
        let events = order_events(&operations, &roles);
        let mut call_nodes = vec![0; operations.len()];
        let mut return_nodes = vec![0; operations.len()];
        for (position, event) in events.iter().enumerate() {
            match event.kind {
                EventKind::Call => call_nodes[event.op] = position + 1,
                EventKind::Return => return_nodes[event.op] = position + 1,
            }
        }
        let unknown_ops: Vec<usize> = (0..operations.len()).filter(|&op| roles[op] == Role::Unknown).collect();
        let mut unknown_nodes = vec![0; operations.len()];
        for (position, &op) in unknown_ops.iter().enumerate() {
            unknown_nodes[op] = position + 1;
        }
        let unobserved_ops = (0..operations.len()).filter(|&op| roles[op] == Role::Unobserved).collect();
        let previous_same_write = link_same_writes(&operations, &roles);
        KeyHistory {
            key,
            operations,
            roles,
            events,
            call_nodes,
            return_nodes,
            unknown_ops,
            unknown_nodes,
            unobserved_ops,
            previous_same_write,
        }
    }

    fn known_count(&self) -> usize {
        self.events.len() / 2
    }
}

/// Decides which operations must, may, or need not be linearized (see the module documentation for why
/// ignoring an unobservable unknown operation is exact).
fn assign_roles(operations: &[&Operation]) -> Vec<Role> {
    // Values some operation can only have seen if the register held them. A failed Cas does not read its
    // expected value: it needs the register to hold anything else.
    let mut read_values = HashSet::new();
    let mut failed_cas_expected_values = HashSet::new();
    let mut last_failed_cas_return: Option<EventTime> = None;
    for operation in operations {
        match (operation.input, operation.output) {
            (KvInput::Get, KvOutput::Get(value)) => {
                read_values.insert(value);
            }
            (KvInput::Cas { expected, .. }, KvOutput::Cas(false)) => {
                failed_cas_expected_values.insert(expected);
                let ret = operation.ret.map_or(RETURN_NEVER, EventTime::from);
                last_failed_cas_return = last_failed_cas_return.max(Some(ret));
            }
            (KvInput::Cas { expected, .. }, _) => {
                read_values.insert(expected);
            }
            _ => {}
        }
    }
    let role_of = |operation: &&Operation| {
        if operation.output != KvOutput::Unknown {
            return Role::Known;
        }
        let written = match operation.input {
            KvInput::Get => return Role::Ignored,
            KvInput::Put(value) | KvInput::Cas { new: value, .. } => Some(value),
            KvInput::Delete => None,
        };
        let failed_cas_may_follow = last_failed_cas_return.is_some_and(|ret| ret > EventTime::from(operation.call));
        match operation.input {
            _ if read_values.contains(&written) => Role::Unknown,
            _ if !failed_cas_may_follow => Role::Ignored,
            KvInput::Put(_) if !failed_cas_expected_values.contains(&written) => Role::Unobserved,
            _ => Role::Unknown,
        }
    };
    operations.iter().map(role_of).collect()
}

/// Links each unknown blind write to the previous one, by call time, that writes the same value. Two of
/// them have the same effect wherever both were called, so a linearization can always use them in call order.
fn link_same_writes(operations: &[&Operation], roles: &[Role]) -> Vec<Option<usize>> {
    let mut last_by_value: HashMap<Option<u64>, usize> = HashMap::new();
    let mut previous = vec![None; operations.len()];
    for (op, operation) in operations.iter().enumerate() {
        let written = match operation.input {
            KvInput::Put(value) => Some(value),
            KvInput::Delete => None,
            KvInput::Get | KvInput::Cas { .. } => continue,
        };
        if roles[op] == Role::Unknown {
            previous[op] = last_by_value.insert(written, op);
        }
    }
    previous
}

/// The calls and returns of the known operations in time order. At equal times returns come before calls,
/// so an operation called when another returns is not concurrent with it; an operation that returns at the
/// instant of its call sits between the returns and the calls of that instant.
fn order_events(operations: &[&Operation], roles: &[Role]) -> Vec<Event> {
    let mut ranked = Vec::new();
    for (op, operation) in operations.iter().enumerate() {
        if roles[op] != Role::Known {
            continue;
        }
        let call = EventTime::from(operation.call);
        let ret = operation.ret.map_or(RETURN_NEVER, EventTime::from);
        let (call_rank, return_rank) = if call == ret { (1, 2) } else { (3, 0) };
        ranked.push((call_rank, Event { op, kind: EventKind::Call, time: call }));
        ranked.push((return_rank, Event { op, kind: EventKind::Return, time: ret }));
    }
    ranked.sort_by_key(|(rank, event)| (event.time, *rank, event.op));
    ranked.into_iter().map(|(_, event)| event).collect()
}

/// A doubly linked list of nodes `1..=len` between the sentinels `0` and `len + 1`. A removed node keeps
/// its links, so nodes removed in some order can be put back in the reverse order ("dancing links").
struct DancingList {
    next: Vec<usize>,
    prev: Vec<usize>,
}

impl DancingList {
    fn new(len: usize) -> Self {
        DancingList { next: (1..=len + 2).collect(), prev: (0..len + 2).map(|node| node.saturating_sub(1)).collect() }
    }

    fn first(&self) -> usize {
        self.next[0]
    }

    fn next(&self, node: usize) -> usize {
        self.next[node]
    }

    fn is_tail(&self, node: usize) -> bool {
        node == self.next.len() - 1
    }

    fn is_empty(&self) -> bool {
        self.is_tail(self.first())
    }

    fn remove(&mut self, node: usize) {
        let (prev, next) = (self.prev[node], self.next[node]);
        self.next[prev] = next;
        self.prev[next] = prev;
    }

    /// Puts back `node`; valid only in the reverse order of the removals.
    fn restore(&mut self, node: usize) {
        let (prev, next) = (self.prev[node], self.next[node]);
        self.next[prev] = node;
        self.prev[next] = node;
    }
}

/// A set of operations as a bitset, with a fingerprint kept up to date for hashing.
#[derive(Debug, Clone)]
struct OperationSet {
    words: Vec<u64>,
    fingerprint: u64,
}

impl OperationSet {
    fn new(len: usize) -> Self {
        OperationSet { words: vec![0; len.div_ceil(64)], fingerprint: 0 }
    }

    fn contains(&self, op: usize) -> bool {
        self.words[op / 64] & (1 << (op % 64)) != 0
    }

    fn insert(&mut self, op: usize) {
        debug_assert!(!self.contains(op));
        self.words[op / 64] |= 1 << (op % 64);
        self.fingerprint ^= mix(op as u64);
    }

    fn remove(&mut self, op: usize) {
        debug_assert!(self.contains(op));
        self.words[op / 64] &= !(1 << (op % 64));
        self.fingerprint ^= mix(op as u64);
    }
}

/// SplitMix64's finalizer: spreads any input over all 64 bits.
fn mix(value: u64) -> u64 {
    let mut z = value.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Where the search stands: what is linearized, and the register.
#[derive(Debug, Clone, Copy)]
struct Configuration<'s> {
    /// The linearized operations with a known outcome, by operation index.
    known: &'s OperationSet,
    /// The linearized unknown operations, by position in the unknown list.
    unknown: &'s OperationSet,
    /// How many unobserved Puts are linearized; they are always used in call order, so this says which.
    unobserved_used: usize,
    state: Option<u64>,
    last: LastLinearized,
}

/// The configurations the search has entered, each with its subtree explored (or being explored, for the
/// current path).
///
/// Unknown operations are optional: a configuration that used a subset of the unknown operations (and no
/// more unobserved Puts) of another, with the same known operations, register and demand on the next
/// operation, can do everything the other can. So configurations are grouped by those three, and each group
/// keeps the unknown operations used by each variant visited; a new configuration is not new when a
/// variant that used no more is already there. Sets are stored back to back in vectors, so an entry costs
/// its bitsets and a few words.
struct VisitedConfigurations {
    known_words: usize,
    unknown_words: usize,
    known_sets: Vec<u64>,
    groups: Vec<VisitedGroup>,
    bucket_heads: HashMap<u64, usize>,
    unknown_sets: Vec<u64>,
    variants: Vec<VisitedVariant>,
}

struct VisitedGroup {
    state: Option<u64>,
    last: LastLinearized,
    next_in_bucket: Option<usize>,
    first_variant: usize,
}

struct VisitedVariant {
    unobserved_used: usize,
    next_in_group: Option<usize>,
}

impl VisitedConfigurations {
    fn new(operation_count: usize, unknown_count: usize) -> Self {
        VisitedConfigurations {
            known_words: operation_count.div_ceil(64),
            unknown_words: unknown_count.div_ceil(64),
            known_sets: Vec::new(),
            groups: Vec::new(),
            bucket_heads: HashMap::new(),
            unknown_sets: Vec::new(),
            variants: Vec::new(),
        }
    }

    /// Records the configuration and returns whether it is new. Right after an unknown operation, the same
    /// configuration without that operation's demand on the next one counts too: it allowed every
    /// candidate this one allows.
    fn insert(&mut self, configuration: Configuration<'_>) -> bool {
        let unrestricted = Configuration { last: LastLinearized::Known, ..configuration };
        if configuration.last != LastLinearized::Known
            && self.find_group(unrestricted).is_some_and(|group| self.is_dominated(group, configuration))
        {
            return false;
        }
        match self.find_group(configuration) {
            Some(group) if self.is_dominated(group, configuration) => false,
            Some(group) => {
                let first_variant = self.add_variant(configuration, Some(self.groups[group].first_variant));
                self.groups[group].first_variant = first_variant;
                true
            }
            None => {
                let first_variant = self.add_variant(configuration, None);
                let bucket = Self::bucket(configuration);
                let next_in_bucket = self.bucket_heads.insert(bucket, self.groups.len());
                let Configuration { state, last, .. } = configuration;
                self.groups.push(VisitedGroup { state, last, next_in_bucket, first_variant });
                self.known_sets.extend_from_slice(&configuration.known.words);
                true
            }
        }
    }

    fn add_variant(&mut self, configuration: Configuration<'_>, next_in_group: Option<usize>) -> usize {
        self.variants.push(VisitedVariant { unobserved_used: configuration.unobserved_used, next_in_group });
        self.unknown_sets.extend_from_slice(&configuration.unknown.words);
        self.variants.len() - 1
    }

    fn find_group(&self, configuration: Configuration<'_>) -> Option<usize> {
        let mut cursor = self.bucket_heads.get(&Self::bucket(configuration)).copied();
        while let Some(index) = cursor {
            let group = &self.groups[index];
            let known = &self.known_sets[index * self.known_words..(index + 1) * self.known_words];
            if group.state == configuration.state
                && group.last == configuration.last
                && known == configuration.known.words.as_slice()
            {
                return Some(index);
            }
            cursor = group.next_in_bucket;
        }
        None
    }

    /// Whether a variant of `group` used no more than `configuration` does.
    fn is_dominated(&self, group: usize, configuration: Configuration<'_>) -> bool {
        let mut cursor = Some(self.groups[group].first_variant);
        while let Some(index) = cursor {
            let variant = &self.variants[index];
            let unknown = &self.unknown_sets[index * self.unknown_words..(index + 1) * self.unknown_words];
            let is_subset = unknown.iter().zip(&configuration.unknown.words).all(|(used, other)| used & !other == 0);
            if variant.unobserved_used <= configuration.unobserved_used && is_subset {
                return true;
            }
            cursor = variant.next_in_group;
        }
        false
    }

    fn bucket(configuration: Configuration<'_>) -> u64 {
        let last_hash = match configuration.last {
            LastLinearized::Known => 0,
            LastLinearized::Unknown { state_before } => mix(hash_value(state_before) ^ 0x2545_f491_4f6c_dd1d),
        };
        configuration.known.fingerprint ^ hash_value(configuration.state) ^ last_hash
    }
}

fn hash_value(value: Option<u64>) -> u64 {
    value.map_or(0x5bd1_e995, |value| mix(value ^ 0x27d4_eb2f_1656_67c5))
}

/// The deepest point the search reached, kept to explain a failure.
struct LongestPrefix {
    known_linearized: usize,
    linearized_known: OperationSet,
    linearized_unknown: OperationSet,
    unobserved_used: usize,
    state: Option<u64>,
    /// The last operations of that prefix, in linearization order.
    tail: Vec<usize>,
}

/// How many operations of the longest prefix the explanation spells out in order.
const EXPLAINED_TAIL_LEN: usize = 8;

/// What the last linearized operation demands of the next one.
///
/// A linearization with the fewest unknown operations, and among those with the unknown ones as late as
/// possible, has every unknown operation followed directly by an operation that needs its effect: one that
/// reads the value it wrote (a Get, a successful Cas), or a failed Cas whose expected value is the one it
/// overwrote. Any other follower makes the unknown operation droppable (a blind write, a no-op, the end) or
/// lets it move one step later (a failed Cas that fails either way). So the search only tries those.
///
/// An unobserved Put (see [`Role::Unobserved`]) leaves a value that nothing reads and that only makes a
/// failed Cas fail: any two are interchangeable wherever both were called, so a linearization can always use
/// them in call order, and the search only tries the earliest-called one not used yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LastLinearized {
    /// No operation, or one with a known outcome: anything may follow.
    Known,
    /// An unknown operation, which found the register holding `state_before`.
    Unknown { state_before: Option<u64> },
}

impl LastLinearized {
    /// Whether `operation`, if it can take effect at all, needs the effect of the last operation.
    fn is_needed_by(self, operation: &Operation) -> bool {
        let LastLinearized::Unknown { state_before } = self else {
            return true;
        };
        match (operation.input, operation.output) {
            (KvInput::Put(_) | KvInput::Delete, _) => false,
            (KvInput::Cas { expected, .. }, KvOutput::Cas(false)) => expected == state_before,
            // A Get or a swapping Cas takes effect only on the value the unknown operation wrote, which differs
            // from the one it overwrote.
            _ => true,
        }
    }
}

/// What the pending candidates could use an unknown operation for: the values they need to read, or any
/// value at all when a pending failed Cas expects the current one.
#[derive(Debug, Default)]
struct WantedValues {
    any: bool,
    values: Vec<Option<u64>>,
}

impl WantedValues {
    fn admits(&self, value: Option<u64>) -> bool {
        self.any || self.values.contains(&value)
    }
}

/// One linearized operation on the search stack, with what is needed to undo it.
#[derive(Debug, Clone, Copy)]
struct Frame {
    op: usize,
    previous_state: Option<u64>,
    previous_last: LastLinearized,
    /// The time of the first return in the event list when the operation was chosen: an unknown operation
    /// is a candidate only if called before it.
    boundary: EventTime,
}

/// Where the search looks for its next candidate: the events of the known operations, then the unknown
/// operations, then the next unobserved Put; when those are exhausted it backtracks.
#[derive(Debug, Clone, Copy)]
enum Cursor {
    Event(usize),
    Unknown(usize),
    Unobserved,
    Exhausted,
}

struct OutOfBudget;

/// The depth-first search over linearizations of one key.
struct Search<'h, 'a> {
    history: &'h KeyHistory<'a>,
    budget: u64,
    explored: u64,
    events: DancingList,
    unknowns: DancingList,
    state: Option<u64>,
    /// The linearized operations with a known outcome, by operation index.
    linearized_known: OperationSet,
    /// The linearized unknown operations, by position in the unknown list.
    linearized_unknown: OperationSet,
    last: LastLinearized,
    /// What the pending candidates could use an unknown operation for; see [`Search::refresh_wanted`].
    wanted: WantedValues,
    known_linearized: usize,
    /// How many of the unobserved Puts, in call order, are linearized.
    unobserved_used: usize,
    stack: Vec<Frame>,
    visited: VisitedConfigurations,
    longest: LongestPrefix,
}

impl<'h, 'a> Search<'h, 'a> {
    fn new(history: &'h KeyHistory<'a>, budget: u64) -> Self {
        let operation_count = history.operations.len();
        let unknown_count = history.unknown_ops.len();
        Search {
            history,
            budget,
            explored: 0,
            events: DancingList::new(history.events.len()),
            unknowns: DancingList::new(history.unknown_ops.len()),
            state: None,
            linearized_known: OperationSet::new(operation_count),
            linearized_unknown: OperationSet::new(unknown_count),
            last: LastLinearized::Known,
            wanted: WantedValues::default(),
            known_linearized: 0,
            unobserved_used: 0,
            stack: Vec::new(),
            visited: VisitedConfigurations::new(operation_count, unknown_count),
            longest: LongestPrefix {
                known_linearized: 0,
                linearized_known: OperationSet::new(operation_count),
                linearized_unknown: OperationSet::new(unknown_count),
                unobserved_used: 0,
                state: None,
                tail: Vec::new(),
            },
        }
    }

    fn run(mut self) -> KeyVerdict {
        let key = self.history.key;
        let result = match self.search() {
            Ok(true) => CheckResult::Linearizable,
            Ok(false) => CheckResult::NotLinearizable { key, explanation: explain(self.history, &self.longest) },
            Err(OutOfBudget) => CheckResult::BudgetExhausted { key, explored: self.explored },
        };
        KeyVerdict { result, explored: self.explored }
    }

    /// Returns whether every known operation could be linearized.
    fn search(&mut self) -> Result<bool, OutOfBudget> {
        let mut cursor = Cursor::Event(self.events.first());
        let mut boundary = 0;
        while !self.events.is_empty() {
            cursor = match cursor {
                Cursor::Event(node) => {
                    // Every call is followed by its own return, so the scan meets a return before the tail.
                    debug_assert!(!self.events.is_tail(node));
                    let event = self.history.events[node - 1];
                    match event.kind {
                        EventKind::Call if self.try_linearize(event.op, boundary)? => self.restart(),
                        EventKind::Call => Cursor::Event(self.events.next(node)),
                        EventKind::Return => {
                            boundary = event.time;
                            self.refresh_wanted(boundary);
                            Cursor::Unknown(self.unknowns.first())
                        }
                    }
                }
                Cursor::Unknown(node) if self.is_unknown_candidate(node, boundary) => {
                    let op = self.history.unknown_ops[node - 1];
                    if self.is_wanted(op) && self.is_next_of_its_kind(op) && self.try_linearize(op, boundary)? {
                        self.restart()
                    } else {
                        Cursor::Unknown(self.unknowns.next(node))
                    }
                }
                Cursor::Unknown(_) => Cursor::Unobserved,
                Cursor::Unobserved => match self.next_unobserved(boundary) {
                    Some(op) if self.is_wanted(op) && self.try_linearize(op, boundary)? => self.restart(),
                    _ => Cursor::Exhausted,
                },
                Cursor::Exhausted => {
                    let Some(frame) = self.stack.pop() else {
                        return Ok(false);
                    };
                    boundary = frame.boundary;
                    self.undo(frame)
                }
            };
        }
        Ok(true)
    }

    fn restart(&self) -> Cursor {
        Cursor::Event(self.events.first())
    }

    /// Whether the unknown operation at `node` was called before the first pending return. Unknown
    /// operations are sorted by call time, so the first one that is not ends the candidates.
    fn is_unknown_candidate(&self, node: usize, boundary: EventTime) -> bool {
        !self.unknowns.is_tail(node)
            && EventTime::from(self.history.operations[self.history.unknown_ops[node - 1]].call) < boundary
    }

    /// The earliest-called unobserved Put not used yet, if it was called before the first pending return.
    fn next_unobserved(&self, boundary: EventTime) -> Option<usize> {
        let op = *self.history.unobserved_ops.get(self.unobserved_used)?;
        (EventTime::from(self.history.operations[op].call) < boundary).then_some(op)
    }

    /// Collects what the pending candidates could use an unknown operation for. An unknown operation is
    /// only worth trying if one of them needs its effect right after it (see [`LastLinearized`]).
    fn refresh_wanted(&mut self, boundary: EventTime) {
        let mut wanted = std::mem::take(&mut self.wanted);
        wanted.any = false;
        wanted.values.clear();
        if !self.unknowns.is_empty() || self.unobserved_used < self.history.unobserved_ops.len() {
            let mut node = self.events.first();
            while self.history.events[node - 1].kind == EventKind::Call {
                let operation = self.history.operations[self.history.events[node - 1].op];
                match (operation.input, operation.output) {
                    (KvInput::Get, KvOutput::Get(value)) => wanted.values.push(value),
                    (KvInput::Cas { expected, .. }, KvOutput::Cas(true)) => wanted.values.push(expected),
                    (KvInput::Cas { expected, .. }, KvOutput::Cas(false)) => wanted.any |= expected == self.state,
                    _ => {}
                }
                node = self.events.next(node);
            }
            let mut node = self.unknowns.first();
            while self.is_unknown_candidate(node, boundary) {
                if let KvInput::Cas { expected, .. } = self.history.operations[self.history.unknown_ops[node - 1]].input
                {
                    wanted.values.push(expected);
                }
                node = self.unknowns.next(node);
            }
        }
        self.wanted = wanted;
    }

    /// Whether every earlier-called unknown write of the same value as `op` is linearized already.
    fn is_next_of_its_kind(&self, op: usize) -> bool {
        self.history.previous_same_write[op]
            .is_none_or(|previous| self.linearized_unknown.contains(self.history.unknown_nodes[previous] - 1))
    }

    /// Whether a pending candidate could need the effect of the unknown operation `op`.
    fn is_wanted(&self, op: usize) -> bool {
        let written = match self.history.operations[op].input {
            KvInput::Get => return false,
            KvInput::Put(value) | KvInput::Cas { new: value, .. } => Some(value),
            KvInput::Delete => None,
        };
        self.wanted.admits(written)
    }

    /// Tries to linearize `op` next; on success the configuration is entered and the call returns `true`.
    fn try_linearize(&mut self, op: usize, boundary: EventTime) -> Result<bool, OutOfBudget> {
        let operation = self.history.operations[op];
        if !self.last.is_needed_by(operation) {
            return Ok(false);
        }
        self.explored += 1;
        if self.explored > self.budget {
            return Err(OutOfBudget);
        }
        let Some(next_state) = apply(self.state, operation.input, operation.output) else {
            return Ok(false);
        };
        let role = self.history.roles[op];
        let last = match role {
            Role::Known => LastLinearized::Known,
            // Changing nothing is the same as never happening.
            _ if next_state == self.state => return Ok(false),
            _ => LastLinearized::Unknown { state_before: self.state },
        };
        let unobserved_used = self.unobserved_used + usize::from(role == Role::Unobserved);
        self.mark_linearized(op, role, true);
        let configuration = Configuration {
            known: &self.linearized_known,
            unknown: &self.linearized_unknown,
            unobserved_used,
            state: next_state,
            last,
        };
        if !self.visited.insert(configuration) {
            self.mark_linearized(op, role, false);
            return Ok(false);
        }
        self.stack.push(Frame { op, previous_state: self.state, previous_last: self.last, boundary });
        self.state = next_state;
        self.last = last;
        self.unobserved_used = unobserved_used;
        match role {
            Role::Known => {
                self.events.remove(self.history.call_nodes[op]);
                self.events.remove(self.history.return_nodes[op]);
                self.known_linearized += 1;
                if self.known_linearized > self.longest.known_linearized {
                    self.record_longest_prefix();
                }
            }
            Role::Unknown => self.unknowns.remove(self.history.unknown_nodes[op]),
            Role::Unobserved | Role::Ignored => {}
        }
        Ok(true)
    }

    /// Takes back the operation of `frame` and returns where the search goes on: after that operation.
    fn undo(&mut self, frame: Frame) -> Cursor {
        let op = frame.op;
        self.state = frame.previous_state;
        self.last = frame.previous_last;
        match self.history.roles[op] {
            Role::Known => {
                self.mark_linearized(op, Role::Known, false);
                self.known_linearized -= 1;
                self.events.restore(self.history.return_nodes[op]);
                let node = self.history.call_nodes[op];
                self.events.restore(node);
                Cursor::Event(self.events.next(node))
            }
            Role::Unknown => {
                self.mark_linearized(op, Role::Unknown, false);
                let node = self.history.unknown_nodes[op];
                self.unknowns.restore(node);
                self.refresh_wanted(frame.boundary);
                Cursor::Unknown(self.unknowns.next(node))
            }
            Role::Unobserved | Role::Ignored => {
                debug_assert_eq!(self.history.roles[op], Role::Unobserved);
                self.unobserved_used -= 1;
                // Only the earliest unobserved Put is ever a candidate, and it was just tried.
                Cursor::Exhausted
            }
        }
    }

    /// Adds `op` to, or removes it from, the set of linearized operations of its role.
    fn mark_linearized(&mut self, op: usize, role: Role, linearized: bool) {
        let (set, member) = match role {
            Role::Known => (&mut self.linearized_known, op),
            Role::Unknown => (&mut self.linearized_unknown, self.history.unknown_nodes[op] - 1),
            Role::Unobserved | Role::Ignored => return,
        };
        if linearized {
            set.insert(member);
        } else {
            set.remove(member);
        }
    }

    fn record_longest_prefix(&mut self) {
        let tail_start = self.stack.len().saturating_sub(EXPLAINED_TAIL_LEN);
        self.longest = LongestPrefix {
            known_linearized: self.known_linearized,
            linearized_known: self.linearized_known.clone(),
            linearized_unknown: self.linearized_unknown.clone(),
            unobserved_used: self.unobserved_used,
            state: self.state,
            tail: self.stack[tail_start..].iter().map(|frame| frame.op).collect(),
        };
    }
}

/// How many operations before the first one left out of the longest prefix the explanation lists.
const EXPLAINED_BEFORE: usize = 20;
/// How many operations the explanation lists at most.
const EXPLAINED_WINDOW: usize = 60;

/// Lists the key's operations by call time around the point where the longest linearizable prefix stops.
fn explain(history: &KeyHistory, longest: &LongestPrefix) -> String {
    use std::fmt::Write as _;

    let operations = &history.operations;
    let used_unobserved = &history.unobserved_ops[..longest.unobserved_used];
    let in_prefix = |op: usize| match history.roles[op] {
        Role::Known => longest.linearized_known.contains(op),
        Role::Unknown => longest.linearized_unknown.contains(history.unknown_nodes[op] - 1),
        Role::Unobserved => used_unobserved.contains(&op),
        Role::Ignored => false,
    };
    let first_left_out =
        (0..operations.len()).find(|&op| history.roles[op] == Role::Known && !in_prefix(op)).unwrap_or(0);
    let start = first_left_out.saturating_sub(EXPLAINED_BEFORE);
    let end = (start + EXPLAINED_WINDOW).min(operations.len());

    let mut text = String::new();
    let _ = writeln!(text, "key {}: no linearization exists for its {} operations.", history.key, operations.len());
    let _ = writeln!(
        text,
        "The longest linearizable prefix found orders {} of the {} operations with a known outcome; after it the \
         register {}.",
        longest.known_linearized,
        history.known_count(),
        match longest.state {
            Some(value) => format!("holds {value}"),
            None => "is absent".to_string(),
        }
    );
    if !longest.tail.is_empty() {
        let tail: Vec<String> = longest.tail.iter().map(|&op| format!("#{op} {}", operations[op].input)).collect();
        let _ = writeln!(text, "That prefix ends with: {}.", tail.join(", "));
    }
    let _ = writeln!(
        text,
        "Operations by call time ('+' in that prefix, '>' first one left out, '~' timed out and unobservable, \
         so ignored):"
    );
    if start > 0 {
        let _ = writeln!(text, "  ... {start} earlier operations");
    }
    for (op, operation) in operations.iter().enumerate().take(end).skip(start) {
        let marker = match history.roles[op] {
            Role::Ignored => '~',
            _ if in_prefix(op) => '+',
            Role::Known if op == first_left_out => '>',
            _ => ' ',
        };
        let _ = writeln!(text, "  {marker} #{op:<5} {operation}");
    }
    if end < operations.len() {
        let _ = writeln!(text, "  ... {} later operations", operations.len() - end);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use std::time::Instant;

    const BUDGET: u64 = 1_000_000;

    fn acked(client: u64, input: KvInput, output: KvOutput, call: u64, ret: u64) -> Operation {
        Operation { client, key: 0, input, output, call, ret: Some(ret) }
    }

    fn timed_out(client: u64, input: KvInput, call: u64) -> Operation {
        Operation { client, key: 0, input, output: KvOutput::Unknown, call, ret: None }
    }

    fn on_key(key: u64, operation: Operation) -> Operation {
        Operation { key, ..operation }
    }

    fn put(client: u64, value: u64, call: u64, ret: u64) -> Operation {
        acked(client, KvInput::Put(value), KvOutput::Put, call, ret)
    }

    fn get(client: u64, seen: Option<u64>, call: u64, ret: u64) -> Operation {
        acked(client, KvInput::Get, KvOutput::Get(seen), call, ret)
    }

    fn cas(client: u64, expected: Option<u64>, new: u64, swapped: bool, call: u64, ret: u64) -> Operation {
        acked(client, KvInput::Cas { expected, new }, KvOutput::Cas(swapped), call, ret)
    }

    fn assert_not_linearizable_on(history: &[Operation], expected_key: u64) -> String {
        match check(history, BUDGET) {
            CheckResult::NotLinearizable { key, explanation } => {
                assert_eq!(key, expected_key, "wrong key reported:\n{explanation}");
                explanation
            }
            other => panic!("expected key {expected_key} not to be linearizable, got {other:?}"),
        }
    }

    #[test]
    fn sequential_history_is_linearizable() {
        let history = [
            get(1, None, 0, 5),
            put(1, 1, 10, 15),
            get(2, Some(1), 20, 25),
            cas(3, Some(1), 2, true, 30, 35),
            acked(1, KvInput::Delete, KvOutput::Delete, 40, 45),
            get(2, None, 50, 55),
        ];
        assert_eq!(check(&history, BUDGET), CheckResult::Linearizable);
    }

    #[test]
    fn stale_read_after_acknowledged_write_is_not_linearizable() {
        let history = [put(1, 1, 0, 10), get(2, None, 20, 30)];
        let explanation = assert_not_linearizable_on(&history, 0);
        assert!(explanation.contains("> #1"), "the stale read is the first operation left out:\n{explanation}");
    }

    #[test]
    fn read_called_at_the_instant_a_write_returns_must_see_it() {
        let history = [put(1, 1, 0, 10), get(2, None, 10, 20)];
        assert_not_linearizable_on(&history, 0);
    }

    #[test]
    fn operation_taking_no_time_is_ordered_by_its_instant() {
        let history = [get(2, None, 0, 5), put(1, 1, 5, 5), get(2, Some(1), 5, 9)];
        assert_eq!(check(&history, BUDGET), CheckResult::Linearizable);
    }

    #[test]
    fn concurrent_put_and_get_may_see_either_value() {
        for seen in [None, Some(1)] {
            let history = [put(1, 1, 0, 10), get(2, seen, 5, 15)];
            assert_eq!(check(&history, BUDGET), CheckResult::Linearizable, "get saw {seen:?}");
        }
    }

    #[test]
    fn unknown_put_may_have_happened() {
        let history = [timed_out(1, KvInput::Put(1), 0), get(2, Some(1), 100, 110)];
        assert_eq!(check(&history, BUDGET), CheckResult::Linearizable);
    }

    #[test]
    fn unknown_put_may_not_have_happened() {
        let history = [timed_out(1, KvInput::Put(1), 0), get(2, None, 100, 110), get(2, None, 200, 210)];
        assert_eq!(check(&history, BUDGET), CheckResult::Linearizable);
    }

    #[test]
    fn unknown_put_may_take_effect_long_after_its_client_gave_up() {
        let history = [timed_out(1, KvInput::Put(1), 0), get(2, None, 100, 110), get(2, Some(1), 1_000, 1_010)];
        assert_eq!(check(&history, BUDGET), CheckResult::Linearizable);
    }

    #[test]
    fn unknown_put_cannot_be_seen_before_it_was_called() {
        let history = [get(2, Some(1), 0, 10), timed_out(1, KvInput::Put(1), 20)];
        assert_not_linearizable_on(&history, 0);
    }

    #[test]
    fn unknown_put_explains_a_failed_cas() {
        let history = [put(1, 1, 0, 10), timed_out(2, KvInput::Put(2), 20), cas(3, Some(1), 3, false, 100, 110)];
        assert_eq!(check(&history, BUDGET), CheckResult::Linearizable);
    }

    #[test]
    fn unknown_put_spent_on_one_order_is_still_available_to_another() {
        // The timed-out put(100) is read by nobody; it can only make a Cas fail, and only once. Trying put(1)
        // before the first Cas needs it there and leaves nothing for the second Cas; running the first Cas
        // before put(1) saves it for the second one, where it is needed.
        let history = [
            put(1, 1, 0, 10),
            cas(2, Some(1), 9, false, 1, 10),
            timed_out(3, KvInput::Put(100), 0),
            put(1, 2, 20, 30),
            cas(2, Some(2), 8, false, 40, 50),
        ];
        assert_eq!(check(&history, BUDGET), CheckResult::Linearizable);
    }

    #[test]
    fn failed_cas_is_explained_by_whichever_unknown_put_fits() {
        // Each of the three failed Cas needs a timed-out put just before it. Put(100) cannot serve the first
        // one: the register would still hold 100 for the second Cas, which expects 100. So put(200) serves
        // the first two and put(100) the last.
        let history = [
            put(1, 1, 0, 10),
            timed_out(2, KvInput::Put(100), 0),
            timed_out(3, KvInput::Put(200), 0),
            cas(4, Some(1), 9, false, 20, 30),
            cas(4, Some(100), 8, false, 40, 50),
            put(1, 2, 60, 70),
            cas(4, Some(2), 7, false, 80, 90),
        ];
        assert_eq!(check(&history, BUDGET), CheckResult::Linearizable);
    }

    #[test]
    fn each_timed_out_delete_takes_effect_at_most_once() {
        let one_delete = [
            put(1, 1, 0, 10),
            timed_out(2, KvInput::Delete, 5),
            get(3, None, 20, 30),
            put(1, 2, 40, 50),
            get(3, None, 60, 70),
        ];
        assert_not_linearizable_on(&one_delete, 0);

        // The second absent read needs the delete called at 55: the one called at 5 is used up by then.
        let two_deletes = [
            put(1, 1, 0, 10),
            timed_out(2, KvInput::Delete, 5),
            get(3, None, 20, 30),
            put(1, 2, 40, 50),
            timed_out(2, KvInput::Delete, 55),
            get(3, None, 60, 70),
        ];
        assert_eq!(check(&two_deletes, BUDGET), CheckResult::Linearizable);
    }

    #[test]
    fn unknown_cas_takes_effect_only_on_the_expected_value() {
        let swapped = [put(1, 1, 0, 10), timed_out(2, KvInput::Cas { expected: Some(1), new: 2 }, 20)];
        let seen_after_swap = [swapped[0], swapped[1], get(3, Some(2), 100, 110)];
        assert_eq!(check(&seen_after_swap, BUDGET), CheckResult::Linearizable);

        let wrong_expectation = [put(1, 1, 0, 10), timed_out(2, KvInput::Cas { expected: None, new: 2 }, 20)];
        let seen_after_impossible_swap = [wrong_expectation[0], wrong_expectation[1], get(3, Some(2), 100, 110)];
        assert_not_linearizable_on(&seen_after_impossible_swap, 0);
    }

    #[test]
    fn cas_success_requires_expected_value() {
        let matching = [put(1, 1, 0, 10), cas(2, Some(1), 2, true, 20, 30), get(3, Some(2), 40, 50)];
        assert_eq!(check(&matching, BUDGET), CheckResult::Linearizable);

        let mismatching = [put(1, 1, 0, 10), cas(2, Some(7), 2, true, 20, 30)];
        assert_not_linearizable_on(&mismatching, 0);
    }

    #[test]
    fn failed_cas_observing_wrong_state_is_not_linearizable() {
        let history = [put(1, 1, 0, 10), cas(2, Some(1), 2, false, 20, 30)];
        assert_not_linearizable_on(&history, 0);
    }

    #[test]
    fn delete_then_get_returns_none() {
        let delete = acked(1, KvInput::Delete, KvOutput::Delete, 20, 30);
        let history = [put(1, 1, 0, 10), delete, get(2, None, 40, 50)];
        assert_eq!(check(&history, BUDGET), CheckResult::Linearizable);

        let resurrected = [put(1, 1, 0, 10), delete, get(2, Some(1), 40, 50)];
        assert_not_linearizable_on(&resurrected, 0);
    }

    #[test]
    fn keys_are_checked_independently() {
        let history = [
            on_key(1, put(1, 1, 0, 10)),
            on_key(2, put(2, 2, 0, 10)),
            // Key 1 holds 1, so this read is fine on key 1; key 2 never held 1.
            on_key(1, get(3, Some(1), 20, 30)),
            on_key(2, get(3, Some(1), 20, 30)),
            on_key(3, get(3, Some(9), 20, 30)),
        ];
        let explanation = assert_not_linearizable_on(&history, 2);
        assert!(explanation.starts_with("key 2:"), "{explanation}");
    }

    #[test]
    fn lost_write_is_detected() {
        let history = [put(1, 1, 0, 10), put(2, 2, 20, 30), get(3, Some(1), 40, 50), get(3, Some(1), 60, 70)];
        let explanation = assert_not_linearizable_on(&history, 0);
        assert!(explanation.contains("> #2"), "the first read of the lost value is left out:\n{explanation}");
    }

    #[test]
    fn mismatched_output_is_never_linearizable() {
        let history = [acked(1, KvInput::Put(1), KvOutput::Get(None), 0, 10)];
        assert_not_linearizable_on(&history, 0);
    }

    #[test]
    fn budget_exhaustion_is_reported_not_passed() {
        // Twenty concurrent writes then a read of a value nobody wrote: proving it impossible means trying
        // every order of the writes, far beyond a budget of 10.
        let mut history: Vec<Operation> = (0..20).map(|client| put(client, client + 1, 0, 100)).collect();
        history.push(get(99, Some(1_000), 200, 210));
        match check(&history, 10) {
            CheckResult::BudgetExhausted { key, explored } => {
                assert_eq!(key, 0);
                assert!(explored > 10, "explored {explored}");
            }
            other => panic!("a search cut short must not pass, got {other:?}"),
        }
    }

    #[test]
    fn explanation_is_limited_to_a_window_around_the_failure() {
        let mut history: Vec<Operation> = (0..500).map(|step| put(1, step + 1, step * 10, step * 10 + 5)).collect();
        history.push(get(2, Some(7), 5_000, 5_005));
        history.extend((0..500).map(|step| put(1, step + 1_000, 6_000 + step * 10, 6_000 + step * 10 + 5)));
        let explanation = assert_not_linearizable_on(&history, 0);
        let listed = explanation.lines().filter(|line| line.starts_with("  ") && !line.starts_with("  ...")).count();
        assert!(listed <= EXPLAINED_WINDOW, "listed {listed} operations:\n{explanation}");
        assert!(explanation.contains("> #500"), "{explanation}");
        assert!(explanation.contains("... 480 earlier operations"), "{explanation}");
    }

    /// How the simulated clients behave.
    struct Workload {
        clients: u64,
        keys: u64,
        operations: usize,
        unknown_probability: f64,
    }

    /// When one simulated operation is called, takes effect and returns.
    struct Slot {
        client: u64,
        key: u64,
        call: u64,
        applied_at: Option<u64>,
        ret: Option<u64>,
    }

    /// Runs `workload` against a real register per key: every operation takes effect atomically at an
    /// instant strictly inside its call and return, so the history is linearizable by construction. A timed
    /// out operation takes effect at some instant after its call (possibly after its client gave up) or
    /// never. Values are unique per write.
    fn simulate_register(seed: u64, workload: &Workload) -> Vec<Operation> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let slots = schedule(&mut rng, workload);
        let mut by_effect: Vec<usize> = (0..slots.len()).filter(|&index| slots[index].applied_at.is_some()).collect();
        by_effect.sort_by_key(|&index| (slots[index].applied_at, index));

        let mut registers: Vec<Option<u64>> = vec![None; usize::try_from(workload.keys).unwrap()];
        let mut last_value = 0;
        let mut results: Vec<Option<(KvInput, KvOutput)>> = vec![None; slots.len()];
        for index in by_effect {
            let register = &mut registers[usize::try_from(slots[index].key).unwrap()];
            let input = random_input(&mut rng, *register, &mut last_value);
            let output = execute(register, input);
            results[index] = Some((input, if slots[index].ret.is_some() { output } else { KvOutput::Unknown }));
        }
        slots
            .iter()
            .zip(results)
            .map(|(slot, result)| {
                let (input, output) =
                    result.unwrap_or_else(|| (random_input(&mut rng, None, &mut last_value), KvOutput::Unknown));
                Operation { client: slot.client, key: slot.key, input, output, call: slot.call, ret: slot.ret }
            })
            .collect()
    }

    fn schedule(rng: &mut ChaCha8Rng, workload: &Workload) -> Vec<Slot> {
        const TIMEOUT: u64 = 30;
        let mut free_at: Vec<u64> = (0..workload.clients).map(|_| rng.random_range(0..10)).collect();
        let mut slots = Vec::with_capacity(workload.operations);
        for _ in 0..workload.operations {
            let client = rng.random_range(0..workload.clients);
            let client_free_at = &mut free_at[usize::try_from(client).unwrap()];
            let call = *client_free_at + rng.random_range(0..5);
            let key = rng.random_range(0..workload.keys);
            let (applied_at, ret) = if rng.random_bool(workload.unknown_probability) {
                *client_free_at = call + TIMEOUT;
                (rng.random_bool(0.5).then(|| call + rng.random_range(1..=10 * TIMEOUT)), None)
            } else {
                let applied_at = call + rng.random_range(1..=20);
                let ret = applied_at + rng.random_range(1..=20);
                *client_free_at = ret;
                (Some(applied_at), Some(ret))
            };
            slots.push(Slot { client, key, call, applied_at, ret });
        }
        slots
    }

    fn random_input(rng: &mut ChaCha8Rng, current: Option<u64>, last_value: &mut u64) -> KvInput {
        match rng.random_range(0..100) {
            0..35 => KvInput::Get,
            35..70 => KvInput::Put(fresh_value(last_value)),
            70..80 => KvInput::Delete,
            _ => {
                let expected = if rng.random_bool(0.5) || *last_value == 0 {
                    current
                } else {
                    Some(rng.random_range(1..=*last_value))
                };
                KvInput::Cas { expected, new: fresh_value(last_value) }
            }
        }
    }

    fn fresh_value(last_value: &mut u64) -> u64 {
        *last_value += 1;
        *last_value
    }

    fn execute(register: &mut Option<u64>, input: KvInput) -> KvOutput {
        match input {
            KvInput::Get => KvOutput::Get(*register),
            KvInput::Put(value) => {
                *register = Some(value);
                KvOutput::Put
            }
            KvInput::Delete => {
                *register = None;
                KvOutput::Delete
            }
            KvInput::Cas { expected, new } => {
                let swapped = *register == expected;
                if swapped {
                    *register = Some(new);
                }
                KvOutput::Cas(swapped)
            }
        }
    }

    /// The attempts each key's search made, in ascending key order.
    fn explored_per_key(history: &[Operation]) -> Vec<u64> {
        let mut operations_by_key: BTreeMap<u64, Vec<&Operation>> = BTreeMap::new();
        for operation in history {
            operations_by_key.entry(operation.key).or_default().push(operation);
        }
        operations_by_key.into_iter().map(|(key, operations)| check_key(key, operations, BUDGET).explored).collect()
    }

    fn seed_from_env_or(default: u64) -> u64 {
        std::env::var("LINEARIZABILITY_SEED").ok().and_then(|seed| seed.parse().ok()).unwrap_or(default)
    }

    #[test]
    fn large_random_linearizable_history_checks_fast() {
        let seed = seed_from_env_or(0x5eed_2024);
        println!("seed {seed} (replay with LINEARIZABILITY_SEED={seed})");
        let workload = Workload { clients: 5, keys: 3, operations: 5_000, unknown_probability: 0.02 };
        let history = simulate_register(seed, &workload);

        let started = Instant::now();
        let result = check(&history, BUDGET);
        let elapsed = started.elapsed();

        println!(
            "checked {} operations in {elapsed:?}, attempts per key {:?}",
            history.len(),
            explored_per_key(&history)
        );
        assert_eq!(result, CheckResult::Linearizable, "seed {seed}");
        assert!(elapsed.as_secs() < 5, "seed {seed}: took {elapsed:?}");
    }

    #[test]
    fn open_unknown_puts_do_not_blow_up_the_search() {
        let seed = seed_from_env_or(0x0be0_0001);
        println!("seed {seed} (replay with LINEARIZABILITY_SEED={seed})");
        let workload = Workload { clients: 5, keys: 1, operations: 3_000, unknown_probability: 0.0 };
        let mut history = simulate_register(seed, &workload);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        // 25 acknowledged puts time out instead (each took effect, some are read later), and 25 puts time out
        // without ever taking effect. Both only loosen the history, so it stays linearizable.
        let put_positions: Vec<usize> =
            (0..history.len()).filter(|&index| matches!(history[index].input, KvInput::Put(_))).collect();
        for position in rand::seq::index::sample(&mut rng, put_positions.len(), 25) {
            let operation = &mut history[put_positions[position]];
            operation.output = KvOutput::Unknown;
            operation.ret = None;
        }
        let horizon = history.iter().filter_map(|operation| operation.ret).max().unwrap();
        for value in 0..25 {
            history.push(timed_out(9, KvInput::Put(u64::MAX - value), rng.random_range(0..horizon)));
        }

        let started = Instant::now();
        let verdict = check_key(0, history.iter().collect(), BUDGET);
        let elapsed = started.elapsed();

        println!("checked {} operations in {elapsed:?} with {} attempts", history.len(), verdict.explored);
        assert_eq!(verdict.result, CheckResult::Linearizable, "seed {seed}");
        assert!(verdict.explored < 20 * history.len() as u64, "seed {seed}: {} attempts", verdict.explored);
    }

    #[test]
    fn impossible_read_late_in_a_long_history_is_found() {
        let seed = seed_from_env_or(0x5eed_2024);
        println!("seed {seed} (replay with LINEARIZABILITY_SEED={seed})");
        let workload = Workload { clients: 5, keys: 3, operations: 5_000, unknown_probability: 0.02 };
        let mut history = simulate_register(seed, &workload);
        let reads: Vec<usize> =
            (0..history.len()).filter(|&index| matches!(history[index].output, KvOutput::Get(_))).collect();
        let read = &mut history[reads[reads.len() * 9 / 10]];
        read.output = KvOutput::Get(Some(u64::MAX));
        let key = read.key;

        let started = Instant::now();
        let result = check(&history, BUDGET);
        println!("checked {} operations in {:?}", history.len(), started.elapsed());
        assert!(
            matches!(result, CheckResult::NotLinearizable { key: reported, .. } if reported == key),
            "seed {seed}: expected key {key} not to be linearizable, got {result:?}"
        );
    }

    /// Whether some order of all known operations and any subset of the unknown ones respects real time and
    /// the register, found by trying every order: the definition, without any of the checker's reductions.
    fn linearizable_by_brute_force(history: &[Operation]) -> bool {
        fn extend(history: &[Operation], placed: &mut Vec<bool>, state: Option<u64>) -> bool {
            let all_known_placed = history
                .iter()
                .zip(placed.iter())
                .all(|(operation, &placed)| placed || operation.output == KvOutput::Unknown);
            if all_known_placed {
                return true;
            }
            for (index, operation) in history.iter().enumerate() {
                let must_wait = history.iter().zip(placed.iter()).any(|(earlier, &earlier_placed)| {
                    !earlier_placed
                        && earlier.output != KvOutput::Unknown
                        && earlier.ret.is_some_and(|ret| ret <= operation.call)
                });
                if placed[index] || must_wait {
                    continue;
                }
                let next_state = match (operation.input, operation.output) {
                    (KvInput::Cas { expected, new }, KvOutput::Unknown) => {
                        Some(if state == expected { Some(new) } else { state })
                    }
                    (KvInput::Get, KvOutput::Unknown) => Some(state),
                    (input, output) => apply(state, input, output),
                };
                if let Some(next_state) = next_state {
                    placed[index] = true;
                    let found = extend(history, placed, next_state);
                    placed[index] = false;
                    if found {
                        return true;
                    }
                }
            }
            false
        }
        extend(history, &mut vec![false; history.len()], None)
    }

    /// A tiny history of arbitrary operations on one key, linearizable or not, with values in `1..=values` and
    /// one operation in `unknown_one_in` timed out.
    fn arbitrary_tiny_history(
        values: u64,
        unknown_one_in: u8,
        max_len: usize,
    ) -> impl Strategy<Value = Vec<Operation>> {
        let value = 1..=values;
        let maybe_value = prop::option::of(value.clone());
        let input = prop_oneof![
            2 => Just(KvInput::Get),
            3 => value.clone().prop_map(KvInput::Put),
            1 => Just(KvInput::Delete),
            3 => (maybe_value.clone(), value).prop_map(|(expected, new)| KvInput::Cas { expected, new }),
        ];
        let operation = (0..4u64, input, maybe_value, any::<bool>(), 0..unknown_one_in, 0..20u64, 1..10u64).prop_map(
            |(client, input, seen, swapped, outcome, call, duration)| {
                let known = match input {
                    KvInput::Get => KvOutput::Get(seen),
                    KvInput::Put(_) => KvOutput::Put,
                    KvInput::Delete => KvOutput::Delete,
                    KvInput::Cas { .. } => KvOutput::Cas(swapped),
                };
                let (output, ret) =
                    if outcome == 0 { (KvOutput::Unknown, None) } else { (known, Some(call + duration)) };
                Operation { client, key: 0, input, output, call, ret }
            },
        );
        prop::collection::vec(operation, 1..=max_len)
    }

    fn small_workload(clients: u64, keys: u64, operations: usize) -> Workload {
        Workload { clients, keys, operations, unknown_probability: 0.1 }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn checker_agrees_with_brute_force_on_tiny_histories(history in arbitrary_tiny_history(3, 3, 7)) {
            let expected = linearizable_by_brute_force(&history);
            let result = check(&history, BUDGET);
            prop_assert_eq!(result == CheckResult::Linearizable, expected, "{:?}", result);
        }

        #[test]
        fn checker_agrees_with_brute_force_when_many_outcomes_are_unknown(history in arbitrary_tiny_history(8, 2, 9)) {
            let expected = linearizable_by_brute_force(&history);
            let result = check(&history, BUDGET);
            prop_assert_eq!(result == CheckResult::Linearizable, expected, "{:?}", result);
        }

        #[test]
        fn history_of_a_real_register_is_linearizable(
            seed in any::<u64>(), clients in 1..=5u64, keys in 1..=3u64, operations in 1..=60usize,
        ) {
            let history = simulate_register(seed, &small_workload(clients, keys, operations));
            prop_assert_eq!(check(&history, BUDGET), CheckResult::Linearizable);
        }

        #[test]
        fn read_of_a_value_never_written_is_not_linearizable(
            seed in any::<u64>(), clients in 1..=5u64, keys in 1..=3u64, operations in 1..=60usize,
            pick in any::<prop::sample::Index>(),
        ) {
            let mut history = simulate_register(seed, &small_workload(clients, keys, operations));
            let reads: Vec<usize> = (0..history.len())
                .filter(|&index| matches!(history[index].output, KvOutput::Get(_)))
                .collect();
            prop_assume!(!reads.is_empty());
            let read = &mut history[reads[pick.index(reads.len())]];
            read.output = KvOutput::Get(Some(u64::MAX));
            let key = read.key;
            let result = check(&history, BUDGET);
            prop_assert!(
                matches!(result, CheckResult::NotLinearizable { key: reported, .. } if reported == key),
                "expected key {} not linearizable, got {:?}", key, result
            );
        }
    }
}
