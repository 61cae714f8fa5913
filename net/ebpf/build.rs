//! Compiles the eBPF programs in `bpf/` with clang into `$OUT_DIR/lb.o`, which the crate embeds.

use std::env;
use std::path::PathBuf;
use std::process::{exit, Command};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=bpf/lb.c");
    println!("cargo:rerun-if-changed=bpf/lb.h");
    println!("cargo:rerun-if-env-changed=CLANG");

    let Some(out_dir) = env::var_os("OUT_DIR").map(PathBuf::from) else {
        fail("OUT_DIR is not set (build.rs must run under cargo)");
    };
    let clang = env::var_os("CLANG").unwrap_or_else(|| "clang".into());
    let output = out_dir.join("lb.o");

    let status = Command::new(&clang)
        .args([
            "-O2",
            "-g",
            "-Wall",
            "-Werror",
            "-target",
            "bpf",
            "-D__TARGET_ARCH_x86",
            "-I/usr/include/x86_64-linux-gnu",
            "-c",
            "bpf/lb.c",
            "-o",
        ])
        .arg(&output)
        .status();
    match status {
        Ok(status) if status.success() => {}
        Ok(status) => fail(&format!(
            "clang failed to compile bpf/lb.c ({status}); if libbpf's headers are missing, run \
             deploy/install.sh"
        )),
        Err(error) => fail(&format!(
            "cannot run {} ({error}): the eBPF programs are compiled by clang; run \
             deploy/install.sh to install clang, llvm and libbpf-dev",
            clang.to_string_lossy()
        )),
    }
}

fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    exit(1);
}
