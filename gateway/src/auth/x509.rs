//! X.509 client certificate authentication, with Event Grid's six validation schemes.
//!
//! 1. The authentication name is the CONNECT Username or, when there is none, the first
//!    non-empty certificate field among the namespace's `alternativeAuthenticationNameSources`.
//! 2. The registered client with that name (case-insensitively) is looked up; it must be
//!    enabled and have `clientCertificateAuthentication`.
//! 3. The leaf must be within its validity period, and its scheme must hold:
//!    - `ThumbprintMatch`: the SHA-256 (or SHA-1) thumbprint of the leaf's DER is one of
//!      `allowedThumbprints` (hex, case-insensitive). Self-signed certificates are fine.
//!    - `Subject`/`Dns`/`Uri`/`Ip`/`EmailMatchesAuthenticationName`: the subject (its CN or the
//!      whole DN) or a SAN entry of that kind equals the client's registered authentication
//!      name, *and* the leaf chains to a registered CA certificate: signed by it directly or
//!      through intermediates the client sent, every certificate on the path within its
//!      validity period (checked by `rustls-webpki`; the CA certificate's own validity is
//!      checked here), with the client-auth extended key usage if the leaf restricts usage.
//!
//! Subjects, URIs and emails compare byte for byte with the registered name; DNS names ASCII
//! case-insensitively (as DNS does); IP addresses as addresses (so `::1` equals `0:0:0:0:0:0:0:1`).
//!
//! The session ends when the leaf expires (`expires_in`). Possession of the certificate's key
//! was proven by the TLS handshake; this module judges only the certificate. No CRL or OCSP
//! checking (as Event Grid; the webhook is the place for it).

use std::net::IpAddr;
use std::time::Duration;

use rustls_pki_types::{CertificateDer, SignatureVerificationAlgorithm, UnixTime};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

use super::{Outcome, allow_registered, deny, disabled, now_unix, rfc3339};
use crate::access::model::{
    AlternativeAuthenticationNameSource, ClientState, Resources, ValidationScheme,
};
use crate::hooks::AuthRequest;
use crate::mqtt::ReasonCode;

/// The signature algorithms accepted on certificate chains.
static SIGNATURE_ALGORITHMS: &[&dyn SignatureVerificationAlgorithm] = &[
    webpki::ring::ECDSA_P256_SHA256,
    webpki::ring::ECDSA_P256_SHA384,
    webpki::ring::ECDSA_P384_SHA256,
    webpki::ring::ECDSA_P384_SHA384,
    webpki::ring::ED25519,
    webpki::ring::RSA_PKCS1_2048_8192_SHA256,
    webpki::ring::RSA_PKCS1_2048_8192_SHA384,
    webpki::ring::RSA_PKCS1_2048_8192_SHA512,
    webpki::ring::RSA_PKCS1_3072_8192_SHA384,
    webpki::ring::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
    webpki::ring::RSA_PSS_2048_8192_SHA384_LEGACY_KEY,
    webpki::ring::RSA_PSS_2048_8192_SHA512_LEGACY_KEY,
];

/// The SHA-256 thumbprint of a DER certificate, as lower-case hex (Event Grid's
/// `allowedThumbprints` format).
pub fn thumbprint_sha256(der: &[u8]) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, der).as_ref())
}

/// Decides when a registered client with certificate authentication is named; see the module
/// docs. `request.peer_certificates` must not be empty.
pub(crate) fn authenticate(resources: &Resources, request: &AuthRequest<'_>) -> Outcome {
    let Some(leaf_der) = request.peer_certificates.first() else {
        return Outcome::NotApplicable("no client certificate".into());
    };
    let leaf = match X509Certificate::from_der(leaf_der) {
        Ok((_, leaf)) => leaf,
        Err(error) => {
            return Outcome::Decided(deny(
                ReasonCode::NotAuthorized,
                format!("the client certificate does not parse: {error}"),
            ));
        }
    };
    let sources = &resources.namespace.alternative_authentication_name_sources;
    let authentication_name = match request.username {
        Some(username) => username.to_owned(),
        None => match sources.iter().find_map(|source| name_from(&leaf, *source)) {
            Some(name) => name,
            None if sources.is_empty() => {
                return Outcome::NotApplicable(
                    "no username, and the namespace has no alternativeAuthenticationNameSources \
                     to take the authentication name from the certificate"
                        .into(),
                );
            }
            None => {
                return Outcome::NotApplicable(format!(
                    "no username, and the certificate has none of {sources:?}"
                ));
            }
        },
    };
    let Some((name, client)) = resources.client_by_authentication_name(&authentication_name) else {
        return Outcome::NotApplicable(format!(
            "no registered client has the authentication name {authentication_name:?}"
        ));
    };
    let Some(settings) = &client.client_certificate_authentication else {
        return Outcome::NotApplicable(format!(
            "client {name:?} has no clientCertificateAuthentication"
        ));
    };
    if client.state == ClientState::Disabled {
        return Outcome::Decided(disabled(name));
    }
    let now = now_unix();
    if let Err(problem) = check_validity(&leaf, now, "client certificate") {
        return Outcome::Decided(deny(ReasonCode::NotAuthorized, problem.to_string()));
    }
    let registered_name = client.authentication_name_or(name);
    let checked = match settings.validation_scheme {
        ValidationScheme::ThumbprintMatch => {
            check_thumbprint(leaf_der, &settings.allowed_thumbprints, name)
        }
        scheme => check_name(&leaf, scheme, registered_name, name)
            .and_then(|()| check_chain(resources, request.peer_certificates, now)),
    };
    if let Err(problem) = checked {
        return Outcome::Decided(deny(ReasonCode::NotAuthorized, problem.to_string()));
    }
    let not_after = leaf.validity().not_after.timestamp();
    let expires_in = Duration::from_secs(u64::try_from(not_after - now).unwrap_or(0));
    Outcome::Decided(allow_registered(request, name, client, Some(expires_in)))
}

/// The value of one alternative name source in `cert`, if it has one.
fn name_from(
    cert: &X509Certificate<'_>,
    source: AlternativeAuthenticationNameSource,
) -> Option<String> {
    use AlternativeAuthenticationNameSource as Source;
    let name = match source {
        Source::ClientCertificateSubject => {
            common_name(cert).or_else(|| Some(cert.subject().to_string()))
        }
        Source::ClientCertificateDns => sans(cert).find_map(|san| match san {
            GeneralName::DNSName(dns) => Some(dns.to_string()),
            _ => None,
        }),
        Source::ClientCertificateUri => sans(cert).find_map(|san| match san {
            GeneralName::URI(uri) => Some(uri.to_string()),
            _ => None,
        }),
        Source::ClientCertificateIp => {
            sans(cert).find_map(|san| ip_of(san).map(|ip| ip.to_string()))
        }
        Source::ClientCertificateEmail => sans(cert).find_map(|san| match san {
            GeneralName::RFC822Name(email) => Some(email.to_string()),
            _ => None,
        }),
    };
    name.filter(|name| !name.is_empty())
}

/// Why a client certificate does not authenticate its client.
#[derive(Debug, thiserror::Error)]
enum CertRejected {
    #[error(
        "certificate {field} does not match the authentication name {expected:?} of client \
         {client:?}"
    )]
    Name { field: &'static str, expected: String, client: String },
    #[error("certificate thumbprint does not match client {client:?} (SHA-256 {sha256})")]
    Thumbprint { client: String, sha256: String },
    #[error("the certificate must chain to a registered CA certificate, and none is registered")]
    NoCa,
    #[error("the client certificate is not usable: {0}")]
    Unusable(webpki::Error),
    #[error("the certificate does not chain to a registered CA certificate")]
    UnknownIssuer,
    #[error("a certificate in the chain has expired")]
    ChainExpired,
    #[error("a certificate in the chain is not valid yet")]
    ChainNotValidYet,
    #[error("the certificate chain does not verify: {0}")]
    Chain(webpki::Error),
    #[error("{what} not valid before {at}")]
    NotValidBefore { what: &'static str, at: String },
    #[error("{what} expired at {at}")]
    ExpiredAt { what: &'static str, at: String },
}

/// Whether the certificate field named by `scheme` equals `expected`.
fn check_name(
    cert: &X509Certificate<'_>,
    scheme: ValidationScheme,
    expected: &str,
    client: &str,
) -> Result<(), CertRejected> {
    let (matches, field) = match scheme {
        ValidationScheme::SubjectMatchesAuthenticationName => {
            let dn = cert.subject().to_string();
            let matches = common_name(cert).as_deref() == Some(expected)
                || dn == expected
                || dn.replace(", ", ",") == expected;
            (matches, "subject")
        }
        ValidationScheme::DnsMatchesAuthenticationName => (
            sans(cert).any(|san| {
                matches!(san, GeneralName::DNSName(dns) if dns.eq_ignore_ascii_case(expected))
            }),
            "DNS name",
        ),
        ValidationScheme::UriMatchesAuthenticationName => (
            sans(cert).any(|san| matches!(san, GeneralName::URI(uri) if *uri == expected)),
            "URI",
        ),
        ValidationScheme::IpMatchesAuthenticationName => {
            let wanted = expected.parse::<IpAddr>().ok();
            (wanted.is_some() && sans(cert).any(|san| ip_of(san) == wanted), "IP address")
        }
        ValidationScheme::EmailMatchesAuthenticationName => (
            sans(cert).any(|san| matches!(san, GeneralName::RFC822Name(email) if *email == expected)),
            "email address",
        ),
        ValidationScheme::ThumbprintMatch => (false, "thumbprint"),
    };
    if matches {
        Ok(())
    } else {
        Err(CertRejected::Name { field, expected: expected.into(), client: client.into() })
    }
}

fn check_thumbprint(der: &[u8], allowed: &[String], client: &str) -> Result<(), CertRejected> {
    let sha256 = thumbprint_sha256(der);
    let sha1 = hex(ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, der).as_ref());
    let matches =
        allowed.iter().any(|t| t.eq_ignore_ascii_case(&sha256) || t.eq_ignore_ascii_case(&sha1));
    if matches { Ok(()) } else { Err(CertRejected::Thumbprint { client: client.into(), sha256 }) }
}

/// Verifies that the leaf chains to one of the registered CA certificates, through the
/// intermediates the client sent.
fn check_chain(
    resources: &Resources,
    chain: &[bytes::Bytes],
    now: i64,
) -> Result<(), CertRejected> {
    if resources.ca_certificates.is_empty() {
        return Err(CertRejected::NoCa);
    }
    let mut ca_ders = Vec::new();
    for (name, ca) in &resources.ca_certificates {
        let der = match x509_parser::pem::parse_x509_pem(ca.encoded_certificate.as_bytes()) {
            Ok((_, pem)) => pem.contents,
            Err(error) => {
                tracing::warn!(ca = %name, %error, "Unparsable CA certificate skipped.");
                continue;
            }
        };
        // Trust anchors carry no validity period in webpki; an expired registered CA must not
        // vouch for anyone.
        match X509Certificate::from_der(&der) {
            Ok((_, cert)) if check_validity(&cert, now, "").is_ok() => {
                ca_ders.push(CertificateDer::from(der));
            }
            Ok(_) => tracing::debug!(ca = %name, "CA certificate outside its validity skipped."),
            Err(error) => tracing::warn!(ca = %name, %error, "Unparsable CA certificate skipped."),
        }
    }
    let anchors: Vec<_> =
        ca_ders.iter().filter_map(|der| webpki::anchor_from_trusted_cert(der).ok()).collect();
    let leaf = CertificateDer::from(chain[0].as_ref());
    let intermediates: Vec<CertificateDer<'_>> =
        chain[1..].iter().map(|der| CertificateDer::from(der.as_ref())).collect();
    let end_entity = webpki::EndEntityCert::try_from(&leaf).map_err(CertRejected::Unusable)?;
    let time = UnixTime::since_unix_epoch(Duration::from_secs(u64::try_from(now).unwrap_or(0)));
    end_entity
        .verify_for_usage(
            SIGNATURE_ALGORITHMS,
            &anchors,
            &intermediates,
            time,
            webpki::KeyUsage::client_auth(),
            None,
            None,
        )
        .map(|_| ())
        .map_err(|error| match error {
            webpki::Error::UnknownIssuer => CertRejected::UnknownIssuer,
            webpki::Error::CertExpired { .. } => CertRejected::ChainExpired,
            webpki::Error::CertNotValidYet { .. } => CertRejected::ChainNotValidYet,
            other => CertRejected::Chain(other),
        })
}

/// Whether `now` is within the certificate's validity period.
fn check_validity(
    cert: &X509Certificate<'_>,
    now: i64,
    what: &'static str,
) -> Result<(), CertRejected> {
    let validity = cert.validity();
    let not_before = validity.not_before.timestamp();
    let not_after = validity.not_after.timestamp();
    if now < not_before {
        Err(CertRejected::NotValidBefore { what, at: rfc3339(not_before) })
    } else if now > not_after {
        Err(CertRejected::ExpiredAt { what, at: rfc3339(not_after) })
    } else {
        Ok(())
    }
}

fn common_name(cert: &X509Certificate<'_>) -> Option<String> {
    cert.subject().iter_common_name().next().and_then(|cn| cn.as_str().ok()).map(str::to_owned)
}

fn sans<'a>(cert: &'a X509Certificate<'a>) -> impl Iterator<Item = &'a GeneralName<'a>> {
    let names = match cert.subject_alternative_name() {
        Ok(Some(extension)) => extension.value.general_names.as_slice(),
        _ => &[],
    };
    names.iter()
}

fn ip_of(name: &GeneralName<'_>) -> Option<IpAddr> {
    match name {
        GeneralName::IPAddress(bytes) => match bytes.len() {
            4 => <[u8; 4]>::try_from(*bytes).ok().map(IpAddr::from),
            16 => <[u8; 16]>::try_from(*bytes).ok().map(IpAddr::from),
            _ => None,
        },
        _ => None,
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}
