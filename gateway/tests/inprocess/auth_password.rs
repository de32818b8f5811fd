//! Username/password authentication against Argon2 hashes, and how the authenticator picks a
//! method and falls back to anonymous access.

#![allow(clippy::unwrap_used)]

use crate::support;

use gateway::access::model::{ClientProperties, ClientState, Resources};
use gateway::auth::{AuthConfig, hash_password};
use gateway::mqtt::ReasonCode;
use support::{Presented, allowed, assert_denied, authentication, decide, with_clients};

fn with_password(password: &str) -> ClientProperties {
    ClientProperties {
        password_hash: Some(hash_password(password)),
        attributes: [("site".to_string(), gateway::hooks::AttributeValue::String("b".into()))]
            .into(),
        ..ClientProperties::default()
    }
}

#[tokio::test]
async fn right_password_wrong_password_and_no_password() {
    let auth = authentication(
        &AuthConfig::default(),
        with_clients(vec![("dev1", with_password("s3cret"))]),
    );
    // The username finds the client case-insensitively; the identity is the registered one.
    let right = Presented::new("c1").username("DEV1").password(b"s3cret");
    let decision = decide(&auth, &right).await;
    let identity = allowed(&decision);
    assert_eq!(&*identity.authentication_name, "dev1");
    assert_eq!(identity.attributes.len(), 1);
    let wrong = Presented::new("c1").username("dev1").password(b"S3cret");
    assert_denied(
        &decide(&auth, &wrong).await,
        ReasonCode::BadUserNameOrPassword,
        "wrong password for client \"dev1\"",
    );
    let missing = Presented::new("c1").username("dev1");
    assert_denied(
        &decide(&auth, &missing).await,
        ReasonCode::BadUserNameOrPassword,
        "needs a password",
    );
    // 3.1.1 the same.
    let v311 = Presented::new("c1").v311().username("dev1").password(b"s3cret");
    allowed(&decide(&auth, &v311).await);
}

#[tokio::test]
async fn a_disabled_client_is_refused_even_with_the_right_password() {
    let mut client = with_password("s3cret");
    client.state = ClientState::Disabled;
    let auth = authentication(&AuthConfig::default(), with_clients(vec![("dev1", client)]));
    let presented = Presented::new("c1").username("dev1").password(b"s3cret");
    assert_denied(
        &decide(&auth, &presented).await,
        ReasonCode::NotAuthorized,
        "client \"dev1\" is disabled",
    );
}

#[tokio::test]
async fn verification_does_not_block_the_runtime() {
    // On a current-thread runtime a blocking verification would stall the ticker below.
    let auth = authentication(
        &AuthConfig::default(),
        with_clients(vec![("dev1", with_password("s3cret"))]),
    );
    let presented = Presented::new("c1").username("dev1").password(b"s3cret");
    let ticks = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let counter = ticks.clone();
    let ticker = tokio::spawn(async move {
        loop {
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tokio::task::yield_now().await;
        }
    });
    allowed(&decide(&auth, &presented).await);
    ticker.abort();
    assert!(ticks.load(std::sync::atomic::Ordering::Relaxed) > 10);
}

#[tokio::test]
async fn without_credentials_nobody_gets_in_unless_anonymous_is_allowed() {
    let resources = || {
        with_clients(vec![
            ("dev1", with_password("s3cret")),
            ("open1", ClientProperties::default()),
        ])
    };
    let closed = authentication(&AuthConfig::default(), resources());
    let stranger = Presented::new("c9").username("stranger").password(b"x");
    assert_denied(
        &decide(&closed, &stranger).await,
        ReasonCode::NotAuthorized,
        "not authenticated",
    );
    assert_denied(
        &decide(&closed, &Presented::new("c9")).await,
        ReasonCode::NotAuthorized,
        "no username",
    );

    let open =
        authentication(&AuthConfig { allow_anonymous: true, ..AuthConfig::default() }, resources());
    assert_eq!(&*allowed(&decide(&open, &stranger).await).authentication_name, "stranger");
    assert_eq!(&*allowed(&decide(&open, &Presented::new("c9")).await).authentication_name, "c9");
    // Anonymous access cannot borrow a registered identity that has credentials...
    let impostor = Presented::new("c9").username("DEV1");
    assert_denied(
        &decide(&open, &impostor).await,
        ReasonCode::BadUserNameOrPassword,
        "needs a password",
    );
    // ...and one without credentials is that client, as registered.
    assert_eq!(
        &*allowed(&decide(&open, &Presented::new("c9").username("OPEN1")).await)
            .authentication_name,
        "open1"
    );
}

#[test]
fn config_shape() {
    let config: AuthConfig = toml::from_str("allow_anonymous = true").unwrap();
    assert!(config.allow_anonymous && !config.is_unconfigured());
    assert!(AuthConfig::default().is_unconfigured());
    assert!(toml::from_str::<AuthConfig>("allow_anonymus = true").is_err());
    let _ = Resources::default();
}
