//! Environment fences: a server is deployed only when its environment is the
//! one its namespace is labelled with (the label, set by admins, is
//! authoritative), the operator knows that environment, and the Kafka
//! cluster ID it names agrees with the environment's binding.

use crate::config::{MutationRule, OperatorConfig};

/// The namespace label that says which environment a namespace belongs to.
pub const ENVIRONMENT_LABEL: &str = "mcpkafka.dev/environment";

/// The fence holds: what the server is deployed with.
#[derive(Debug, Clone, PartialEq)]
pub struct Fenced {
    pub mutations: MutationRule,
    /// The cluster ID the sidecar must find (the spec's, or the environment's binding).
    pub expected_cluster_id: Option<String>,
}

/// The fence does not hold: nothing is deployed.
#[derive(Debug, Clone, PartialEq)]
pub struct FenceBroken {
    /// A CamelCase condition reason.
    pub reason: &'static str,
    pub message: String,
}

pub fn check(
    spec_environment: &str,
    namespace: &str,
    namespace_label: Option<&str>,
    spec_cluster_id: Option<&str>,
    config: &OperatorConfig,
) -> Result<Fenced, FenceBroken> {
    let broken = |reason, message| Err(FenceBroken { reason, message });
    match namespace_label {
        None => {
            return broken(
                "EnvironmentMismatch",
                format!(
                    "namespace {namespace} has no {ENVIRONMENT_LABEL} label; an admin must label it {spec_environment:?} before this server is deployed"
                ),
            );
        }
        Some(label) if label != spec_environment => {
            return broken(
                "EnvironmentMismatch",
                format!(
                    "spec.environment is {spec_environment:?} but namespace {namespace} is labelled {ENVIRONMENT_LABEL}={label:?}"
                ),
            );
        }
        Some(_) => {}
    }
    let Some(rules) = config.environments.get(spec_environment) else {
        let known: Vec<&str> = config.environments.keys().map(String::as_str).collect();
        return broken(
            "UnknownEnvironment",
            format!(
                "the operator knows no environment {spec_environment:?} (known: {})",
                known.join(", ")
            ),
        );
    };
    let expected_cluster_id = match (&rules.cluster_id, spec_cluster_id) {
        (Some(bound), Some(named)) if bound != named => {
            return broken(
                "ClusterIdMismatch",
                format!(
                    "spec.kafka.expectedClusterId is {named:?} but environment {spec_environment} is bound to Kafka cluster {bound:?}"
                ),
            );
        }
        (Some(bound), _) => Some(bound.clone()),
        (None, named) => named.map(str::to_string),
    };
    Ok(Fenced {
        mutations: rules.mutations,
        expected_cluster_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_with_prod_bound() -> OperatorConfig {
        let mut c = OperatorConfig::default();
        c.environments.get_mut("prod").unwrap().cluster_id = Some("PRODCLUSTER".into());
        c
    }

    #[test]
    fn the_label_is_authoritative() {
        let c = OperatorConfig::default();
        let e = check("prod", "team-a", Some("dev"), None, &c).unwrap_err();
        assert_eq!(e.reason, "EnvironmentMismatch");
        assert!(
            e.message
                .contains(r#"labelled mcpkafka.dev/environment="dev""#),
            "{}",
            e.message
        );
        let e = check("dev", "team-a", None, None, &c).unwrap_err();
        assert_eq!(e.reason, "EnvironmentMismatch");
        assert!(
            e.message.contains("has no mcpkafka.dev/environment label"),
            "{}",
            e.message
        );
        assert_eq!(
            check("dev", "team-a", Some("dev"), None, &c)
                .unwrap()
                .mutations,
            MutationRule::Direct
        );
    }

    #[test]
    fn unknown_environments_are_not_deployed() {
        let e = check("qa", "team-a", Some("qa"), None, &OperatorConfig::default()).unwrap_err();
        assert_eq!(e.reason, "UnknownEnvironment");
        assert!(e.message.contains("dev, prod, staging"), "{}", e.message);
    }

    #[test]
    fn cluster_id_bindings_fence_and_fill_in() {
        let c = config_with_prod_bound();
        let e = check("prod", "p", Some("prod"), Some("DEVCLUSTER"), &c).unwrap_err();
        assert_eq!(e.reason, "ClusterIdMismatch");
        let ok = check("prod", "p", Some("prod"), None, &c).unwrap();
        assert_eq!(ok.expected_cluster_id.as_deref(), Some("PRODCLUSTER"));
        assert_eq!(ok.mutations, MutationRule::BreakGlass);
        let ok = check("prod", "p", Some("prod"), Some("PRODCLUSTER"), &c).unwrap();
        assert_eq!(ok.expected_cluster_id.as_deref(), Some("PRODCLUSTER"));
        // An unbound environment keeps what the spec names.
        let ok = check("dev", "d", Some("dev"), Some("ANY"), &c).unwrap();
        assert_eq!(ok.expected_cluster_id.as_deref(), Some("ANY"));
    }
}
