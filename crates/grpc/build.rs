//! Compiles `proto/raft.proto` (peer RPC) and `proto/client.proto` (the client API) with
//! protox (pure Rust: no system `protoc`).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../proto");
    let files = ["raft.proto", "client.proto"];
    for file in files {
        println!("cargo:rerun-if-changed={proto_dir}/{file}");
    }
    let descriptors = protox::compile(files, [proto_dir])?;
    tonic_prost_build::configure()
        // `bytes` fields decode to `bytes::Bytes`: a command or snapshot chunk is a
        // slice of the received buffer, not a copy.
        .bytes(".")
        .compile_fds(descriptors)?;
    Ok(())
}
