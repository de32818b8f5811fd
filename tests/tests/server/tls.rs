//! MQTT over TLS against the real binary, with certificates made in the test (rcgen): server-only
//! TLS (rustls client and OpenSSL's mosquitto clients), required and optional client
//! certificates, self-signed client certificates passed on to the authenticator, chain
//! verification against `client_ca`, the minimum TLS version, the handshake timeout, and
//! start-up errors that name the listener field.

use std::process::Stdio;

use gateway_tests::Gridmq;
use gateway_tests::certs::{
    ALL_VERSIONS, HANDSHAKE_SLACK, Identity, Pki, client_config, mqtt_connect, tls_connect,
};
use gateway_tests::clients::{TIMEOUT, topic5, v5};
use gateway_tests::raw::{self, connack_reason, read_packet_from};
use tokio::io::AsyncWriteExt;

const TLS12: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS12];
const TLS13: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];

/// A config with a plain TCP listener and one TLS listener using `server`, plus `extra` lines
/// in the TLS listener's table.
fn config(server: &Identity, extra: &str) -> String {
    format!(
        "[[server.listeners]]\nkind = \"tcp\"\naddress = \"127.0.0.1:0\"\n\n\
         [[server.listeners]]\nkind = \"tls\"\naddress = \"127.0.0.1:0\"\n\
         certificate = \"{}\"\nprivate_key = \"{}\"\n{extra}\n",
        server.cert_path.display(),
        server.key_path.display()
    )
}

/// Connects over TLS as `identity` (if any) with `versions` and checks the broker answers
/// CONNECT with a successful CONNACK.
async fn assert_accepted(
    broker: &Gridmq,
    pki: &Pki,
    identity: Option<&Identity>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) {
    let config = client_config(&pki.ca_cert, identity, versions);
    let mut tls = tls_connect(broker.listener("mqtts"), config).await.expect("TLS handshake");
    let connack = mqtt_connect(&mut tls, &raw::connect_v5("tls-client")).await.expect("CONNACK");
    assert_eq!(connack_reason(&connack).expect("CONNACK"), 0x00, "{connack:02X?}");
}

/// Connects over TLS and expects no MQTT session: either the handshake fails or (TLS 1.3,
/// where the client finishes before the server has judged its certificate) the connection
/// ends without a CONNACK.
async fn assert_refused(
    broker: &Gridmq,
    pki: &Pki,
    identity: Option<&Identity>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) {
    let config = client_config(&pki.ca_cert, identity, versions);
    let Ok(mut tls) = tls_connect(broker.listener("mqtts"), config).await else { return };
    let result = mqtt_connect(&mut tls, &raw::connect_v5("refused")).await;
    assert!(result.is_err(), "expected the TLS connection to be refused, got {result:?}");
}

async fn mosquitto_pub(args: &[&str]) -> std::process::Output {
    tokio::time::timeout(
        TIMEOUT,
        tokio::process::Command::new("mosquitto_pub").args(args).kill_on_drop(true).output(),
    )
    .await
    .expect("mosquitto_pub finished in time")
    .expect("run mosquitto_pub (tests/run installs mosquitto-clients)")
}

#[tokio::test]
async fn server_only_tls_carries_mqtt_for_rustls_and_openssl_clients() {
    let pki = Pki::new("ca");
    let server = pki.server();
    let broker = Gridmq::with_listeners(&config(&server, ""));
    let mut sub = v5::Client::connect(broker.listener("mqtt"), "tcp-sub").await;
    sub.subscribe("tls/#", v5::QoS::AtLeastOnce).await;

    // rustls, TLS 1.3 and TLS 1.2.
    assert_accepted(&broker, &pki, None, TLS13).await;
    assert_accepted(&broker, &pki, None, TLS12).await;

    // rustls publishing raw MQTT bytes.
    let config = client_config(&pki.ca_cert, None, ALL_VERSIONS);
    let mut tls = tls_connect(broker.listener("mqtts"), config).await.expect("TLS handshake");
    mqtt_connect(&mut tls, &raw::connect_v3("raw-tls")).await.expect("CONNACK");
    tls.write_all(&raw::publish_v3("tls/raw", 1, 7, b"over rustls")).await.expect("PUBLISH");
    let mut buf = Vec::new();
    let puback = read_packet_from(&mut tls, &mut buf).await.expect("read").expect("PUBACK");
    assert_eq!(puback, raw::ack(0x40, 7));
    let message = sub.recv().await;
    assert_eq!((topic5(&message).as_str(), &message.payload[..]), ("tls/raw", &b"over rustls"[..]));

    // OpenSSL (mosquitto_pub), MQTT 5.0, verifying the server against the CA.
    let port = broker.listener("mqtts").port().to_string();
    let ca = pki.ca_path.display().to_string();
    let output = mosquitto_pub(&[
        "-h",
        "localhost",
        "-p",
        &port,
        "--cafile",
        &ca,
        "-V",
        "mqttv5",
        "-q",
        "1",
        "-t",
        "tls/mosquitto",
        "-m",
        "over openssl",
    ])
    .await;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let message = sub.recv().await;
    assert_eq!(topic5(&message), "tls/mosquitto");
    assert_eq!(&message.payload[..], b"over openssl");

    // A client that does not trust the server's CA gives up.
    let other = Pki::new("other-ca");
    let config = client_config(&other.ca_cert, None, ALL_VERSIONS);
    assert!(tls_connect(broker.listener("mqtts"), config).await.is_err());
}

#[tokio::test]
async fn required_client_certificate_admits_clients_with_one_only() {
    let pki = Pki::new("ca");
    let server = pki.server();
    let client = pki.client("device-1");
    let ca = pki.ca_path.display().to_string();
    let broker = Gridmq::with_listeners(&config(
        &server,
        &format!("client_auth = \"required\"\nclient_ca = \"{ca}\""),
    ));

    assert_accepted(&broker, &pki, Some(&client), TLS13).await;
    assert_accepted(&broker, &pki, Some(&client), TLS12).await;
    assert_refused(&broker, &pki, None, TLS13).await;
    assert_refused(&broker, &pki, None, TLS12).await;

    // OpenSSL with --cert/--key gets in; without them it does not.
    let port = broker.listener("mqtts").port().to_string();
    let cert = client.cert_path.display().to_string();
    let key = client.key_path.display().to_string();
    let base = ["-h", "localhost", "-p", &port, "--cafile", &ca, "-t", "tls/x", "-m", "m"];
    let with_cert = [&base[..], &["--cert", &cert, "--key", &key]].concat();
    let output = mosquitto_pub(&with_cert).await;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let output = mosquitto_pub(&base).await;
    assert!(!output.status.success(), "mosquitto_pub without a certificate got in");
}

#[tokio::test]
async fn self_signed_client_certificate_passes_tls_for_the_authenticator_to_judge() {
    let pki = Pki::new("ca");
    let server = pki.server();
    let self_signed = pki.self_signed_client("thumbprint-device");

    // No client_ca at all: Event Grid's thumbprint mode.
    let broker = Gridmq::with_listeners(&config(&server, "client_auth = \"required\""));
    assert_accepted(&broker, &pki, Some(&self_signed), TLS13).await;
    assert_accepted(&broker, &pki, Some(&self_signed), TLS12).await;
    assert_refused(&broker, &pki, None, TLS13).await;
    drop(broker);

    // client_ca as issuer hints only (verify_client_chain defaults to false).
    let ca = pki.ca_path.display().to_string();
    let broker = Gridmq::with_listeners(&config(
        &server,
        &format!("client_auth = \"required\"\nclient_ca = \"{ca}\""),
    ));
    assert_accepted(&broker, &pki, Some(&self_signed), ALL_VERSIONS).await;
    let other = Pki::new("other-ca").client("foreign-device");
    assert_accepted(&broker, &pki, Some(&other), ALL_VERSIONS).await;
}

#[tokio::test]
async fn wrong_ca_is_rejected_when_the_tls_layer_verifies_the_chain() {
    let pki = Pki::new("ca");
    let server = pki.server();
    let ca = pki.ca_path.display().to_string();
    let broker = Gridmq::with_listeners(&config(
        &server,
        &format!("client_auth = \"required\"\nclient_ca = \"{ca}\"\nverify_client_chain = true"),
    ));
    assert_accepted(&broker, &pki, Some(&pki.client("good")), ALL_VERSIONS).await;

    let foreign = Pki::new("other-ca").client("foreign");
    assert_refused(&broker, &pki, Some(&foreign), TLS13).await;
    assert_refused(&broker, &pki, Some(&foreign), TLS12).await;
    assert_refused(&broker, &pki, Some(&pki.self_signed_client("self")), ALL_VERSIONS).await;
    assert_refused(&broker, &pki, None, ALL_VERSIONS).await;
}

#[tokio::test]
async fn optional_client_certificate_admits_clients_with_and_without_one() {
    let pki = Pki::new("ca");
    let broker = Gridmq::with_listeners(&config(&pki.server(), "client_auth = \"optional\""));
    assert_accepted(&broker, &pki, None, ALL_VERSIONS).await;
    assert_accepted(&broker, &pki, Some(&pki.self_signed_client("c")), ALL_VERSIONS).await;
}

#[tokio::test]
async fn min_tls_version_1_3_refuses_tls_1_2_clients() {
    let pki = Pki::new("ca");
    let server = pki.server();
    let broker = Gridmq::with_listeners(&config(&server, "min_tls_version = \"1.3\""));
    assert_accepted(&broker, &pki, None, TLS13).await;
    let config12 = client_config(&pki.ca_cert, None, TLS12);
    let refused = tls_connect(broker.listener("mqtts"), config12).await;
    assert!(refused.is_err(), "a TLS 1.2 client completed a handshake with min_tls_version 1.3");
    drop(broker);

    // At "1.2" (the default) the same clients get in. (mosquitto's `--tls-version tlsv1.2`
    // only sets a minimum, so it cannot stand in for a TLS 1.2-only client here.)
    let broker = Gridmq::with_listeners(&config(&server, "min_tls_version = \"1.2\""));
    assert_accepted(&broker, &pki, None, TLS12).await;
    assert_accepted(&broker, &pki, None, TLS13).await;
}

#[tokio::test]
async fn silent_client_is_dropped_after_the_handshake_timeout() {
    let pki = Pki::new("ca");
    let broker = Gridmq::with_listeners(&config(&pki.server(), "handshake_timeout_secs = 1"));
    let mut silent =
        tokio::net::TcpStream::connect(broker.listener("mqtts")).await.expect("connect");
    let mut buf = Vec::new();
    let started = std::time::Instant::now();
    let end = tokio::time::timeout(HANDSHAKE_SLACK, read_packet_from(&mut silent, &mut buf)).await;
    assert!(
        matches!(end, Ok(Ok(None)) | Ok(Err(_))),
        "the broker kept a silent TLS client: {end:?}"
    );
    assert!(started.elapsed() >= std::time::Duration::from_millis(900));
}

#[test]
fn bad_tls_settings_are_rejected_at_start_up_naming_the_field() {
    let pki = Pki::new("ca");
    let server = pki.server();
    let other = pki.client("other");
    let missing = pki.path("missing.pem");

    let mut broken = server.clone();
    broken.cert_path = missing.clone();
    let stderr = Gridmq::try_with_listeners(&config(&broken, "")).err().expect("refused");
    assert!(stderr.contains("server.listeners[1].certificate"), "{stderr}");
    assert!(stderr.contains("cannot read") && stderr.contains("missing.pem"), "{stderr}");

    let mut mismatched = server.clone();
    mismatched.key_path = other.key_path.clone();
    let stderr = Gridmq::try_with_listeners(&config(&mismatched, "")).err().expect("refused");
    assert!(stderr.contains("server.listeners[1].private_key"), "{stderr}");

    let mut not_a_key = server.clone();
    not_a_key.key_path = server.cert_path.clone();
    let stderr = Gridmq::try_with_listeners(&config(&not_a_key, "")).err().expect("refused");
    assert!(stderr.contains("server.listeners[1].private_key"), "{stderr}");

    let extra = format!("client_auth = \"required\"\nclient_ca = \"{}\"", missing.display());
    let stderr = Gridmq::try_with_listeners(&config(&server, &extra)).err().expect("refused");
    assert!(stderr.contains("server.listeners[1].client_ca"), "{stderr}");

    let stderr = Gridmq::try_with_listeners(&config(
        &server,
        "client_auth = \"required\"\nverify_client_chain = true",
    ))
    .err()
    .expect("refused");
    assert!(stderr.contains("server.listeners[1].client_ca"), "{stderr}");

    // The process exits with an error rather than serving a partial set of listeners.
    let status = std::process::Command::new(gateway_tests::binary())
        .args(["serve", "--in-memory", "--config"])
        .arg(write_config(&config(&broken, "")).path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run gridmq");
    assert!(!status.success());
}

fn write_config(text: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().expect("config file");
    std::io::Write::write_all(&mut file, text.as_bytes()).expect("write config");
    file
}
