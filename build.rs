//! Lays out the release binary's code so that what a running agent executes sits together:
//! the linker places the functions named in `deploy/agent-hot-code.txt` first, in that order.
//!
//! The kernel maps a file's pages 64 KiB at a time around each page a process touches, so code
//! an agent runs every few seconds, scattered across the binary's ≈38 MB of functions, kept
//! ≈20 MB of it resident. `deploy/profile-agent.sh` regenerates the list; names it no longer
//! finds are skipped, so a stale list costs memory, never a build.

use std::path::Path;
use std::process::Command;

/// The first Rust whose x86_64 Linux builds link with its own LLD, which reads the list.
const LLD_BY_DEFAULT: (u32, u32) = (1, 90);

fn main() {
    let list = Path::new("deploy/agent-hot-code.txt");
    println!("cargo:rerun-if-changed={}", list.display());
    let release = std::env::var("PROFILE").as_deref() == Ok("release");
    let target = std::env::var("TARGET").unwrap_or_default();
    if !release || target != "x86_64-unknown-linux-gnu" || !rustc_links_with_lld() {
        return;
    }
    let list = Path::new(env!("CARGO_MANIFEST_DIR")).join(list);
    println!("cargo:rustc-link-arg-bin=flotilla=-Wl,--symbol-ordering-file={}", list.display());
    println!("cargo:rustc-link-arg-bin=flotilla=-Wl,--no-warn-symbol-ordering");
}

/// Whether the compiler is one that links with LLD by default (`rustc -vV`'s release line).
fn rustc_links_with_lld() -> bool {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let Ok(output) = Command::new(rustc).arg("-vV").output() else { return false };
    let text = String::from_utf8_lossy(&output.stdout);
    let Some(release) = text.lines().find_map(|line| line.strip_prefix("release: ")) else {
        return false;
    };
    let mut numbers = release.split(['.', '-']).map(|part| part.parse::<u32>().unwrap_or(0));
    let version = (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0));
    version >= LLD_BY_DEFAULT
}
