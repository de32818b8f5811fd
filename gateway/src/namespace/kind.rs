//! The five kinds of namespace resource the management API and the store handle, and the
//! operations on one resource of a kind inside [`Resources`], so callers need no per-kind code.
//!
//! A kind's name is the same everywhere: the URL segment (`/clientGroups/{name}`), the store's
//! `PutResource` kind and the config table (`[clientGroups.NAME]`).

use std::collections::BTreeMap;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::access::model::{
    ALL_GROUP, NameError, Resources, ValidationError, check_client_name, check_resource_name,
};

/// A kind of namespace resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourceKind {
    Clients,
    ClientGroups,
    TopicSpaces,
    PermissionBindings,
    CaCertificates,
}

impl ResourceKind {
    pub const ALL: [ResourceKind; 5] = [
        ResourceKind::Clients,
        ResourceKind::ClientGroups,
        ResourceKind::TopicSpaces,
        ResourceKind::PermissionBindings,
        ResourceKind::CaCertificates,
    ];

    /// The kind's name in URLs, the store and the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceKind::Clients => "clients",
            ResourceKind::ClientGroups => "clientGroups",
            ResourceKind::TopicSpaces => "topicSpaces",
            ResourceKind::PermissionBindings => "permissionBindings",
            ResourceKind::CaCertificates => "caCertificates",
        }
    }

    /// The kind named `name`, as [`ResourceKind::as_str`] spells it.
    pub fn parse(name: &str) -> Option<ResourceKind> {
        ResourceKind::ALL.into_iter().find(|kind| kind.as_str() == name)
    }

    /// Event Grid's ARM resource type, as GET responses show it.
    pub fn arm_type(self) -> &'static str {
        match self {
            ResourceKind::Clients => "Microsoft.EventGrid/namespaces/clients",
            ResourceKind::ClientGroups => "Microsoft.EventGrid/namespaces/clientGroups",
            ResourceKind::TopicSpaces => "Microsoft.EventGrid/namespaces/topicSpaces",
            ResourceKind::PermissionBindings => "Microsoft.EventGrid/namespaces/permissionBindings",
            ResourceKind::CaCertificates => "Microsoft.EventGrid/namespaces/caCertificates",
        }
    }

    /// Checks a resource name of this kind. `$all` is built in: it names no declared group.
    pub fn check_name(self, name: &str) -> Result<(), NameError> {
        match self {
            ResourceKind::Clients => check_client_name(name),
            ResourceKind::ClientGroups if name == ALL_GROUP => Err(NameError::BuiltInGroup),
            _ => check_resource_name(name),
        }
    }

    /// The names of this kind's resources, in order.
    pub fn names(self, resources: &Resources) -> Vec<String> {
        fn keys<P>(map: &BTreeMap<String, P>) -> Vec<String> {
            map.keys().cloned().collect()
        }
        match self {
            ResourceKind::Clients => keys(&resources.clients),
            ResourceKind::ClientGroups => keys(&resources.client_groups),
            ResourceKind::TopicSpaces => keys(&resources.topic_spaces),
            ResourceKind::PermissionBindings => keys(&resources.permission_bindings),
            ResourceKind::CaCertificates => keys(&resources.ca_certificates),
        }
    }

    /// One resource's properties as JSON, secrets included (what the store keeps).
    pub fn get(self, resources: &Resources, name: &str) -> Option<serde_json::Value> {
        fn one<P: Serialize>(map: &BTreeMap<String, P>, name: &str) -> Option<serde_json::Value> {
            map.get(name).and_then(|p| serde_json::to_value(p).ok())
        }
        match self {
            ResourceKind::Clients => one(&resources.clients, name),
            ResourceKind::ClientGroups => one(&resources.client_groups, name),
            ResourceKind::TopicSpaces => one(&resources.topic_spaces, name),
            ResourceKind::PermissionBindings => one(&resources.permission_bindings, name),
            ResourceKind::CaCertificates => one(&resources.ca_certificates, name),
        }
    }

    /// One resource's properties as the REST API shows them: without secrets.
    pub fn get_public(self, resources: &Resources, name: &str) -> Option<serde_json::Value> {
        if self == ResourceKind::Clients {
            let client = resources.clients.get(name)?.without_secrets();
            return serde_json::to_value(client).ok();
        }
        self.get(resources, name)
    }

    /// Parses `properties` as this kind's properties and stores them under `name`; returns
    /// whether a resource of that name was replaced. Errors name the field under `properties`.
    /// Does not validate the resources as a whole.
    pub fn put(
        self,
        resources: &mut Resources,
        name: &str,
        properties: serde_json::Value,
    ) -> Result<bool, ValidationError> {
        fn insert<P: DeserializeOwned>(
            map: &mut BTreeMap<String, P>,
            name: &str,
            properties: serde_json::Value,
        ) -> Result<bool, ValidationError> {
            let parsed: P = serde_path_to_error::deserialize(properties).map_err(|error| {
                let path = error.path().to_string();
                let path =
                    if path == "." { "properties".into() } else { format!("properties.{path}") };
                ValidationError::new(path, error.into_inner().to_string())
            })?;
            Ok(map.insert(name.to_string(), parsed).is_some())
        }
        match self {
            ResourceKind::Clients => insert(&mut resources.clients, name, properties),
            ResourceKind::ClientGroups => insert(&mut resources.client_groups, name, properties),
            ResourceKind::TopicSpaces => insert(&mut resources.topic_spaces, name, properties),
            ResourceKind::PermissionBindings => {
                insert(&mut resources.permission_bindings, name, properties)
            }
            ResourceKind::CaCertificates => {
                insert(&mut resources.ca_certificates, name, properties)
            }
        }
    }

    /// Removes a resource; returns whether it existed.
    pub fn remove(self, resources: &mut Resources, name: &str) -> bool {
        match self {
            ResourceKind::Clients => resources.clients.remove(name).is_some(),
            ResourceKind::ClientGroups => resources.client_groups.remove(name).is_some(),
            ResourceKind::TopicSpaces => resources.topic_spaces.remove(name).is_some(),
            ResourceKind::PermissionBindings => {
                resources.permission_bindings.remove(name).is_some()
            }
            ResourceKind::CaCertificates => resources.ca_certificates.remove(name).is_some(),
        }
    }
}
