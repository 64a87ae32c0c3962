//! Compiles the etcd v3 API subset (`proto/etcd/*.proto`) and the KV log command
//! (`proto/kv_command.proto`) with protox (pure Rust: no system `protoc`).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../proto");
    let files = ["etcd/kv.proto", "etcd/auth.proto", "etcd/rpc.proto", "kv_command.proto"];
    for file in files {
        println!("cargo:rerun-if-changed={proto_dir}/{file}");
    }
    let descriptors = protox::compile(files, [proto_dir])?;
    tonic_prost_build::configure()
        // `bytes` fields decode to `bytes::Bytes`: keys and values are slices of the
        // received buffer and are stored without a copy.
        .bytes(".")
        // Small per-call buffers (src/codec.rs).
        .codec_path("crate::codec::KvCodec")
        .compile_fds(descriptors)?;
    Ok(())
}
