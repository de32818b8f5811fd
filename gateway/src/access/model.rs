//! The namespace's resources with Event Grid's names and shapes: clients, client groups, topic
//! spaces, permission bindings, CA certificates and the namespace settings; their validation;
//! and the limits on how many there may be.
//!
//! # Shapes
//! Each resource is a properties struct with Event Grid's camelCase field names. The REST API
//! wraps it as Event Grid does, in [`Resource`]: `{"name": "...", "properties": {...}}` (the
//! name usually comes from the URL). The config file and the store hold [`Resources`], where
//! each kind is a table keyed by resource name:
//!
//! ```toml
//! [namespace]
//! name = "fleet"
//!
//! [clients.car1]
//! attributes = { site = "berlin", floor = 3, sensors = ["gps", "can"] }
//!
//! [clientGroups.berlin]
//! query = "attributes.site = 'berlin'"
//!
//! [topicSpaces.vehicles]
//! topicTemplates = ["vehicles/${client.authenticationName}/#"]
//!
//! [permissionBindings.berlin-publish]
//! clientGroupName = "berlin"
//! topicSpaceName = "vehicles"
//! permission = "Publisher"
//! ```
//!
//! Unknown fields are rejected everywhere, so a misspelt field never silently does nothing.
//!
//! # Validation
//! [`Resources::validate`] checks everything a set of resources must satisfy together: names,
//! field values, queries and templates that parse, bindings that name existing groups and
//! spaces, authentication names unique case-insensitively, and [`Limits`]. Errors name the
//! field by its path and say what is wrong:
//! `clientGroups[edge].query: unexpected token ')' at 14, expected ...`. A single-resource
//! change is validated by applying it to a copy of the current [`Resources`] and validating that.
//!
//! Invariants:
//! - A client's password is only ever held as an Argon2 PHC string (`passwordHash`); validation
//!   rejects anything that does not look like one, so plain text cannot be stored by mistake.
//! - `$all` is built in: no group can be declared with that name, and bindings may name it.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::access::query::Query;
use crate::access::template::TopicTemplate;
use crate::hooks::AttributeValue;

mod attributes;

/// The name of the built-in group every client belongs to.
pub const ALL_GROUP: &str = "$all";

/// The most bytes a client's attributes may take, exclusive (Event Grid: "less than 4 KB").
pub const MAX_ATTRIBUTES_SIZE: usize = 4096;

/// A named resource in Event Grid's REST envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resource<P> {
    /// The resource name; in a PUT body it may be left out and comes from the URL.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    pub properties: P,
}

/// Every access-control resource of a namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Resources {
    pub namespace: NamespaceSettings,
    pub clients: BTreeMap<String, ClientProperties>,
    pub client_groups: BTreeMap<String, ClientGroupProperties>,
    pub topic_spaces: BTreeMap<String, TopicSpaceProperties>,
    pub permission_bindings: BTreeMap<String, PermissionBindingProperties>,
    pub ca_certificates: BTreeMap<String, CaCertificateProperties>,
}

/// The subscription id of the namespace's resource id when `[namespace]` sets none.
pub const PLACEHOLDER_SUBSCRIPTION_ID: &str = "00000000-0000-0000-0000-000000000000";

/// Namespace-wide settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct NamespaceSettings {
    /// The namespace name (3–50 of `[A-Za-z0-9-]`); routed CloudEvents use it as `source`.
    pub name: String,
    /// Where a certificate client's authentication name comes from when CONNECT has no
    /// Username, tried in order; the first non-empty wins.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub alternative_authentication_name_sources: Vec<AlternativeAuthenticationNameSource>,
    /// The Azure subscription id in the namespace's resource id (lifecycle events' `source`,
    /// the management API's ARM paths and ids). A placeholder by default: gridmq belongs to no
    /// Azure subscription, but Event Grid's clients expect one in these places.
    #[serde(rename = "subscription_id")]
    pub subscription_id: String,
    /// The resource group in the namespace's resource id; `gridmq` by default.
    #[serde(rename = "resource_group")]
    pub resource_group: String,
}

/// A certificate field that can supply the authentication name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AlternativeAuthenticationNameSource {
    ClientCertificateSubject,
    ClientCertificateDns,
    ClientCertificateUri,
    ClientCertificateIp,
    ClientCertificateEmail,
}

/// A registered client.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientProperties {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// 1–128 characters, unique case-insensitively; defaults to the client's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication_name: Option<String>,
    /// Keys `[A-Za-z0-9_]+`; values string, integer or array of strings; < 4 KB in total.
    #[serde(default, with = "attributes", skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, AttributeValue>,
    #[serde(default)]
    pub state: ClientState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate_authentication: Option<ClientCertificateAuthentication>,
    /// gridmq's extension for username/password authentication: an Argon2 PHC string
    /// (`$argon2id$v=19$m=...,t=...,p=...$salt$hash`), never the password itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_hash: Option<String>,
}

/// Whether a client may connect.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ClientState {
    #[default]
    Enabled,
    /// Refused at CONNECT, disconnected if connected, and granted nothing.
    Disabled,
}

/// How a client's X.509 certificate is checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientCertificateAuthentication {
    pub validation_scheme: ValidationScheme,
    /// Hex SHA-256 (or SHA-1) thumbprints; 1–2 with `ThumbprintMatch`, none otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_thumbprints: Vec<String>,
}

/// Event Grid's six certificate validation schemes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ValidationScheme {
    /// The certificate's thumbprint is one of `allowedThumbprints`; self-signed is fine.
    ThumbprintMatch,
    /// The subject equals the authentication name; the certificate chains to a CA certificate.
    SubjectMatchesAuthenticationName,
    /// A DNS SAN equals the authentication name; chains to a CA certificate.
    DnsMatchesAuthenticationName,
    /// A URI SAN equals the authentication name; chains to a CA certificate.
    UriMatchesAuthenticationName,
    /// An IP SAN equals the authentication name; chains to a CA certificate.
    IpMatchesAuthenticationName,
    /// An email SAN equals the authentication name; chains to a CA certificate.
    EmailMatchesAuthenticationName,
}

/// A client group: the clients its query selects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientGroupProperties {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// A query in the language of [`crate::access::query`].
    pub query: String,
}

/// A topic space: a set of topic templates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TopicSpaceProperties {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Templates in the syntax of [`crate::access::template`]; 1 to the configured limit.
    pub topic_templates: Vec<String>,
}

/// A grant of one permission on one topic space to one client group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PermissionBindingProperties {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// A declared group or `$all`.
    pub client_group_name: String,
    pub topic_space_name: String,
    pub permission: Permission,
}

/// What a permission binding grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Permission {
    /// PUBLISH to topics matched by the space's templates.
    Publisher,
    /// SUBSCRIBE to filters covered by the space's templates.
    Subscriber,
}

/// A CA certificate that client certificates may chain to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CaCertificateProperties {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// One PEM `CERTIFICATE` block.
    pub encoded_certificate: String,
}

/// How many resources a namespace may hold; Event Grid's numbers by default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Registered clients. Default 10,000 (Event Grid: per throughput unit).
    pub clients: usize,
    /// Client groups, besides `$all`. Default 10.
    pub client_groups: usize,
    /// Topic spaces. Default 10.
    pub topic_spaces: usize,
    /// Templates in one topic space. Default 10.
    pub topic_templates_per_space: usize,
    /// Permission bindings. Default 100.
    pub permission_bindings: usize,
    /// CA certificates. Default 10.
    pub ca_certificates: usize,
}

/// A resource that failed validation: the field's path and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {problem}")]
pub struct ValidationError {
    /// E.g. `clientGroups[edge].query` or `properties.query`.
    pub path: String,
    pub problem: String,
}

// === impl Limits ===

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            clients: 10_000,
            client_groups: 10,
            topic_spaces: 10,
            topic_templates_per_space: 10,
            permission_bindings: 100,
            ca_certificates: 10,
        }
    }
}

// === impl NamespaceSettings ===

impl Default for NamespaceSettings {
    fn default() -> NamespaceSettings {
        NamespaceSettings {
            name: "gridmq".into(),
            alternative_authentication_name_sources: Vec::new(),
            subscription_id: PLACEHOLDER_SUBSCRIPTION_ID.into(),
            resource_group: "gridmq".into(),
        }
    }
}

impl NamespaceSettings {
    /// The namespace's Azure resource id,
    /// `/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.EventGrid/namespaces/{ns}`.
    pub fn resource_id(&self) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.EventGrid/namespaces/{}",
            self.subscription_id, self.resource_group, self.name
        )
    }

    pub fn validate(&self) -> Result<(), ValidationError> {
        check_resource_name(&self.name).map_err(|problem| ValidationError::new("name", problem))?;
        if self.subscription_id.is_empty()
            || !self.subscription_id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err(ValidationError::new(
                "subscription_id",
                "must be a non-empty id of letters, digits and '-' (a GUID in Azure)",
            ));
        }
        let group_ok = (1..=90).contains(&self.resource_group.chars().count())
            && !self.resource_group.ends_with('.')
            && self
                .resource_group
                .chars()
                .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | '(' | ')'));
        if !group_ok {
            return Err(ValidationError::new(
                "resource_group",
                "must be 1 to 90 letters, digits, '-', '_', '.', '(' or ')', not ending in '.'",
            ));
        }
        let sources = &self.alternative_authentication_name_sources;
        for (index, source) in sources.iter().enumerate() {
            if sources[..index].contains(source) {
                return Err(ValidationError::new(
                    format!("alternativeAuthenticationNameSources[{index}]"),
                    format!("{source:?} is listed twice"),
                ));
            }
        }
        Ok(())
    }
}

// === impl Resources ===

impl Resources {
    /// Parses resources from TOML, e.g. the access section of the config file. Does not
    /// validate.
    pub fn from_toml(text: &str) -> Result<Resources, toml::de::Error> {
        toml::from_str(text)
    }

    /// Checks the resources, alone and together, against `limits`.
    pub fn validate(&self, limits: &Limits) -> Result<(), ValidationError> {
        self.namespace.validate().map_err(|e| e.within("namespace"))?;
        check_count("clients", self.clients.len(), limits.clients)?;
        check_count("clientGroups", self.client_groups.len(), limits.client_groups)?;
        check_count("topicSpaces", self.topic_spaces.len(), limits.topic_spaces)?;
        check_count(
            "permissionBindings",
            self.permission_bindings.len(),
            limits.permission_bindings,
        )?;
        check_count("caCertificates", self.ca_certificates.len(), limits.ca_certificates)?;

        // Authentication names are unique case-insensitively: lower-cased name -> client name.
        let mut authentication_names: HashMap<String, &str> = HashMap::new();
        for (name, client) in &self.clients {
            let path = format!("clients[{name}]");
            check_client_name(name).map_err(|problem| ValidationError::new(&path, problem))?;
            client.validate().map_err(|e| e.within(&path))?;
            let authentication_name = client.authentication_name_or(name);
            if let Some(other) =
                authentication_names.insert(authentication_name.to_lowercase(), name)
            {
                return Err(ValidationError::new(
                    format!("{path}.authenticationName"),
                    format!(
                        "{authentication_name:?} is already the authentication name of client \
                         {other:?} (authentication names are unique case-insensitively)"
                    ),
                ));
            }
        }
        for (name, group) in &self.client_groups {
            let path = format!("clientGroups[{name}]");
            check_resource_name(name).map_err(|problem| ValidationError::new(&path, problem))?;
            group.validate().map_err(|e| e.within(&path))?;
        }
        for (name, space) in &self.topic_spaces {
            let path = format!("topicSpaces[{name}]");
            check_resource_name(name).map_err(|problem| ValidationError::new(&path, problem))?;
            space.validate(limits).map_err(|e| e.within(&path))?;
        }
        for (name, binding) in &self.permission_bindings {
            let path = format!("permissionBindings[{name}]");
            check_resource_name(name).map_err(|problem| ValidationError::new(&path, problem))?;
            binding.validate().map_err(|e| e.within(&path))?;
            let group = &binding.client_group_name;
            if group != ALL_GROUP && !self.client_groups.contains_key(group) {
                return Err(ValidationError::new(
                    format!("{path}.clientGroupName"),
                    format!("no client group named {group:?}"),
                ));
            }
            let space = &binding.topic_space_name;
            if !self.topic_spaces.contains_key(space) {
                return Err(ValidationError::new(
                    format!("{path}.topicSpaceName"),
                    format!("no topic space named {space:?}"),
                ));
            }
        }
        for (name, certificate) in &self.ca_certificates {
            let path = format!("caCertificates[{name}]");
            check_resource_name(name).map_err(|problem| ValidationError::new(&path, problem))?;
            certificate.validate().map_err(|e| e.within(&path))?;
        }
        Ok(())
    }

    /// The registered client with this authentication name, compared case-insensitively, as
    /// Event Grid looks clients up. Linear; callers that look up often index the clients once.
    pub fn client_by_authentication_name(
        &self,
        authentication_name: &str,
    ) -> Option<(&str, &ClientProperties)> {
        let wanted = authentication_name.to_lowercase();
        self.clients.iter().find_map(|(name, client)| {
            (client.authentication_name_or(name).to_lowercase() == wanted)
                .then_some((name.as_str(), client))
        })
    }
}

// === impl ClientProperties ===

impl ClientProperties {
    /// The authentication name, which defaults to the client's resource name.
    pub fn authentication_name_or<'a>(&'a self, name: &'a str) -> &'a str {
        self.authentication_name.as_deref().unwrap_or(name)
    }

    /// The client as the REST API shows it: without the password hash.
    pub fn without_secrets(&self) -> ClientProperties {
        ClientProperties { password_hash: None, ..self.clone() }
    }

    /// Checks the fields; paths are relative to the properties.
    pub fn validate(&self) -> Result<(), ValidationError> {
        if let Some(name) = &self.authentication_name {
            let length = name.chars().count();
            if !(1..=128).contains(&length) || name.contains('\0') {
                return Err(ValidationError::new(
                    "authenticationName",
                    "must be 1-128 characters, without U+0000",
                ));
            }
        }
        let mut size = 0;
        for (key, value) in &self.attributes {
            if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(ValidationError::new(
                    format!("attributes.{key}"),
                    "attribute keys may hold only letters, digits and '_'",
                ));
            }
            size += key.len() + attributes::size(value);
        }
        if size >= MAX_ATTRIBUTES_SIZE {
            return Err(ValidationError::new(
                "attributes",
                format!("the attributes take {size} bytes; they must take less than 4 KB"),
            ));
        }
        if let Some(authentication) = &self.client_certificate_authentication {
            authentication.validate().map_err(|e| e.within("clientCertificateAuthentication"))?;
        }
        if let Some(hash) = &self.password_hash
            && !is_argon2_phc(hash)
        {
            return Err(ValidationError::new(
                "passwordHash",
                "must be an Argon2 PHC string ($argon2id$v=19$m=...,t=...,p=...$salt$hash), \
                 never a plain-text password",
            ));
        }
        Ok(())
    }
}

// === impl ClientCertificateAuthentication ===

impl ClientCertificateAuthentication {
    pub fn validate(&self) -> Result<(), ValidationError> {
        let thumbprints = &self.allowed_thumbprints;
        if self.validation_scheme != ValidationScheme::ThumbprintMatch {
            if !thumbprints.is_empty() {
                return Err(ValidationError::new(
                    "allowedThumbprints",
                    "allowed only with validationScheme ThumbprintMatch",
                ));
            }
            return Ok(());
        }
        if !(1..=2).contains(&thumbprints.len()) {
            return Err(ValidationError::new(
                "allowedThumbprints",
                "ThumbprintMatch needs one or two thumbprints (primary and secondary)",
            ));
        }
        for (index, thumbprint) in thumbprints.iter().enumerate() {
            let hex = thumbprint.bytes().all(|b| b.is_ascii_hexdigit());
            if !hex || !matches!(thumbprint.len(), 40 | 64) {
                return Err(ValidationError::new(
                    format!("allowedThumbprints[{index}]"),
                    "must be a hex SHA-256 (64 digits) or SHA-1 (40 digits) thumbprint",
                ));
            }
        }
        Ok(())
    }
}

// === impl ClientGroupProperties, TopicSpaceProperties, PermissionBindingProperties ===

impl ClientGroupProperties {
    pub fn validate(&self) -> Result<(), ValidationError> {
        Query::parse(&self.query).map_err(|e| ValidationError::new("query", e.to_string()))?;
        Ok(())
    }
}

impl TopicSpaceProperties {
    pub fn validate(&self, limits: &Limits) -> Result<(), ValidationError> {
        let count = self.topic_templates.len();
        let most = limits.topic_templates_per_space;
        if count == 0 || count > most {
            return Err(ValidationError::new(
                "topicTemplates",
                format!("a topic space holds 1 to {most} templates, not {count}"),
            ));
        }
        for (index, template) in self.topic_templates.iter().enumerate() {
            TopicTemplate::parse(template).map_err(|e| {
                ValidationError::new(format!("topicTemplates[{index}]"), e.to_string())
            })?;
        }
        Ok(())
    }
}

impl PermissionBindingProperties {
    /// Checks the fields alone; whether the group and space exist is checked by
    /// [`Resources::validate`].
    pub fn validate(&self) -> Result<(), ValidationError> {
        if self.client_group_name != ALL_GROUP {
            check_resource_name(&self.client_group_name)
                .map_err(|problem| ValidationError::new("clientGroupName", problem))?;
        }
        check_resource_name(&self.topic_space_name)
            .map_err(|problem| ValidationError::new("topicSpaceName", problem))
    }
}

impl CaCertificateProperties {
    /// Checks that the text is one PEM certificate block. Whether it parses as X.509 is for the
    /// certificate authentication module to say.
    pub fn validate(&self) -> Result<(), ValidationError> {
        const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
        const END: &str = "-----END CERTIFICATE-----";
        let text = self.encoded_certificate.trim();
        let body = text.strip_prefix(BEGIN).and_then(|rest| rest.strip_suffix(END));
        let ok = body.is_some_and(|body| {
            let body = body.trim();
            !body.is_empty()
                && body.bytes().all(|b| b.is_ascii_alphanumeric() || b"+/=\r\n".contains(&b))
        });
        if ok {
            Ok(())
        } else {
            Err(ValidationError::new(
                "encodedCertificate",
                "must be one PEM block from -----BEGIN CERTIFICATE----- to \
                 -----END CERTIFICATE-----",
            ))
        }
    }
}

// === impl ValidationError ===

impl ValidationError {
    pub fn new(path: impl Into<String>, problem: impl Into<String>) -> ValidationError {
        ValidationError { path: path.into(), problem: problem.into() }
    }

    /// The same error with its path nested under `prefix` (`query` under `clientGroups[edge]`
    /// gives `clientGroups[edge].query`).
    pub fn within(self, prefix: &str) -> ValidationError {
        let path = if self.path.is_empty() {
            prefix.to_string()
        } else {
            format!("{prefix}.{}", self.path)
        };
        ValidationError { path, ..self }
    }
}

// === names ===

/// A resource name Event Grid would refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("name {0:?} must be 3-50 of A-Z, a-z, 0-9 and '-'")]
    Resource(String),
    #[error("client name {0:?} must be 1-128 of A-Z, a-z, 0-9, '-', ':', '.' and '_'")]
    Client(String),
    #[error(
        "{ALL_GROUP} is the built-in group of every client: it cannot be created, changed or deleted"
    )]
    BuiltInGroup,
}

/// The problem as text, for the errors that name the field it is found in
/// ([`ValidationError::new`], the routing config's errors).
impl From<NameError> for String {
    fn from(error: NameError) -> String {
        error.to_string()
    }
}

/// Event Grid's rule for group, space, binding, CA certificate and namespace names: 3–50 of
/// `[A-Za-z0-9-]`.
pub fn check_resource_name(name: &str) -> Result<(), NameError> {
    let ok = (3..=50).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if ok { Ok(()) } else { Err(NameError::Resource(name.into())) }
}

/// Event Grid's rule for client names: 1–128 of `[A-Za-z0-9-:._]`, case-sensitive.
pub fn check_client_name(name: &str) -> Result<(), NameError> {
    let ok = (1..=128).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-:._".contains(&b));
    if ok { Ok(()) } else { Err(NameError::Client(name.into())) }
}

fn check_count(path: &str, count: usize, limit: usize) -> Result<(), ValidationError> {
    if count > limit {
        Err(ValidationError::new(path, format!("{count} declared, at most {limit} allowed")))
    } else {
        Ok(())
    }
}

/// The shape of an Argon2 PHC string: `$argon2{id,i,d}$[v=N$]params$salt$hash`, with salt and
/// hash in unpadded base64. Verifying a password is the authenticator's job.
fn is_argon2_phc(hash: &str) -> bool {
    let parts: Vec<&str> = hash.split('$').collect();
    let (algorithm, rest) = match parts.as_slice() {
        ["", algorithm, rest @ ..] => (*algorithm, rest),
        _ => return false,
    };
    let rest = match rest {
        [version, rest @ ..] if version.starts_with("v=") => rest,
        rest => rest,
    };
    let base64 = |s: &str| {
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
    };
    matches!(algorithm, "argon2id" | "argon2i" | "argon2d")
        && matches!(rest, [params, salt, hash]
            if params.starts_with("m=") && base64(salt) && base64(hash))
}

#[cfg(test)]
mod tests;
