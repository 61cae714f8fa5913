//! Connections to proxy backends: plain TCP, TLS that accepts any certificate (pods and
//! services), or the agent's mutual TLS (nodes); one HTTP/1.1 connection per request, driven
//! by its own task until the response and any upgraded stream end.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::location::{Backend, Transport};
use crate::error::ApiError;

/// How long connecting to a backend may take (Go's dialer in kube's proxy transport).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a backend's TLS handshake may take.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The body of a request to a backend: the client's, streamed, or nothing.
pub type UpstreamBody = UnsyncBoxBody<Bytes, hyper::Error>;

/// The connections a proxy can open.
pub struct Upstreams {
    /// TLS without certificate checks, for pods and services.
    insecure: TlsConnector,
    /// The agents' TLS: the cluster CA and the master's certificate.
    agent: TlsConnector,
}

/// A connection of any kind.
trait Connection: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Connection for T {}

impl Upstreams {
    /// Connections that reach agents with `agent`.
    pub fn new(agent: TlsConnector) -> Result<Upstreams, rustls::Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth();
        Ok(Upstreams { insecure: TlsConnector::from(Arc::new(config)), agent })
    }

    async fn connect(&self, backend: &Backend) -> Result<Box<dyn Connection>, String> {
        let address = backend.address;
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address))
            .await
            .map_err(|_| format!("dial tcp {address}: i/o timeout"))?
            .map_err(|err| format!("dial tcp {address}: {err}"))?;
        let _ = tcp.set_nodelay(true);
        let connector = match backend.transport {
            Transport::Plain => return Ok(Box::new(tcp)),
            Transport::InsecureTls => &self.insecure,
            Transport::Agent => &self.agent,
        };
        let handshake = connector.connect(ServerName::IpAddress(address.ip().into()), tcp);
        let tls = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, handshake)
            .await
            .map_err(|_| format!("TLS handshake with {address}: timeout"))?
            .map_err(|err| format!("TLS handshake with {address}: {err}"))?;
        Ok(Box::new(tls))
    }

    /// Sends `request` to the backend and returns the response head; the body and an
    /// upgraded stream arrive as the backend sends them. A backend that cannot be reached is
    /// a 503, worded as kube words it.
    pub async fn send(
        &self,
        backend: &Backend,
        request: Request<UpstreamBody>,
    ) -> Result<Response<Incoming>, ApiError> {
        let unreachable = |err: &dyn std::fmt::Display| {
            ApiError::Unavailable(format!("error trying to reach service: {err}"))
        };
        let connection = self.connect(backend).await.map_err(|err| unreachable(&err))?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(connection))
                .await
                .map_err(|err| unreachable(&err))?;
        let address = backend.address;
        tokio::spawn(async move {
            if let Err(err) = connection.with_upgrades().await {
                tracing::debug!(backend = %address, error = %err, "a proxied connection ended");
            }
        });
        sender.send_request(request).await.map_err(|err| unreachable(&err))
    }
}

/// Accepts any server certificate, still checking that the handshake is signed by its key.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, signature, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, signature, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A backend's response body passed on frame by frame as it arrives, with its size hint
/// (so a `Content-Length` stays true). A broken backend connection ends it: the status is
/// sent already, so the client sees a short body.
pub struct Relayed {
    body: Incoming,
    backend: SocketAddr,
}

impl Relayed {
    pub fn new(body: Incoming, backend: SocketAddr) -> Relayed {
        Relayed { body, backend }
    }
}

impl hyper::body::Body for Relayed {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match Pin::new(&mut self.body).poll_frame(context) {
            Poll::Ready(Some(Ok(frame))) => Poll::Ready(Some(Ok(frame))),
            Poll::Ready(Some(Err(err))) => {
                tracing::debug!(backend = %self.backend, error = %err, "a proxied response broke off");
                Poll::Ready(None)
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
