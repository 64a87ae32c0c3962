//! The client: routing to the leader, redirects, retries that are safe, one deadline per call.
//!
//! Every call runs the same loop (`Client::call`): pick a node (the redirect just received,
//! else the leader guess, else the next endpoint not yet tried), send, and on failure decide
//! from the failure and the call's [`Retry`] policy whether another attempt is safe. A round
//! in which every known node has failed once ends with a backoff pause. The whole loop runs
//! under the call's `request_timeout`.

use std::collections::{HashMap, HashSet};
use std::error::Error;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use d_engine_grpc::client_proto as proto;
use d_engine_grpc::client_proto::client_client::ClientClient;
use d_engine_grpc::trace_context::{self, TRACE_TARGET};
use d_engine_grpc::{is_not_leader, leader_hint};
use tokio::time::Instant;
use tonic::transport::Channel;
use tonic::{Code, Status};
use tracing::Instrument;

use crate::config::{ClientConfig, endpoint};
use crate::error::ClientError;
use crate::types::{ClusterStatus, Consistency, Proposed, Role};

/// A remote client of a d-engine cluster. Cheap to clone; clones share connections and the
/// leader guess.
#[derive(Clone, Debug)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: ClientConfig,
    /// One lazily connected channel per address ever used, endpoints and redirects alike.
    channels: Mutex<HashMap<String, Channel>>,
    /// The address of the node believed to lead.
    leader: Mutex<Option<String>>,
}

/// Which failures a call may retry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Retry {
    /// Reads: any failure that another node or a later attempt may not have.
    Idempotent,
    /// Proposals: only failures that prove the command was not executed.
    OnlyUnexecuted,
}

/// One failed attempt, by what it tells about the request.
#[derive(Debug)]
enum Failure {
    /// The node refused: it is not the leader. Not executed.
    NotLeader { leader_id: Option<u64>, leader_address: Option<String> },
    /// No connection could be made: the request never left. Not executed.
    NotSent(String),
    /// The connection failed around the request: it may have been executed.
    Lost(String),
    /// The node answered with this status.
    Answered(Status),
}

impl Failure {
    fn classify(status: Status) -> Failure {
        if is_not_leader(&status) {
            let (leader_id, leader_address) = match leader_hint(&status) {
                Some((id, address)) => (Some(id), address),
                None => (None, None),
            };
            return Failure::NotLeader { leader_id, leader_address };
        }
        if connect_failed(&status) {
            return Failure::NotSent(status.message().to_owned());
        }
        // A status the node sent is decoded from its headers and has no source; one made
        // here from an I/O or HTTP/2 error carries that error.
        if status.source().is_some() {
            return Failure::Lost(format!("{:?}: {}", status.code(), status.message()));
        }
        Failure::Answered(status)
    }

    fn retryable(&self, retry: Retry) -> bool {
        match self {
            Failure::NotLeader { .. } | Failure::NotSent(_) => true,
            Failure::Lost(_) => retry == Retry::Idempotent,
            Failure::Answered(status) => {
                retry == Retry::Idempotent && matches!(status.code(), Code::Unavailable | Code::DeadlineExceeded)
            }
        }
    }

    /// Whether the node that failed this way is no longer a good leader guess.
    fn discredits_node(&self) -> bool {
        !matches!(self, Failure::Answered(status) if !matches!(status.code(), Code::Unavailable))
    }

    fn into_error(self) -> ClientError {
        match self {
            Failure::NotLeader { leader_id, leader_address } => ClientError::NotLeader { leader_id, leader_address },
            Failure::NotSent(message) => ClientError::Unavailable(format!("could not connect: {message}")),
            Failure::Lost(message) => ClientError::Unavailable(format!("connection lost (outcome unknown): {message}")),
            Failure::Answered(status) => {
                let message = status.message().to_owned();
                match status.code() {
                    Code::Unavailable => ClientError::Unavailable(message),
                    Code::DeadlineExceeded => ClientError::Timeout,
                    Code::InvalidArgument => ClientError::InvalidArgument(message),
                    Code::Aborted => ClientError::Aborted(message),
                    Code::ResourceExhausted => ClientError::ResourceExhausted(message),
                    Code::Internal => ClientError::Internal(message),
                    code => ClientError::Rejected { code, message },
                }
            }
        }
    }
}

/// Whether `status` comes from a connection that was never established (tonic marks those
/// with [`tonic::ConnectError`] in the error chain): the request was not sent.
fn connect_failed(status: &Status) -> bool {
    let mut source = status.source();
    while let Some(error) = source {
        if error.downcast_ref::<tonic::ConnectError>().is_some() {
            return true;
        }
        source = error.source();
    }
    false
}

/// The order in which one call tries nodes.
struct Route<'a> {
    endpoints: &'a [String],
    cursor: usize,
    /// Where to go next, ahead of the endpoints: the leader guess, then each redirect.
    preferred: Option<String>,
    /// Addresses tried since the last backoff pause.
    tried: HashSet<String>,
}

impl<'a> Route<'a> {
    fn new(endpoints: &'a [String], leader: Option<String>) -> Route<'a> {
        Route { endpoints, cursor: 0, preferred: leader, tried: HashSet::new() }
    }

    /// The next address, and whether it is untried since the last pause (if not, every
    /// known node has failed once and the caller pauses first).
    fn next(&mut self) -> (String, bool) {
        if let Some(address) = self.preferred.take() {
            let fresh = self.tried.insert(address.clone());
            return (address, fresh);
        }
        for _ in 0..self.endpoints.len() {
            let address = &self.endpoints[self.cursor % self.endpoints.len()];
            self.cursor += 1;
            if self.tried.insert(address.clone()) {
                return (address.clone(), true);
            }
        }
        let address = self.endpoints[self.cursor % self.endpoints.len()].clone();
        self.cursor += 1;
        (address, false)
    }

    fn redirect(&mut self, address: String) {
        self.preferred = Some(address);
    }

    /// Starts a new round after a pause, with `address` as its first try.
    fn pause(&mut self, address: &str) {
        self.tried.clear();
        self.tried.insert(address.to_owned());
    }
}

impl Client {
    /// A client of the cluster at `config.endpoints`.
    ///
    /// Validates the config ([`ClientConfig::validate`]) but connects lazily: no node needs
    /// to be up yet; the first call finds the leader.
    pub async fn connect(config: ClientConfig) -> Result<Client, ClientError> {
        config.validate()?;
        let client = Client { inner: Arc::new(Inner { config, channels: Mutex::default(), leader: Mutex::default() }) };
        for address in &client.inner.config.endpoints {
            client.channel(address)?;
        }
        Ok(client)
    }

    /// Replicates `command` and returns the state machine's output once it is applied.
    ///
    /// Retried only when the command certainly was not executed: a not-leader refusal (the
    /// redirect is followed) or a node that could not be connected to. A proposal whose
    /// request may have reached a node is never sent twice: when the connection breaks after
    /// sending, or `request_timeout` passes with the request in flight, the call fails with
    /// [`ClientError::Unavailable`] or [`ClientError::Timeout`] and the command may or may not
    /// be applied. Make commands idempotent (or check the state) where that matters.
    pub async fn propose(&self, command: impl Into<Bytes>) -> Result<Proposed, ClientError> {
        let span = tracing::info_span!(target: TRACE_TARGET, "d_engine_client.propose", otel.kind = "client");
        let traceparent = trace_context::traceparent(&span);
        let request = proto::ProposeRequest { command: command.into() };
        let reply = self
            .call(Retry::OnlyUnexecuted, true, move |mut client| {
                let request = traced(request.clone(), traceparent.as_deref());
                async move { client.propose(request).await }
            })
            .instrument(span)
            .await?;
        Ok(Proposed { output: reply.output, term: reply.term, index: reply.index })
    }

    /// Answers `query` from the state machine at `consistency`. Queries change nothing, so
    /// every failure another attempt may not have is retried, within `request_timeout`.
    pub async fn query(&self, query: impl Into<Bytes>, consistency: Consistency) -> Result<Bytes, ClientError> {
        let request =
            proto::QueryRequest { query: query.into(), consistency: proto::Consistency::from(consistency) as i32 };
        let leader_only = consistency != Consistency::Serializable;
        let span = tracing::info_span!(target: TRACE_TARGET, "d_engine_client.query", otel.kind = "client");
        let traceparent = trace_context::traceparent(&span);
        let reply = self
            .call(Retry::Idempotent, leader_only, move |mut client| {
                let request = traced(request.clone(), traceparent.as_deref());
                async move { client.query(request).await }
            })
            .instrument(span)
            .await?;
        Ok(reply.output)
    }

    /// What a node knows of the cluster: the leader's view when it can be had, else the view
    /// of whichever node answers first.
    pub async fn status(&self) -> Result<ClusterStatus, ClientError> {
        let started = Instant::now();
        let ask = |mut client: ClientClient<Channel>| async move { client.status(proto::StatusRequest {}).await };
        let first = ClusterStatus::from(self.call(Retry::Idempotent, false, ask).await?);
        let Some(leader_address) = first.leader_address.clone() else { return Ok(first) };
        self.set_leader(Some(leader_address.clone()));
        if first.role == Role::Leader {
            return Ok(first);
        }
        // One extra try at the leader, within what is left of the budget; the first answer
        // stands if it fails.
        let Ok(leader) = self.channel(&leader_address) else { return Ok(first) };
        let left = self.inner.config.request_timeout.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, ask(ClientClient::new(leader))).await {
            Ok(Ok(reply)) => Ok(ClusterStatus::from(reply.into_inner())),
            _ => Ok(first),
        }
    }

    /// The address of the node currently believed to lead, if any.
    pub fn leader(&self) -> Option<String> {
        self.inner.leader.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn set_leader(&self, address: Option<String>) {
        *self.inner.leader.lock().unwrap_or_else(PoisonError::into_inner) = address;
    }

    /// Forgets the leader guess if it is `address`.
    fn forget_leader(&self, address: &str) {
        let mut leader = self.inner.leader.lock().unwrap_or_else(PoisonError::into_inner);
        if leader.as_deref() == Some(address) {
            *leader = None;
        }
    }

    /// The cached channel to `address`, created (lazily connected) on first use.
    fn channel(&self, address: &str) -> Result<Channel, ClientError> {
        let mut channels = self.inner.channels.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(channel) = channels.get(address) {
            return Ok(channel.clone());
        }
        let channel = endpoint(address, self.inner.config.connect_timeout)?.connect_lazy();
        channels.insert(address.to_owned(), channel.clone());
        Ok(channel)
    }

    /// Runs `attempt` against nodes until it succeeds, fails in a way `retry` does not
    /// allow to repeat, retries run out, or the call's deadline passes.
    ///
    /// `leader_only`: a success proves the node leads (it served a leader-only request).
    async fn call<T, F, Fut>(&self, retry: Retry, leader_only: bool, mut attempt: F) -> Result<T, ClientError>
    where
        F: FnMut(ClientClient<Channel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let config = &self.inner.config;
        let deadline = Instant::now() + config.request_timeout;
        let (initial, max) = config.backoff;
        let mut delay = initial;
        let mut route = Route::new(&config.endpoints, self.leader());
        let mut retries = 0;
        let mut last_error = None;
        loop {
            let (address, fresh) = route.next();
            if !fresh {
                // Every known node failed once since the last pause: wait before another round,
                // unless the wait would outlast the deadline. No request is in flight, so the
                // last failure (one that was safe to retry) is the answer then.
                if Instant::now() + delay >= deadline {
                    return Err(last_error.unwrap_or_else(|| {
                        ClientError::Unavailable(format!("no node answered before the deadline; last tried {address}"))
                    }));
                }
                tokio::time::sleep(delay).await;
                delay = delay.saturating_mul(2).min(max);
                route.pause(&address);
            }
            let failure = match self.channel(&address) {
                // A redirect to an address that is not a usable URL: try the others.
                Err(error) => Failure::NotSent(error.to_string()),
                Ok(channel) => match tokio::time::timeout_at(deadline, attempt(ClientClient::new(channel))).await {
                    Err(_elapsed) => return Err(ClientError::Timeout),
                    Ok(Ok(response)) => {
                        if leader_only {
                            self.set_leader(Some(address));
                        }
                        return Ok(response.into_inner());
                    }
                    Ok(Err(status)) => Failure::classify(status),
                },
            };
            if let Failure::NotLeader { leader_address: Some(leader), .. } = &failure {
                self.set_leader(Some(leader.clone()));
                route.redirect(leader.clone());
            } else if failure.discredits_node() {
                self.forget_leader(&address);
            }
            let retryable = failure.retryable(retry);
            let error = failure.into_error();
            if !retryable || retries >= config.max_retries {
                return Err(error);
            }
            last_error = Some(error);
            retries += 1;
        }
    }
}

/// `message` as a request carrying `traceparent` (the W3C trace context of the calling span,
/// when it is traced) in its metadata, so that the node's spans join the caller's trace.
fn traced<T>(message: T, traceparent: Option<&str>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(traceparent) = traceparent {
        trace_context::insert(request.metadata_mut(), traceparent);
    }
    request
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_route_tries_the_leader_then_untried_endpoints_then_pauses() {
        let endpoints = ["a".to_owned(), "b".to_owned(), "c".to_owned()];
        let mut route = Route::new(&endpoints, Some("b".to_owned()));
        assert_eq!(route.next(), ("b".to_owned(), true));
        assert_eq!(route.next(), ("a".to_owned(), true));
        route.redirect("x".to_owned());
        assert_eq!(route.next(), ("x".to_owned(), true));
        assert_eq!(route.next(), ("c".to_owned(), true));
        let (address, fresh) = route.next();
        assert!(!fresh, "a full round ends with a pause, then {address}");
        route.pause(&address);
        assert!(route.next().1);
    }

    #[test]
    fn a_redirect_back_to_a_tried_node_waits_for_the_pause() {
        let endpoints = ["a".to_owned()];
        let mut route = Route::new(&endpoints, None);
        assert_eq!(route.next(), ("a".to_owned(), true));
        route.redirect("a".to_owned());
        assert_eq!(route.next(), ("a".to_owned(), false));
    }

    #[test]
    fn only_unexecuted_failures_are_retried_for_proposals() {
        let lost = Failure::Lost("reset".into());
        assert!(!lost.retryable(Retry::OnlyUnexecuted) && lost.retryable(Retry::Idempotent));
        let refused = Failure::NotLeader { leader_id: None, leader_address: None };
        assert!(refused.retryable(Retry::OnlyUnexecuted));
        let unavailable = Failure::Answered(Status::unavailable("starting"));
        assert!(!unavailable.retryable(Retry::OnlyUnexecuted) && unavailable.retryable(Retry::Idempotent));
        let invalid = Failure::Answered(Status::invalid_argument("empty"));
        assert!(!invalid.retryable(Retry::Idempotent));
    }
}
