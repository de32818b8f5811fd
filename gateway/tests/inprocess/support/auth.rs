//! Support for the in-process authentication tests (`tests/auth_*.rs`): resources, requests
//! and a way to ask the authenticator.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use gateway::access::Limits;
use gateway::access::model::{ClientProperties, Resources};
use gateway::access::registry::Registry;
use gateway::auth::{AuthConfig, Authentication};
use gateway::hooks::{AuthDecision, AuthRequest, AuthStep, Authenticator, ClientIdentity};
use gateway::mqtt::{Protocol, ReasonCode};

/// What a client presents, owned, to build an [`AuthRequest`] from.
#[derive(Debug, Clone)]
pub struct Presented {
    pub step: AuthStep,
    pub protocol: Protocol,
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<Bytes>,
    pub method: Option<String>,
    pub data: Option<Bytes>,
    pub certificates: Vec<Bytes>,
}

impl Presented {
    pub fn new(client_id: &str) -> Presented {
        Presented {
            step: AuthStep::Connect,
            protocol: Protocol::V5,
            client_id: client_id.into(),
            username: None,
            password: None,
            method: None,
            data: None,
            certificates: Vec::new(),
        }
    }

    pub fn username(mut self, username: &str) -> Presented {
        self.username = Some(username.into());
        self
    }

    pub fn password(mut self, password: &[u8]) -> Presented {
        self.password = Some(Bytes::copy_from_slice(password));
        self
    }

    pub fn v311(mut self) -> Presented {
        self.protocol = Protocol::V311;
        self
    }

    pub fn method(mut self, method: &str, data: &[u8]) -> Presented {
        self.method = Some(method.into());
        self.data = Some(Bytes::copy_from_slice(data));
        self
    }

    pub fn step(mut self, step: AuthStep) -> Presented {
        self.step = step;
        self
    }

    pub fn certificates(mut self, chain: &[&[u8]]) -> Presented {
        self.certificates = chain.iter().map(|der| Bytes::copy_from_slice(der)).collect();
        self
    }

    pub fn request(&self) -> AuthRequest<'_> {
        AuthRequest {
            step: self.step,
            protocol: self.protocol,
            client_id: &self.client_id,
            username: self.username.as_deref(),
            password: self.password.as_ref(),
            method: self.method.as_deref(),
            data: self.data.as_ref(),
            peer_addr: SocketAddr::from(([127, 0, 0, 1], 40000)),
            peer_certificates: &self.certificates,
        }
    }
}

/// A registry holding `resources` (validated).
pub fn registry(resources: Resources) -> Arc<Registry> {
    Arc::new(Registry::new(resources, Limits::default()).expect("valid resources"))
}

/// Resources with these clients.
pub fn with_clients(clients: Vec<(&str, ClientProperties)>) -> Resources {
    let mut resources = Resources::default();
    for (name, client) in clients {
        resources.clients.insert(name.into(), client);
    }
    resources
}

/// An authenticator over `resources` with `config`.
pub fn authentication(config: &AuthConfig, resources: Resources) -> Authentication {
    Authentication::new(config, registry(resources)).expect("auth config")
}

/// Asks `auth` about `presented`.
pub async fn decide(auth: &Authentication, presented: &Presented) -> AuthDecision {
    auth.authenticate(presented.request()).await
}

/// The identity of an `Allow`; panics with the decision otherwise.
pub fn allowed(decision: &AuthDecision) -> &ClientIdentity {
    match decision {
        AuthDecision::Allow { identity, .. } => identity,
        other => panic!("expected Allow, got {other:?}"),
    }
}

/// The code and reason of a `Deny`; panics with the decision otherwise.
pub fn denied(decision: &AuthDecision) -> (ReasonCode, String) {
    match decision {
        AuthDecision::Deny { code, reason } => (*code, reason.clone().unwrap_or_default()),
        other => panic!("expected Deny, got {other:?}"),
    }
}

/// Asserts a `Deny` with `code` whose reason contains `needle`.
#[track_caller]
pub fn assert_denied(decision: &AuthDecision, code: ReasonCode, needle: &str) {
    let (actual, reason) = denied(decision);
    assert_eq!(actual, code, "reason: {reason}");
    assert!(reason.contains(needle), "reason {reason:?} does not contain {needle:?}");
}
