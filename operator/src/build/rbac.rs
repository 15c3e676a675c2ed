//! Identities and RBAC: the sidecar's ServiceAccount and the binding that
//! lets it ask TokenReview/SubjectAccessReview; per client a Role granting
//! exactly its tools as custom verbs on `mcpkafkaservers/tools` of this one
//! server, its RoleBinding, and for `issueToken` clients a ServiceAccount and
//! the Secret that carries its token.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{
    ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;

use super::{Inputs, labels, names, owned_meta};
use crate::crd::ClientSpec;

/// A token minted with the TokenRequest API for an issueToken client.
#[derive(Debug, Clone, PartialEq)]
pub struct IssuedToken {
    pub token: String,
    pub issued_at: Timestamp,
    pub expires_at: Timestamp,
    /// The lifetime the spec asked for (a change mints a new token).
    pub lifetime_seconds: i64,
    /// The ServiceAccount the token belongs to (a recreated one voids it).
    pub service_account_uid: String,
}

pub const TOKEN_KEY: &str = "token";
pub const ENDPOINT_KEY: &str = "endpoint";
pub const ISSUED_AT_ANNOTATION: &str = "mcpkafka.dev/token-issued-at";
pub const EXPIRES_AT_ANNOTATION: &str = "mcpkafka.dev/token-expires-at";
pub const LIFETIME_ANNOTATION: &str = "mcpkafka.dev/token-lifetime-seconds";
pub const SERVICE_ACCOUNT_UID_ANNOTATION: &str = "mcpkafka.dev/token-service-account-uid";

/// Who a client's RoleBinding names: its ServiceAccount (its own or the
/// one made for its issued token), or the identity provider's users and
/// groups with the provider's prefixes. While no provider can be resolved
/// (status says why), no one signs in that way, and such a binding names
/// no one.
fn client_subjects(inputs: &Inputs, client: &ClientSpec) -> Vec<Subject> {
    if client.users.is_empty() && client.groups.is_empty() {
        return vec![Subject {
            kind: "ServiceAccount".into(),
            name: names::client_service_account(&inputs.name(), client),
            namespace: Some(inputs.namespace()),
            api_group: None,
        }];
    }
    let Ok(Some(sign_in)) = super::oidc::resolve(&inputs.server.spec, inputs.config) else {
        return Vec::new();
    };
    let subject = |kind: &str, prefix: &str, name: &str| Subject {
        kind: kind.into(),
        name: super::oidc::prefixed(prefix, name),
        namespace: None,
        api_group: Some("rbac.authorization.k8s.io".into()),
    };
    let users = client
        .users
        .iter()
        .map(|u| subject("User", &sign_in.config.username_prefix, u));
    let groups = client
        .groups
        .iter()
        .map(|g| subject("Group", &sign_in.config.groups_prefix, g));
    users.chain(groups).collect()
}

pub(super) fn service_accounts(inputs: &Inputs) -> Vec<ServiceAccount> {
    let server = inputs.name();
    let sidecar = ServiceAccount {
        metadata: owned_meta(inputs, names::sidecar(&server), "mcp-server"),
        ..Default::default()
    };
    let clients = inputs
        .server
        .spec
        .clients
        .iter()
        .filter(|c| c.issue_token.is_some())
        .map(|c| ServiceAccount {
            metadata: owned_meta(inputs, names::client(&server, &c.name), "client"),
            // The client's tokens come from TokenRequest only; no token is mounted anywhere.
            automount_service_account_token: Some(false),
            ..Default::default()
        });
    std::iter::once(sidecar).chain(clients).collect()
}

/// Cluster-scoped, so it cannot be owned by the (namespaced) server: the
/// operator removes it through the server's finalizer instead.
pub(super) fn auth_delegator_binding(inputs: &Inputs) -> ClusterRoleBinding {
    let (server, namespace) = (inputs.name(), inputs.namespace());
    let mut labels = labels(&server, "mcp-server");
    labels.insert(super::SERVER_NAMESPACE_LABEL.into(), namespace.clone());
    ClusterRoleBinding {
        metadata: ObjectMeta {
            name: Some(names::auth_delegator_binding(&namespace, &server)),
            labels: Some(labels),
            ..Default::default()
        },
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "ClusterRole".into(),
            name: inputs.config.auth_delegator_cluster_role.clone(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: names::sidecar(&server),
            namespace: Some(namespace),
            api_group: None,
        }]),
    }
}

pub(super) fn client_roles(inputs: &Inputs) -> Vec<Role> {
    let server = inputs.name();
    inputs
        .server
        .spec
        .clients
        .iter()
        .map(|client| {
            // Only tools the server exposes: a grant for a tool the policy
            // removed would come back to life when the policy allows it again,
            // without anyone looking at this client.
            let verbs: Vec<String> = mcp_kafka_sidecar::tool_name::ToolName::ALL
                .iter()
                .filter(|t| client.tools.contains(t) && inputs.tools.contains(t))
                .map(|t| t.as_str().to_string())
                .collect();
            let rules = (!verbs.is_empty()).then(|| {
                vec![PolicyRule {
                    api_groups: Some(vec!["mcpkafka.dev".into()]),
                    resources: Some(vec!["mcpkafkaservers/tools".into()]),
                    resource_names: Some(vec![server.clone()]),
                    verbs,
                    non_resource_urls: None,
                }]
            });
            Role {
                metadata: owned_meta(inputs, names::client(&server, &client.name), "client"),
                rules: Some(rules.unwrap_or_default()),
            }
        })
        .collect()
}

pub(super) fn client_role_bindings(inputs: &Inputs) -> Vec<RoleBinding> {
    let server = inputs.name();
    inputs
        .server
        .spec
        .clients
        .iter()
        .map(|client| {
            let name = names::client(&server, &client.name);
            RoleBinding {
                metadata: owned_meta(inputs, name.clone(), "client"),
                role_ref: RoleRef {
                    api_group: Some("rbac.authorization.k8s.io".into()),
                    kind: "Role".into(),
                    name,
                },
                subjects: Some(client_subjects(inputs, client)),
            }
        })
        .collect()
}

/// The Secret of an issueToken client: the token, the endpoint it is for,
/// and annotations saying when it was issued and expires (what rotation reads).
pub fn token_secret(inputs: &Inputs, client: &str, token: &IssuedToken) -> Secret {
    let server = inputs.name();
    let mut metadata = owned_meta(inputs, names::token_secret(&server, client), "client-token");
    metadata.annotations = Some(BTreeMap::from([
        (ISSUED_AT_ANNOTATION.into(), token.issued_at.to_string()),
        (EXPIRES_AT_ANNOTATION.into(), token.expires_at.to_string()),
        (
            LIFETIME_ANNOTATION.into(),
            token.lifetime_seconds.to_string(),
        ),
        (
            SERVICE_ACCOUNT_UID_ANNOTATION.into(),
            token.service_account_uid.clone(),
        ),
    ]));
    Secret {
        metadata,
        type_: Some("Opaque".into()),
        string_data: None,
        data: Some(BTreeMap::from([
            (
                TOKEN_KEY.into(),
                k8s_openapi::ByteString(token.token.clone().into_bytes()),
            ),
            (
                ENDPOINT_KEY.into(),
                k8s_openapi::ByteString(
                    names::endpoint(&inputs.namespace(), &server, &inputs.config.cluster_domain)
                        .into_bytes(),
                ),
            ),
        ])),
        ..Default::default()
    }
}
