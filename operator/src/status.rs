//! Status: conditions in the standard `metav1.Condition` shape, computed
//! from what one reconcile observed. Pure; `lastTransitionTime` is kept when
//! a condition's status did not change, so an unchanged server gets an
//! identical status (and no write).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use crate::crd::{DeniedTool, McpKafkaServerStatus};
use crate::fence::FenceBroken;
use mcp_kafka_sidecar::scope::{ClientScope, Scope};
use mcp_kafka_sidecar::tool_name::ToolName;

pub const RECONCILED: &str = "Reconciled";
pub const READY: &str = "Ready";
pub const POLICY_APPLIED: &str = "PolicyApplied";
pub const ENVIRONMENT_FENCED: &str = "EnvironmentFenced";
pub const DEGRADED: &str = "Degraded";
/// The Degraded reason of a server whose spec.auth.oidc cannot be wired.
pub const NO_IDENTITY_PROVIDER: &str = "NoIdentityProvider";

/// What one reconcile found and did.
#[derive(Debug, Clone)]
pub struct Observed {
    pub generation: Option<i64>,
    pub fence: Result<(), FenceBroken>,
    /// Where the policy came from (namespace policy or operator default).
    pub policy_source: String,
    /// The tools the policy lets the spec have (what an apply would expose).
    pub effective_tools: Vec<ToolName>,
    pub denied_tools: Vec<DeniedTool>,
    /// What the spec's scopes asked for beyond their ceilings, and why.
    pub scope_cuts: Vec<String>,
    /// Referenced Secrets that do not exist.
    pub missing_secrets: Vec<String>,
    /// Why spec.auth.oidc is not wired, when it is not.
    pub sign_in_problem: Option<String>,
    /// Applying the children: Ok, or the error message.
    pub applied: Result<(), String>,
    /// What runs after this reconcile.
    pub serving: Serving,
}

/// The sidecar that runs: as this reconcile applied it, or, when it could
/// not apply (a referenced Secret is missing), as it was left running.
/// Status reports this, not what the spec would give, so that it never
/// disagrees with what serves.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Serving {
    pub tools: Vec<ToolName>,
    pub endpoint: Option<String>,
    /// (available, desired) replicas of the sidecar Deployment, if it exists.
    pub replicas: Option<(i32, i32)>,
    /// Token Secrets by client.
    pub token_secrets: BTreeMap<String, String>,
    /// The scope of the server's callers; None: unscoped.
    pub scope: Option<Scope>,
    /// Clients with a scope of their own.
    pub client_scopes: Vec<ClientScope>,
    /// The job path, when the sidecar's config wires one.
    pub jobs: Option<crate::crd::JobsStatus>,
    /// The sign-in, when the sidecar's config wires one.
    pub auth: Option<crate::crd::AuthStatus>,
}

/// At most this many scope cuts are listed in status (the rest counted):
/// a policy's deny patterns can cut each asked pattern once, so the list
/// could grow past what a status object may hold.
pub const MAX_SCOPE_CUTS: usize = 32;

/// The cuts as status lists them: the first [`MAX_SCOPE_CUTS`], then how
/// many more there are.
fn listed_cuts(cuts: &[String]) -> Vec<String> {
    if cuts.len() <= MAX_SCOPE_CUTS {
        return cuts.to_vec();
    }
    let mut listed = cuts[..MAX_SCOPE_CUTS - 1].to_vec();
    listed.push(format!(
        "... and {} more",
        cuts.len() - (MAX_SCOPE_CUTS - 1)
    ));
    listed
}

fn condition(type_: &str, ok: bool, reason: &str, message: String) -> Condition {
    Condition {
        type_: type_.into(),
        status: if ok { "True" } else { "False" }.into(),
        reason: reason.into(),
        message,
        observed_generation: None,
        last_transition_time: Time(Timestamp::UNIX_EPOCH),
    }
}

pub fn compute(
    previous: Option<&McpKafkaServerStatus>,
    observed: &Observed,
    now: Timestamp,
) -> McpKafkaServerStatus {
    let mut conditions = Vec::new();
    let missing = &observed.missing_secrets;
    let serving = &observed.serving;

    conditions.push(match &observed.fence {
        Ok(()) => condition(
            ENVIRONMENT_FENCED,
            true,
            "EnvironmentMatches",
            "the namespace's environment label matches spec.environment".into(),
        ),
        Err(broken) => condition(
            ENVIRONMENT_FENCED,
            false,
            broken.reason,
            broken.message.clone(),
        ),
    });

    let denied = observed.denied_tools.len();
    let cut = observed.scope_cuts.len();
    let mut message = format!(
        "{} tool(s) exposed, {denied} denied, by {}",
        observed.effective_tools.len(),
        observed.policy_source
    );
    if cut > 0 {
        message.push_str(&format!(
            "; {cut} scope request(s) cut (see status.scopeCuts)"
        ));
    }
    conditions.push(condition(
        POLICY_APPLIED,
        true,
        match (denied, cut) {
            (0, 0) => "AllToolsAllowed",
            (0, _) => "ScopeNarrowed",
            _ => "ToolsDenied",
        },
        message,
    ));

    let missing_message = format!("referenced Secret(s) not found: {}", missing.join(", "));
    conditions.push(match (&observed.fence, &observed.applied) {
        (Err(broken), _) => condition(
            RECONCILED,
            false,
            broken.reason,
            "nothing is deployed while the fence does not hold".into(),
        ),
        _ if !missing.is_empty() => {
            condition(RECONCILED, false, "SecretNotFound", missing_message.clone())
        }
        (Ok(()), Err(message)) => condition(RECONCILED, false, "ApplyFailed", message.clone()),
        (Ok(()), Ok(())) => condition(
            RECONCILED,
            true,
            "Applied",
            "every child object is applied".into(),
        ),
    });

    // While a Secret is missing, what ran before is left running: Ready
    // says whether it serves, Degraded says why it is not kept up to date.
    let not_reconciled = observed.fence.is_err() || observed.applied.is_err();
    conditions.push(match (&observed.fence, serving.replicas) {
        (Err(broken), _) => condition(READY, false, broken.reason, broken.message.clone()),
        (_, None) if !missing.is_empty() => condition(
            READY,
            false,
            "SecretNotFound",
            format!("{missing_message}; nothing is deployed until they exist"),
        ),
        _ if not_reconciled => condition(
            READY,
            false,
            "NotReconciled",
            "see the Reconciled condition".into(),
        ),
        (_, Some((available, _))) if available > 0 => condition(
            READY,
            true,
            "Available",
            format!("{available} sidecar replica(s) available"),
        ),
        _ => condition(
            READY,
            false,
            "DeploymentUnavailable",
            "no sidecar replica is available yet".into(),
        ),
    });

    conditions.push(match serving.replicas {
        _ if not_reconciled => condition(
            DEGRADED,
            true,
            "NotReconciled",
            "see the Reconciled condition".into(),
        ),
        Some(_) if !missing.is_empty() => condition(
            DEGRADED,
            true,
            "SecretNotFound",
            format!(
                "{missing_message}; the running sidecar is kept as it is and not updated until they exist"
            ),
        ),
        None if !missing.is_empty() => condition(
            DEGRADED,
            true,
            "SecretNotFound",
            format!("{missing_message}; nothing is deployed until they exist"),
        ),
        _ if observed.sign_in_problem.is_some() => condition(
            DEGRADED,
            true,
            NO_IDENTITY_PROVIDER,
            observed.sign_in_problem.clone().unwrap_or_default(),
        ),
        Some((available, desired)) if available < desired => condition(
            DEGRADED,
            true,
            "ReplicasUnavailable",
            format!("{available} of {desired} sidecar replica(s) available"),
        ),
        _ => condition(DEGRADED, false, "AsExpected", "nothing is degraded".into()),
    });

    // Keep the transition time of a condition whose status did not change.
    let before = previous
        .map(|p| p.conditions.as_slice())
        .unwrap_or_default();
    for c in &mut conditions {
        c.observed_generation = observed.generation;
        c.last_transition_time = match before.iter().find(|p| p.type_ == c.type_) {
            Some(p) if p.status == c.status => p.last_transition_time.clone(),
            _ => Time(now),
        };
    }

    McpKafkaServerStatus {
        observed_generation: observed.generation,
        conditions,
        effective_tool_count: serving.tools.len() as i32,
        effective_tools: serving.tools.clone(),
        denied_tools: observed.denied_tools.clone(),
        endpoint: serving.endpoint.clone(),
        token_secrets: serving.token_secrets.clone(),
        effective_scope: serving.scope.clone(),
        client_scopes: serving.client_scopes.clone(),
        scope_cuts: listed_cuts(&observed.scope_cuts),
        jobs: serving.jobs.clone(),
        auth: serving.auth.clone(),
    }
}

/// The condition of one type, if present.
pub fn find<'a>(status: &'a McpKafkaServerStatus, type_: &str) -> Option<&'a Condition> {
    status.conditions.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observed() -> Observed {
        Observed {
            generation: Some(3),
            fence: Ok(()),
            policy_source: "McpToolPolicy a/default".into(),
            effective_tools: vec![ToolName::ListTopics],
            denied_tools: vec![DeniedTool {
                name: ToolName::CreateTopic,
                reason: "no".into(),
            }],
            scope_cuts: vec![],
            missing_secrets: vec![],
            sign_in_problem: None,
            applied: Ok(()),
            serving: Serving {
                tools: vec![ToolName::ListTopics],
                endpoint: Some("http://x-mcp.a.svc.cluster.local:8090/mcp".into()),
                replicas: Some((0, 2)),
                token_secrets: BTreeMap::new(),
                ..Serving::default()
            },
        }
    }

    fn replicas(available: i32, desired: i32) -> Observed {
        let mut o = observed();
        o.serving.replicas = Some((available, desired));
        o
    }

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn state(s: &McpKafkaServerStatus, type_: &str) -> (String, String) {
        let c = find(s, type_).unwrap();
        (c.status.clone(), c.reason.clone())
    }

    #[test]
    fn ready_follows_the_deployment_and_transition_times_are_kept() {
        let o = observed();
        let s1 = compute(None, &o, t("2026-01-01T00:00:00Z"));
        assert_eq!(
            state(&s1, READY),
            ("False".into(), "DeploymentUnavailable".into())
        );
        assert_eq!(state(&s1, RECONCILED), ("True".into(), "Applied".into()));
        assert_eq!(
            state(&s1, DEGRADED),
            ("True".into(), "ReplicasUnavailable".into())
        );
        assert_eq!(
            state(&s1, POLICY_APPLIED),
            ("True".into(), "ToolsDenied".into())
        );
        assert_eq!(s1.effective_tool_count, 1);
        assert!(
            s1.conditions
                .iter()
                .all(|c| c.observed_generation == Some(3))
        );

        // Same observation later: identical status (no write).
        let s2 = compute(Some(&s1), &o, t("2026-01-01T00:05:00Z"));
        assert_eq!(s1, s2);

        // The Deployment becomes available: Ready flips with a new time, the others keep theirs.
        let o3 = replicas(2, 2);
        let s3 = compute(Some(&s2), &o3, t("2026-01-01T00:06:00Z"));
        assert_eq!(state(&s3, READY), ("True".into(), "Available".into()));
        assert_eq!(
            find(&s3, READY).unwrap().last_transition_time.0,
            t("2026-01-01T00:06:00Z")
        );
        assert_eq!(
            find(&s3, RECONCILED).unwrap().last_transition_time.0,
            t("2026-01-01T00:00:00Z")
        );
        assert_eq!(state(&s3, DEGRADED), ("False".into(), "AsExpected".into()));
    }

    #[test]
    fn a_broken_fence_deploys_nothing_and_says_why() {
        let o = Observed {
            fence: Err(FenceBroken {
                reason: "EnvironmentMismatch",
                message: "labelled dev".into(),
            }),
            // The controller removes what ran behind a broken fence.
            serving: Serving::default(),
            ..observed()
        };
        let s = compute(None, &o, t("2026-01-01T00:00:00Z"));
        assert_eq!(
            state(&s, READY),
            ("False".into(), "EnvironmentMismatch".into())
        );
        assert_eq!(
            state(&s, ENVIRONMENT_FENCED),
            ("False".into(), "EnvironmentMismatch".into())
        );
        assert_eq!(state(&s, RECONCILED).0, "False");
        assert!(s.effective_tools.is_empty() && s.endpoint.is_none());
    }

    #[test]
    fn sign_in_that_cannot_be_wired_degrades_a_server_that_still_serves() {
        let o = Observed {
            sign_in_problem: Some("no issuer".into()),
            ..replicas(1, 1)
        };
        let s = compute(None, &o, t("2026-01-01T00:00:00Z"));
        assert_eq!(
            state(&s, DEGRADED),
            ("True".into(), NO_IDENTITY_PROVIDER.into())
        );
        assert_eq!(find(&s, DEGRADED).unwrap().message, "no issuer");
        assert_eq!(state(&s, READY), ("True".into(), "Available".into()));
        assert_eq!(state(&s, RECONCILED), ("True".into(), "Applied".into()));
        assert_eq!(s.auth, None);
    }

    #[test]
    fn missing_secrets_and_apply_errors_are_not_reconciled() {
        let s = compute(
            None,
            &Observed {
                missing_secrets: vec!["kafka-ca".into()],
                ..observed()
            },
            t("2026-01-01T00:00:00Z"),
        );
        assert_eq!(
            state(&s, RECONCILED),
            ("False".into(), "SecretNotFound".into())
        );
        assert!(find(&s, RECONCILED).unwrap().message.contains("kafka-ca"));
        let s = compute(
            None,
            &Observed {
                applied: Err("forbidden".into()),
                ..observed()
            },
            t("2026-01-01T00:00:00Z"),
        );
        assert_eq!(
            state(&s, RECONCILED),
            ("False".into(), "ApplyFailed".into())
        );
        assert_eq!(state(&s, READY), ("False".into(), "NotReconciled".into()));
    }

    #[test]
    fn a_missing_secret_leaves_the_running_sidecar_described_and_says_what_is_wrong() {
        // A server that ran, then lost its CA Secret: the controller leaves
        // the Deployment running and reports it.
        let o = Observed {
            missing_secrets: vec!["kafka-ca".into()],
            ..replicas(1, 1)
        };
        let s = compute(None, &o, t("2026-01-01T00:00:00Z"));
        assert_eq!(s.effective_tools, vec![ToolName::ListTopics]);
        assert_eq!(s.effective_tool_count, 1);
        assert_eq!(s.endpoint, o.serving.endpoint);
        assert_eq!(state(&s, READY), ("True".into(), "Available".into()));
        assert_eq!(
            state(&s, DEGRADED),
            ("True".into(), "SecretNotFound".into())
        );
        assert!(find(&s, DEGRADED).unwrap().message.contains("kafka-ca"));
        assert_eq!(
            state(&s, RECONCILED),
            ("False".into(), "SecretNotFound".into())
        );

        // Ready still follows that Deployment.
        let down = Observed {
            missing_secrets: vec!["kafka-ca".into()],
            ..replicas(0, 1)
        };
        let s = compute(None, &down, t("2026-01-01T00:00:00Z"));
        assert_eq!(
            state(&s, READY),
            ("False".into(), "DeploymentUnavailable".into())
        );

        // Missing from the start: nothing runs, and status says so.
        let never = Observed {
            missing_secrets: vec!["kafka-ca".into()],
            serving: Serving::default(),
            ..observed()
        };
        let s = compute(None, &never, t("2026-01-01T00:00:00Z"));
        assert!(s.effective_tools.is_empty() && s.endpoint.is_none());
        assert_eq!(state(&s, READY), ("False".into(), "SecretNotFound".into()));
        assert!(find(&s, READY).unwrap().message.contains("kafka-ca"));
        assert_eq!(
            state(&s, DEGRADED),
            ("True".into(), "SecretNotFound".into())
        );
    }

    #[test]
    fn scopes_and_their_cuts_are_reported_and_an_unscoped_server_reports_none() {
        let plain = compute(None, &observed(), t("2026-01-01T00:00:00Z"));
        assert_eq!(
            (
                &plain.effective_scope,
                &plain.client_scopes,
                &plain.scope_cuts
            ),
            (&None, &vec![], &vec![])
        );
        let json = serde_json::to_value(&plain).unwrap();
        for absent in ["effectiveScope", "clientScopes", "scopeCuts"] {
            assert!(json.get(absent).is_none(), "{absent} in {json}");
        }

        let scope: Scope = serde_yaml::from_str("{topics: {allow: [{name: a}]}}").unwrap();
        let client = ClientScope {
            username: "system:serviceaccount:a:r".into(),
            scope: Scope::default(),
        };
        let mut o = observed();
        o.denied_tools.clear();
        o.scope_cuts =
            vec![r#"topics literal "b": outside the scope of McpToolPolicy a/default"#.into()];
        o.serving.scope = Some(scope.clone());
        o.serving.client_scopes = vec![client.clone()];
        let s = compute(None, &o, t("2026-01-01T00:00:00Z"));
        assert_eq!(s.effective_scope, Some(scope));
        assert_eq!(s.client_scopes, vec![client]);
        assert_eq!(s.scope_cuts, o.scope_cuts);
        assert_eq!(
            state(&s, POLICY_APPLIED),
            ("True".into(), "ScopeNarrowed".into())
        );
        let message = &find(&s, POLICY_APPLIED).unwrap().message;
        assert!(
            message.contains("1 scope request(s) cut (see status.scopeCuts)"),
            "{message}"
        );

        // Tools denied too: the tools' reason stays, the message names both.
        o.denied_tools = observed().denied_tools;
        let s = compute(None, &o, t("2026-01-01T00:00:00Z"));
        assert_eq!(state(&s, POLICY_APPLIED).1, "ToolsDenied");
        assert!(
            find(&s, POLICY_APPLIED)
                .unwrap()
                .message
                .contains("scope request(s) cut")
        );
    }

    #[test]
    fn a_long_list_of_cuts_is_capped_and_counted() {
        let mut o = observed();
        o.scope_cuts = (0..100).map(|i| format!("cut {i}")).collect();
        let s = compute(None, &o, t("2026-01-01T00:00:00Z"));
        assert_eq!(s.scope_cuts.len(), MAX_SCOPE_CUTS);
        assert_eq!(s.scope_cuts[0], "cut 0");
        assert_eq!(
            s.scope_cuts.last().map(String::as_str),
            Some("... and 69 more")
        );
        assert!(
            find(&s, POLICY_APPLIED)
                .unwrap()
                .message
                .contains("100 scope request(s) cut")
        );
        o.scope_cuts.truncate(MAX_SCOPE_CUTS);
        let s = compute(None, &o, t("2026-01-01T00:00:00Z"));
        assert_eq!(s.scope_cuts, o.scope_cuts, "up to the cap: all listed");
    }
}
