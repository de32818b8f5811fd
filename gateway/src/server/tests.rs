use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::config::{ClientAuth, Config, ListenerConfig};
use crate::gateway::Gateway;
use crate::hooks::Hooks;
use crate::hooks::{AuthDecision, AuthRequest, Authenticator, BoxFuture, ClientIdentity};

/// Lets everyone in and keeps the certificate chains it was shown.
#[derive(Default)]
struct Recording(Mutex<Vec<Vec<Bytes>>>);

impl Authenticator for Recording {
    fn authenticate<'a>(&'a self, request: AuthRequest<'a>) -> BoxFuture<'a, AuthDecision> {
        self.0.lock().push(request.peer_certificates.to_vec());
        let identity = ClientIdentity {
            client_id: request.client_id.into(),
            authentication_name: request.client_id.into(),
            attributes: BTreeMap::new(),
        };
        Box::pin(std::future::ready(AuthDecision::Allow { identity, expires_in: None }))
    }
}

fn self_signed(name: &str) -> (rcgen::Certificate, rcgen::KeyPair) {
    let key = rcgen::KeyPair::generate().expect("key");
    let params = rcgen::CertificateParams::new(vec![name.to_owned()]).expect("params");
    let cert = params.self_signed(&key).expect("self-sign");
    (cert, key)
}

/// A self-signed client certificate gets through a `client_auth = "required"` listener, and the
/// authenticator is handed exactly that chain.
#[tokio::test]
async fn the_authenticator_sees_a_self_signed_client_certificate() {
    let dir = std::env::temp_dir().join(format!("gridmq-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (server_cert, server_key) = self_signed("localhost");
    let cert_path = dir.join("server.pem");
    let key_path = dir.join("server.key");
    std::fs::write(&cert_path, server_cert.pem()).expect("write cert");
    std::fs::write(&key_path, server_key.serialize_pem()).expect("write key");

    let mut config = Config::default();
    config.store.in_memory = true;
    let mut listener =
        ListenerConfig::new(ListenerKind::Tls, SocketAddr::from(([127, 0, 0, 1], 0)));
    listener.certificate = Some(cert_path);
    listener.private_key = Some(key_path);
    listener.client_auth = Some(ClientAuth::Required);
    config.server.listeners = vec![listener];
    let recording = Arc::new(Recording::default());
    let hooks = Hooks { authenticator: recording.clone(), ..Hooks::allow_all() };
    let gateway = Gateway::start(config, hooks).await.expect("start");
    let addr = gateway.listener_addr(ListenerKind::Tls).expect("tls listener");
    assert_eq!(gateway.mqtt_addr(), addr);

    let (client_cert, client_key) = self_signed("device");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(server_cert.der().clone()).expect("trust server");
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_client_auth_cert(
        vec![client_cert.der().clone()],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(client_key.serialize_der())),
    )
    .expect("client cert");
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = ServerName::try_from("localhost").expect("name");
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(client))
        .connect(name, tcp)
        .await
        .expect("TLS handshake");
    // MQTT 3.1.1 CONNECT, clean session, keep alive 60, client id "device".
    let connect = [
        0x10, 18, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60, 0, 6, b'd', b'e', b'v', b'i', b'c',
        b'e',
    ];
    tls.write_all(&connect).await.expect("CONNECT");
    let mut connack = [0u8; 4];
    tls.read_exact(&mut connack).await.expect("CONNACK");
    assert_eq!(connack, [0x20, 2, 0, 0]);

    let seen = recording.0.lock().clone();
    assert_eq!(seen, vec![vec![Bytes::copy_from_slice(client_cert.der())]]);
    assert!(gateway.shutdown().await);
    let _ = std::fs::remove_dir_all(dir);
}

/// TLS files are read at start-up, and a bad one names its field.
#[tokio::test]
async fn start_names_the_unreadable_certificate() {
    let mut config = Config::default();
    config.store.in_memory = true;
    let mut listener =
        ListenerConfig::new(ListenerKind::Wss, SocketAddr::from(([127, 0, 0, 1], 0)));
    listener.certificate = Some("/nonexistent/server.pem".into());
    listener.private_key = Some("/nonexistent/server.key".into());
    config.server.listeners.push(listener);
    let Err(error) = Gateway::start(config, Hooks::allow_all()).await else {
        panic!("started with a missing certificate")
    };
    let message = error.to_string();
    assert!(message.contains("server.listeners[1].certificate"), "{message}");
    assert!(message.contains("cannot read /nonexistent/server.pem"), "{message}");
}

/// A fresh TCP connection that has sent a 3.1.1 CONNECT with a one-byte client id.
async fn connect_tcp(addr: SocketAddr, id: u8) -> tokio::net::TcpStream {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let connect = [0x10, 13, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60, 0, 1, id];
    tcp.write_all(&connect).await.expect("CONNECT");
    tcp
}

/// `max_connections` bounds the connections a listener serves at once; the slot is given
/// back when a connection ends, and the client waiting for it is then served.
#[tokio::test]
async fn a_full_listener_serves_the_next_client_when_one_leaves() {
    let mut config = Config::default();
    config.store.in_memory = true;
    let mut listener =
        ListenerConfig::new(ListenerKind::Tcp, SocketAddr::from(([127, 0, 0, 1], 0)));
    listener.max_connections = 1;
    config.server.listeners = vec![listener];
    let gateway = Gateway::start(config, Hooks::allow_all()).await.expect("start");
    let addr = gateway.mqtt_addr();

    let mut first = connect_tcp(addr, b'a').await;
    let mut connack = [0u8; 4];
    first.read_exact(&mut connack).await.expect("first CONNACK");
    assert_eq!(connack, [0x20, 2, 0, 0]);

    // The second waits in the kernel's backlog: no CONNACK while the first holds the slot.
    let mut second = connect_tcp(addr, b'b').await;
    let early = tokio::time::timeout(
        std::time::Duration::from_millis(300),
        second.read_exact(&mut connack),
    )
    .await;
    assert!(early.is_err(), "a second client was served past max_connections = 1");

    // DISCONNECT ends the first connection; its slot goes to the second.
    first.write_all(&[0xE0, 0]).await.expect("DISCONNECT");
    tokio::time::timeout(std::time::Duration::from_secs(10), second.read_exact(&mut connack))
        .await
        .expect("the second client is served once the first leaves")
        .expect("second CONNACK");
    assert_eq!(connack, [0x20, 2, 0, 0]);
    assert!(gateway.shutdown().await);
}
