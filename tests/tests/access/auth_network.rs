//! Authentication against the real binary, over the network: clients presenting bad credentials
//! are refused at CONNECT, and the right ones are accepted (so each refusal is the broker's
//! judgement, not a broken setup).
//!
//! - X.509 over a real TLS listener (`client_auth = "required"`, no chain verification in TLS:
//!   the authenticator judges): expired, not yet valid, issued by an unregistered CA, and a
//!   thumbprint mismatch.
//! - JWT as MQTT 5 Authentication Data with method `CUSTOM-JWT`: `alg: none`, HS256 keyed with
//!   the RSA public key (algorithm confusion), an expired token, a wrong audience.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use bytes::{Bytes, BytesMut};
use gateway::auth::x509::thumbprint_sha256;
use gateway::mqtt::{Codec, ConnAck, Connect, Packet, Properties, Protocol, ReasonCode};
use gateway_tests::Gridmq;
use gateway_tests::certs::{ALL_VERSIONS, Pki, mqtt_connect, tls_connect};
use gateway_tests::raw::variable_int;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    date_time_ymd,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The longest any single network step may take.
const STEP: Duration = Duration::from_secs(3);

// === X.509 ===

/// A client certificate and its key (PKCS#8 DER).
struct ClientCert {
    der: CertificateDer<'static>,
    key: Vec<u8>,
}

/// A CA that can issue client certificates, with its PEM for `[caCertificates.NAME]`.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

fn new_ca(name: &str) -> Ca {
    let mut params = CertificateParams::new(Vec::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let key = KeyPair::generate().expect("CA key");
    let cert = params.self_signed(&key).expect("self-sign CA");
    Ca { pem: cert.pem(), issuer: Issuer::new(params, key) }
}

/// Client certificate parameters for common name `cn`, valid from `from` to `until`
/// (`(year, month, day)`).
fn leaf(cn: &str, from: (i32, u8, u8), until: (i32, u8, u8)) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::new()).expect("leaf params");
    params.distinguished_name.push(DnType::CommonName, cn);
    params.extended_key_usages.push(ExtendedKeyUsagePurpose::ClientAuth);
    params.not_before = date_time_ymd(from.0, from.1, from.2);
    params.not_after = date_time_ymd(until.0, until.1, until.2);
    params
}

const VALID_FROM: (i32, u8, u8) = (2020, 1, 1);
const VALID_UNTIL: (i32, u8, u8) = (2090, 1, 1);

fn issued(ca: &Ca, params: CertificateParams) -> ClientCert {
    let key = KeyPair::generate().expect("leaf key");
    let cert = params.signed_by(&key, &ca.issuer).expect("issue certificate");
    ClientCert { der: cert.der().clone(), key: key.serialize_der() }
}

fn self_signed(params: CertificateParams) -> ClientCert {
    let key = KeyPair::generate().expect("leaf key");
    let cert = params.self_signed(&key).expect("self-sign certificate");
    ClientCert { der: cert.der().clone(), key: key.serialize_der() }
}

/// A rustls client trusting the broker's server CA and presenting `cert`.
fn tls_client(server_ca: &CertificateDer<'static>, cert: &ClientCert) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(server_ca.clone()).expect("trust root");
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(ALL_VERSIONS)
    .expect("protocol versions")
    .with_root_certificates(roots)
    .with_client_auth_cert(
        vec![cert.der.clone()],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.key.clone())),
    )
    .expect("client certificate");
    Arc::new(config)
}

fn connect_packet(protocol: Protocol, client_id: &str, username: Option<&str>) -> Connect {
    Connect {
        protocol,
        clean_start: true,
        keep_alive: 60,
        client_id: client_id.into(),
        will: None,
        username: username.map(str::to_owned),
        password: None,
        properties: Properties::default(),
    }
}

fn encode(connect: Connect) -> Vec<u8> {
    let protocol = connect.protocol;
    let mut out = BytesMut::new();
    Codec::encode(&Packet::Connect(Box::new(connect)), protocol, &mut out);
    out.to_vec()
}

/// The broker's answer to a CONNECT over TLS: the CONNACK's return/reason code byte.
async fn tls_connack(
    addr: SocketAddr,
    server_ca: &CertificateDer<'static>,
    cert: &ClientCert,
    connect: Connect,
) -> Result<u8> {
    let config = tls_client(server_ca, cert);
    let mut tls = tls_connect(addr, config).await.context("TLS handshake")?;
    let connack = tokio::time::timeout(STEP, mqtt_connect(&mut tls, &encode(connect)))
        .await
        .context("no CONNACK in time")??;
    // Fixed header, remaining length (1-4 bytes: a long reason string makes it 2), acknowledge
    // flags, return/reason code.
    let (_, length_bytes) = variable_int(&connack[1..])?
        .ok_or_else(|| anyhow!("bad remaining length in {connack:02X?}"))?;
    connack
        .get(1 + length_bytes + 1)
        .copied()
        .ok_or_else(|| anyhow!("short CONNACK {connack:02X?}"))
}

/// A broker with a plain TCP listener and a TLS listener that requires a client certificate
/// but leaves judging it to the authenticator; `resources` are appended to the config.
fn x509_broker(pki: &Pki, resources: &str) -> Gridmq {
    let server = pki.server();
    Gridmq::with_listeners(&format!(
        "[[server.listeners]]\nkind = \"tcp\"\naddress = \"127.0.0.1:0\"\n\n\
         [[server.listeners]]\nkind = \"tls\"\naddress = \"127.0.0.1:0\"\n\
         certificate = \"{}\"\nprivate_key = \"{}\"\nclient_auth = \"required\"\n\n{resources}\n",
        server.cert_path.display(),
        server.key_path.display()
    ))
}

fn toml_string(s: &str) -> String {
    serde_json::to_string(s).expect("string literal")
}

/// One X.509 row: what the client presents and what the broker must answer (MQTT 5).
struct X509Row {
    name: &'static str,
    cert: ClientCert,
    username: &'static str,
    accepted: bool,
}

/// The CONNACK codes that refuse bad credentials: 0x86/0x87 (MQTT 5), 4/5 (MQTT 3.1.1).
fn refusal_codes(protocol: Protocol) -> &'static [u8] {
    match protocol {
        Protocol::V5 => &[0x86, 0x87],
        _ => &[4, 5],
    }
}

#[tokio::test]
async fn x509_bad_client_certificates_are_refused_over_tls() {
    let pki = Pki::new("server-ca");
    let registered = new_ca("registered-ca");
    let unregistered = new_ca("unregistered-ca");
    let thumb_cert = self_signed(leaf("thumb1", VALID_FROM, VALID_UNTIL));
    let other_thumb = self_signed(leaf("thumb1", VALID_FROM, VALID_UNTIL));
    let resources = format!(
        "[caCertificates.fleet-ca]\nencodedCertificate = {}\n\n\
         [clients.dev1]\nauthenticationName = \"dev1\"\n\
         clientCertificateAuthentication = {{ validationScheme = \"SubjectMatchesAuthenticationName\" }}\n\n\
         [clients.thumb1]\nauthenticationName = \"thumb1\"\n\
         clientCertificateAuthentication = {{ validationScheme = \"ThumbprintMatch\", allowedThumbprints = [\"{}\"] }}\n",
        toml_string(&registered.pem),
        thumbprint_sha256(&thumb_cert.der),
    );
    let broker = x509_broker(&pki, &resources);
    let addr = broker.listener("mqtts");

    let rows = [
        X509Row {
            name: "subject match, registered CA, valid (control)",
            cert: issued(&registered, leaf("dev1", VALID_FROM, VALID_UNTIL)),
            username: "dev1",
            accepted: true,
        },
        X509Row {
            name: "thumbprint match, valid (control)",
            cert: thumb_cert,
            username: "thumb1",
            accepted: true,
        },
        X509Row {
            name: "expired certificate",
            cert: issued(&registered, leaf("dev1", (2019, 1, 1), (2020, 1, 1))),
            username: "dev1",
            accepted: false,
        },
        X509Row {
            name: "not yet valid certificate",
            cert: issued(&registered, leaf("dev1", (2080, 1, 1), (2090, 1, 1))),
            username: "dev1",
            accepted: false,
        },
        X509Row {
            name: "certificate from an unregistered CA",
            cert: issued(&unregistered, leaf("dev1", VALID_FROM, VALID_UNTIL)),
            username: "dev1",
            accepted: false,
        },
        X509Row {
            name: "thumbprint mismatch",
            cert: other_thumb,
            username: "thumb1",
            accepted: false,
        },
        X509Row {
            name: "expired self-signed certificate with a registered thumbprint's client",
            cert: self_signed(leaf("thumb1", (2019, 1, 1), (2020, 1, 1))),
            username: "thumb1",
            accepted: false,
        },
    ];

    let mut failures = Vec::new();
    for (index, row) in rows.iter().enumerate() {
        for protocol in [Protocol::V5, Protocol::V311] {
            let client_id = format!("x509-{index}-{protocol:?}");
            let connect = connect_packet(protocol, &client_id, Some(row.username));
            let outcome = match tls_connack(addr, &pki.ca_cert, &row.cert, connect).await {
                Err(e) => Err(format!("{} ({protocol:?}): no CONNACK: {e:#}", row.name)),
                Ok(0) if row.accepted => Ok(()),
                Ok(code) if row.accepted => Err(format!(
                    "{} ({protocol:?}): expected acceptance, got CONNACK {code:#04X}",
                    row.name
                )),
                Ok(code) if refusal_codes(protocol).contains(&code) => Ok(()),
                Ok(code) => Err(format!(
                    "{} ({protocol:?}): expected a refusal {:02X?}, got CONNACK {code:#04X}",
                    row.name,
                    refusal_codes(protocol)
                )),
            };
            if let Err(failure) = outcome {
                failures.push(failure);
            }
        }
    }
    assert!(failures.is_empty(), "X.509 rows failed:\n{}", failures.join("\n"));
}

// === JWT ===

const ISSUER: &str = "https://issuer.example";
const AUDIENCE: &str = "fleet.example.net";

fn fixture(name: &str) -> PathBuf {
    gateway_tests::repo_file("gateway/tests/inprocess/fixtures").join(name)
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

/// Base64url without padding (RFC 7515 §2).
fn b64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 0x3F) as usize]));
        }
    }
    out
}

/// The body of the first PEM block in `pem`, decoded.
fn pem_body(pem: &str) -> Vec<u8> {
    let mut bits = 0u32;
    let mut count = 0;
    let mut out = Vec::new();
    for line in pem.lines().filter(|l| !l.starts_with("-----")) {
        for c in line.trim().bytes() {
            let value = match c {
                b'A'..=b'Z' => c - b'A',
                b'a'..=b'z' => c - b'a' + 26,
                b'0'..=b'9' => c - b'0' + 52,
                b'+' => 62,
                b'/' => 63,
                _ => continue,
            };
            bits = bits << 6 | u32::from(value);
            count += 6;
            if count >= 8 {
                count -= 8;
                out.push((bits >> count) as u8);
                bits &= (1 << count) - 1;
            }
        }
    }
    out
}

fn unsigned(header: &Value, claims: &Value) -> String {
    format!("{}.{}", b64url(header.to_string().as_bytes()), b64url(claims.to_string().as_bytes()))
}

/// An RS256 token signed with the fixed test key (PKCS#8 PEM), through rustls' ring signer.
fn rs256(claims: &Value) -> String {
    let pem = std::fs::read_to_string(fixture("jwt-rsa-private.pem")).expect("read RSA key");
    assert!(pem.contains("BEGIN PRIVATE KEY"), "the fixture key is PKCS#8");
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pem_body(&pem)));
    let signing = rustls::crypto::ring::sign::any_supported_type(&key).expect("RSA signing key");
    let signer = signing
        .choose_scheme(&[rustls::SignatureScheme::RSA_PKCS1_SHA256])
        .expect("RSA PKCS#1 SHA-256 signer");
    let input = unsigned(&json!({"alg": "RS256", "typ": "JWT"}), claims);
    let signature = signer.sign(input.as_bytes()).expect("sign");
    format!("{input}.{}", b64url(&signature))
}

/// HMAC-SHA256 (RFC 2104) over rustls' ring hash.
fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    let sha256 = |data: &[u8]| -> Vec<u8> {
        let provider = rustls::crypto::ring::default_provider();
        let suite = provider
            .cipher_suites
            .iter()
            .find(|s| s.suite() == rustls::CipherSuite::TLS13_AES_128_GCM_SHA256)
            .and_then(|s| s.tls13())
            .expect("a TLS 1.3 SHA-256 suite");
        suite.common.hash_provider.hash(data).as_ref().to_vec()
    };
    let mut block = [0u8; 64];
    if key.len() > 64 {
        let digest = sha256(key);
        block[..digest.len()].copy_from_slice(&digest);
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let inner_pad: Vec<u8> = block.iter().map(|b| b ^ 0x36).collect();
    let outer_pad: Vec<u8> = block.iter().map(|b| b ^ 0x5C).collect();
    let inner = sha256(&[&inner_pad[..], message].concat());
    sha256(&[&outer_pad[..], &inner[..]].concat())
}

fn claims(sub: &str) -> Value {
    json!({"iss": ISSUER, "aud": AUDIENCE, "sub": sub, "nbf": now() - 10, "exp": now() + 3600})
}

/// A broker with JWT authentication over the fixed RSA public key, a plain TCP listener.
fn jwt_broker() -> Gridmq {
    Gridmq::start_with_config(&format!(
        "[auth.jwt]\nissuer = \"{ISSUER}\"\naudiences = [\"{AUDIENCE}\"]\nkey_files = [{}]\n\
         leeway_secs = 0\n",
        toml_string(&fixture("jwt-rsa-public.pem").display().to_string())
    ))
}

/// The CONNACK for an MQTT 5 CONNECT carrying `token` as `CUSTOM-JWT` Authentication Data.
async fn jwt_connack(addr: SocketAddr, client_id: &str, token: &str) -> Result<ConnAck> {
    let mut connect = connect_packet(Protocol::V5, client_id, None);
    connect.properties.authentication_method = Some("CUSTOM-JWT".into());
    connect.properties.authentication_data = Some(Bytes::copy_from_slice(token.as_bytes()));
    let mut stream = tokio::time::timeout(STEP, TcpStream::connect(addr))
        .await
        .context("connect timed out")??;
    stream.write_all(&encode(connect)).await?;
    let codec = Codec::new(usize::MAX);
    let mut buf = BytesMut::new();
    tokio::time::timeout(STEP, async {
        loop {
            if let Some(packet) =
                codec.decode(&mut buf, Some(Protocol::V5)).map_err(|e| anyhow!("decode: {e}"))?
            {
                return match packet {
                    Packet::ConnAck(connack) => Ok(connack),
                    other => bail!("expected CONNACK, got {other:?}"),
                };
            }
            if stream.read_buf(&mut buf).await? == 0 {
                bail!("connection closed before CONNACK");
            }
        }
    })
    .await
    .context("no CONNACK in time")?
}

#[tokio::test]
async fn jwt_bad_tokens_are_refused_over_the_network() {
    let broker = jwt_broker();
    let public_pem =
        std::fs::read_to_string(fixture("jwt-rsa-public.pem")).expect("read RSA public key");

    let alg_none = format!("{}.", unsigned(&json!({"alg": "none", "typ": "JWT"}), &claims("car1")));
    let confused = {
        let input = unsigned(&json!({"alg": "HS256", "typ": "JWT"}), &claims("car1"));
        let mac = hmac_sha256(public_pem.as_bytes(), input.as_bytes());
        format!("{input}.{}", b64url(&mac))
    };
    let expired = {
        let mut claims = claims("car1");
        claims["nbf"] = json!(now() - 7200);
        claims["exp"] = json!(now() - 3600);
        rs256(&claims)
    };
    let wrong_audience = {
        let mut claims = claims("car1");
        claims["aud"] = json!("someone-else.example.net");
        rs256(&claims)
    };

    let rows: [(&str, String, bool); 5] = [
        ("valid RS256 token (control)", rs256(&claims("car1")), true),
        ("alg: none", alg_none, false),
        ("HS256 keyed with the RSA public key", confused, false),
        ("expired token", expired, false),
        ("wrong audience", wrong_audience, false),
    ];

    let mut failures = Vec::new();
    for (index, (name, token, accepted)) in rows.iter().enumerate() {
        let outcome = match jwt_connack(broker.addr, &format!("jwt-{index}"), token).await {
            Err(e) => Some(format!("{name}: no CONNACK: {e:#}")),
            Ok(connack) if *accepted => (connack.code != ReasonCode::Success).then(|| {
                format!(
                    "{name}: expected acceptance, got {:?} ({:?})",
                    connack.code, connack.properties.reason_string
                )
            }),
            Ok(connack) => (!matches!(
                connack.code,
                ReasonCode::BadUserNameOrPassword | ReasonCode::NotAuthorized
            ))
            .then(|| {
                format!(
                    "{name}: expected CONNACK 0x86/0x87, got {:?} ({:?})",
                    connack.code, connack.properties.reason_string
                )
            }),
        };
        failures.extend(outcome);
    }
    assert!(failures.is_empty(), "JWT rows failed:\n{}", failures.join("\n"));
}

/// A token's `exp` ends the session: the broker sends DISCONNECT 0xA0 (maximum connect time)
/// when the token it authenticated with expires and no AUTH 0x19 renewed it.
#[tokio::test]
async fn the_session_ends_when_the_token_expires() {
    let broker = jwt_broker();
    let mut claims = claims("car1");
    claims["exp"] = json!(now() + 2);
    let mut connect = connect_packet(Protocol::V5, "short-token", None);
    connect.properties.authentication_method = Some("CUSTOM-JWT".into());
    connect.properties.authentication_data =
        Some(Bytes::copy_from_slice(rs256(&claims).as_bytes()));
    let (mut client, connack) =
        gateway_tests::packet_client::PacketClient::connect(broker.addr, connect)
            .await
            .expect("connect");
    assert_eq!(connack.code, ReasonCode::Success, "{:?}", connack.properties.reason_string);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(6);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match client.recv(left).await {
            Ok(Some(Packet::Disconnect(disconnect))) => {
                assert_eq!(disconnect.reason, ReasonCode::MaximumConnectTime);
                break;
            }
            Ok(Some(_)) => {}
            Ok(None) => panic!("still connected 4 s after the token expired"),
            Err(error) => panic!("closed without DISCONNECT: {error:#}"),
        }
    }
}
