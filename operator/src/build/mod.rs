//! Build: spec in, desired objects out. Pure functions (no client, no
//! clock) so that unit tests cover them with plain values; the reconciler
//! applies what they return.

pub mod oidc;
pub mod rbac;
mod schema_registry;
mod workload;

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};
use mcp_kafka_sidecar::tool_name::ToolName;
use sha2::{Digest, Sha256};

use crate::config::OperatorConfig;
use crate::crd::McpKafkaServer;
use crate::fence::Fenced;
use crate::owned::{Objects, Owned};

pub use rbac::{IssuedToken, token_secret};
pub use workload::{
    auth_status, jobs_status, served_auth, served_jobs, served_scope, served_tools, sidecar_config,
};

/// The field manager of every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = "mcp-kafka-operator";
/// Put on every object the operator makes; its watches select on it.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "mcp-kafka-operator");
/// The server an object belongs to (within its namespace).
pub const SERVER_LABEL: &str = "mcpkafka.dev/server";
/// The server's namespace, on the one cluster-scoped object (the
/// ClusterRoleBinding), which cannot carry an owner reference.
pub const SERVER_NAMESPACE_LABEL: &str = "mcpkafka.dev/server-namespace";
/// A hash of the desired object on the object itself: when it differs, the
/// object is applied again (this catches fields the operator stopped setting).
pub const DESIRED_HASH_ANNOTATION: &str = "mcpkafka.dev/desired-hash";
/// On the pod template: a hash of the sidecar config, so a change rolls out.
pub const CONFIG_HASH_ANNOTATION: &str = "mcpkafka.dev/config-hash";
/// The sidecar's MCP port (`/mcp`, `/healthz`, `/readyz`).
pub const MCP_PORT: i32 = 8090;
/// The sidecar's metrics port (`/metrics` only), which the NetworkPolicy
/// admits from `sidecar.metricsFrom` while `/mcp` stays fenced.
pub const METRICS_PORT: i32 = 9090;

/// Everything the build step needs, already read and decided.
pub struct Inputs<'a> {
    pub server: &'a McpKafkaServer,
    pub config: &'a OperatorConfig,
    pub fenced: &'a Fenced,
    /// The tools the server exposes (after policy).
    pub tools: &'a [ToolName],
    /// The namespace policy's break-glass window, if open now.
    pub break_glass: Option<&'a crate::crd::BreakGlass>,
    /// The topics and groups the server and its clients may reach.
    pub scope: &'a crate::scope::ScopeDecision,
}

impl Inputs<'_> {
    pub fn name(&self) -> String {
        self.server.name_any()
    }

    pub fn namespace(&self) -> String {
        self.server.namespace().unwrap_or_default()
    }
}

/// The objects one server should have, by kind. Token Secrets are not
/// among them: they need a minted token first (the apply step adds them,
/// made by [`token_secret`]).
pub type Desired = Owned<Objects>;

pub fn desired(inputs: &Inputs) -> Desired {
    let config_map = workload::config_map(inputs);
    let data = config_map.data.as_ref();
    let config_text = data
        .and_then(|d| d.get(workload::CONFIG_FILE))
        .map_or("", |s| s);
    // An inline CA of the identity provider rides in the same ConfigMap: a
    // new one rolls out as a config change does (the text alone, when there
    // is none, so that other servers' hashes stay as they were).
    let config_hash = match data.and_then(|d| d.get(oidc::INLINE_CA_KEY)) {
        Some(ca) => hash_text(&format!("{config_text}\n{ca}")),
        None => hash_text(config_text),
    };
    Owned {
        service_accounts: rbac::service_accounts(inputs),
        cluster_role_bindings: vec![rbac::auth_delegator_binding(inputs)],
        roles: rbac::client_roles(inputs),
        role_bindings: rbac::client_role_bindings(inputs),
        deployments: vec![workload::deployment(inputs, &config_hash)],
        config_maps: vec![config_map],
        services: vec![workload::service(inputs)],
        network_policies: vec![workload::network_policy(inputs)],
        pod_disruption_budgets: workload::pod_disruption_budget(inputs)
            .into_iter()
            .collect(),
        secrets: Vec::new(),
    }
}

/// Names, one place for each.
pub mod names {
    /// The sidecar's Deployment, Service, ServiceAccount, NetworkPolicy, PDB.
    pub fn sidecar(server: &str) -> String {
        format!("{server}-mcp")
    }

    pub fn config_map(server: &str) -> String {
        format!("{server}-mcp-config")
    }

    /// A client's Role, RoleBinding and (issueToken clients) ServiceAccount.
    pub fn client(server: &str, client: &str) -> String {
        format!("{server}-mcp-client-{client}")
    }

    /// The ServiceAccount a client calls as: the one it names, or for an
    /// issueToken client the one the operator makes for it.
    pub fn client_service_account(server: &str, client: &crate::crd::ClientSpec) -> String {
        match &client.service_account_name {
            Some(sa) => sa.clone(),
            None => self::client(server, &client.name),
        }
    }

    /// The username Kubernetes gives a ServiceAccount's tokens (what a
    /// TokenReview answers, so what the sidecar tells callers apart by).
    pub fn service_account_username(namespace: &str, service_account: &str) -> String {
        format!("system:serviceaccount:{namespace}:{service_account}")
    }

    /// The Secret holding an issueToken client's token.
    pub fn token_secret(server: &str, client: &str) -> String {
        format!("{server}-mcp-client-{client}-token")
    }

    pub fn auth_delegator_binding(namespace: &str, server: &str) -> String {
        format!("mcpkafka:{namespace}:{server}:auth-delegator")
    }

    /// The audience the sidecar accepts tokens for (the sidecar's own default).
    pub fn audience(namespace: &str, server: &str) -> String {
        mcp_kafka_sidecar::config::default_audience(namespace, server)
    }

    pub fn endpoint(namespace: &str, server: &str, cluster_domain: &str) -> String {
        format!(
            "http://{}.{namespace}.svc.{cluster_domain}:{}/mcp",
            sidecar(server),
            super::MCP_PORT
        )
    }
}

/// Labels that select the sidecar's pods.
fn selector_labels(server: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "app.kubernetes.io/name".to_string(),
            "mcp-kafka-sidecar".to_string(),
        ),
        ("app.kubernetes.io/instance".to_string(), server.to_string()),
    ])
}

fn labels(server: &str, component: &str) -> BTreeMap<String, String> {
    let mut l = selector_labels(server);
    l.insert("app.kubernetes.io/component".into(), component.into());
    l.insert(MANAGED_BY.0.into(), MANAGED_BY.1.into());
    l.insert(SERVER_LABEL.into(), server.into());
    l
}

fn owner(inputs: &Inputs) -> OwnerReference {
    inputs
        .server
        .controller_owner_ref(&())
        .expect("a server read from the API has a name and uid")
}

/// Metadata of a namespaced object owned by the server.
fn owned_meta(inputs: &Inputs, name: String, component: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(inputs.namespace()),
        labels: Some(labels(&inputs.name(), component)),
        owner_references: Some(vec![owner(inputs)]),
        ..Default::default()
    }
}

pub fn hash_text(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// Stamps the object with a hash of itself (without the stamp).
pub fn stamp_desired_hash<K: Resource + serde::Serialize>(object: &mut K) -> String {
    object.annotations_mut().remove(DESIRED_HASH_ANNOTATION);
    let hash = hash_text(&serde_json::to_string(object).expect("objects serialize"));
    object
        .annotations_mut()
        .insert(DESIRED_HASH_ANNOTATION.into(), hash.clone());
    hash
}

#[cfg(test)]
mod tests;
