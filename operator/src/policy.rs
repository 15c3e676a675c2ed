//! Which requested tools a server exposes: requested ∩ (policy allow ∪ the
//! open break-glass window's tools) − policy deny, with mutations in
//! break-glass environments (prod) only while a window is open and names
//! them. Pure: the clock is an argument.

use std::collections::BTreeSet;

use k8s_openapi::jiff::Timestamp;
use mcp_kafka_sidecar::scope::Scope;
use mcp_kafka_sidecar::tool_name::ToolName;

use crate::config::{DefaultPolicy, MutationRule};
use crate::crd::{BreakGlass, DeniedTool, McpToolPolicySpec, ToolSelector};

/// The policy that governs a namespace, and where it came from (named in
/// every denial reason, so a reader knows whom to ask).
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub source: String,
    pub allow: Vec<ToolSelector>,
    pub deny: Vec<ToolSelector>,
    pub break_glass: Option<BreakGlass>,
    /// The ceiling of topics and groups; None: no ceiling.
    pub scope: Option<Scope>,
}

impl Policy {
    pub fn from_namespace(namespace: &str, spec: &McpToolPolicySpec) -> Self {
        Self {
            source: format!("McpToolPolicy {namespace}/default"),
            allow: spec.allow.clone(),
            deny: spec.deny.clone(),
            break_glass: spec.break_glass.clone(),
            scope: spec.scope.clone(),
        }
    }

    pub fn operator_default(default: &DefaultPolicy) -> Self {
        Self {
            source: "the operator's default policy (no McpToolPolicy in this namespace)".into(),
            allow: default.allow.clone(),
            deny: default.deny.clone(),
            break_glass: None,
            scope: None,
        }
    }

    /// The break-glass window if it is open at `now`; an expired one is ignored.
    pub fn open_window(&self, now: Timestamp) -> Option<&BreakGlass> {
        self.break_glass.as_ref().filter(|w| w.until.0 > now)
    }
}

/// What a server may expose, and when to look again.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolDecision {
    /// In the order of `ToolName::ALL`.
    pub effective: Vec<ToolName>,
    pub denied: Vec<DeniedTool>,
    /// The end of an open break-glass window that opened at least one tool:
    /// the tool set changes then, so the server must be reconciled again.
    pub changes_at: Option<Timestamp>,
}

fn expand(selectors: &[ToolSelector]) -> BTreeSet<ToolName> {
    selectors.iter().flat_map(|s| s.tools()).collect()
}

pub fn decide(
    requested: &[ToolName],
    policy: &Policy,
    mutations: MutationRule,
    now: Timestamp,
) -> ToolDecision {
    let allow = expand(&policy.allow);
    let deny = expand(&policy.deny);
    let window = policy.open_window(now);
    let opened: BTreeSet<ToolName> = window
        .map(|w| w.allow.iter().copied().collect())
        .unwrap_or_default();

    let mut effective = Vec::new();
    let mut denied = Vec::new();
    let mut used_window = false;
    let requested: BTreeSet<ToolName> = requested.iter().copied().collect();
    for tool in requested {
        let deny_reason = if deny.contains(&tool) {
            Some(format!("denied by {}", policy.source))
        } else if tool.is_mutation() && mutations == MutationRule::BreakGlass {
            if opened.contains(&tool) {
                None
            } else if window.is_some() {
                Some(format!(
                    "a mutation in this environment; the open break-glass window of {} does not name it",
                    policy.source
                ))
            } else {
                Some(format!(
                    "a mutation in this environment needs an open break-glass window in {}",
                    policy.source
                ))
            }
        } else if allow.contains(&tool) || opened.contains(&tool) {
            None
        } else {
            Some(format!("not allowed by {}", policy.source))
        };
        match deny_reason {
            Some(reason) => denied.push(DeniedTool { name: tool, reason }),
            None => {
                used_window |= opened.contains(&tool)
                    && (!allow.contains(&tool) || mutations == MutationRule::BreakGlass);
                effective.push(tool);
            }
        }
    }
    ToolDecision {
        effective,
        denied,
        changes_at: window.filter(|_| used_window).map(|w| w.until.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::ToolGroupSelector;
    use ToolName::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn policy(yaml: &str) -> Policy {
        let spec: McpToolPolicySpec = serde_yaml::from_str(yaml).unwrap();
        Policy::from_namespace("team-a", &spec)
    }

    const NOW: &str = "2026-11-21T12:00:00Z";

    fn names(d: &ToolDecision) -> (Vec<ToolName>, Vec<ToolName>) {
        (
            d.effective.clone(),
            d.denied.iter().map(|t| t.name).collect(),
        )
    }

    #[test]
    fn the_operator_default_is_read_only() {
        let p = Policy::operator_default(&DefaultPolicy::default());
        let d = decide(
            &[ListTopics, CreateTopic, ConsumeMessages],
            &p,
            MutationRule::Direct,
            ts(NOW),
        );
        assert_eq!(
            names(&d),
            (vec![ListTopics, ConsumeMessages], vec![CreateTopic])
        );
        assert!(
            d.denied[0].reason.contains("operator's default policy"),
            "{:?}",
            d.denied
        );
        assert_eq!(d.changes_at, None);
    }

    #[test]
    fn requested_intersect_allow_minus_deny() {
        let p = policy("{allow: [all], deny: [delete_topic, consume_messages]}");
        let d = decide(
            &[ListTopics, DeleteTopic, ConsumeMessages, CreateTopic],
            &p,
            MutationRule::Direct,
            ts(NOW),
        );
        assert_eq!(
            names(&d),
            (
                vec![ListTopics, CreateTopic],
                vec![ConsumeMessages, DeleteTopic]
            )
        );
        assert_eq!(d.denied[0].reason, "denied by McpToolPolicy team-a/default");
        // Allowed but not requested: not exposed.
        assert!(!d.effective.contains(&PublishMessage));
    }

    #[test]
    fn prod_mutations_only_inside_an_open_window_that_names_them() {
        let window = "{allow: [all], breakGlass: {until: '2026-11-21T13:00:00Z', reason: INC-1, allow: [create_partitions]}}";
        let p = policy(window);
        let requested = [ListTopics, CreateTopic, CreatePartitions];
        let d = decide(&requested, &p, MutationRule::BreakGlass, ts(NOW));
        assert_eq!(
            names(&d),
            (vec![ListTopics, CreatePartitions], vec![CreateTopic])
        );
        assert!(
            d.denied[0].reason.contains("does not name it"),
            "{:?}",
            d.denied
        );
        assert_eq!(
            d.changes_at,
            Some(ts("2026-11-21T13:00:00Z")),
            "requeue when the window closes"
        );

        // The same policy after the window: no mutation, and the reason says why.
        let d = decide(
            &requested,
            &p,
            MutationRule::BreakGlass,
            ts("2026-11-21T13:00:00Z"),
        );
        assert_eq!(
            names(&d),
            (vec![ListTopics], vec![CreateTopic, CreatePartitions])
        );
        assert!(
            d.denied[0]
                .reason
                .contains("needs an open break-glass window"),
            "{:?}",
            d.denied
        );
        assert_eq!(d.changes_at, None);

        // Outside prod the same policy allows mutations directly.
        let d = decide(
            &requested,
            &p,
            MutationRule::TwoPhase,
            ts("2026-11-21T14:00:00Z"),
        );
        assert_eq!(d.effective, requested.to_vec());
    }

    #[test]
    fn deny_wins_over_a_window_and_a_window_extends_allow_elsewhere() {
        let p = policy(
            "{allow: [observe], deny: [create_partitions], breakGlass: {until: '2026-11-21T13:00:00Z', reason: r, allow: [create_partitions, publish_message]}}",
        );
        let d = decide(
            &[CreatePartitions, PublishMessage],
            &p,
            MutationRule::Direct,
            ts(NOW),
        );
        assert_eq!(names(&d), (vec![PublishMessage], vec![CreatePartitions]));
        assert_eq!(d.changes_at, Some(ts("2026-11-21T13:00:00Z")));
    }

    #[test]
    fn groups_expand() {
        let p = Policy {
            source: "x".into(),
            allow: vec![ToolSelector::Group(ToolGroupSelector::Mutate)],
            deny: vec![],
            break_glass: Some(BreakGlass {
                until: Time(ts(NOW)),
                reason: "expired exactly now".into(),
                allow: vec![ListTopics],
            }),
            scope: None,
        };
        let d = decide(
            &[ListTopics, CreateTopic],
            &p,
            MutationRule::Direct,
            ts(NOW),
        );
        assert_eq!(names(&d), (vec![CreateTopic], vec![ListTopics]));
    }
}

/// `cluster_metrics` needs a metrics source: without `spec.metrics` it is
/// denied with that reason (the sidecar would not serve it either), so that
/// status says why the tool is not there.
pub fn needs_metrics_source(mut decision: ToolDecision, has_source: bool) -> ToolDecision {
    if !has_source && decision.effective.contains(&ToolName::ClusterMetrics) {
        decision
            .effective
            .retain(|t| *t != ToolName::ClusterMetrics);
        decision.denied.push(DeniedTool {
            name: ToolName::ClusterMetrics,
            reason: "no metrics source: set spec.metrics.prometheus".into(),
        });
    }
    decision
}

#[cfg(test)]
mod metrics_source_tests {
    use super::*;

    #[test]
    fn cluster_metrics_without_a_source_is_denied_with_the_reason() {
        let decision = || ToolDecision {
            effective: vec![ToolName::ListTopics, ToolName::ClusterMetrics],
            denied: Vec::new(),
            changes_at: None,
        };
        let without = needs_metrics_source(decision(), false);
        assert_eq!(without.effective, vec![ToolName::ListTopics]);
        assert_eq!(without.denied.len(), 1);
        assert_eq!(without.denied[0].name, ToolName::ClusterMetrics);
        assert!(without.denied[0].reason.contains("spec.metrics.prometheus"));
        let with = needs_metrics_source(decision(), true);
        assert_eq!(with.effective, decision().effective);
        assert!(with.denied.is_empty());
    }
}

/// The registry tools need a Schema Registry: without `spec.schemaRegistry`
/// they are denied with that reason (the sidecar would not serve them
/// either), so that status says why they are not there.
pub fn needs_schema_registry(mut decision: ToolDecision, has_registry: bool) -> ToolDecision {
    if has_registry {
        return decision;
    }
    let (kept, cut): (Vec<ToolName>, Vec<ToolName>) = decision
        .effective
        .into_iter()
        .partition(|t| !t.needs_schema_registry());
    decision.effective = kept;
    decision
        .denied
        .extend(cut.into_iter().map(|name| DeniedTool {
            name,
            reason: "no schema registry: set spec.schemaRegistry".into(),
        }));
    decision
}

#[cfg(test)]
mod schema_registry_tests {
    use super::*;

    #[test]
    fn registry_tools_without_a_registry_are_denied_with_the_reason() {
        let decision = || ToolDecision {
            effective: vec![
                ToolName::ListTopics,
                ToolName::GetSchema,
                ToolName::PublishMessage,
                ToolName::RegisterSchema,
            ],
            denied: Vec::new(),
            changes_at: None,
        };
        let without = needs_schema_registry(decision(), false);
        assert_eq!(
            without.effective,
            vec![ToolName::ListTopics, ToolName::PublishMessage],
            "publish_message works without a registry (raw values)"
        );
        let denied: Vec<ToolName> = without.denied.iter().map(|d| d.name).collect();
        assert_eq!(denied, vec![ToolName::GetSchema, ToolName::RegisterSchema]);
        assert!(
            without
                .denied
                .iter()
                .all(|d| d.reason.contains("spec.schemaRegistry"))
        );
        let with = needs_schema_registry(decision(), true);
        assert_eq!(with.effective, decision().effective);
        assert!(with.denied.is_empty());
    }
}
