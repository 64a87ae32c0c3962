//! Compiles `proto/raft.proto` with protox (pure Rust: no system `protoc`).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../proto");
    let proto = format!("{proto_dir}/raft.proto");
    println!("cargo:rerun-if-changed={proto}");
    let descriptors = protox::compile(["raft.proto"], [proto_dir])?;
    tonic_prost_build::configure()
        // `bytes` fields decode to `bytes::Bytes`: a command or snapshot chunk is a
        // slice of the received buffer, not a copy.
        .bytes(".")
        .compile_fds(descriptors)?;
    Ok(())
}
