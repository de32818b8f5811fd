//! JWT authentication, in process, with real signed tokens: RS256 (a fixed test key in
//! `fixtures/`) and ES256 (a P-256 key made by rcgen), and the classic attacks.

#![allow(clippy::unwrap_used)]

use crate::support;

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use gateway::access::model::{ClientProperties, ClientState, Resources};
use gateway::auth::jwt::JwtAlgorithm;
use gateway::auth::{AuthConfig, JwtConfig};
use gateway::hooks::{AttributeValue, AuthDecision, AuthStep};
use gateway::mqtt::ReasonCode;
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, RSA_PKCS1_SHA256, RsaKeyPair,
};
use serde_json::{Value, json};
use support::{Presented, allowed, assert_denied, authentication, decide, with_clients};

const ISSUER: &str = "https://issuer.example";
const AUDIENCE: &str = "fleet.westeurope-1.ts.eventgrid.azure.net";

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/inprocess/fixtures").join(name)
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn unsigned(header: &Value, claims: &Value) -> String {
    format!("{}.{}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()))
}

fn rsa_key() -> RsaKeyPair {
    let pem = std::fs::read(fixture("jwt-rsa-private.pem")).unwrap();
    let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).unwrap();
    RsaKeyPair::from_pkcs8(&pem.contents).unwrap()
}

fn rs256(claims: &Value, kid: Option<&str>) -> String {
    let mut header = json!({"alg": "RS256", "typ": "JWT"});
    if let Some(kid) = kid {
        header["kid"] = json!(kid);
    }
    let input = unsigned(&header, claims);
    let key = rsa_key();
    let mut signature = vec![0; key.public().modulus_len()];
    key.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), input.as_bytes(), &mut signature).unwrap();
    format!("{input}.{}", b64(&signature))
}

struct EcKey {
    pair: EcdsaKeyPair,
    public_pem: String,
}

fn ec_key() -> EcKey {
    let key = rcgen::KeyPair::generate().unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(
        &ECDSA_P256_SHA256_FIXED_SIGNING,
        &key.serialize_der(),
        &SystemRandom::new(),
    )
    .unwrap();
    EcKey { pair, public_pem: key.public_key_pem() }
}

fn es256(key: &EcKey, claims: &Value) -> String {
    let input = unsigned(&json!({"alg": "ES256", "typ": "JWT"}), claims);
    let signature = key.pair.sign(&SystemRandom::new(), input.as_bytes()).unwrap();
    format!("{input}.{}", b64(signature.as_ref()))
}

fn claims(sub: &str) -> Value {
    json!({"iss": ISSUER, "aud": AUDIENCE, "sub": sub, "nbf": now() - 10, "exp": now() + 3600})
}

fn jwt_config(key_files: Vec<PathBuf>) -> AuthConfig {
    AuthConfig {
        jwt: Some(JwtConfig {
            issuer: ISSUER.into(),
            audiences: vec![AUDIENCE.into()],
            key_files,
            jwks_file: None,
            jwks_url: None,
            jwks_timeout_ms: 5000,
            algorithms: vec![JwtAlgorithm::RS256, JwtAlgorithm::ES256],
            leeway_secs: 0,
        }),
        ..AuthConfig::default()
    }
}

async fn rsa_decide(token: &str) -> AuthDecision {
    let auth =
        authentication(&jwt_config(vec![fixture("jwt-rsa-public.pem")]), Resources::default());
    decide(&auth, &Presented::new("c1").method("CUSTOM-JWT", token.as_bytes())).await
}

#[tokio::test]
async fn rs256_token_gives_subject_attributes_and_expiry() {
    let mut claims = claims("car1");
    claims["site"] = json!("berlin");
    claims["floor"] = json!(3);
    claims["sensors"] = json!(["gps", "can"]);
    claims["ratio"] = json!(0.5);
    claims["nested"] = json!({"a": 1});
    claims["mixed"] = json!(["a", 1]);
    claims["iat"] = json!(now());
    let decision = rsa_decide(&rs256(&claims, None)).await;
    let identity = allowed(&decision);
    assert_eq!(&*identity.authentication_name, "car1");
    assert_eq!(&*identity.client_id, "c1");
    let keys: Vec<&str> = identity.attributes.keys().map(String::as_str).collect();
    assert_eq!(keys, ["floor", "sensors", "site"]);
    assert_eq!(identity.attributes["floor"], AttributeValue::Integer(3));
    assert_eq!(
        identity.attributes["sensors"],
        AttributeValue::StringArray(vec!["gps".into(), "can".into()])
    );
    let AuthDecision::Allow { expires_in: Some(expires_in), .. } = decision else { panic!() };
    assert!(expires_in > Duration::from_secs(3590) && expires_in <= Duration::from_secs(3600));
}

#[tokio::test]
async fn es256_with_oauth2_method_and_audience_array() {
    let key = ec_key();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ec.pem");
    std::fs::write(&path, &key.public_pem).unwrap();
    let auth = authentication(&jwt_config(vec![path]), Resources::default());
    let mut claims = claims("car2");
    claims["aud"] = json!(["other", AUDIENCE]);
    let token = es256(&key, &claims);
    let decision =
        decide(&auth, &Presented::new("c2").method("OAUTH2-JWT", token.as_bytes())).await;
    assert_eq!(&*allowed(&decision).authentication_name, "car2");
    // Re-authentication with AUTH 0x19 uses the same path.
    let reauth =
        Presented::new("c2").method("CUSTOM-JWT", token.as_bytes()).step(AuthStep::ReAuthenticate);
    allowed(&decide(&auth, &reauth).await);
    // A token signed by another EC key is refused.
    let forged = es256(&ec_key(), &claims);
    let decision =
        decide(&auth, &Presented::new("c2").method("CUSTOM-JWT", forged.as_bytes())).await;
    assert_denied(&decision, ReasonCode::NotAuthorized, "signature does not verify");
}

#[tokio::test]
async fn v311_clients_send_the_token_as_password() {
    let token = rs256(&claims("car3"), None);
    let auth =
        authentication(&jwt_config(vec![fixture("jwt-rsa-public.pem")]), Resources::default());
    let presented = Presented::new("c3").v311().username("ignored").password(token.as_bytes());
    assert_eq!(&*allowed(&decide(&auth, &presented).await).authentication_name, "car3");
}

#[tokio::test]
async fn alg_none_is_refused() {
    let token = format!("{}.", unsigned(&json!({"alg": "none", "typ": "JWT"}), &claims("car1")));
    assert_denied(
        &rsa_decide(&token).await,
        ReasonCode::NotAuthorized,
        "algorithm \"none\" is not allowed",
    );
}

#[tokio::test]
async fn hs256_signed_with_the_public_key_is_refused() {
    let public_pem = std::fs::read(fixture("jwt-rsa-public.pem")).unwrap();
    let input = unsigned(&json!({"alg": "HS256", "typ": "JWT"}), &claims("car1"));
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &public_pem);
    let token = format!("{input}.{}", b64(ring::hmac::sign(&key, input.as_bytes()).as_ref()));
    assert_denied(
        &rsa_decide(&token).await,
        ReasonCode::NotAuthorized,
        "algorithm \"HS256\" is not allowed",
    );
}

#[tokio::test]
async fn claim_checks_refuse_with_reasons() {
    let exp = now() - 100;
    let mut expired = claims("car1");
    expired["exp"] = json!(exp);
    let mut early = claims("car1");
    early["nbf"] = json!(now() + 600);
    let mut audience = claims("car1");
    audience["aud"] = json!("someone-else");
    let mut issuer = claims("car1");
    issuer["iss"] = json!("https://evil.example");
    let mut no_sub = claims("car1");
    no_sub.as_object_mut().unwrap().remove("sub");
    let mut string_exp = claims("car1");
    string_exp["exp"] = json!("9999999999");
    let cases = [
        (expired, "token expired at ".to_string()),
        (early, "token not valid before".into()),
        (audience, "holds none of the configured audiences".into()),
        (issuer, "token issuer \"https://evil.example\" is not the configured issuer".into()),
        (no_sub, "no sub".into()),
        (string_exp, "exp claim is not a number".into()),
    ];
    for (claims, needle) in cases {
        assert_denied(&rsa_decide(&rs256(&claims, None)).await, ReasonCode::NotAuthorized, &needle);
    }
    // The expiry reason is an RFC 3339 time.
    let mut expired = claims("car1");
    expired["exp"] = json!(1_795_600_800);
    let decision = rsa_decide(&rs256(&expired, None)).await;
    assert_denied(&decision, ReasonCode::NotAuthorized, "token expired at 2026-11-25T10:00:00Z");
}

#[tokio::test]
async fn a_tampered_token_is_refused() {
    let token = rs256(&claims("car1"), None);
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    parts[1] = b64(claims("admin").to_string().as_bytes());
    assert_denied(&rsa_decide(&parts.join(".")).await, ReasonCode::NotAuthorized, "signature");
}

#[tokio::test]
async fn jwks_file_keys_are_chosen_by_kid() {
    let key = rsa_key();
    let components = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(key.public());
    let n = b64(&components.n);
    let e = b64(&components.e);
    let ec = ec_key();
    let jwks = json!({"keys": [
        {"kty": "RSA", "kid": "rsa-1", "use": "sig", "n": n, "e": e},
        {"kty": "RSA", "kid": "enc-1", "use": "enc", "n": n, "e": e},
        {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
    ]});
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    std::fs::write(&path, jwks.to_string()).unwrap();
    let mut config = jwt_config(Vec::new());
    config.jwt.as_mut().unwrap().jwks_file = Some(path);
    let auth = authentication(&config, Resources::default());
    for kid in [Some("rsa-1"), None, Some("unknown")] {
        let token = rs256(&claims("car1"), kid);
        let presented = Presented::new("c1").method("CUSTOM-JWT", token.as_bytes());
        allowed(&decide(&auth, &presented).await);
    }
    // No ES256 key in the set.
    let token = es256(&ec, &claims("car1"));
    let presented = Presented::new("c1").method("CUSTOM-JWT", token.as_bytes());
    assert_denied(&decide(&auth, &presented).await, ReasonCode::NotAuthorized, "no ES256 key");
}

#[tokio::test]
async fn only_configured_algorithms_are_accepted() {
    let mut config = jwt_config(vec![fixture("jwt-rsa-public.pem")]);
    config.jwt.as_mut().unwrap().algorithms = vec![JwtAlgorithm::ES256];
    let auth = authentication(&config, Resources::default());
    let token = rs256(&claims("car1"), None);
    let presented = Presented::new("c1").method("CUSTOM-JWT", token.as_bytes());
    assert_denied(
        &decide(&auth, &presented).await,
        ReasonCode::NotAuthorized,
        "\"RS256\" is not allowed",
    );
}

#[tokio::test]
async fn a_token_naming_a_disabled_client_is_refused() {
    let disabled = ClientProperties { state: ClientState::Disabled, ..ClientProperties::default() };
    let auth = authentication(
        &jwt_config(vec![fixture("jwt-rsa-public.pem")]),
        with_clients(vec![("car1", disabled)]),
    );
    let token = rs256(&claims("CAR1"), None);
    let presented = Presented::new("c1").method("CUSTOM-JWT", token.as_bytes());
    assert_denied(
        &decide(&auth, &presented).await,
        ReasonCode::NotAuthorized,
        "client \"car1\" is disabled",
    );
}

#[tokio::test]
async fn methods_without_jwt_configured_or_unknown_are_bad_methods() {
    let auth = authentication(&AuthConfig::default(), Resources::default());
    let presented = Presented::new("c1").method("CUSTOM-JWT", b"x.y.z");
    assert_denied(
        &decide(&auth, &presented).await,
        ReasonCode::BadAuthenticationMethod,
        "not configured",
    );
    let presented = Presented::new("c1").method("SCRAM-SHA-1", b"x");
    assert_denied(
        &decide(&auth, &presented).await,
        ReasonCode::BadAuthenticationMethod,
        "not supported",
    );
}

#[test]
fn bad_jwt_configs_are_refused() {
    let mut config = jwt_config(Vec::new());
    assert!(config.validate().unwrap_err().to_string().contains("needs the issuer's keys"));
    config.jwt.as_mut().unwrap().key_files = vec![fixture("missing.pem")];
    let registry = support::registry(Resources::default());
    let error = gateway::auth::Authentication::new(&config, registry).unwrap_err();
    assert!(error.to_string().contains("missing.pem"), "{error}");
    let parsed: Result<AuthConfig, _> = toml::from_str(
        "[jwt]\nissuer = \"i\"\naudiences = [\"a\"]\nalgorithms = [\"HS256\"]\njwks_file = \"x\"",
    );
    assert!(parsed.is_err());
}
