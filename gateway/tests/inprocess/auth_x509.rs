//! X.509 client certificate authentication, in process: certificates made with rcgen for every
//! validation scheme, accepted and refused.

#![allow(clippy::unwrap_used)]

use crate::support;

use std::net::IpAddr;
use std::time::Duration;

use gateway::access::model::{
    AlternativeAuthenticationNameSource, CaCertificateProperties, ClientCertificateAuthentication,
    ClientProperties, ClientState, Resources, ValidationScheme,
};
use gateway::auth::{AuthConfig, x509::thumbprint_sha256};
use gateway::hooks::AuthDecision;
use gateway::mqtt::ReasonCode;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    SanType,
};
use support::{Presented, allowed, assert_denied, authentication, decide, with_clients};
use time::OffsetDateTime;

/// A CA that issues client certificates.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
    der: Vec<u8>,
}

fn ca(name: &str) -> Ca {
    ca_valid(
        name,
        OffsetDateTime::now_utc() - time::Duration::days(1),
        OffsetDateTime::now_utc() + time::Duration::days(365),
    )
}

fn ca_valid(name: &str, not_before: OffsetDateTime, not_after: OffsetDateTime) -> Ca {
    let mut params = CertificateParams::new(Vec::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.not_before = not_before;
    params.not_after = not_after;
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    Ca { pem: cert.pem(), der: cert.der().to_vec(), issuer: Issuer::new(params, key) }
}

impl Ca {
    /// An intermediate CA issued by this one.
    fn intermediate(&self, name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Ca { pem: cert.pem(), der: cert.der().to_vec(), issuer: Issuer::new(params, key) }
    }

    fn issue(&self, params: CertificateParams) -> Vec<u8> {
        let key = KeyPair::generate().unwrap();
        params.signed_by(&key, &self.issuer).unwrap().der().to_vec()
    }

    fn registered(&self) -> CaCertificateProperties {
        CaCertificateProperties { description: None, encoded_certificate: self.pem.clone() }
    }
}

fn leaf(cn: &str) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.extended_key_usages.push(ExtendedKeyUsagePurpose::ClientAuth);
    params.not_before = OffsetDateTime::now_utc() - time::Duration::hours(1);
    params.not_after = OffsetDateTime::now_utc() + time::Duration::days(30);
    params
}

fn with_san(mut params: CertificateParams, san: SanType) -> CertificateParams {
    params.subject_alt_names.push(san);
    params
}

fn self_signed(params: CertificateParams) -> Vec<u8> {
    let key = KeyPair::generate().unwrap();
    params.self_signed(&key).unwrap().der().to_vec()
}

fn client(scheme: ValidationScheme, authentication_name: Option<&str>) -> ClientProperties {
    ClientProperties {
        authentication_name: authentication_name.map(str::to_owned),
        client_certificate_authentication: Some(ClientCertificateAuthentication {
            validation_scheme: scheme,
            allowed_thumbprints: Vec::new(),
        }),
        ..ClientProperties::default()
    }
}

fn thumbprint_client(thumbprints: &[String]) -> ClientProperties {
    ClientProperties {
        client_certificate_authentication: Some(ClientCertificateAuthentication {
            validation_scheme: ValidationScheme::ThumbprintMatch,
            allowed_thumbprints: thumbprints.to_vec(),
        }),
        ..ClientProperties::default()
    }
}

fn resources(clients: Vec<(&str, ClientProperties)>, cas: &[&Ca]) -> Resources {
    let mut resources = with_clients(clients);
    for (index, ca) in cas.iter().enumerate() {
        resources.ca_certificates.insert(format!("ca-{index}"), ca.registered());
    }
    resources
}

async fn connect(resources: Resources, presented: Presented) -> AuthDecision {
    decide(&authentication(&AuthConfig::default(), resources), &presented).await
}

#[tokio::test]
async fn thumbprint_match_accepts_a_self_signed_certificate_case_insensitively() {
    let cert = self_signed(leaf("dev1"));
    let thumbprint = thumbprint_sha256(&cert).to_uppercase();
    let resources = resources(vec![("dev1", thumbprint_client(&[thumbprint]))], &[]);
    let presented = Presented::new("c1").username("dev1").certificates(&[&cert]);
    let decision = connect(resources, presented).await;
    let identity = allowed(&decision);
    assert_eq!(&*identity.authentication_name, "dev1");
    let AuthDecision::Allow { expires_in: Some(expires_in), .. } = decision else { panic!() };
    assert!(
        expires_in > Duration::from_secs(29 * 86400)
            && expires_in <= Duration::from_secs(30 * 86400)
    );
}

#[tokio::test]
async fn thumbprint_mismatch_is_refused() {
    let cert = self_signed(leaf("dev1"));
    let other = self_signed(leaf("dev1"));
    let resources = resources(vec![("dev1", thumbprint_client(&[thumbprint_sha256(&other)]))], &[]);
    let presented = Presented::new("c1").username("dev1").certificates(&[&cert]);
    let decision = connect(resources, presented).await;
    assert_denied(
        &decision,
        ReasonCode::NotAuthorized,
        "certificate thumbprint does not match client \"dev1\"",
    );
}

#[tokio::test]
async fn thumbprint_match_still_checks_validity() {
    let mut params = leaf("dev1");
    params.not_before = OffsetDateTime::now_utc() - time::Duration::days(10);
    params.not_after = OffsetDateTime::now_utc() - time::Duration::days(1);
    let cert = self_signed(params);
    let resources = resources(vec![("dev1", thumbprint_client(&[thumbprint_sha256(&cert)]))], &[]);
    let presented = Presented::new("c1").username("dev1").certificates(&[&cert]);
    assert_denied(
        &connect(resources, presented).await,
        ReasonCode::NotAuthorized,
        "client certificate expired at",
    );
}

#[tokio::test]
async fn subject_matches_with_a_registered_ca() {
    let ca = ca("root");
    let cert = ca.issue(leaf("dev1"));
    let resources = resources(
        vec![("dev1", client(ValidationScheme::SubjectMatchesAuthenticationName, None))],
        &[&ca],
    );
    let presented = Presented::new("c1").username("dev1").certificates(&[&cert]);
    assert_eq!(&*allowed(&connect(resources, presented).await).authentication_name, "dev1");
}

#[tokio::test]
async fn subject_match_compares_the_full_dn_too() {
    let ca = ca("root");
    let mut params = leaf("dev1");
    params.distinguished_name.push(DnType::OrganizationName, "fleet");
    let cert = ca.issue(params);
    let (_, parsed) = x509_parser::parse_x509_certificate(&cert).unwrap();
    let dn = parsed.subject().to_string();
    let resources = resources(
        vec![("dev1", client(ValidationScheme::SubjectMatchesAuthenticationName, Some(&dn)))],
        &[&ca],
    );
    let presented = Presented::new("c1").username(&dn).certificates(&[&cert]);
    assert_eq!(&*allowed(&connect(resources, presented).await).authentication_name, dn);
}

#[tokio::test]
async fn a_certificate_from_an_unregistered_ca_is_refused() {
    let registered = ca("root");
    let rogue = ca("rogue");
    let cert = rogue.issue(leaf("dev1"));
    let resources = resources(
        vec![("dev1", client(ValidationScheme::SubjectMatchesAuthenticationName, None))],
        &[&registered],
    );
    let presented = Presented::new("c1").username("dev1").certificates(&[&cert]);
    assert_denied(
        &connect(resources, presented).await,
        ReasonCode::NotAuthorized,
        "does not chain to a registered CA",
    );
}

#[tokio::test]
async fn a_self_signed_certificate_cannot_pass_a_name_scheme() {
    let ca = ca("root");
    let cert = self_signed(leaf("dev1"));
    let resources = resources(
        vec![("dev1", client(ValidationScheme::SubjectMatchesAuthenticationName, None))],
        &[&ca],
    );
    let presented = Presented::new("c1").username("dev1").certificates(&[&cert]);
    assert_denied(
        &connect(resources, presented).await,
        ReasonCode::NotAuthorized,
        "does not chain",
    );
}

#[tokio::test]
async fn name_schemes_need_a_registered_ca() {
    let ca = ca("root");
    let cert = ca.issue(leaf("dev1"));
    let resources = resources(
        vec![("dev1", client(ValidationScheme::SubjectMatchesAuthenticationName, None))],
        &[],
    );
    let presented = Presented::new("c1").username("dev1").certificates(&[&cert]);
    assert_denied(
        &connect(resources, presented).await,
        ReasonCode::NotAuthorized,
        "none is registered",
    );
}

#[tokio::test]
async fn expired_and_not_yet_valid_leaves_are_refused() {
    let ca = ca("root");
    let mut expired = leaf("dev1");
    expired.not_before = OffsetDateTime::now_utc() - time::Duration::days(10);
    expired.not_after = OffsetDateTime::now_utc() - time::Duration::days(1);
    let mut early = leaf("dev1");
    early.not_before = OffsetDateTime::now_utc() + time::Duration::days(1);
    early.not_after = OffsetDateTime::now_utc() + time::Duration::days(10);
    for (params, needle) in [(expired, "expired at"), (early, "not valid before")] {
        let cert = ca.issue(params);
        let resources = resources(
            vec![("dev1", client(ValidationScheme::SubjectMatchesAuthenticationName, None))],
            &[&ca],
        );
        let presented = Presented::new("c1").username("dev1").certificates(&[&cert]);
        assert_denied(&connect(resources, presented).await, ReasonCode::NotAuthorized, needle);
    }
}

#[tokio::test]
async fn an_expired_registered_ca_vouches_for_nobody() {
    let now = OffsetDateTime::now_utc();
    let ca = ca_valid("root", now - time::Duration::days(30), now - time::Duration::days(1));
    let cert = ca.issue(leaf("dev1"));
    let resources = resources(
        vec![("dev1", client(ValidationScheme::SubjectMatchesAuthenticationName, None))],
        &[&ca],
    );
    let presented = Presented::new("c1").username("dev1").certificates(&[&cert]);
    assert_denied(
        &connect(resources, presented).await,
        ReasonCode::NotAuthorized,
        "does not chain",
    );
}

#[tokio::test]
async fn chains_through_intermediates_the_client_sends() {
    let root = ca("root");
    let intermediate = root.intermediate("issuing");
    let cert = intermediate.issue(leaf("dev1"));
    let registered = resources(
        vec![("dev1", client(ValidationScheme::SubjectMatchesAuthenticationName, None))],
        &[&root],
    );
    // Without the intermediate the leaf does not reach the root.
    let alone = Presented::new("c1").username("dev1").certificates(&[&cert]);
    assert_denied(
        &connect(registered.clone(), alone).await,
        ReasonCode::NotAuthorized,
        "does not chain",
    );
    let chain = Presented::new("c1").username("dev1").certificates(&[&cert, &intermediate.der]);
    allowed(&connect(registered, chain).await);
    // A registered intermediate is enough on its own (Event Grid: "whole chain not required").
    let by_intermediate = resources(
        vec![("dev1", client(ValidationScheme::SubjectMatchesAuthenticationName, None))],
        &[&intermediate],
    );
    let alone = Presented::new("c1").username("dev1").certificates(&[&cert]);
    allowed(&connect(by_intermediate, alone).await);
}

#[tokio::test]
async fn san_schemes_match_their_own_kind_only() {
    let ca = ca("root");
    let dns =
        ca.issue(with_san(leaf("x"), SanType::DnsName("dev1.example.com".try_into().unwrap())));
    let uri =
        ca.issue(with_san(leaf("x"), SanType::URI("spiffe://fleet/dev1".try_into().unwrap())));
    let ip =
        ca.issue(with_san(leaf("x"), SanType::IpAddress("10.0.0.7".parse::<IpAddr>().unwrap())));
    let ip6 =
        ca.issue(with_san(leaf("x"), SanType::IpAddress("fd00::7".parse::<IpAddr>().unwrap())));
    let email =
        ca.issue(with_san(leaf("x"), SanType::Rfc822Name("dev1@example.com".try_into().unwrap())));
    let cases: [(ValidationScheme, &str, &Vec<u8>); 5] = [
        (ValidationScheme::DnsMatchesAuthenticationName, "dev1.example.com", &dns),
        (ValidationScheme::UriMatchesAuthenticationName, "spiffe://fleet/dev1", &uri),
        (ValidationScheme::IpMatchesAuthenticationName, "10.0.0.7", &ip),
        (ValidationScheme::IpMatchesAuthenticationName, "fd00:0:0:0:0:0:0:7", &ip6),
        (ValidationScheme::EmailMatchesAuthenticationName, "dev1@example.com", &email),
    ];
    for (scheme, name, cert) in cases {
        let resources = resources(vec![("dev1", client(scheme, Some(name)))], &[&ca]);
        let presented = Presented::new("c1").username(name).certificates(&[cert]);
        let decision = connect(resources, presented).await;
        assert_eq!(&*allowed(&decision).authentication_name, name, "{scheme:?}");
    }
    // The right value in the wrong kind of SAN, or in the CN, is not a match.
    let wrong: [(ValidationScheme, &str, &Vec<u8>); 3] = [
        (ValidationScheme::UriMatchesAuthenticationName, "dev1.example.com", &dns),
        (ValidationScheme::DnsMatchesAuthenticationName, "x", &dns),
        (ValidationScheme::EmailMatchesAuthenticationName, "dev2@example.com", &email),
    ];
    for (scheme, name, cert) in wrong {
        let resources = resources(vec![("dev1", client(scheme, Some(name)))], &[&ca]);
        let presented = Presented::new("c1").username(name).certificates(&[cert]);
        assert_denied(
            &connect(resources, presented).await,
            ReasonCode::NotAuthorized,
            "does not match the authentication name",
        );
    }
}

#[tokio::test]
async fn case_tricks_on_the_authentication_name() {
    let ca = ca("root");
    let registered = || {
        resources(
            vec![("dev1", client(ValidationScheme::SubjectMatchesAuthenticationName, None))],
            &[&ca],
        )
    };
    // The username finds the client case-insensitively; the identity is the registered name.
    let cert = ca.issue(leaf("dev1"));
    let presented = Presented::new("c1").username("DEV1").certificates(&[&cert]);
    assert_eq!(&*allowed(&connect(registered(), presented).await).authentication_name, "dev1");
    // A certificate issued to "DEV1" is not dev1's certificate.
    let upper = ca.issue(leaf("DEV1"));
    let presented = Presented::new("c1").username("dev1").certificates(&[&upper]);
    assert_denied(
        &connect(registered(), presented).await,
        ReasonCode::NotAuthorized,
        "certificate subject does not match",
    );
    // Nor can a certificate for another name log in as dev1.
    let other = ca.issue(leaf("dev2"));
    let presented = Presented::new("c1").username("dev1").certificates(&[&other]);
    assert_denied(
        &connect(registered(), presented).await,
        ReasonCode::NotAuthorized,
        "certificate subject does not match",
    );
}

#[tokio::test]
async fn alternative_sources_supply_the_name_in_order() {
    let ca = ca("root");
    let cert =
        ca.issue(with_san(leaf("cn-name"), SanType::DnsName("dns-name".try_into().unwrap())));
    let mut resources = resources(
        vec![("dns-name", client(ValidationScheme::DnsMatchesAuthenticationName, None))],
        &[&ca],
    );
    let presented = Presented::new("c1").certificates(&[&cert]);
    // No sources configured: no name, no certificate authentication.
    assert_denied(
        &connect(resources.clone(), presented.clone()).await,
        ReasonCode::NotAuthorized,
        "alternativeAuthenticationNameSources",
    );
    resources.namespace.alternative_authentication_name_sources = vec![
        AlternativeAuthenticationNameSource::ClientCertificateUri,
        AlternativeAuthenticationNameSource::ClientCertificateDns,
        AlternativeAuthenticationNameSource::ClientCertificateSubject,
    ];
    assert_eq!(
        &*allowed(&connect(resources.clone(), presented.clone()).await).authentication_name,
        "dns-name"
    );
    // Subject first: the CN names no registered client.
    resources.namespace.alternative_authentication_name_sources = vec![
        AlternativeAuthenticationNameSource::ClientCertificateSubject,
        AlternativeAuthenticationNameSource::ClientCertificateDns,
    ];
    assert_denied(&connect(resources, presented).await, ReasonCode::NotAuthorized, "\"cn-name\"");
}

#[tokio::test]
async fn a_disabled_client_is_refused() {
    let ca = ca("root");
    let cert = ca.issue(leaf("dev1"));
    let mut properties = client(ValidationScheme::SubjectMatchesAuthenticationName, None);
    properties.state = ClientState::Disabled;
    let resources = resources(vec![("dev1", properties)], &[&ca]);
    let presented = Presented::new("c1").username("dev1").certificates(&[&cert]);
    assert_denied(
        &connect(resources, presented).await,
        ReasonCode::NotAuthorized,
        "client \"dev1\" is disabled",
    );
}

#[tokio::test]
async fn registry_changes_apply_to_the_next_connect() {
    let ca = ca("root");
    let cert = ca.issue(leaf("dev1"));
    let registry = support::registry(resources(
        vec![("dev1", client(ValidationScheme::SubjectMatchesAuthenticationName, None))],
        &[&ca],
    ));
    let auth =
        gateway::auth::Authentication::new(&AuthConfig::default(), registry.clone()).unwrap();
    let presented = Presented::new("c1").username("dev1").certificates(&[&cert]);
    allowed(&decide(&auth, &presented).await);
    registry
        .replace(resources(
            vec![("dev1", client(ValidationScheme::SubjectMatchesAuthenticationName, None))],
            &[],
        ))
        .unwrap();
    assert_denied(
        &decide(&auth, &presented).await,
        ReasonCode::NotAuthorized,
        "none is registered",
    );
}
