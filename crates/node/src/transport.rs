//! How the event loop reaches peers: the [`Transport`] trait, and its default, gRPC with one
//! reconnecting, batching sender per peer.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use d_engine_core::{Envelope, NodeId};
use d_engine_grpc::{Backoff, NetworkFaults, PeerSender, SharedEntryTracer, TransportConfig};

use crate::settings::Settings;

/// Carries the core's messages to peers.
///
/// `send` is called from the event loop and must never block: queue the envelope or drop
/// it. Raft tolerates loss (it retransmits), not a stalled event loop. Envelopes that
/// peers send to this node reach it through [`crate::Node`]'s gRPC server (or, for a
/// custom transport, through [`crate::Node::deliver`]).
pub trait Transport: Send + 'static {
    /// Hands `envelope` to its receiver, `envelope.to`; never blocks.
    fn send(&mut self, envelope: Envelope);

    /// Whether peers refuse this node as misconfigured (e.g. of another cluster): the
    /// reason, once most of them do. The event loop polls it and stops the node, so that a
    /// node started with the wrong settings exits with a clear message instead of
    /// campaigning forever.
    fn misconfiguration(&self) -> Option<String> {
        None
    }
}

/// Every node's addresses, from the settings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AddressBook {
    members: BTreeMap<NodeId, MemberAddresses>,
}

/// Where one node can be reached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberAddresses {
    /// Peer RPC and d-engine client API, as a URL (`http://ip:port`).
    pub peer_url: String,
    /// The application's own client endpoint, as a URL, if it has one.
    pub client_url: Option<String>,
}

impl AddressBook {
    /// The addresses listed in `settings.cluster.members`.
    pub fn from_settings(settings: &Settings) -> AddressBook {
        let members = settings
            .cluster
            .members
            .iter()
            .map(|member| {
                let addresses = MemberAddresses {
                    peer_url: format!("http://{}", member.peer_addr),
                    client_url: member.client_addr.as_ref().map(|address| format!("http://{address}")),
                };
                (NodeId(member.id), addresses)
            })
            .collect();
        AddressBook { members }
    }

    /// The addresses of `id`, if listed.
    pub fn get(&self, id: NodeId) -> Option<&MemberAddresses> {
        self.members.get(&id)
    }

    /// Every listed node.
    pub fn iter(&self) -> impl Iterator<Item = (NodeId, &MemberAddresses)> {
        self.members.iter().map(|(id, addresses)| (*id, addresses))
    }
}

/// The default transport: one [`PeerSender`] per peer, started at the first message for it.
pub struct GrpcTransport {
    config: TransportConfig,
    backoff: Backoff,
    addresses: Arc<AddressBook>,
    faults: NetworkFaults,
    senders: HashMap<NodeId, PeerSender>,
    /// Peers without an address, already reported (once each, not at every heartbeat).
    unreachable: std::collections::HashSet<NodeId>,
}

impl GrpcTransport {
    /// A transport for the node of `settings`; `faults` is shared with its peer server.
    pub fn new(settings: &Settings, addresses: Arc<AddressBook>, faults: NetworkFaults) -> GrpcTransport {
        GrpcTransport {
            config: transport_config(settings),
            backoff: Backoff {
                initial: Duration::from_millis(settings.transport.reconnect_initial_ms),
                max: Duration::from_millis(settings.transport.reconnect_max_ms),
            },
            addresses,
            faults,
            senders: HashMap::new(),
            unreachable: Default::default(),
        }
    }

    /// Sends the trace context of traced entries with appends (distributed tracing).
    pub(crate) fn with_entry_tracer(mut self, tracer: SharedEntryTracer) -> GrpcTransport {
        self.config.entry_tracer = Some(tracer);
        self
    }

    fn sender(&mut self, peer: NodeId) -> Option<&PeerSender> {
        if !self.senders.contains_key(&peer) {
            let Some(addresses) = self.addresses.get(peer) else {
                if self.unreachable.insert(peer) {
                    tracing::warn!(
                        peer = peer.0,
                        "no address for the peer in cluster.members; its messages are dropped"
                    );
                }
                return None;
            };
            let sender = PeerSender::spawn_with_faults(
                self.config.clone(),
                peer,
                addresses.peer_url.clone(),
                self.backoff,
                self.faults.clone(),
            );
            match sender {
                Ok(sender) => {
                    self.senders.insert(peer, sender);
                }
                Err(error) => {
                    tracing::error!(peer = peer.0, %error, "cannot start a sender to the peer");
                    return None;
                }
            }
        }
        self.senders.get(&peer)
    }
}

impl Transport for GrpcTransport {
    fn send(&mut self, envelope: Envelope) {
        if let Some(sender) = self.sender(envelope.to) {
            sender.send(envelope);
        }
    }

    fn misconfiguration(&self) -> Option<String> {
        let peers = self.addresses.iter().filter(|(id, _)| *id != self.config.node_id).count();
        let mut refusals: Vec<(NodeId, String)> =
            self.senders.iter().filter_map(|(id, sender)| sender.refusal().map(|reason| (*id, reason))).collect();
        // Refused by a minority, it is the refusing peers that are misconfigured.
        if peers == 0 || refusals.len() * 2 <= peers {
            return None;
        }
        refusals.sort();
        let ids: Vec<u64> = refusals.iter().map(|(id, _)| id.0).collect();
        Some(format!("{} of {peers} peers (nodes {ids:?}) refuse this node: {}", refusals.len(), refusals[0].1))
    }
}

/// The gRPC transport settings of a node.
pub(crate) fn transport_config(settings: &Settings) -> TransportConfig {
    let mut config = TransportConfig::new(NodeId(settings.node.id), settings.cluster.id.clone());
    config.max_message_bytes = settings.transport.max_message_bytes;
    config
}
