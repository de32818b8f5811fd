//! HTTPS on the data-plane (`[http]`) and management (`[management]`) listeners, against the
//! gridmq binary: requests over TLS with a certificate from a test CA, TLS-only listeners,
//! `min_tls_version`, a stalled handshake that does not hold up others, and config errors that
//! name the field.

use std::time::{Duration, Instant};

use gateway_tests::Gridmq;
use gateway_tests::certs::{ALL_VERSIONS, Identity, Pki, client_config};
use gateway_tests::http_raw;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The namespace access key (base64, as Event Grid shows keys).
const KEY: &str = "aHR0cHMtZGF0YS1wbGFuZS1rZXktMDEyMzQ1Njc4OQ==";
const TOKEN: &str = "https-admin-token-0123456789";

fn tls_fields(server: &Identity, extra: &str) -> String {
    format!(
        "certificate = \"{}\"\nprivate_key = \"{}\"\n{extra}",
        server.cert_path.display(),
        server.key_path.display()
    )
}

/// `[http]` and `[management]` both over HTTPS with `server`'s certificate.
fn config(server: &Identity, extra: &str) -> String {
    format!(
        "[http]\nlisten = \"127.0.0.1:0\"\naccess_keys = [\"{KEY}\"]\n{}\n\
         [management]\nlisten = \"127.0.0.1:0\"\nadmin_token = \"{TOKEN}\"\n{}\n\
         [topics.orders.eventSubscriptions.queue]\ndeliveryMode = \"Queue\"\n",
        tls_fields(server, extra),
        tls_fields(server, extra)
    )
}

#[tokio::test]
async fn both_http_apis_serve_https_with_the_configured_certificate() {
    let pki = Pki::new("https-ca");
    let gridmq = Gridmq::start_with_config(&config(&pki.server(), ""));
    assert!(gridmq.api_tls && gridmq.http_tls, "both listeners are announced as HTTPS");
    let api = gridmq.api.expect("data-plane API");
    let mgmt = gridmq.http.expect("management API");
    let tls = client_config(&pki.ca_cert, None, ALL_VERSIONS);

    let health = http_raw::request_tls(api, tls.clone(), "GET", "/healthz", &[], b"")
        .await
        .expect("HTTPS exchange");
    assert_eq!((health.status, health.json().unwrap()), (200, json!({"status": "ok"})));

    let event = json!({"specversion": "1.0", "id": "1", "source": "/s", "type": "t"});
    let published = http_raw::request_tls(
        api,
        tls.clone(),
        "POST",
        "/topics/orders:publish?api-version=2024-06-01",
        &[("aeg-sas-key", KEY), ("content-type", "application/cloudevents+json")],
        event.to_string().as_bytes(),
    )
    .await
    .expect("HTTPS publish");
    assert_eq!(published.status, 200, "{:?}", String::from_utf8_lossy(&published.body));

    let bearer = format!("Bearer {TOKEN}");
    let listed = http_raw::request_tls(
        mgmt,
        tls.clone(),
        "GET",
        "/routing/subscriptions",
        &[("authorization", bearer.as_str())],
        b"",
    )
    .await
    .expect("HTTPS management exchange");
    assert_eq!(listed.status, 200, "{:?}", String::from_utf8_lossy(&listed.body));
    assert!(String::from_utf8_lossy(&listed.body).contains("orders"), "{listed:?}");

    // HTTPS only: a plain HTTP request gets no HTTP answer.
    for addr in [api, mgmt] {
        let plain = http_raw::request(addr, "GET", "/healthz", &[], b"").await;
        assert!(plain.is_err(), "plain HTTP answered on an HTTPS listener: {plain:?}");
    }

    // A client that does not trust the CA fails the handshake.
    let stranger = Pki::new("stranger-ca");
    let untrusted = client_config(&stranger.ca_cert, None, ALL_VERSIONS);
    let refused = http_raw::request_tls(api, untrusted, "GET", "/healthz", &[], b"").await;
    assert!(refused.is_err(), "an untrusted certificate was accepted: {refused:?}");
}

#[tokio::test]
async fn min_tls_version_1_3_refuses_a_tls_1_2_client() {
    let pki = Pki::new("https-ca");
    let gridmq = Gridmq::start_with_config(&config(&pki.server(), "min_tls_version = \"1.3\""));
    for addr in [gridmq.api.expect("data-plane API"), gridmq.http.expect("management API")] {
        let tls12 = client_config(&pki.ca_cert, None, &[&rustls::version::TLS12]);
        let refused = http_raw::request_tls(addr, tls12, "GET", "/healthz", &[], b"").await;
        assert!(refused.is_err(), "TLS 1.2 was accepted: {refused:?}");
        let tls13 = client_config(&pki.ca_cert, None, &[&rustls::version::TLS13]);
        let health = http_raw::request_tls(addr, tls13, "GET", "/healthz", &[], b"")
            .await
            .expect("TLS 1.3 exchange");
        assert_eq!(health.status, 200);
    }
}

#[tokio::test]
async fn a_stalled_handshake_does_not_hold_up_other_clients() {
    let pki = Pki::new("https-ca");
    let gridmq = Gridmq::start_with_config(&config(&pki.server(), ""));
    let api = gridmq.api.expect("data-plane API");
    let tls = client_config(&pki.ca_cert, None, ALL_VERSIONS);

    // Ten connections that never send a ClientHello, and one that sends half of one.
    let mut stalled = Vec::new();
    for _ in 0..10 {
        stalled.push(tokio::net::TcpStream::connect(api).await.expect("connect"));
    }
    let mut half = tokio::net::TcpStream::connect(api).await.expect("connect");
    half.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]).await.expect("half a hello");

    let started = Instant::now();
    let health = http_raw::request_tls(api, tls, "GET", "/healthz", &[], b"")
        .await
        .expect("HTTPS exchange past the stalled handshakes");
    assert_eq!(health.status, 200);
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());

    // The stalled connections are still open (within the handshake timeout), not refused.
    let mut byte = [0u8; 1];
    let pending = tokio::time::timeout(Duration::from_millis(200), half.read(&mut byte)).await;
    assert!(pending.is_err(), "the half handshake was answered or closed: {pending:?}");
}

/// Starts gridmq with `[http]` (or `[management]`) carrying `fields`, expecting it to refuse.
fn refused(section: &str, fields: &str) -> String {
    let extra = match section {
        "management" => format!("admin_token = \"{TOKEN}\"\n"),
        _ => String::new(),
    };
    let config = format!(
        "[[server.listeners]]\nkind = \"tcp\"\naddress = \"127.0.0.1:0\"\n\n\
         [{section}]\nlisten = \"127.0.0.1:0\"\n{extra}{fields}\n"
    );
    match Gridmq::try_with_listeners(&config) {
        Ok(listening) => panic!("gridmq started with {config}: {:?}", listening.listeners),
        Err(stderr) => stderr,
    }
}

#[test]
fn tls_config_errors_name_the_field() {
    let pki = Pki::new("https-ca");
    let server = pki.server();
    let other = pki.client("other");
    let missing = pki.path("missing.pem");
    for section in ["http", "management"] {
        let cert_only = format!("certificate = \"{}\"", server.cert_path.display());
        let stderr = refused(section, &cert_only);
        assert!(stderr.contains(&format!("{section}.private_key")), "{stderr}");

        let key_only = format!("private_key = \"{}\"", server.key_path.display());
        let stderr = refused(section, &key_only);
        assert!(stderr.contains(&format!("{section}.certificate")), "{stderr}");

        let mut broken = server.clone();
        broken.cert_path = missing.clone();
        let stderr = refused(section, &tls_fields(&broken, ""));
        assert!(stderr.contains(&format!("{section}.certificate")), "{stderr}");
        assert!(stderr.contains("cannot read") && stderr.contains("missing.pem"), "{stderr}");

        let mut mismatched = server.clone();
        mismatched.key_path = other.key_path.clone();
        let stderr = refused(section, &tls_fields(&mismatched, ""));
        assert!(stderr.contains(&format!("{section}.private_key")), "{stderr}");

        let stderr = refused(section, &tls_fields(&server, "min_tls_version = \"1.1\""));
        assert!(stderr.contains("min_tls_version"), "{stderr}");
    }
}
