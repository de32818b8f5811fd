//! TLS for `tls` and `wss` listeners: rustls on the `ring` provider, TLS 1.2 and 1.3.
//!
//! # Client certificates
//! With `client_auth = "optional"` or `"required"` there are two modes:
//! - **Authenticator decides** (default, `verify_client_chain = false`): [`AnyClientCert`]
//!   accepts any well-formed certificate chain, self-signed included, once the client has
//!   signed the handshake with the certificate's key (the TLS 1.2/1.3 CertificateVerify
//!   signature is checked). Whether the certificate is any good is left to the
//!   [`Authenticator`](crate::hooks::Authenticator), which gets the chain in
//!   `AuthRequest::peer_certificates`: thumbprint matching (Event Grid's `ThumbprintMatch`)
//!   needs self-signed certificates to get that far. `client_ca`, if given, is only sent to
//!   clients as the list of acceptable issuers.
//! - **TLS verifies the chain** (`verify_client_chain = true`): rustls' `WebPkiClientVerifier`
//!   with the `client_ca` roots; a certificate that does not chain to them fails the handshake.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use tokio_rustls::TlsAcceptor;

use super::config::ServerConfigError;
use super::config::{ClientAuth, ListenerConfig, TlsVersion};

/// Builds the TLS acceptor of the listener at `index`, reading its PEM files. Errors name the
/// field, e.g. `server.listeners[1].certificate: cannot read tls/server.pem: ...`.
pub(crate) fn acceptor(
    listener: &ListenerConfig,
    index: usize,
) -> Result<TlsAcceptor, ServerConfigError> {
    let error = |field, problem: String| ServerConfigError::listener(index, field, problem);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let (chain, key, key_path) =
        identity(listener.certificate.as_deref(), listener.private_key.as_deref(), &error)?;
    let builder = versions(&provider, listener.min_tls_version.unwrap_or_default(), &error)?;
    let client_auth = listener.client_auth.unwrap_or_default();
    let roots = match &listener.client_ca {
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for ca in read_certificates(path)
                .map_err(|problem| error("client_ca", problem.to_string()))?
            {
                roots.add(ca).map_err(|e| {
                    error("client_ca", format!("bad CA certificate in {}: {e}", path.display()))
                })?;
            }
            Some(Arc::new(roots))
        }
        None => None,
    };
    let builder = match (client_auth, roots) {
        (ClientAuth::None, _) => builder.with_no_client_auth(),
        (_, Some(roots)) if listener.verify_client_chain == Some(true) => {
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider);
            let verifier = if client_auth == ClientAuth::Optional {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            let verifier = verifier.build().map_err(|e| error("client_ca", e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        (_, roots) => builder.with_client_cert_verifier(Arc::new(AnyClientCert {
            hints: roots.map(|r| r.subjects()).unwrap_or_default(),
            mandatory: client_auth == ClientAuth::Required,
            provider,
        })),
    };
    let config =
        builder.with_single_cert(chain, key).map_err(|e| mismatch(&key_path, e, &error))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Builds the TLS acceptor of an HTTPS listener (`[http]` or `[management]`, named by
/// `section`): the same PEM files, versions and errors as the MQTT listeners, without client
/// certificates. Errors name the field, e.g. `http.certificate: cannot read ...`.
pub(crate) fn https_acceptor(
    section: &'static str,
    certificate: Option<&Path>,
    private_key: Option<&Path>,
    min_tls_version: TlsVersion,
) -> Result<TlsAcceptor, ServerConfigError> {
    let error = |field, problem: String| ServerConfigError::section(section, field, problem);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let (chain, key, key_path) = identity(certificate, private_key, &error)?;
    let builder = versions(&provider, min_tls_version, &error)?;
    let mut config = builder
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| mismatch(&key_path, e, &error))?;
    // HTTP/1.1 only: the HTTP server speaks HTTP/1 on these listeners.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The certificate chain and private key, read from their PEM files; both are required.
fn identity(
    certificate: Option<&Path>,
    private_key: Option<&Path>,
    error: &impl Fn(&'static str, String) -> ServerConfigError,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>, PathBuf), ServerConfigError> {
    let certificate = certificate.ok_or_else(|| error("certificate", "required".into()))?;
    let chain = read_certificates(certificate).map_err(|p| error("certificate", p.to_string()))?;
    let key_path = private_key.ok_or_else(|| error("private_key", "required".into()))?;
    let key = read_private_key(key_path).map_err(|p| error("private_key", p.to_string()))?;
    Ok((chain, key, key_path.to_path_buf()))
}

/// A server config builder for the TLS versions from `min` up.
fn versions(
    provider: &Arc<CryptoProvider>,
    min: TlsVersion,
    error: &impl Fn(&'static str, String) -> ServerConfigError,
) -> Result<rustls::ConfigBuilder<rustls::ServerConfig, rustls::WantsVerifier>, ServerConfigError> {
    let versions: &[&'static rustls::SupportedProtocolVersion] = match min {
        TlsVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        TlsVersion::Tls13 => &[&rustls::version::TLS13],
    };
    rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| error("min_tls_version", e.to_string()))
}

fn mismatch(
    key_path: &Path,
    problem: rustls::Error,
    error: &impl Fn(&'static str, String) -> ServerConfigError,
) -> ServerConfigError {
    error(
        "private_key",
        format!("{} does not go with the certificate: {problem}", key_path.display()),
    )
}

/// The certificates the client presented, DER, leaf first; empty without client auth.
pub(crate) fn peer_certificates(connection: &rustls::ServerConnection) -> Vec<Bytes> {
    connection
        .peer_certificates()
        .map(|chain| chain.iter().map(|der| Bytes::copy_from_slice(der)).collect())
        .unwrap_or_default()
}

/// A PEM file that does not give what a TLS setting needs.
#[derive(Debug, thiserror::Error)]
enum PemError {
    #[error("cannot read {path}: {source}", path = .path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("bad PEM in {path}: {source}", path = .path.display())]
    BadPem { path: PathBuf, source: rustls_pki_types::pem::Error },
    #[error("no CERTIFICATE in {path}", path = .path.display())]
    NoCertificate { path: PathBuf },
    #[error("no PKCS#8, PKCS#1 or SEC1 private key in {path}: {source}", path = .path.display())]
    NoKey { path: PathBuf, source: rustls_pki_types::pem::Error },
}

fn read_file(path: &Path) -> Result<Vec<u8>, PemError> {
    std::fs::read(path).map_err(|source| PemError::Read { path: path.to_path_buf(), source })
}

fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let pem = read_file(path)?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| PemError::BadPem { path: path.to_path_buf(), source })?;
    if chain.is_empty() {
        return Err(PemError::NoCertificate { path: path.to_path_buf() });
    }
    Ok(chain)
}

fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, PemError> {
    let pem = read_file(path)?;
    PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|source| PemError::NoKey { path: path.to_path_buf(), source })
}

/// Accepts any well-formed client certificate whose key signed the handshake, and leaves the
/// judgement to the authenticator (see the module docs).
#[derive(Debug)]
struct AnyClientCert {
    /// Acceptable issuers sent in the CertificateRequest (from `client_ca`); may be empty.
    hints: Vec<DistinguishedName>,
    mandatory: bool,
    provider: Arc<CryptoProvider>,
}

impl ClientCertVerifier for AnyClientCert {
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        // Well-formed X.509 with a public key we can check the handshake signature against;
        // validity period, issuer and usage are the authenticator's business.
        ParsedCertificate::try_from(end_entity)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}
