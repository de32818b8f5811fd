//! Support for the TLS and WebSocket tests (`server/tls.rs`, `server/websocket.rs`).
//!
//! - [`Pki`]: certificates made in the test with rcgen (a CA, server and client certificates,
//!   self-signed ones), written as PEM files gridmq's config can point at.
//! - [`client_config`] / [`tls_connect`]: a rustls client (ring provider), with or without a
//!   client certificate, limited to chosen TLS versions.
//! - [`mqtt_connect`]: a CONNECT and its CONNACK over any byte stream (TLS).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::raw::{WAIT, read_packet_from};

/// A directory of PEM files and the CA that issued them.
pub struct Pki {
    dir: tempfile::TempDir,
    ca: Issuer<'static, KeyPair>,
    /// The CA certificate (DER).
    pub ca_cert: CertificateDer<'static>,
    /// The CA certificate, PEM.
    pub ca_path: PathBuf,
}

/// A certificate with its key, in memory and as PEM files.
#[derive(Clone)]
pub struct Identity {
    pub cert: CertificateDer<'static>,
    key: Vec<u8>,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
}

impl Pki {
    /// A new CA named `name`, in a new temporary directory.
    pub fn new(name: &str) -> Pki {
        let dir = tempfile::tempdir().expect("create certificate dir");
        let mut params = CertificateParams::new(Vec::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("self-sign CA");
        let ca_path = dir.path().join(format!("{name}.pem"));
        std::fs::write(&ca_path, cert.pem()).expect("write CA");
        Pki { dir, ca: Issuer::new(params, key), ca_cert: cert.der().clone(), ca_path }
    }

    /// A server certificate for `localhost` and 127.0.0.1, issued by this CA.
    pub fn server(&self) -> Identity {
        let mut params = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
            .expect("server params");
        params.distinguished_name.push(DnType::CommonName, "localhost");
        params.extended_key_usages.push(ExtendedKeyUsagePurpose::ServerAuth);
        self.issue(params, "server")
    }

    /// A client certificate with common name `name`, issued by this CA.
    pub fn client(&self, name: &str) -> Identity {
        self.issue(client_params(name), name)
    }

    /// A self-signed client certificate with common name `name` (as Event Grid's thumbprint
    /// authentication uses), written into this PKI's directory.
    pub fn self_signed_client(&self, name: &str) -> Identity {
        let key = KeyPair::generate().expect("client key");
        let cert = client_params(name).self_signed(&key).expect("self-sign client");
        self.write(name, cert.der().clone(), cert.pem(), &key)
    }

    /// A path in this PKI's directory (for a file that does not exist, say).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn issue(&self, params: CertificateParams, name: &str) -> Identity {
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.ca).expect("issue certificate");
        self.write(name, cert.der().clone(), cert.pem(), &key)
    }

    fn write(
        &self,
        name: &str,
        cert: CertificateDer<'static>,
        pem: String,
        key: &KeyPair,
    ) -> Identity {
        let cert_path = self.dir.path().join(format!("{name}.pem"));
        let key_path = self.dir.path().join(format!("{name}.key"));
        std::fs::write(&cert_path, pem).expect("write certificate");
        std::fs::write(&key_path, key.serialize_pem()).expect("write key");
        Identity { cert, key: key.serialize_der(), cert_path, key_path }
    }
}

fn client_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::new()).expect("client params");
    params.distinguished_name.push(DnType::CommonName, name);
    params.extended_key_usages.push(ExtendedKeyUsagePurpose::ClientAuth);
    params
}

impl Identity {
    fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.clone()))
    }
}

/// A rustls client config trusting `root`, presenting `identity` if given, offering only
/// `versions`.
pub fn client_config(
    root: &CertificateDer<'static>,
    identity: Option<&Identity>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root.clone()).expect("trust root");
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(versions)
    .expect("protocol versions")
    .with_root_certificates(roots);
    let config = match identity {
        Some(identity) => builder
            .with_client_auth_cert(vec![identity.cert.clone()], identity.private_key())
            .expect("client certificate"),
        None => builder.with_no_client_auth(),
    };
    Arc::new(config)
}

/// TLS 1.2 and 1.3.
pub const ALL_VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// Opens TCP to `addr` and runs the TLS handshake for `localhost`.
pub async fn tls_connect(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await.with_context(|| format!("connect to {addr}"))?;
    let name = ServerName::try_from("localhost").expect("server name");
    let tls = tokio::time::timeout(WAIT, TlsConnector::from(config).connect(name, tcp))
        .await
        .context("TLS handshake timed out")??;
    Ok(tls)
}

/// Sends `connect` and returns the CONNACK's first bytes; fails when the connection ends (or
/// errs) without a CONNACK, which is how a refused TLS 1.3 client certificate shows.
pub async fn mqtt_connect<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    connect: &[u8],
) -> Result<Vec<u8>> {
    use tokio::io::AsyncWriteExt;
    stream.write_all(connect).await?;
    stream.flush().await?;
    let mut buf = Vec::new();
    match read_packet_from(stream, &mut buf).await? {
        Some(packet) if packet.first() == Some(&0x20) => Ok(packet),
        Some(packet) => bail!("expected CONNACK, got {packet:02X?}"),
        None => bail!("connection closed before CONNACK"),
    }
}

/// How long the TLS and WebSocket tests wait for a handshake timeout to fire.
pub const HANDSHAKE_SLACK: Duration = Duration::from_secs(3);
