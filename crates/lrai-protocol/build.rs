//! Compiles `proto/grpc_service.proto` (with `model_config.proto`) and LRAI's own
//! `proto/lrai_extensions.proto` with protox, so no
//! system `protoc` is needed, and generates prost messages plus the tonic client and
//! server into OUT_DIR. The encoded descriptor set is written next to them for
//! `pb::FILE_DESCRIPTOR_SET` (gRPC reflection, tests).

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let fds = protox::compile(["grpc_service.proto", "lrai_extensions.proto"], ["proto"])?;
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    fs_err::write(
        out_dir.join("inference_descriptor.bin"),
        fds.encode_to_vec(),
    )?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // rpcs the server does not implement answer UNIMPLEMENTED, as Triton clients expect.
        .generate_default_stubs(true)
        // Tensor payloads become bytes::Bytes: slices of the received buffer, not copies.
        .bytes(".inference")
        .compile_fds(fds)?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
