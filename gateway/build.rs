//! Compiles the Open Inference Protocol's gRPC definition (proto/grpc_service.proto) with the
//! protoc that `protoc-bin-vendored` ships: nothing is downloaded, nothing needs installing.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc);
    // Raw tensor bytes are handed on without a copy.
    config.bytes(["."]);
    let descriptors =
        std::path::PathBuf::from(std::env::var("OUT_DIR")?).join("grpc_service_descriptor.bin");
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .file_descriptor_set_path(&descriptors)
        .compile_with_config(config, &["proto/grpc_service.proto"], &["proto"])?;
    println!("cargo:rerun-if-changed=proto/grpc_service.proto");
    Ok(())
}
