//! What a client is told about the cluster and how patient it is.

use std::time::Duration;

use tonic::transport::Endpoint;

use crate::error::ClientError;

/// Where the cluster is and how long to try.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientConfig {
    /// The nodes' client addresses, URLs such as `http://127.0.0.1:9081`. Not all need to be
    /// up, and the leader may be elsewhere: a node's redirect is followed to any address.
    pub endpoints: Vec<String>,
    /// The whole budget of one call, retries and redirects included.
    pub request_timeout: Duration,
    /// The longest a TCP connect to one node may take before the client moves on.
    pub connect_timeout: Duration,
    /// How many further attempts one call may make after its first (each redirect or move
    /// to another node is one).
    pub max_retries: usize,
    /// `(initial, max)`: the pause after every known node has failed once, doubling after
    /// each further round, never more than `max`.
    pub backoff: (Duration, Duration),
}

impl ClientConfig {
    /// A config for `endpoints` with 5 s calls, 1 s connects, 10 retries and a 50 ms..1 s backoff.
    pub fn new<I, S>(endpoints: I) -> ClientConfig
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        ClientConfig {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            request_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(1),
            max_retries: 10,
            backoff: (Duration::from_millis(50), Duration::from_secs(1)),
        }
    }

    /// Refuses what cannot work: no endpoints, an endpoint that is not an `http://` URL with
    /// a host, a zero timeout, or a backoff whose initial delay exceeds its maximum.
    pub fn validate(&self) -> Result<(), ClientError> {
        if self.endpoints.is_empty() {
            return Err(ClientError::InvalidArgument("no endpoints".into()));
        }
        for address in &self.endpoints {
            endpoint(address, self.connect_timeout)?;
        }
        if self.request_timeout.is_zero() || self.connect_timeout.is_zero() {
            return Err(ClientError::InvalidArgument("request_timeout and connect_timeout must be positive".into()));
        }
        let (initial, max) = self.backoff;
        if initial > max {
            return Err(ClientError::InvalidArgument(format!("backoff initial {initial:?} exceeds max {max:?}")));
        }
        Ok(())
    }
}

/// The tonic endpoint for `address`, or why it is not a usable node address.
pub(crate) fn endpoint(address: &str, connect_timeout: Duration) -> Result<Endpoint, ClientError> {
    let invalid = |why: &str| ClientError::InvalidArgument(format!("endpoint {address:?}: {why}"));
    let endpoint = Endpoint::from_shared(address.to_owned()).map_err(|e| invalid(&e.to_string()))?;
    match endpoint.uri().scheme_str() {
        Some("http") => {}
        Some("https") => return Err(invalid("TLS is not supported; use http://")),
        _ => return Err(invalid("expected a URL such as http://127.0.0.1:9081")),
    }
    if endpoint.uri().host().is_none_or(str::is_empty) {
        return Err(invalid("no host"));
    }
    Ok(endpoint.connect_timeout(connect_timeout))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_config_passes() {
        assert_eq!(ClientConfig::new(["http://127.0.0.1:9081", "http://node-2:9081"]).validate(), Ok(()));
    }

    #[test]
    fn what_cannot_work_is_refused() {
        let refused = |config: ClientConfig| matches!(config.validate(), Err(ClientError::InvalidArgument(_)));
        assert!(refused(ClientConfig::new(Vec::<String>::new())));
        assert!(refused(ClientConfig::new(["127.0.0.1:9081"])));
        assert!(refused(ClientConfig::new(["https://127.0.0.1:9081"])));
        assert!(refused(ClientConfig::new(["http://"])));
        assert!(refused(ClientConfig::new(["not a url"])));
        assert!(refused(ClientConfig { request_timeout: Duration::ZERO, ..ClientConfig::new(["http://a:1"]) }));
        let backwards = (Duration::from_secs(2), Duration::from_secs(1));
        assert!(refused(ClientConfig { backoff: backwards, ..ClientConfig::new(["http://a:1"]) }));
    }
}
