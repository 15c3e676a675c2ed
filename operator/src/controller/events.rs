//! Events (`kubectl describe mks`): which ones a reconcile calls for is a
//! pure function of the status before and after it and of the tokens it
//! issued; publishing them is the only I/O here.

use kube::Resource;
use kube::runtime::events::{Event, EventType};
use tracing::warn;

use super::Context;
use crate::build::names;
use crate::crd::{McpKafkaServer, McpKafkaServerStatus};
use crate::status;

/// The apiserver refuses an Event whose note is longer (events.k8s.io/v1).
const MAX_NOTE_BYTES: usize = 1024;

/// `note` cut to what an Event may hold, at a character boundary, saying so.
fn within_limit(mut note: String) -> String {
    const MORE: &str = " ...";
    if note.len() <= MAX_NOTE_BYTES {
        return note;
    }
    let mut end = MAX_NOTE_BYTES - MORE.len();
    while !note.is_char_boundary(end) {
        end -= 1;
    }
    note.truncate(end);
    note.push_str(MORE);
    note
}

fn event(type_: EventType, reason: &str, note: String) -> Event {
    Event {
        type_,
        reason: reason.into(),
        note: Some(within_limit(note)),
        action: "Reconcile".into(),
        secondary: None,
    }
}

/// What a person should notice, once per change: a fence broken, another
/// failure, tools denied or exposed, scope requests cut; each token issued; and what was
/// removed from the sidecar's pod template. An unchanged status calls for none.
pub fn chosen(
    server: &str,
    old: Option<&McpKafkaServerStatus>,
    new: &McpKafkaServerStatus,
    rotated: &[String],
    template_drift: &[String],
) -> Vec<Event> {
    let old = old.cloned().unwrap_or_default();
    let mut events = Vec::new();
    let changed = |type_: &str| {
        let (a, b) = (status::find(&old, type_), status::find(new, type_));
        a.map(|c| (&c.status, &c.reason, &c.message))
            != b.map(|c| (&c.status, &c.reason, &c.message))
    };
    let warning_if_false = |type_: &str| {
        status::find(new, type_)
            .filter(|c| c.status == "False")
            .map(|c| event(EventType::Warning, &c.reason, c.message.clone()))
    };
    if changed(status::ENVIRONMENT_FENCED) {
        events.extend(warning_if_false(status::ENVIRONMENT_FENCED));
    }
    // A broken fence already has its Event above; other failures (a missing
    // Secret, an apply error) get theirs from the Reconciled condition.
    let fence_holds =
        status::find(new, status::ENVIRONMENT_FENCED).is_some_and(|c| c.status == "True");
    if changed(status::RECONCILED) && fence_holds {
        events.extend(warning_if_false(status::RECONCILED));
    }
    // Sign-in asked for and not wired is a warning of its own (the server
    // still serves, with Kubernetes tokens only).
    if changed(status::DEGRADED)
        && let Some(c) = status::find(new, status::DEGRADED)
            .filter(|c| c.status == "True" && c.reason == status::NO_IDENTITY_PROVIDER)
    {
        events.push(event(EventType::Warning, &c.reason, c.message.clone()));
    }
    if old.denied_tools != new.denied_tools && !new.denied_tools.is_empty() {
        let list: Vec<String> = new
            .denied_tools
            .iter()
            .map(|d| format!("{}: {}", d.name, d.reason))
            .collect();
        events.push(event(EventType::Warning, "ToolsDenied", list.join("; ")));
    }
    if old.scope_cuts != new.scope_cuts && !new.scope_cuts.is_empty() {
        let note = new.scope_cuts.join("; ");
        events.push(event(EventType::Warning, "ScopeNarrowed", note));
    }
    if old.effective_tools != new.effective_tools && !new.effective_tools.is_empty() {
        let list: Vec<&str> = new.effective_tools.iter().map(|t| t.as_str()).collect();
        events.push(event(EventType::Normal, "ToolsExposed", list.join(", ")));
    }
    for client in rotated {
        let note = format!(
            "issued a new token for client {client} in Secret {}",
            names::token_secret(server, client)
        );
        events.push(event(EventType::Normal, "TokenIssued", note));
    }
    if !template_drift.is_empty() {
        let note = super::drift::summary(&names::sidecar(server), template_drift);
        events.push(event(EventType::Warning, "PodTemplateDrift", note));
    }
    events
}

/// Publishes each Event on the server. An Event is a courtesy: failing to
/// write one is logged and does not fail the reconcile.
pub async fn publish(ctx: &Context, server: &McpKafkaServer, events: Vec<Event>) {
    let reference = server.object_ref(&());
    for event in events {
        match ctx.recorder.publish(&event, &reference).await {
            Ok(()) => ctx.metrics.api_write("Event", "create"),
            Err(e) => warn!(error = %e, reason = %event.reason, "publishing an event"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::DeniedTool;
    use crate::fence::FenceBroken;
    use crate::status::{Observed, Serving};
    use k8s_openapi::jiff::Timestamp;
    use mcp_kafka_sidecar::tool_name::ToolName;
    use std::collections::BTreeMap;

    fn observed() -> Observed {
        Observed {
            generation: Some(1),
            fence: Ok(()),
            policy_source: "the operator's default policy".into(),
            effective_tools: vec![ToolName::ListTopics],
            denied_tools: vec![],
            scope_cuts: vec![],
            missing_secrets: vec![],
            sign_in_problem: None,
            applied: Ok(()),
            serving: Serving {
                tools: vec![ToolName::ListTopics],
                endpoint: Some("http://x-mcp.a.svc.cluster.local:8090/mcp".into()),
                replicas: Some((1, 1)),
                token_secrets: BTreeMap::new(),
                ..Serving::default()
            },
        }
    }

    fn status_of(o: &Observed) -> McpKafkaServerStatus {
        status::compute(
            None,
            o,
            "2026-01-01T00:00:00Z".parse::<Timestamp>().unwrap(),
        )
    }

    fn reasons(events: &[Event]) -> Vec<(EventType, &str)> {
        events
            .iter()
            .map(|e| (e.type_, e.reason.as_str()))
            .collect()
    }

    #[test]
    fn a_new_server_announces_its_tools_and_an_unchanged_one_nothing() {
        let s = status_of(&observed());
        assert_eq!(
            reasons(&chosen("x", None, &s, &[], &[])),
            [(EventType::Normal, "ToolsExposed")]
        );
        assert!(chosen("x", Some(&s), &s, &[], &[]).is_empty());
    }

    #[test]
    fn a_broken_fence_gets_one_warning_not_two() {
        let before = status_of(&observed());
        let broken = status_of(&Observed {
            fence: Err(FenceBroken {
                reason: "EnvironmentMismatch",
                message: "labelled prod".into(),
            }),
            serving: Serving::default(),
            ..observed()
        });
        let events = chosen("x", Some(&before), &broken, &[], &[]);
        assert_eq!(
            reasons(&events),
            [(EventType::Warning, "EnvironmentMismatch")]
        );
        assert_eq!(events[0].note.as_deref(), Some("labelled prod"));
    }

    #[test]
    fn sign_in_that_cannot_be_wired_warns_once() {
        let before = status_of(&observed());
        let degraded = status_of(&Observed {
            sign_in_problem: Some("no issuer".into()),
            ..observed()
        });
        let events = chosen("x", Some(&before), &degraded, &[], &[]);
        assert_eq!(
            reasons(&events),
            [(EventType::Warning, status::NO_IDENTITY_PROVIDER)]
        );
        assert_eq!(events[0].note.as_deref(), Some("no issuer"));
        assert!(chosen("x", Some(&degraded), &degraded, &[], &[]).is_empty());
    }

    #[test]
    fn a_missing_secret_warns_with_its_name_and_tools_kept_running_are_not_announced_again() {
        let before = status_of(&observed());
        let missing = status_of(&Observed {
            missing_secrets: vec!["kafka-ca".into()],
            ..observed()
        });
        let events = chosen("x", Some(&before), &missing, &[], &[]);
        assert_eq!(reasons(&events), [(EventType::Warning, "SecretNotFound")]);
        assert!(events[0].note.as_deref().unwrap().contains("kafka-ca"));
    }

    #[test]
    fn denied_tools_and_issued_tokens() {
        let before = status_of(&observed());
        let denied = status_of(&Observed {
            denied_tools: vec![DeniedTool {
                name: ToolName::CreateTopic,
                reason: "denied by McpToolPolicy a/default".into(),
            }],
            ..observed()
        });
        let events = chosen("orders", Some(&before), &denied, &["laptop".into()], &[]);
        assert_eq!(
            reasons(&events),
            [
                (EventType::Warning, "ToolsDenied"),
                (EventType::Normal, "TokenIssued")
            ]
        );
        assert_eq!(
            events[0].note.as_deref(),
            Some("create_topic: denied by McpToolPolicy a/default")
        );
        assert!(
            events[1]
                .note
                .as_deref()
                .unwrap()
                .contains("Secret orders-mcp-client-laptop-token")
        );
    }

    #[test]
    fn removed_template_entries_get_one_warning_naming_them() {
        let s = status_of(&observed());
        let removed = ["spec.containers[name=debug]".to_string()];
        let events = chosen("orders", Some(&s), &s, &[], &removed);
        assert_eq!(reasons(&events), [(EventType::Warning, "PodTemplateDrift")]);
        let note = events[0].note.as_deref().unwrap();
        assert!(
            note.contains("Deployment orders-mcp") && note.contains("spec.containers[name=debug]"),
            "{note}"
        );
    }

    #[test]
    fn cut_scope_requests_warn_once_and_long_notes_fit_an_event() {
        let before = status_of(&observed());
        let cut = status_of(&Observed {
            scope_cuts: vec![
                r#"topics literal "payments": outside the scope of McpToolPolicy a/default"#.into(),
                "client r: groups literal \"g\": outside the server's scope".into(),
            ],
            ..observed()
        });
        let events = chosen("orders", Some(&before), &cut, &[], &[]);
        assert_eq!(reasons(&events), [(EventType::Warning, "ScopeNarrowed")]);
        assert_eq!(
            events[0].note.as_deref(),
            Some(
                "topics literal \"payments\": outside the scope of McpToolPolicy a/default; client r: groups literal \"g\": outside the server's scope"
            )
        );
        assert!(chosen("orders", Some(&cut), &cut, &[], &[]).is_empty());

        let long = status_of(&Observed {
            scope_cuts: (0..40)
                .map(|i| format!("topics literal \"é{i:0>60}\": outside"))
                .collect(),
            ..observed()
        });
        let events = chosen("orders", Some(&before), &long, &[], &[]);
        let note = events[0].note.as_deref().unwrap();
        assert!(
            note.len() <= MAX_NOTE_BYTES && note.ends_with(" ..."),
            "{} bytes",
            note.len()
        );
    }
}
