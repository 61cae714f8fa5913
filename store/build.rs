fn main() {
    println!("cargo:rerun-if-changed=proto/peer.proto");
    if let Err(err) = tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_protos(&["proto/peer.proto"], &["proto"])
    {
        panic!("compiling proto/peer.proto failed (is protoc installed?): {err}");
    }
}
