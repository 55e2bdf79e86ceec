fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=raftq.proto");
    tonic_prost_build::configure().compile_protos(&["raftq.proto"], &["."])?;
    Ok(())
}
