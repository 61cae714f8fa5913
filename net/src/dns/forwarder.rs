//! Forwarding to upstream resolvers (IO).
//!
//! Each upstream is tried in order with its own timeout; the first usable response wins. A
//! query goes upstream over the transport the client used (a truncated UDP answer is relayed
//! as is, and the client retries over TCP), with a fresh random id on a fresh ephemeral
//! socket, and the response is accepted only when its id and question match; the client's id
//! is then restored.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, Query};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tracing::debug;

use super::error::DnsError;

/// The largest DNS message.
const MAX_MESSAGE: usize = 65_535;

/// How a query reached the server, and so how it is sent upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Transport {
    Udp,
    Tcp,
}

/// Sends queries to the configured upstream resolvers.
#[derive(Clone, Debug)]
pub(crate) struct Forwarder {
    upstreams: Vec<SocketAddr>,
    timeout: Duration,
}

impl Forwarder {
    pub(crate) fn new(upstreams: Vec<SocketAddr>, timeout: Duration) -> Self {
        Self { upstreams, timeout }
    }

    /// Returns the first upstream response to `request`, encoded, with the request's id.
    pub(crate) async fn forward(
        &self,
        request: &Message,
        transport: Transport,
    ) -> Result<Vec<u8>, DnsError> {
        let mut last_error = DnsError::NoUpstream;
        for upstream in &self.upstreams {
            match self.exchange(*upstream, request, transport).await {
                Ok(response) => return Ok(response),
                Err(error) => {
                    debug!(upstream = %upstream, error = %error, "upstream failed");
                    last_error = error;
                }
            }
        }
        Err(last_error)
    }

    /// Asks the upstreams one question and returns the decoded response.
    pub(crate) async fn lookup(
        &self,
        query: Query,
        transport: Transport,
    ) -> Result<Message, DnsError> {
        let mut request = Message::query();
        request.metadata.recursion_desired = true;
        request.add_query(query);
        let response = self.forward(&request, transport).await?;
        Message::from_vec(&response).map_err(|error| DnsError::Decode { reason: error.to_string() })
    }

    async fn exchange(
        &self,
        upstream: SocketAddr,
        request: &Message,
        transport: Transport,
    ) -> Result<Vec<u8>, DnsError> {
        let id: u16 = rand::random();
        let mut outgoing = request.clone();
        outgoing.metadata.id = id;
        let bytes =
            outgoing.to_vec().map_err(|error| DnsError::Encode { reason: error.to_string() })?;
        let io_error = |source| DnsError::Upstream { upstream, source };
        let exchange = async {
            match transport {
                Transport::Udp => exchange_udp(upstream, &bytes, id).await,
                Transport::Tcp => exchange_tcp(upstream, &bytes).await,
            }
        };
        let mut response = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| DnsError::UpstreamTimeout { upstream })?
            .map_err(io_error)?;
        check_response(upstream, &response, id, &request.queries)?;
        response[..2].copy_from_slice(&request.metadata.id.to_be_bytes());
        Ok(response)
    }
}

async fn exchange_udp(upstream: SocketAddr, bytes: &[u8], id: u16) -> std::io::Result<Vec<u8>> {
    let local: SocketAddr = if upstream.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(upstream).await?;
    socket.send(bytes).await?;
    let mut buffer = vec![0u8; MAX_MESSAGE];
    loop {
        let len = socket.recv(&mut buffer).await?;
        // Datagrams with another id are stale or spoofed; keep waiting for ours.
        if len >= 2 && buffer[..2] == id.to_be_bytes() {
            buffer.truncate(len);
            return Ok(buffer);
        }
    }
}

async fn exchange_tcp(upstream: SocketAddr, bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(upstream).await?;
    let len = u16::try_from(bytes.len())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "query too long"))?;
    let mut framed = Vec::with_capacity(bytes.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(bytes);
    stream.write_all(&framed).await?;
    let len = stream.read_u16().await?;
    let mut response = vec![0u8; usize::from(len)];
    stream.read_exact(&mut response).await?;
    Ok(response)
}

/// Accepts a response only when it answers the query sent: same id, a response, same
/// question (names compared case-insensitively).
fn check_response(
    upstream: SocketAddr,
    response: &[u8],
    id: u16,
    queries: &[Query],
) -> Result<(), DnsError> {
    let unusable =
        |reason: &str| DnsError::UpstreamResponse { upstream, reason: reason.to_owned() };
    let message = Message::from_vec(response).map_err(|error| unusable(&error.to_string()))?;
    if message.metadata.id != id {
        return Err(unusable("the id differs from the query's"));
    }
    if message.metadata.message_type != MessageType::Response {
        return Err(unusable("not a response"));
    }
    let same_question = message.queries.len() == queries.len()
        && message.queries.iter().zip(queries).all(|(got, sent)| {
            got.query_type() == sent.query_type()
                && got.query_class() == sent.query_class()
                && got.name().to_lowercase() == sent.name().to_lowercase()
        });
    if !same_question {
        return Err(unusable("the question differs from the query's"));
    }
    Ok(())
}
