//! The agent's local way to the masters, as k3s' agent load balancer: a TCP listener on
//! 127.0.0.1 that forwards each connection to the first master that accepts it, starting with
//! the one that last worked. The agent's API client talks TLS through it to whichever master
//! answers, so losing one master costs a reconnect, not the agent's work.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// How long one master gets to accept a connection before the next is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// A running forwarder.
pub struct Upstream {
    /// Where the agent's client connects.
    pub local: SocketAddr,
}

impl Upstream {
    /// Listens on an ephemeral port of 127.0.0.1 and forwards to `masters` until `stop`.
    pub async fn start(
        masters: Vec<SocketAddr>,
        stop: CancellationToken,
    ) -> std::io::Result<Upstream> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let local = listener.local_addr()?;
        let masters = Arc::new(masters);
        let preferred = Arc::new(AtomicUsize::new(0));
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = stop.cancelled() => return,
                    accepted = listener.accept() => accepted,
                };
                let Ok((inbound, _)) = accepted else { continue };
                let masters = masters.clone();
                let preferred = preferred.clone();
                tokio::spawn(async move {
                    if let Some(outbound) = connect_any(&masters, &preferred).await {
                        forward(inbound, outbound).await;
                    }
                });
            }
        });
        Ok(Upstream { local })
    }
}

/// Connects to the preferred master, or else to the next that accepts, and remembers it.
async fn connect_any(masters: &[SocketAddr], preferred: &AtomicUsize) -> Option<TcpStream> {
    let start = preferred.load(Ordering::Relaxed);
    for offset in 0..masters.len() {
        let index = (start + offset) % masters.len();
        let attempt = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(masters[index]));
        match attempt.await {
            Ok(Ok(stream)) => {
                if index != start {
                    tracing::info!(master = %masters[index], "agent switched to another master");
                    preferred.store(index, Ordering::Relaxed);
                }
                let _ = stream.set_nodelay(true);
                return Some(stream);
            }
            Ok(Err(err)) => {
                tracing::debug!(master = %masters[index], error = %err, "master refused")
            }
            Err(_) => tracing::debug!(master = %masters[index], "master did not answer"),
        }
    }
    tracing::warn!("no master accepted a connection");
    None
}

async fn forward(mut inbound: TcpStream, mut outbound: TcpStream) {
    let _ = inbound.set_nodelay(true);
    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A server that answers every connection with `name`.
    async fn server(name: &'static [u8]) -> (SocketAddr, tokio::task::JoinHandle<()>) {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let _ = stream.write_all(name).await;
            }
        });
        (addr, task)
    }

    async fn ask(upstream: &Upstream) -> Vec<u8> {
        let mut stream = TcpStream::connect(upstream.local).await.unwrap();
        let mut answer = vec![0u8; 1];
        stream.read_exact(&mut answer).await.unwrap();
        answer
    }

    #[tokio::test]
    async fn fails_over_to_a_live_master_and_stays_there() {
        let (first, first_task) = server(b"a").await;
        let (second, _second_task) = server(b"b").await;
        let stop = CancellationToken::new();
        let upstream = Upstream::start(vec![first, second], stop.clone()).await.unwrap();
        assert_eq!(ask(&upstream).await, b"a");
        // The first master dies: its port refuses connections from now on.
        first_task.abort();
        let _ = first_task.await;
        assert_eq!(ask(&upstream).await, b"b");
        assert_eq!(ask(&upstream).await, b"b", "the working master is kept");
        stop.cancel();
    }
}
