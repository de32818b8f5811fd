//! JWT authentication (Event Grid's custom JWT, and `OAUTH2-JWT` with the same checks).
//!
//! MQTT 5 clients send the token as Authentication Data with method `CUSTOM-JWT` or
//! `OAUTH2-JWT`, at CONNECT and again in AUTH 0x19 to re-authenticate before it expires; 3.1.1
//! clients send it as the password.
//!
//! Checks, in order, each refusal saying which failed:
//! - the header's `alg` is one of the configured algorithms (RS256, ES256; `none` and HMAC are
//!   never accepted, so a token "signed" with the issuer's public key as an HMAC secret fails);
//! - the signature verifies with a configured key of that algorithm (the one whose `kid`
//!   matches, when the token names one and such a key exists; otherwise every key of the
//!   algorithm is tried);
//! - `iss` equals the configured issuer, `aud` (a string or an array) holds a configured
//!   audience, `exp` is in the future and `nbf` (when present) in the past, both with the
//!   configured leeway, and `sub` is a non-empty string.
//!
//! `sub` becomes the authentication name. Every other claim that is an integer (fitting i64),
//! a string or an array of strings, under a valid attribute key, becomes an attribute; the
//! registered claims (`iss`, `sub`, `aud`, `exp`, `nbf`, `iat`, `jti`) do not. The session ends
//! at `exp` unless the client re-authenticates.
//!
//! Signatures are verified by `jsonwebtoken` on a ring-backed [`jsonwebtoken::crypto`]
//! provider ([`provider`]); the claims are checked here, so a claim of the wrong type is a
//! refusal, never a skipped check.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use parking_lot::RwLock;
use serde::Deserialize;
use serde_json::Value;
use x509_parser::prelude::FromDer;

use super::{
    AuthConfigError, allow_vouched, attribute_value, deny, is_attribute_key, now_unix, rfc3339,
};
use crate::access::model::Resources;
use crate::hooks::AuthDecision;
use crate::mqtt::ReasonCode;

mod provider;

/// The registered claims, which never become attributes.
const REGISTERED_CLAIMS: [&str; 7] = ["iss", "sub", "aud", "exp", "nbf", "iat", "jti"];

/// How often an unknown `kid` may trigger a new fetch of the JWKS URL.
const JWKS_REFETCH_INTERVAL: Duration = Duration::from_secs(60);

/// The largest JWKS document we read.
const MAX_JWKS_BYTES: usize = 1 << 20;

/// `[auth.jwt]`: the token issuer and its keys.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// The `iss` every token must carry. Required.
    pub issuer: String,
    /// The accepted `aud` values; a token's `aud` must hold at least one. Required, non-empty
    /// (Event Grid: the namespace's MQTT hostname).
    pub audiences: Vec<String>,
    /// PEM files with the issuer's public keys: `PUBLIC KEY` (SPKI), `RSA PUBLIC KEY` (PKCS#1)
    /// or `CERTIFICATE` blocks, several per file allowed. Default: none.
    #[serde(default)]
    pub key_files: Vec<PathBuf>,
    /// A JWKS (JSON Web Key Set) file with the issuer's keys. Default: none.
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// A JWKS URL (`https://...`), fetched on first use or by
    /// `Authentication::fetch_remote_keys` at start-up, and again (at most once a minute) when a
    /// token names a key id we do not know. Default: none.
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// How long fetching `jwks_url` may take, in milliseconds. Default 5000.
    #[serde(default = "default_fetch_timeout_ms")]
    pub jwks_timeout_ms: u64,
    /// The accepted signature algorithms, of `RS256` and `ES256`. Default both.
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<JwtAlgorithm>,
    /// Clock skew allowed on `exp` and `nbf`, in seconds. Default 60.
    #[serde(default = "default_leeway_secs")]
    pub leeway_secs: u64,
}

/// A signature algorithm a token may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum JwtAlgorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256 (Event Grid's only algorithm).
    RS256,
    /// ECDSA on P-256 with SHA-256.
    ES256,
}

/// The configured issuer, ready to verify tokens.
pub(crate) struct JwtVerifier {
    config: JwtConfig,
    /// Keys from files (fixed) and from the JWKS URL (replaced on each fetch).
    file_keys: Vec<Key>,
    remote_keys: RwLock<Arc<Vec<Key>>>,
    last_fetch: parking_lot::Mutex<Option<Instant>>,
    http: Option<reqwest::Client>,
}

/// One verification key.
#[derive(Clone)]
struct Key {
    kid: Option<String>,
    algorithm: JwtAlgorithm,
    key: DecodingKey,
}

#[derive(Deserialize)]
struct Header {
    alg: Option<String>,
    kid: Option<String>,
}

fn default_fetch_timeout_ms() -> u64 {
    5000
}

fn default_algorithms() -> Vec<JwtAlgorithm> {
    vec![JwtAlgorithm::RS256, JwtAlgorithm::ES256]
}

fn default_leeway_secs() -> u64 {
    60
}

/// Whether `bytes` have the shape of a compact JWS (three base64url parts, a JSON header):
/// how a 3.1.1 password is recognised as a token.
pub(crate) fn looks_like_jwt(bytes: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(bytes) else { return false };
    let mut parts = text.split('.');
    let (Some(header), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    URL_SAFE_NO_PAD
        .decode(header)
        .ok()
        .is_some_and(|json| serde_json::from_slice::<Header>(&json).is_ok_and(|h| h.alg.is_some()))
}

// === impl JwtConfig ===

impl JwtConfig {
    pub(crate) fn validate(&self) -> Result<(), AuthConfigError> {
        if self.issuer.is_empty() {
            return Err(AuthConfigError::invalid("jwt.issuer", "must not be empty"));
        }
        if self.audiences.is_empty() || self.audiences.iter().any(String::is_empty) {
            return Err(AuthConfigError::invalid(
                "jwt.audiences",
                "needs at least one audience, none empty",
            ));
        }
        if self.algorithms.is_empty() {
            return Err(AuthConfigError::invalid("jwt.algorithms", "needs RS256, ES256 or both"));
        }
        if self.key_files.is_empty() && self.jwks_file.is_none() && self.jwks_url.is_none() {
            return Err(AuthConfigError::invalid(
                "jwt",
                "needs the issuer's keys: key_files, jwks_file or jwks_url",
            ));
        }
        if let Some(url) = &self.jwks_url {
            let parsed = reqwest::Url::parse(url)
                .map_err(|error| AuthConfigError::invalid("jwt.jwks_url", error.to_string()))?;
            if !matches!(parsed.scheme(), "https" | "http") {
                return Err(AuthConfigError::invalid("jwt.jwks_url", "must be an http(s) URL"));
            }
        }
        Ok(())
    }
}

impl JwtAlgorithm {
    fn of(algorithm: Algorithm) -> Option<JwtAlgorithm> {
        match algorithm {
            Algorithm::RS256 => Some(JwtAlgorithm::RS256),
            Algorithm::ES256 => Some(JwtAlgorithm::ES256),
            _ => None,
        }
    }

    fn algorithm(self) -> Algorithm {
        match self {
            JwtAlgorithm::RS256 => Algorithm::RS256,
            JwtAlgorithm::ES256 => Algorithm::ES256,
        }
    }

    fn name(self) -> &'static str {
        match self {
            JwtAlgorithm::RS256 => "RS256",
            JwtAlgorithm::ES256 => "ES256",
        }
    }
}

// === impl JwtVerifier ===

impl JwtVerifier {
    pub(crate) fn new(config: &JwtConfig) -> Result<JwtVerifier, AuthConfigError> {
        provider::install();
        let mut file_keys = Vec::new();
        for path in &config.key_files {
            let text = read(path, "jwt.key_files")?;
            let keys = keys_from_pem(&text).map_err(|problem| {
                AuthConfigError::invalid("jwt.key_files", format!("{}: {problem}", path.display()))
            })?;
            file_keys.extend(keys);
        }
        if let Some(path) = &config.jwks_file {
            let text = read(path, "jwt.jwks_file")?;
            let keys = keys_from_jwks(text.as_bytes()).map_err(|problem| {
                AuthConfigError::invalid("jwt.jwks_file", format!("{}: {problem}", path.display()))
            })?;
            file_keys.extend(keys);
        }
        let http = match &config.jwks_url {
            Some(_) => Some(
                super::webhook::http_client(Duration::from_millis(config.jwks_timeout_ms))
                    .map_err(|problem| {
                        AuthConfigError::invalid("jwt.jwks_url", problem.to_string())
                    })?,
            ),
            None => None,
        };
        Ok(JwtVerifier {
            config: config.clone(),
            file_keys,
            remote_keys: RwLock::new(Arc::new(Vec::new())),
            last_fetch: parking_lot::Mutex::new(None),
            http,
        })
    }

    /// Fetches the JWKS URL (if configured) and replaces the remote keys.
    pub(crate) async fn fetch_remote_keys(&self) -> Result<(), AuthConfigError> {
        let (Some(url), Some(http)) = (&self.config.jwks_url, &self.http) else { return Ok(()) };
        *self.last_fetch.lock() = Some(Instant::now());
        let fail =
            |problem: String| AuthConfigError::invalid("jwt.jwks_url", format!("{url}: {problem}"));
        let response = http.get(url).send().await.map_err(|e| fail(e.to_string()))?;
        if !response.status().is_success() {
            return Err(fail(format!("HTTP {}", response.status())));
        }
        let body = super::webhook::read_body(response, MAX_JWKS_BYTES)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let keys = keys_from_jwks(&body).map_err(|e| fail(e.to_string()))?;
        tracing::debug!(%url, keys = keys.len(), "Fetched the JWT issuer's keys.");
        *self.remote_keys.write() = Arc::new(keys);
        Ok(())
    }

    /// Verifies `token` and decides.
    pub(crate) async fn authenticate(
        &self,
        resources: &Resources,
        client_id: &str,
        token: &Bytes,
    ) -> AuthDecision {
        match self.verify(token).await {
            Ok((subject, attributes, exp)) => {
                let now = now_unix();
                let expires_in = Duration::from_secs(u64::try_from(exp - now).unwrap_or(0));
                allow_vouched(resources, client_id, &subject, attributes, Some(expires_in))
            }
            Err(problem) => deny(ReasonCode::NotAuthorized, problem.to_string()),
        }
    }

    /// The subject, the attributes and `exp`, or why the token is refused.
    async fn verify(&self, token: &[u8]) -> Result<Verified, TokenRejected> {
        let token = std::str::from_utf8(token).map_err(|_| TokenRejected::NotUtf8)?;
        let header_part = token.split('.').next().unwrap_or_default();
        let header: Header = URL_SAFE_NO_PAD
            .decode(header_part)
            .ok()
            .and_then(|json| serde_json::from_slice(&json).ok())
            .ok_or(TokenRejected::Header)?;
        let alg = header.alg.unwrap_or_default();
        let allowed: Vec<&str> = self.config.algorithms.iter().map(|a| a.name()).collect();
        let algorithm = alg
            .parse::<Algorithm>()
            .ok()
            .and_then(JwtAlgorithm::of)
            .filter(|a| self.config.algorithms.contains(a))
            .ok_or_else(|| TokenRejected::Algorithm {
                alg: alg.clone(),
                allowed: allowed.join(", "),
            })?;

        let mut claims = self.check_signature(token, algorithm, header.kid.as_deref());
        if claims.is_err() && self.should_refetch(header.kid.as_deref()) {
            if let Err(error) = self.fetch_remote_keys().await {
                tracing::warn!(%error, "Cannot fetch the JWT issuer's keys.");
            }
            claims = self.check_signature(token, algorithm, header.kid.as_deref());
        }
        self.check_claims(claims?)
    }

    fn check_signature(
        &self,
        token: &str,
        algorithm: JwtAlgorithm,
        kid: Option<&str>,
    ) -> Result<serde_json::Map<String, Value>, TokenRejected> {
        let remote = self.remote_keys.read().clone();
        let candidates: Vec<&Key> = self
            .file_keys
            .iter()
            .chain(remote.iter())
            .filter(|k| k.algorithm == algorithm)
            .collect();
        let by_kid: Vec<&Key> = match kid {
            Some(kid) => {
                candidates.iter().copied().filter(|k| k.kid.as_deref() == Some(kid)).collect()
            }
            None => Vec::new(),
        };
        let keys = if by_kid.is_empty() { candidates } else { by_kid };
        if keys.is_empty() {
            return Err(TokenRejected::NoKey(algorithm.name()));
        }
        let mut validation = Validation::new(algorithm.algorithm());
        // Claims are checked by `check_claims`, with reasons; here only the signature.
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        let mut last_error = None;
        for key in keys {
            match jsonwebtoken::decode::<serde_json::Map<String, Value>>(
                token,
                &key.key,
                &validation,
            ) {
                Ok(data) => return Ok(data.claims),
                Err(error) => last_error = Some(error),
            }
        }
        Err(match last_error {
            Some(error) => TokenRejected::Signature(error),
            None => TokenRejected::NoKey(algorithm.name()),
        })
    }

    /// Whether a failed signature check should fetch the JWKS URL again: a URL is configured,
    /// the key id is unknown (or nothing was fetched yet), and the last fetch is a minute old.
    fn should_refetch(&self, kid: Option<&str>) -> bool {
        if self.http.is_none() {
            return false;
        }
        let remote = self.remote_keys.read().clone();
        let unknown = remote.is_empty()
            || kid.is_some_and(|kid| !remote.iter().any(|k| k.kid.as_deref() == Some(kid)));
        let due = self.last_fetch.lock().is_none_or(|at| at.elapsed() >= JWKS_REFETCH_INTERVAL);
        unknown && due
    }

    fn check_claims(
        &self,
        claims: serde_json::Map<String, Value>,
    ) -> Result<Verified, TokenRejected> {
        let config = &self.config;
        match claims.get("iss") {
            Some(Value::String(iss)) if *iss == config.issuer => {}
            Some(Value::String(iss)) => {
                return Err(TokenRejected::Issuer {
                    iss: iss.clone(),
                    configured: config.issuer.clone(),
                });
            }
            _ => return Err(TokenRejected::Missing("iss (issuer)")),
        }
        let audiences: Vec<&str> = match claims.get("aud") {
            Some(Value::String(aud)) => vec![aud.as_str()],
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
            _ => return Err(TokenRejected::Missing("aud (audience)")),
        };
        if !audiences.iter().any(|aud| config.audiences.iter().any(|c| c == aud)) {
            return Err(TokenRejected::Audience {
                audiences: format!("{audiences:?}"),
                configured: format!("{:?}", config.audiences),
            });
        }
        let now = now_unix();
        let leeway = i64::try_from(config.leeway_secs).unwrap_or(i64::MAX);
        let exp = match claims.get("exp") {
            Some(value) => numeric_date(value).ok_or(TokenRejected::NotANumber("exp"))?,
            None => return Err(TokenRejected::Missing("exp (expiry)")),
        };
        if now > exp.saturating_add(leeway) {
            return Err(TokenRejected::Expired(rfc3339(exp)));
        }
        if let Some(value) = claims.get("nbf") {
            let nbf = numeric_date(value).ok_or(TokenRejected::NotANumber("nbf"))?;
            if now.saturating_add(leeway) < nbf {
                return Err(TokenRejected::NotYetValid(rfc3339(nbf)));
            }
        }
        let subject = match claims.get("sub") {
            Some(Value::String(sub)) if !sub.is_empty() => sub.clone(),
            _ => return Err(TokenRejected::Missing("sub (subject)")),
        };
        let attributes = claims
            .iter()
            .filter(|(key, _)| !REGISTERED_CLAIMS.contains(&key.as_str()) && is_attribute_key(key))
            .filter_map(|(key, value)| attribute_value(value).map(|v| (key.clone(), v)))
            .collect();
        Ok((subject, attributes, exp))
    }
}

/// What a verified token vouches for: the subject, the attributes and `exp`.
type Verified = (String, BTreeMap<String, crate::hooks::AttributeValue>, i64);

/// Why a token does not authenticate its client.
#[derive(Debug, thiserror::Error)]
enum TokenRejected {
    #[error("the token is not UTF-8")]
    NotUtf8,
    #[error("the token is not a JWT (bad header)")]
    Header,
    #[error("token algorithm {alg:?} is not allowed (allowed: {allowed})")]
    Algorithm { alg: String, allowed: String },
    #[error("no {0} key of the issuer to verify the token with")]
    NoKey(&'static str),
    #[error("token signature does not verify with the issuer's keys ({0})")]
    Signature(jsonwebtoken::errors::Error),
    #[error("token issuer {iss:?} is not the configured issuer {configured:?}")]
    Issuer { iss: String, configured: String },
    #[error("token has no {0} claim")]
    Missing(&'static str),
    #[error("token audience {audiences} holds none of the configured audiences {configured}")]
    Audience { audiences: String, configured: String },
    #[error("token {0} claim is not a number")]
    NotANumber(&'static str),
    #[error("token expired at {0}")]
    Expired(String),
    #[error("token not valid before {0}")]
    NotYetValid(String),
}

/// A NumericDate: seconds since the epoch, an integer or a float (truncated).
fn numeric_date(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => {
            n.as_i64().or_else(|| n.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
        }
        _ => None,
    }
}

fn read(path: &std::path::Path, field: &'static str) -> Result<String, AuthConfigError> {
    std::fs::read_to_string(path).map_err(|source| AuthConfigError::Read {
        field,
        path: path.display().to_string(),
        source,
    })
}

/// A key file or JWKS document that gives no usable key.
#[derive(Debug, thiserror::Error)]
enum KeyError {
    #[error("bad PEM: {0}")]
    Pem(String),
    #[error("bad certificate: {0}")]
    Certificate(String),
    #[error("unexpected PEM block {0:?}; expected PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE")]
    PemBlock(String),
    #[error("no public key in the file")]
    NoKey,
    #[error("bad public key: {0}")]
    PublicKey(String),
    #[error("only EC keys on P-256 are supported (ES256)")]
    Curve,
    #[error("unsupported public key algorithm {0}; expected RSA or EC P-256")]
    Algorithm(String),
    #[error("bad JWKS JSON: {0}")]
    JwksJson(serde_json::Error),
    #[error("a JWKS needs a \"keys\" array")]
    NoKeysArray,
    #[error("bad RSA key {0:?}: {1}")]
    Rsa(Option<String>, jsonwebtoken::errors::Error),
    #[error("RSA key {0:?} needs n and e")]
    RsaParts(Option<String>),
    #[error("bad EC key {0:?}: {1}")]
    Ec(Option<String>, jsonwebtoken::errors::Error),
    #[error("EC key {0:?} needs x and y")]
    EcParts(Option<String>),
}

/// The RSA and P-256 keys in a PEM text.
fn keys_from_pem(text: &str) -> Result<Vec<Key>, KeyError> {
    let mut keys = Vec::new();
    for pem in x509_parser::pem::Pem::iter_from_buffer(text.as_bytes()) {
        let pem = pem.map_err(|e| KeyError::Pem(e.to_string()))?;
        let spki_der;
        let spki = match pem.label.as_str() {
            "RSA PUBLIC KEY" => {
                keys.push(Key {
                    kid: None,
                    algorithm: JwtAlgorithm::RS256,
                    key: DecodingKey::from_rsa_der(&pem.contents),
                });
                continue;
            }
            "PUBLIC KEY" => {
                spki_der = pem.contents;
                &spki_der[..]
            }
            "CERTIFICATE" => {
                let (_, cert) = x509_parser::certificate::X509Certificate::from_der(&pem.contents)
                    .map_err(|e| KeyError::Certificate(e.to_string()))?;
                keys.push(key_from_spki(cert.public_key().raw)?);
                continue;
            }
            other => {
                return Err(KeyError::PemBlock(other.to_string()));
            }
        };
        keys.push(key_from_spki(spki)?);
    }
    if keys.is_empty() {
        return Err(KeyError::NoKey);
    }
    Ok(keys)
}

/// A key from a DER SubjectPublicKeyInfo: RSA, or EC on P-256.
fn key_from_spki(der: &[u8]) -> Result<Key, KeyError> {
    use x509_parser::oid_registry::{
        OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_PKCS1_RSAENCRYPTION,
    };
    let (_, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(der)
        .map_err(|e| KeyError::PublicKey(e.to_string()))?;
    let bits = spki.subject_public_key.data.as_ref();
    let oid = &spki.algorithm.algorithm;
    if *oid == OID_PKCS1_RSAENCRYPTION {
        return Ok(Key {
            kid: None,
            algorithm: JwtAlgorithm::RS256,
            key: DecodingKey::from_rsa_der(bits),
        });
    }
    if *oid == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = spki.algorithm.parameters.as_ref().and_then(|p| p.as_oid().ok());
        if curve.as_ref() == Some(&OID_EC_P256) {
            return Ok(Key {
                kid: None,
                algorithm: JwtAlgorithm::ES256,
                key: DecodingKey::from_ec_der(bits),
            });
        }
        return Err(KeyError::Curve);
    }
    Err(KeyError::Algorithm(oid.to_string()))
}

/// The RSA and P-256 signature keys of a JWKS document; others (encryption keys, other
/// curves) are skipped.
fn keys_from_jwks(json: &[u8]) -> Result<Vec<Key>, KeyError> {
    let document: Value = serde_json::from_slice(json).map_err(KeyError::JwksJson)?;
    let entries = document.get("keys").and_then(Value::as_array).ok_or(KeyError::NoKeysArray)?;
    let mut keys = Vec::new();
    for entry in entries {
        let field = |name: &str| entry.get(name).and_then(Value::as_str);
        if field("use").is_some_and(|u| u != "sig") {
            continue;
        }
        let kid = field("kid").map(str::to_owned);
        let key = match (field("kty"), field("crv")) {
            (Some("RSA"), _) => match (field("n"), field("e")) {
                (Some(n), Some(e)) => DecodingKey::from_rsa_components(n, e)
                    .map(|key| (JwtAlgorithm::RS256, key))
                    .map_err(|e| KeyError::Rsa(kid.clone(), e))?,
                _ => return Err(KeyError::RsaParts(kid)),
            },
            (Some("EC"), Some("P-256")) => match (field("x"), field("y")) {
                (Some(x), Some(y)) => DecodingKey::from_ec_components(x, y)
                    .map(|key| (JwtAlgorithm::ES256, key))
                    .map_err(|e| KeyError::Ec(kid.clone(), e))?,
                _ => return Err(KeyError::EcParts(kid)),
            },
            _ => continue,
        };
        keys.push(Key { kid, algorithm: key.0, key: key.1 });
    }
    Ok(keys)
}
