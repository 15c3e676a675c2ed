//! The operator's own configuration (a YAML file the chart renders): the
//! default tool policy for namespaces without one, the environments it
//! knows with their mutation rules and cluster-ID bindings, and the sidecar
//! image and resources used when a server does not say.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::api::networking::v1::NetworkPolicyPeer;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde::{Deserialize, Serialize};

use crate::crd::{ToolGroupSelector, ToolSelector};

mod identity_provider;
pub use identity_provider::{DefaultIdentityProvider, OperatorAuth};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct OperatorConfig {
    /// The policy of a namespace that has no `McpToolPolicy` named `default`.
    pub default_policy: DefaultPolicy,
    /// Environment name -> its rules. A server naming an environment that is
    /// not here is not deployed.
    pub environments: BTreeMap<String, EnvironmentRules>,
    pub sidecar: SidecarDefaults,
    /// The ClusterRole each sidecar's ServiceAccount is bound to so it can
    /// create TokenReviews and SubjectAccessReviews.
    pub auth_delegator_cluster_role: String,
    /// The cluster's DNS domain, for endpoints and allowed Host headers.
    pub cluster_domain: String,
    /// Sign-in defaults: the organization's identity provider, for servers
    /// whose spec.auth.oidc names no issuer.
    #[serde(skip_serializing_if = "is_default")]
    pub auth: OperatorAuth,
}

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct DefaultPolicy {
    pub allow: Vec<ToolSelector>,
    pub deny: Vec<ToolSelector>,
}

impl Default for DefaultPolicy {
    /// Secure by default: read-only tools only.
    fn default() -> Self {
        Self {
            allow: vec![ToolSelector::Group(ToolGroupSelector::Observe)],
            deny: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvironmentRules {
    /// How mutation tools may be exposed in this environment.
    pub mutations: MutationRule,
    /// The Kafka cluster ID servers of this environment must talk to. A
    /// server that names another ID is not deployed; one that names none
    /// gets this one as its fence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,
}

/// The sidecar enforces the same rule; one type for both.
pub use mcp_kafka_sidecar::config::MutationRule;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct SidecarDefaults {
    pub image: String,
    pub resources: ResourceRequirements,
    /// Who may reach the sidecars' metrics port (a NetworkPolicy rule of its
    /// own: `/mcp` stays fenced to the server's environment). Default: any
    /// namespace, so that a Prometheus in `monitoring` scrapes them, as
    /// Strimzi's policies admit metrics; metrics carry no secrets. Empty: no one.
    pub metrics_from: Vec<NetworkPolicyPeer>,
}

impl Default for SidecarDefaults {
    fn default() -> Self {
        use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
        // Written in the apiserver's canonical form, so that reading back
        // the Deployment finds exactly what was applied (no churn).
        let q = |s: &str| Quantity(s.to_string());
        Self {
            image: format!(
                "ghcr.io/mcpkafka/mcp-kafka-sidecar:{}",
                env!("CARGO_PKG_VERSION")
            ),
            resources: ResourceRequirements {
                requests: Some(BTreeMap::from([
                    ("cpu".into(), q("50m")),
                    ("memory".into(), q("32Mi")),
                ])),
                limits: Some(BTreeMap::from([("memory".into(), q("128Mi"))])),
                ..Default::default()
            },
            metrics_from: vec![NetworkPolicyPeer {
                namespace_selector: Some(LabelSelector::default()),
                ..Default::default()
            }],
        }
    }
}

impl Default for OperatorConfig {
    fn default() -> Self {
        let env = |mutations| EnvironmentRules {
            mutations,
            cluster_id: None,
        };
        Self {
            default_policy: DefaultPolicy::default(),
            environments: BTreeMap::from([
                ("dev".into(), env(MutationRule::Direct)),
                ("staging".into(), env(MutationRule::TwoPhase)),
                ("prod".into(), env(MutationRule::BreakGlass)),
            ]),
            sidecar: SidecarDefaults::default(),
            auth_delegator_cluster_role: "system:auth-delegator".into(),
            cluster_domain: "cluster.local".into(),
            auth: OperatorAuth::default(),
        }
    }
}

impl OperatorConfig {
    /// Parses the YAML file; an error names the field.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let de = serde_yaml::Deserializer::from_str(text);
        let config: Self = serde_path_to_error::deserialize(de).map_err(|e| {
            anyhow::anyhow!("invalid operator config at `{}`: {}", e.path(), e.inner())
        })?;
        // The apiserver refuses a peer that names nothing, and would refuse
        // every server's NetworkPolicy: say so at start instead.
        if let Some(i) = config.sidecar.metrics_from.iter().position(|p| {
            p.namespace_selector.is_none() && p.pod_selector.is_none() && p.ip_block.is_none()
        }) {
            anyhow::bail!(
                "invalid operator config at `sidecar.metricsFrom[{i}]`: a peer names a \
                 namespaceSelector, a podSelector or an ipBlock"
            );
        }
        if let Some((field, problem)) = config.auth.oidc.as_ref().and_then(|p| p.problem()) {
            anyhow::bail!("invalid operator config at `auth.oidc.{field}`: {problem}");
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_read_only_with_three_environments() {
        let c = OperatorConfig::parse("{}").unwrap();
        assert_eq!(c, OperatorConfig::default());
        assert_eq!(
            c.default_policy.allow,
            vec![ToolSelector::Group(ToolGroupSelector::Observe)]
        );
        assert_eq!(c.environments["prod"].mutations, MutationRule::BreakGlass);
        assert_eq!(c.environments["staging"].mutations, MutationRule::TwoPhase);
        assert_eq!(c.environments["dev"].mutations, MutationRule::Direct);
    }

    #[test]
    fn errors_name_the_field() {
        let e = OperatorConfig::parse("environments: {qa: {mutations: sometimes}}").unwrap_err();
        assert!(e.to_string().contains("environments.qa.mutations"), "{e}");
        let e = OperatorConfig::parse("defaultPolicy: {allow: [drop_all]}").unwrap_err();
        assert!(e.to_string().contains("defaultPolicy.allow"), "{e}");
        let e =
            OperatorConfig::parse("sidecar: {metricsFrom: [{namespaceSelectr: {}}]}").unwrap_err();
        assert!(e.to_string().contains("sidecar.metricsFrom[0]"), "{e}");
    }

    #[test]
    fn a_default_identity_provider_is_checked_at_start() {
        let c =
            OperatorConfig::parse("auth: {oidc: {issuer: 'https://sso.example.com/realms/acme'}}")
                .unwrap();
        assert_eq!(
            c.auth.oidc.unwrap().issuer,
            "https://sso.example.com/realms/acme"
        );
        assert_eq!(OperatorConfig::parse("{}").unwrap().auth.oidc, None);
        const PEM: &str = "\"-----BEGIN CERTIFICATE-----\\nMIIB\\n-----END CERTIFICATE-----\\n\"";
        for (yaml, field) in [
            ("{issuer: 'http://sso.example.com'}", "auth.oidc.issuer"),
            (
                "{issuer: 'https://user:pw@sso.example.com'}",
                "auth.oidc.issuer",
            ),
            ("{issuer: 'https://'}", "auth.oidc.issuer"),
            (
                &format!(
                    "{{issuer: 'https://sso', caBundle: {PEM}, caConfigMapRef: {{name: t, key: ca.crt}}}}"
                ),
                "auth.oidc.caBundle",
            ),
            (
                "{issuer: 'https://sso', caBundle: 'not a certificate'}",
                "auth.oidc.caBundle",
            ),
            (
                "{issuer: 'https://sso', claims: {username: {claim: ' '}}}",
                "auth.oidc.claims.username",
            ),
            (
                "{issuer: 'https://sso', claims: {groups: {claim: groups, prefix: 'a b'}}}",
                "auth.oidc.claims.groups",
            ),
            (
                "{issuer: 'https://sso', scopes: ['two words']}",
                "auth.oidc.scopes",
            ),
            ("{issuer: 'https://sso', caFile: /etc/ca.crt}", "auth.oidc"),
        ] {
            let e = OperatorConfig::parse(&format!("auth: {{oidc: {yaml}}}")).unwrap_err();
            assert!(e.to_string().contains(&format!("`{field}")), "{yaml}: {e}");
        }
    }

    #[test]
    fn metrics_may_be_scraped_from_any_namespace_unless_configured() {
        let c = OperatorConfig::default();
        assert_eq!(
            serde_json::to_value(&c.sidecar.metrics_from).unwrap(),
            serde_json::json!([{"namespaceSelector": {}}])
        );
        let c = OperatorConfig::parse(
            "sidecar: {metricsFrom: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: monitoring}}}]}",
        )
        .unwrap();
        assert_eq!(
            c.sidecar.metrics_from[0]
                .namespace_selector
                .as_ref()
                .unwrap()
                .match_labels
                .as_ref()
                .unwrap()["kubernetes.io/metadata.name"],
            "monitoring"
        );
        assert!(
            c.sidecar.image.starts_with("ghcr.io/"),
            "the other defaults stay"
        );
        assert!(
            OperatorConfig::parse("sidecar: {metricsFrom: []}")
                .unwrap()
                .sidecar
                .metrics_from
                .is_empty()
        );
    }
}
