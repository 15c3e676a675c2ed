//! Pod template drift: what the live sidecar Deployment's pod template holds
//! that the operator did not put there, and its removal.
//!
//! Server-side apply with `force` puts back every field the operator sets,
//! but it leaves other managers' fields alone: a container, a volume or an
//! env var added by hand (`kubectl edit`, `kubectl patch`, another apply)
//! would survive every reconcile, in a pod that mounts the Kafka
//! credentials. So after the apply, the live template is compared with the
//! desired one, and every list entry the operator did not set is removed by
//! one JSON patch that names exactly those entries (each guarded by a `test`
//! of its live value, so a concurrent change fails the patch instead of
//! removing the wrong entry).
//!
//! What counts, anywhere in the template: an entry of a list (containers,
//! initContainers, volumes, env, envFrom, volumeMounts, ports, args,
//! command, tolerations, capabilities.add, ...) that no desired entry
//! matches (by the list's merge key, as server-side apply matches them:
//! `name`, or `mountPath` for volumeMounts, `containerPort` for ports;
//! by value where there is no key), and an object the operator does not set
//! at all that holds a list (a `lifecycle` hook's command, an `affinity`).
//! Lists are never defaults: the apiserver fills in scalars (imagePullPolicy,
//! dnsPolicy, a probe's timeouts) but adds no list entries to a pod template,
//! so an unchanged Deployment shows nothing here and costs no write. Scalars
//! and map entries that the operator does not set (labels and annotations,
//! such as `kubectl rollout restart`'s) are left alone: telling one set by
//! hand from an apiserver default would need the defaults, and the fields of
//! the pod's and container's security contexts that matter are set by the
//! operator, so apply puts those back.
//!
//! Why not from `managedFields`: the watch caches drop them (a third of an
//! object's size), and a field another manager applied with its default
//! value keeps that manager's ownership after a removal (the apiserver
//! defaults it again, unchanged), so a check on ownership would remove it
//! again on every reconcile.

use std::fmt::Write as _;

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::{Map, Value, json};
use tracing::warn;

use super::apply::contains;
use crate::build::FIELD_MANAGER;
use crate::metrics::Metrics;

/// Where the pod template is in a Deployment (a JSON pointer).
const TEMPLATE: &str = "/spec/template";

/// One entry of the live template that the operator did not set.
#[derive(Debug, Clone, PartialEq)]
pub struct Foreign {
    /// JSON pointer of the entry in the Deployment.
    pub pointer: String,
    /// Its live value (what the patch tests before removing it).
    pub value: Value,
    /// What a person reads: `spec.containers[name=sidecar].env[name=TOKEN]`.
    pub what: String,
}

/// Every entry of `live` (a pod template) that `desired` (the template the
/// operator applies) does not have, in document order.
pub fn foreign_entries(desired: &Value, live: &Value) -> Vec<Foreign> {
    let mut found = Vec::new();
    if let Value::Object(live) = live {
        walk_object(desired, live, TEMPLATE, "", &mut found);
    }
    found
}

/// The JSON patch that removes exactly `found` from the Deployment: a
/// `test` of each entry's live value, then its `remove`. Last entry first:
/// in document order a later entry never precedes an earlier one in the
/// same list, so removing from the end keeps every other pointer valid.
pub fn removal_patch(found: &[Foreign]) -> Value {
    let ops: Vec<Value> = found
        .iter()
        .rev()
        .flat_map(|f| {
            [
                json!({"op": "test", "path": f.pointer, "value": f.value}),
                json!({"op": "remove", "path": f.pointer}),
            ]
        })
        .collect();
    Value::Array(ops)
}

/// The key that identifies an entry of the list `field` (Kubernetes' merge keys).
fn merge_key(field: &str) -> &'static str {
    match field {
        "volumeMounts" => "mountPath",
        "volumeDevices" => "devicePath",
        "ports" => "containerPort",
        "hostAliases" => "ip",
        _ => "name",
    }
}

fn walk_object(
    desired: &Value,
    live: &Map<String, Value>,
    pointer: &str,
    path: &str,
    found: &mut Vec<Foreign>,
) {
    for (key, live_value) in live {
        let desired_value = desired.get(key).unwrap_or(&Value::Null);
        let pointer = format!("{pointer}/{}", key.replace('~', "~0").replace('/', "~1"));
        let path = if path.is_empty() {
            key.clone()
        } else {
            format!("{path}.{key}")
        };
        match (live_value, desired_value) {
            (Value::Array(live), _) => {
                let desired = desired_value.as_array().map_or(&[][..], Vec::as_slice);
                walk_list(key, desired, live, &pointer, &path, found);
            }
            (Value::Object(live), Value::Object(_)) => {
                walk_object(desired_value, live, &pointer, &path, found)
            }
            // An object the operator does not set: defaults hold no lists.
            (Value::Object(_), _) if holds_a_list(live_value) => found.push(Foreign {
                pointer,
                value: live_value.clone(),
                what: path,
            }),
            _ => {}
        }
    }
}

fn walk_list(
    field: &str,
    desired: &[Value],
    live: &[Value],
    pointer: &str,
    path: &str,
    found: &mut Vec<Foreign>,
) {
    let key = merge_key(field);
    // Each desired entry matches one live entry at most (`args` may repeat a value).
    let mut matched = vec![false; desired.len()];
    for (i, entry) in live.iter().enumerate() {
        let id = entry.get(key);
        let counterpart = desired.iter().enumerate().position(|(j, d)| {
            !matched[j]
                && match id {
                    Some(id) => d.get(key) == Some(id),
                    None => contains(entry, d),
                }
        });
        let pointer = format!("{pointer}/{i}");
        let what = match id {
            Some(Value::String(s)) => format!("{path}[{key}={s}]"),
            Some(v) => format!("{path}[{key}={v}]"),
            None => format!("{path}[{i}]"),
        };
        match (counterpart, entry) {
            (Some(j), Value::Object(entry)) => {
                matched[j] = true;
                walk_object(&desired[j], entry, &pointer, &what, found);
            }
            (Some(j), _) => matched[j] = true,
            (None, _) => found.push(Foreign {
                pointer,
                value: entry.clone(),
                what,
            }),
        }
    }
}

fn holds_a_list(value: &Value) -> bool {
    match value {
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => o.values().any(holds_a_list),
        _ => false,
    }
}

/// What an Event may say about the removal: the entries, cut to fit the
/// 1 kB an Event's note may hold.
pub fn summary(deployment: &str, removed: &[String]) -> String {
    let mut note = format!(
        "removed from the pod template of Deployment {deployment} what the operator does not set:"
    );
    for (i, what) in removed.iter().enumerate() {
        if note.len() + what.len() > 900 {
            let _ = write!(note, " and {} more", removed.len() - i);
            break;
        }
        let _ = write!(note, "{} {what}", if i == 0 { "" } else { "," });
    }
    note
}

/// Removes what the live Deployment's pod template holds beyond `desired`'s.
/// The cache's copy decides whether to look (no read, no write when nothing
/// is foreign); the removal is computed again on a fresh read, so that a
/// cache a moment behind never makes the patch test stale values. Returns
/// what was removed.
pub async fn restore_template(
    api: &Api<Deployment>,
    desired: &Deployment,
    cached: &Deployment,
    metrics: &Metrics,
) -> Result<Vec<String>, kube::Error> {
    let template = |d: &Deployment| {
        d.spec
            .as_ref()
            .map(|s| serde_json::to_value(&s.template).unwrap_or(Value::Null))
            .unwrap_or(Value::Null)
    };
    let wanted = template(desired);
    if foreign_entries(&wanted, &template(cached)).is_empty() {
        return Ok(Vec::new());
    }
    let name = desired.name_any();
    let Some(live) = api.get_opt(&name).await? else {
        return Ok(Vec::new());
    };
    let found = foreign_entries(&wanted, &template(&live));
    if found.is_empty() {
        return Ok(Vec::new());
    }
    let patch: json_patch::Patch =
        serde_json::from_value(removal_patch(&found)).map_err(kube::Error::SerdeError)?;
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    api.patch(&name, &params, &Patch::<()>::Json(patch)).await?;
    metrics.api_write("Deployment", "patch");
    let removed: Vec<String> = found.into_iter().map(|f| f.what).collect();
    warn!(deployment = %name, namespace = ?desired.namespace(), removed = ?removed, "removed from the sidecar's pod template what the operator does not set");
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The desired template of a sidecar, as the build step makes it (trimmed).
    fn desired() -> Value {
        json!({
            "metadata": {"labels": {"app": "x"}, "annotations": {"mcpkafka.dev/config-hash": "h"}},
            "spec": {
                "serviceAccountName": "orders-mcp",
                "containers": [{
                    "name": "sidecar",
                    "image": "sidecar:1",
                    "args": ["--config", "/etc/mcp-kafka/config/config.yaml"],
                    "env": [{"name": "MALLOC_ARENA_MAX", "value": "2"}],
                    "ports": [{"name": "mcp", "containerPort": 8090, "protocol": "TCP"}],
                    "securityContext": {"capabilities": {"drop": ["ALL"]}, "readOnlyRootFilesystem": true},
                    "volumeMounts": [{"name": "config", "mountPath": "/etc/mcp-kafka/config", "readOnly": true}]
                }],
                "volumes": [{"name": "config", "configMap": {"name": "orders-mcp-config"}}]
            }
        })
    }

    /// The same template as the apiserver returns it: defaults filled in.
    fn live() -> Value {
        let mut live = desired();
        let c = &mut live["spec"]["containers"][0];
        c["imagePullPolicy"] = json!("IfNotPresent");
        c["terminationMessagePath"] = json!("/dev/termination-log");
        c["ports"][0]["hostPort"] = Value::Null;
        live["spec"]["volumes"][0]["configMap"]["defaultMode"] = json!(420);
        live["spec"]["dnsPolicy"] = json!("ClusterFirst");
        live["spec"]["securityContext"] = json!({});
        live["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"] = json!("2026-01-01");
        live
    }

    fn whats(found: &[Foreign]) -> Vec<&str> {
        found.iter().map(|f| f.what.as_str()).collect()
    }

    #[test]
    fn defaults_and_map_entries_are_not_drift() {
        assert_eq!(foreign_entries(&desired(), &live()), []);
        assert_eq!(foreign_entries(&desired(), &desired()), []);
    }

    #[test]
    fn entries_added_by_hand_are_found_by_their_keys() {
        let mut live = live();
        let spec = &mut live["spec"];
        spec["containers"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "debug", "image": "busybox"}));
        spec["initContainers"] = json!([{"name": "init", "image": "busybox"}]);
        spec["volumes"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "loot", "hostPath": {"path": "/"}}));
        let c = &mut spec["containers"][0];
        c["env"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "EXTRA", "value": "1"}));
        c["envFrom"] = json!([{"secretRef": {"name": "other"}}]);
        c["volumeMounts"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "config", "mountPath": "/tmp/copy"}));
        c["ports"]
            .as_array_mut()
            .unwrap()
            .push(json!({"containerPort": 9999}));
        c["args"].as_array_mut().unwrap().push(json!("--config"));
        c["securityContext"]["capabilities"]["add"] = json!(["NET_ADMIN"]);
        c["lifecycle"] = json!({"postStart": {"exec": {"command": ["sh", "-c", "cat"]}}});
        let found = foreign_entries(&desired(), &live);
        assert_eq!(
            whats(&found),
            [
                "spec.containers[name=sidecar].args[2]",
                "spec.containers[name=sidecar].env[name=EXTRA]",
                "spec.containers[name=sidecar].envFrom[0]",
                "spec.containers[name=sidecar].lifecycle",
                "spec.containers[name=sidecar].ports[containerPort=9999]",
                "spec.containers[name=sidecar].securityContext.capabilities.add[0]",
                "spec.containers[name=sidecar].volumeMounts[mountPath=/tmp/copy]",
                "spec.containers[name=debug]",
                "spec.initContainers[name=init]",
                "spec.volumes[name=loot]",
            ]
        );
        assert_eq!(found[7].pointer, "/spec/template/spec/containers/1");
        assert_eq!(found[1].pointer, "/spec/template/spec/containers/0/env/1");

        // The patch removes exactly those, and what is left is the desired template.
        let mut deployment = json!({"spec": {"template": live}});
        let patch: json_patch::Patch = serde_json::from_value(removal_patch(&found)).unwrap();
        json_patch::patch(&mut deployment, &patch).expect("the patch applies");
        assert_eq!(
            foreign_entries(&desired(), &deployment["spec"]["template"]),
            []
        );
        let c = &deployment["spec"]["template"]["spec"]["containers"];
        assert_eq!(c.as_array().unwrap().len(), 1);
        assert_eq!(c[0]["env"], desired()["spec"]["containers"][0]["env"]);
        assert_eq!(c[0]["args"], desired()["spec"]["containers"][0]["args"]);
        assert_eq!(
            deployment["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"],
            "2026-01-01",
            "map entries are left alone"
        );
    }

    #[test]
    fn a_changed_entry_fails_the_patch_instead_of_removing_another() {
        let mut live = live();
        live["spec"]["containers"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "debug", "image": "busybox"}));
        let found = foreign_entries(&desired(), &live);
        let patch: json_patch::Patch = serde_json::from_value(removal_patch(&found)).unwrap();
        // Meanwhile someone replaced the container at that index.
        live["spec"]["containers"][1] = json!({"name": "other", "image": "busybox"});
        let mut deployment = json!({"spec": {"template": live}});
        assert!(json_patch::patch(&mut deployment, &patch).is_err());
    }

    #[test]
    fn the_summary_fits_an_event() {
        let many: Vec<String> = (0..200)
            .map(|i| format!("spec.volumes[name=volume-{i}]"))
            .collect();
        let note = summary("orders-mcp", &many);
        assert!(note.len() <= 1024, "{}", note.len());
        assert!(note.ends_with("more"), "{note}");
        assert_eq!(
            summary(
                "orders-mcp",
                &[
                    "spec.containers[name=debug]".into(),
                    "spec.volumes[name=loot]".into()
                ]
            ),
            "removed from the pod template of Deployment orders-mcp what the operator does not set: spec.containers[name=debug], spec.volumes[name=loot]"
        );
    }
}
