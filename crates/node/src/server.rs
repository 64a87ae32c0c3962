//! The node's gRPC server: the peer service (`dengine.raft.v1`) and the d-engine client
//! API (`dengine.client.v1`) on one listen address.

use std::net::SocketAddr;

use d_engine_core::{Envelope, NodeId, Role};
use d_engine_grpc::client_proto::client_server::{Client, ClientServer};
use d_engine_grpc::client_proto::{self as api};
use d_engine_grpc::client_status::not_leader_status;
use d_engine_grpc::{NetworkFaults, PeerServer, SharedEntryTracer, incoming_nodelay};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tonic::{Request, Response, Status};

use crate::application::Application;
use crate::error::RequestError;
use crate::handle::{Node, ReadConsistency};
use crate::settings::Settings;
use crate::transport::transport_config;

/// Serves until `shutdown` changes; then stops accepting and lets in-flight calls finish.
pub(crate) async fn serve<S: Application>(
    node: Node<S>,
    settings: Settings,
    listener: TcpListener,
    inbound: mpsc::Sender<Envelope>,
    faults: NetworkFaults,
    tracer: SharedEntryTracer,
    mut shutdown: watch::Receiver<()>,
) {
    let max_message_bytes = settings.transport.max_message_bytes;
    let mut config = transport_config(&settings);
    config.entry_tracer = Some(tracer);
    let peer_server = PeerServer::new(config, inbound).with_faults(faults);
    let peers = peer_server.clone().into_service();
    let clients = ClientServer::new(ClientService { node })
        .max_decoding_message_size(max_message_bytes)
        .max_encoding_message_size(max_message_bytes);
    let address: Option<SocketAddr> = listener.local_addr().ok();
    let node_id = settings.node.id;
    let result = tonic::transport::Server::builder()
        .trace_fn(crate::telemetry::grpc_request_span(node_id))
        .add_service(peers)
        .add_service(clients)
        .serve_with_incoming_shutdown(incoming_nodelay(listener), async move {
            let _ = shutdown.changed().await;
            // Peers keep their append streams open as long as they run: end them, or the
            // graceful stop would wait for every peer to go away first.
            peer_server.close_streams();
        })
        .await;
    if let Err(error) = result {
        tracing::error!(?address, %error, "the gRPC server failed");
    }
}

struct ClientService<S> {
    node: Node<S>,
}

#[tonic::async_trait]
impl<S: Application> Client for ClientService<S> {
    async fn propose(&self, request: Request<api::ProposeRequest>) -> Result<Response<api::ProposeReply>, Status> {
        let command = request.into_inner().command;
        let applied = self.node.propose(command).await.map_err(to_status)?;
        Ok(Response::new(api::ProposeReply {
            output: applied.output,
            term: applied.log_id.term.0,
            index: applied.log_id.index.0,
        }))
    }

    async fn query(&self, request: Request<api::QueryRequest>) -> Result<Response<api::QueryReply>, Status> {
        let request = request.into_inner();
        let consistency = match api::Consistency::try_from(request.consistency) {
            Ok(api::Consistency::Unspecified | api::Consistency::Linearizable) => ReadConsistency::Linearizable,
            Ok(api::Consistency::Lease) => ReadConsistency::Lease,
            Ok(api::Consistency::Serializable) => ReadConsistency::Serializable,
            Err(_) => {
                return Err(Status::invalid_argument(format!("unknown consistency {}", request.consistency)));
            }
        };
        let (output, applied) = self.node.query(consistency, &request.query).await.map_err(to_status)?;
        Ok(Response::new(api::QueryReply { output, applied_index: applied.0 }))
    }

    async fn status(&self, _request: Request<api::StatusRequest>) -> Result<Response<api::StatusReply>, Status> {
        let status = self.node.status();
        let address_of = |id: NodeId| self.node.addresses().get(id).map(|a| a.peer_url.clone()).unwrap_or_default();
        let membership = &status.membership;
        let members = membership
            .voter_ids()
            .chain(membership.learners().iter().copied())
            .map(|id| {
                let addresses = self.node.addresses().get(id);
                api::Member {
                    id: id.0,
                    peer_address: addresses.map(|a| a.peer_url.clone()).unwrap_or_default(),
                    client_address: addresses.and_then(|a| a.client_url.clone()).unwrap_or_default(),
                    learner: membership.learners().contains(&id),
                }
            })
            .collect();
        let role = match status.role {
            _ if membership.learners().contains(&status.id) => api::Role::Learner,
            Role::Follower => api::Role::Follower,
            Role::PreCandidate => api::Role::PreCandidate,
            Role::Candidate => api::Role::Candidate,
            Role::Leader => api::Role::Leader,
        };
        Ok(Response::new(api::StatusReply {
            node_id: status.id.0,
            cluster_id: self.node.cluster_id().to_owned(),
            role: role.into(),
            term: status.term.0,
            leader_id: status.leader.map_or(0, |id| id.0),
            leader_address: status.leader.map(address_of).unwrap_or_default(),
            commit_index: status.commit.0,
            applied_index: status.applied.0,
            last_log_index: status.last_log_index.0,
            members,
        }))
    }
}

/// The gRPC status a client sees for a failed request (proto/client.proto lists the codes).
pub fn to_status(error: RequestError) -> Status {
    match error {
        RequestError::NotLeader { leader, address } => not_leader_status(leader.map(|id| id.0), address.as_deref()),
        RequestError::InvalidArgument(reason) => Status::invalid_argument(reason),
        RequestError::TooLarge { .. } => Status::resource_exhausted(error.to_string()),
        RequestError::Refused(reason) => Status::failed_precondition(reason),
        RequestError::Aborted => Status::aborted(error.to_string()),
        RequestError::OutcomeUnknown(_) => Status::unknown(error.to_string()),
        RequestError::ShuttingDown => Status::unavailable(error.to_string()),
        RequestError::Query(reason) => Status::invalid_argument(reason),
    }
}
