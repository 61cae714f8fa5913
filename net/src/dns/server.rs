//! The DNS server (IO): UDP and TCP listeners answering from the shared zone.
//!
//! Lifecycle: [`DnsServer::bind`] validates the configuration and binds every socket;
//! [`DnsServer::run`] answers until its `CancellationToken` is cancelled, then waits for every
//! task it spawned (all on one `TaskTracker`) and returns, which closes every socket.
//!
//! Concurrency: each UDP socket is read by one receive loop per worker thread of the runtime,
//! so every core answers. A loop answers a query the zone can answer right where it received
//! it (a pure decision and an encoding, then one send), with no task per packet. Only a query
//! that needs an upstream resolver (a forwarded name, an ExternalName's target) gets a task of
//! its own, so that waiting on an upstream never holds up the loop; at most `max_in_flight`
//! such queries are in flight at once, and a UDP query beyond that is dropped (its client
//! retries, as it would after a loss). A TCP connection has a task of its own and carries any
//! number of length-prefixed queries, answered in order (forwarded ones also within
//! `max_in_flight`); it closes after `tcp_idle_timeout` without one.
//!
//! Invariants: nothing is spawned outside the tracker; every loop and task stops as soon as
//! the token is cancelled, including those waiting on an upstream.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, debug_span, info, trace, trace_span, warn, Instrument};

use super::config::DnsConfig;
use super::error::DnsError;
use super::forwarder::{Forwarder, Transport};
use super::handle::ZoneHandle;
use super::listener::Listener;
use super::responder::{Answered, Responder, Upstream};

/// The largest UDP query read; longer datagrams are cut and answered with FORMERR.
const MAX_UDP_QUERY: usize = 4096;
/// How long the server pauses after a failed `accept` (e.g. out of file descriptors).
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// A bound cluster DNS server, ready to [`run`](Self::run).
#[derive(Debug)]
pub struct DnsServer {
    listeners: Vec<Listener>,
    context: Arc<Context>,
}

/// What every task of the server shares.
#[derive(Debug)]
struct Context {
    responder: Responder,
    in_flight: Arc<Semaphore>,
    tcp_idle_timeout: Duration,
    tracker: TaskTracker,
}

impl DnsServer {
    /// Validates `config` and binds UDP and TCP on every listen address. Must be called
    /// inside a tokio runtime.
    pub async fn bind(config: DnsConfig, zone: ZoneHandle) -> Result<Self, DnsError> {
        config.validate()?;
        let listeners = config
            .listen
            .iter()
            .map(|address| Listener::bind(*address))
            .collect::<Result<Vec<_>, _>>()?;
        let forwarder = Forwarder::new(config.upstreams.clone(), config.upstream_timeout);
        let context = Context {
            responder: Responder::new(zone, forwarder),
            in_flight: Arc::new(Semaphore::new(config.max_in_flight.max(1))),
            tcp_idle_timeout: config.tcp_idle_timeout,
            tracker: TaskTracker::new(),
        };
        Ok(Self { listeners, context: Arc::new(context) })
    }

    /// Returns the bound addresses, one per listen address, each serving UDP and TCP (port 0
    /// is resolved to the port chosen).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners.iter().map(|listener| listener.address).collect()
    }

    /// Answers queries until `cancel` is cancelled, then waits for every in-flight query and
    /// connection to stop; the sockets are closed when this returns.
    pub async fn run(self, cancel: CancellationToken) {
        let addresses = self.local_addrs();
        info!(addresses = ?addresses, "cluster dns serving");
        let tracker = self.context.tracker.clone();
        // One receive loop per worker, so that every core answers.
        let receivers = tokio::runtime::Handle::current().metrics().num_workers().max(1);
        for listener in self.listeners {
            let address = listener.address;
            let udp = Arc::new(listener.udp);
            for receiver in 0..receivers {
                tracker.spawn(
                    serve_udp(udp.clone(), self.context.clone(), cancel.clone())
                        .instrument(trace_span!("dns udp", address = %address, receiver)),
                );
            }
            tracker.spawn(
                serve_tcp(listener.tcp, self.context.clone(), cancel.clone())
                    .instrument(trace_span!("dns tcp", address = %address)),
            );
        }
        cancel.cancelled().await;
        tracker.close();
        tracker.wait().await;
        info!(addresses = ?addresses, "cluster dns stopped");
    }
}

/// One receive loop on a UDP socket: answers zone queries inline and hands the others to a
/// task of their own.
async fn serve_udp(socket: Arc<UdpSocket>, context: Arc<Context>, cancel: CancellationToken) {
    let mut buffer = vec![0u8; MAX_UDP_QUERY];
    loop {
        let (len, peer) = tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            received = socket.recv_from(&mut buffer) => match received {
                Ok(received) => received,
                Err(error) => {
                    debug!(error = %error, "udp receive failed");
                    continue;
                }
            },
        };
        answer_udp(&socket, &context, &cancel, &buffer[..len], peer).await;
    }
}

async fn answer_udp(
    socket: &Arc<UdpSocket>,
    context: &Arc<Context>,
    cancel: &CancellationToken,
    query: &[u8],
    peer: SocketAddr,
) {
    match context.responder.answer(query, Transport::Udp) {
        Answered::Reply(reply) => send_udp(socket, &reply, peer).await,
        Answered::Silent => trace!(peer = %peer, "not answering"),
        Answered::Upstream(upstream) => forward_udp(socket, context, cancel, upstream, peer),
    }
}

/// Finishes a UDP query upstream in a task of its own, within `max_in_flight`.
fn forward_udp(
    socket: &Arc<UdpSocket>,
    context: &Arc<Context>,
    cancel: &CancellationToken,
    upstream: Box<Upstream>,
    peer: SocketAddr,
) {
    let Ok(permit) = context.in_flight.clone().try_acquire_owned() else {
        debug!(peer = %peer, "too many forwarded queries in flight, dropping one");
        return;
    };
    let (socket, task_context, cancel) = (socket.clone(), context.clone(), cancel.clone());
    context.tracker.spawn(
        async move {
            let _permit = permit;
            let reply = tokio::select! {
                biased;
                _ = cancel.cancelled() => return,
                reply = task_context.responder.finish(upstream) => reply,
            };
            if let Some(reply) = reply {
                send_udp(&socket, &reply, peer).await;
            }
        }
        .instrument(debug_span!("dns forward", peer = %peer, transport = "udp")),
    );
}

async fn send_udp(socket: &UdpSocket, reply: &[u8], peer: SocketAddr) {
    if let Err(error) = socket.send_to(reply, peer).await {
        debug!(error = %error, "udp send failed");
    }
}

async fn serve_tcp(listener: TcpListener, context: Arc<Context>, cancel: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                context.tracker.spawn(
                    serve_connection(stream, context.clone(), cancel.clone())
                        .instrument(trace_span!("dns connection", peer = %peer)),
                );
            }
            Err(error) => {
                warn!(error = %error, "tcp accept failed");
                tokio::select! {
                    biased;
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(ACCEPT_ERROR_PAUSE) => {}
                }
            }
        }
    }
}

async fn serve_connection(mut stream: TcpStream, context: Arc<Context>, cancel: CancellationToken) {
    loop {
        let query = tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            query = tokio::time::timeout(context.tcp_idle_timeout, read_frame(&mut stream)) => query,
        };
        let query = match query {
            Ok(Ok(query)) => query,
            Ok(Err(error)) => {
                if error.kind() != std::io::ErrorKind::UnexpectedEof {
                    debug!(error = %error, "tcp read failed");
                }
                return;
            }
            Err(_) => return,
        };
        let reply = tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            reply = answer_tcp(&context, &query) => reply,
        };
        let Some(reply) = reply else {
            continue;
        };
        if let Err(error) = write_frame(&mut stream, &reply).await {
            debug!(error = %error, "tcp write failed");
            return;
        }
    }
}

async fn answer_tcp(context: &Context, query: &[u8]) -> Option<Vec<u8>> {
    match context.responder.answer(query, Transport::Tcp) {
        Answered::Reply(reply) => Some(reply),
        Answered::Silent => None,
        Answered::Upstream(upstream) => {
            let _permit = context.in_flight.acquire().await.ok()?;
            context.responder.finish(upstream).await
        }
    }
}

async fn read_frame(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let len = stream.read_u16().await?;
    let mut frame = vec![0u8; usize::from(len)];
    stream.read_exact(&mut frame).await?;
    Ok(frame)
}

async fn write_frame(stream: &mut TcpStream, message: &[u8]) -> std::io::Result<()> {
    let len = u16::try_from(message.len()).map_err(|_| {
        std::io::Error::new(std::io::ErrorKind::InvalidData, "reply longer than 65535 bytes")
    })?;
    let mut frame = Vec::with_capacity(message.len() + 2);
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(message);
    stream.write_all(&frame).await
}
