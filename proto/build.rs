//! Generates the sidescan.v1 Rust code, and zot's scan-plugin protocol (`package scan`), from the
//! .proto files with protox (no system protoc) and writes each encoded FileDescriptorSet next to
//! it, for server reflection and JSON output. The two are compiled apart so that zot's contract
//! never enters sidescan.v1's descriptor set (its docs and JSON rendering).

use std::{env, fs, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["sidescan/v1/scan.proto", "sidescan/v1/report.proto"];
    for proto in &protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    compile(&protos, &out_dir.join("sidescan_v1_descriptor.bin"))?;
    let zot = ["scan/scan.proto"];
    println!("cargo:rerun-if-changed={}", zot[0]);
    compile(&zot, &out_dir.join("zot_scan_descriptor.bin"))?;
    Ok(())
}

/// Compiles `protos` into Rust (server and client) and writes their descriptor set to `set`.
fn compile(protos: &[&str], set: &std::path::Path) -> Result<(), Box<dyn std::error::Error>> {
    let descriptors = protox::compile(protos, ["."])?;
    fs::write(set, prost::Message::encode_to_vec(&descriptors))?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(descriptors)?;
    Ok(())
}
