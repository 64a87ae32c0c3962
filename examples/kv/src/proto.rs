//! The generated protobuf and gRPC code: the etcd v3 API subset (`proto/etcd/`) and the
//! log command (`proto/kv_command.proto`).
//!
//! The etcd packages keep their etcd names (`etcdserverpb`, `mvccpb`, `authpb`), so the
//! wire format and the gRPC paths (`/etcdserverpb.KV/Put`, ...) are etcd's.

/// etcd's stored key-value shape (`mvccpb.KeyValue`, `mvccpb.Event`).
#[allow(missing_docs, clippy::all)]
pub mod mvccpb {
    tonic::include_proto!("mvccpb");
}

/// etcd's auth messages, only so that the Auth service decodes.
#[allow(missing_docs, clippy::all)]
pub mod authpb {
    tonic::include_proto!("authpb");
}

/// etcd's client API: messages, servers and clients of KV, Watch, Lease, Cluster,
/// Maintenance and Auth.
#[allow(missing_docs, clippy::all)]
pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
}

/// The log command and apply output (`dengine.kv.v1`).
#[allow(missing_docs, clippy::all)]
pub mod dengine {
    /// `dengine.kv`.
    pub mod kv {
        /// `dengine.kv.v1`.
        pub mod v1 {
            tonic::include_proto!("dengine.kv.v1");
        }
    }
}

pub use dengine::kv::v1 as command;
