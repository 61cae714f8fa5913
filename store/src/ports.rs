//! Ports of local members: picking free ones for local clusters, and binding one that a killed
//! predecessor may still hold.
//!
//! A port found by binding port 0 comes from the kernel's ephemeral range, the same range
//! outgoing connections draw from: between picking it and the member binding it, a member's
//! connection to a peer can take it. Ports are therefore picked below the ephemeral range, at
//! a random place, and checked by binding them.

use std::net::{Ipv4Addr, TcpListener};

/// The lowest port handed out.
const LOWEST: u16 = 10_000;

/// Returns the first port of the kernel's ephemeral range (32768 when it cannot be read).
fn ephemeral_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

/// Returns a port on 127.0.0.1 that is free now and outside the ephemeral range.
pub fn free_local_port() -> std::io::Result<u16> {
    let end = ephemeral_start().max(LOWEST + 100);
    for _ in 0..1000 {
        let port = rand::Rng::gen_range(&mut rand::thread_rng(), LOWEST..end);
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return Ok(port);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        "no free port below the ephemeral range",
    ))
}

/// How long a member restarted right after its previous process was killed waits for what that
/// process held: its listening ports and its store's lock are released only as the kernel
/// finishes the process, which a SIGKILL does not wait for.
pub const PREDECESSOR_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Runs `attempt` until it succeeds, fails for another reason than `held`, or
/// [`PREDECESSOR_WAIT`] has passed.
pub async fn after_predecessor<T, E, F, Fut>(
    mut attempt: F,
    held: impl Fn(&E) -> bool,
) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let deadline = tokio::time::Instant::now() + PREDECESSOR_WAIT;
    loop {
        match attempt().await {
            Err(error) if held(&error) && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            outcome => return outcome,
        }
    }
}

/// Binds a TCP listener on `addr`, waiting for a killed predecessor to release the port.
pub async fn bind_after_predecessor(
    addr: std::net::SocketAddr,
) -> std::io::Result<tokio::net::TcpListener> {
    after_predecessor(
        || tokio::net::TcpListener::bind(addr),
        |error: &std::io::Error| error.kind() == std::io::ErrorKind::AddrInUse,
    )
    .await
}
