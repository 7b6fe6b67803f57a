//! Compiles `proto/p8fs/v1/*.proto` with protox (pure Rust, no `protoc`) into the message types
//! and tonic server traits, and writes the file descriptor set that server reflection serves.

use std::path::PathBuf;

const PROTOS: [&str; 6] = [
    "proto/p8fs/v1/kv.proto",
    "proto/p8fs/v1/vectors.proto",
    "proto/p8fs/v1/graph.proto",
    "proto/p8fs/v1/objects.proto",
    "proto/p8fs/v1/memories.proto",
    "proto/p8fs/v1/changes.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    let descriptors = protox::compile(PROTOS, ["proto"])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("p8fs_descriptor.bin"),
        prost::Message::encode_to_vec(&descriptors),
    )?;
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
