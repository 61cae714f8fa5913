//! The node's relay to the Kubernetes API, for pods of clusters whose masters listen on
//! loopback only (`flotilla up` on one machine): a pod connecting to the `kubernetes` Service
//! would reach its own loopback, so the dataplane sends the Service's address to this relay
//! instead, on the pod network's gateway, and the relay joins each connection to a master.
//!
//! The relay copies bytes: TLS runs end to end between the client and the master, whose
//! certificate is valid for the `kubernetes` Service's names and address. A master that does
//! not accept the connection is skipped for the next one, k3s' agent load balancer's way;
//! the last master that answered is tried first.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long one master gets to accept a connection before the next is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A relay listening on one address.
pub(crate) struct ApiRelay {
    /// Where it listens (the port is chosen by the kernel).
    pub address: SocketAddr,
    stop: CancellationToken,
}

impl ApiRelay {
    /// Listens on `ip` (a free port) and relays to `masters` until `stop` or until dropped.
    pub(crate) async fn start(
        ip: Ipv4Addr,
        masters: Vec<SocketAddr>,
        tasks: &TaskTracker,
        stop: CancellationToken,
    ) -> std::io::Result<ApiRelay> {
        let listener = TcpListener::bind((ip, 0)).await?;
        let address = listener.local_addr()?;
        let masters = Arc::new(Masters { addresses: masters, preferred: AtomicUsize::new(0) });
        let worker_stop = stop.clone();
        let connections = tasks.clone();
        tasks.spawn(async move {
            loop {
                let accepted = tokio::select! {
                    biased;
                    _ = worker_stop.cancelled() => break,
                    accepted = listener.accept() => accepted,
                };
                match accepted {
                    Ok((client, _)) => {
                        let masters = masters.clone();
                        let stop = worker_stop.clone();
                        connections.spawn(async move {
                            tokio::select! {
                                _ = stop.cancelled() => {}
                                _ = relay(client, &masters) => {}
                            }
                        });
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "accepting a connection to the API relay");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        });
        tracing::info!(%address, "API relay serving");
        Ok(ApiRelay { address, stop })
    }
}

impl Drop for ApiRelay {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The masters, and which one answered last.
struct Masters {
    addresses: Vec<SocketAddr>,
    preferred: AtomicUsize,
}

impl Masters {
    /// The masters in the order to try them: the last that answered first.
    fn order(&self) -> Vec<(usize, SocketAddr)> {
        let first = self.preferred.load(Ordering::Relaxed);
        rotation(self.addresses.len(), first).map(|i| (i, self.addresses[i])).collect()
    }
}

/// `0..len` starting at `first` and wrapping around.
fn rotation(len: usize, first: usize) -> impl Iterator<Item = usize> {
    let first = if len == 0 { 0 } else { first % len };
    (0..len).map(move |step| (first + step) % len)
}

/// Joins `client` to the first master that accepts, until either side closes.
async fn relay(mut client: TcpStream, masters: &Masters) {
    for (index, address) in masters.order() {
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address)).await {
            Ok(Ok(mut master)) => {
                masters.preferred.store(index, Ordering::Relaxed);
                let _ = client.set_nodelay(true);
                let _ = master.set_nodelay(true);
                let _ = tokio::io::copy_bidirectional(&mut client, &mut master).await;
                return;
            }
            Ok(Err(err)) => tracing::debug!(%address, error = %err, "a master refused the relay"),
            Err(_) => tracing::debug!(%address, "a master did not accept the relay in time"),
        }
    }
    tracing::warn!("no master accepted a relayed API connection");
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[test]
    fn masters_are_tried_from_the_preferred_one_around() {
        assert_eq!(rotation(3, 0).collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(rotation(3, 2).collect::<Vec<_>>(), [2, 0, 1]);
        assert_eq!(rotation(3, 7).collect::<Vec<_>>(), [1, 2, 0]);
        assert_eq!(rotation(0, 1).count(), 0);
    }

    #[tokio::test]
    async fn connections_reach_the_first_master_that_answers() {
        // A port nothing listens on, then an echo server.
        let dead = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
        let live = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let live_address = live.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = live.accept().await {
                tokio::spawn(async move {
                    let mut buffer = [0u8; 64];
                    while let Ok(read) = socket.read(&mut buffer).await {
                        if read == 0 || socket.write_all(&buffer[..read]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        let tasks = TaskTracker::new();
        let stop = CancellationToken::new();
        let relay =
            ApiRelay::start(Ipv4Addr::LOCALHOST, vec![dead, live_address], &tasks, stop.clone())
                .await
                .unwrap();
        for _ in 0..2 {
            let mut client = TcpStream::connect(relay.address).await.unwrap();
            client.write_all(b"ping").await.unwrap();
            let mut answer = [0u8; 4];
            client.read_exact(&mut answer).await.unwrap();
            assert_eq!(&answer, b"ping");
        }
        drop(relay);
        tasks.close();
        tokio::time::timeout(Duration::from_secs(5), tasks.wait()).await.unwrap();
    }
}
