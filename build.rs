//! Compiles the protobuf contract with `protox` (no system `protoc`) and writes the descriptor set
//! that the server registers for reflection.

use std::path::PathBuf;

use prost::Message as _;

const PROTOS: &[&str] = &[
    "phonecheck/v1/number.proto",
    "phonecheck/v1/report.proto",
    "phonecheck/v1/phone_check_service.proto",
    "phonecheck/v1/batch_job_service.proto",
    "phonecheck/v1/admin_service.proto",
    "phonecheck/v1/usage_service.proto",
    "phonecheck/v1/webhook_service.proto",
    // Not imported by the contract, but registered for reflection so that clients such as grpcurl
    // can decode the error details phonecheck sends.
    "google/rpc/error_details.proto",
];
const INCLUDES: &[&str] = &["proto", "third_party/googleapis"];

fn main() -> anyhow::Result<()> {
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let fds = protox::compile(PROTOS, INCLUDES)?;
    std::fs::write(
        out_dir.join("phonecheck_descriptor.bin"),
        fds.encode_to_vec(),
    )?;
    // `google.type.Money` is generated on its own (tonic-types has no `google.type`), so that the
    // contract refers to it by a path of our choosing rather than by prost's relative one.
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(false)
        .compile_fds(protox::compile(["google/type/money.proto"], INCLUDES)?)?;
    tonic_prost_build::configure()
        .extern_path(".google.rpc", "::tonic_types::pb")
        .extern_path(".google.type", "crate::pb::google_type")
        .compile_fds(fds)?;
    for dir in INCLUDES {
        println!("cargo:rerun-if-changed={dir}");
    }
    Ok(())
}
