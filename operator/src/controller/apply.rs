//! Apply one object: server-side apply under one field manager, but only
//! when the live object (from the watch cache) differs from the desired one,
//! so that an unchanged server causes no API writes at all; and prune the
//! objects of one kind that a server no longer needs.

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::sync::Arc;

use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::build::{DESIRED_HASH_ANNOTATION, FIELD_MANAGER, stamp_desired_hash};
use crate::metrics::Metrics;

/// Whether `live` already holds everything `desired` says. Fields the
/// apiserver or other managers add (defaults, status, extra list items,
/// labels from GitOps) do not count; a missing or different field does.
pub fn contains(live: &Value, desired: &Value) -> bool {
    match (live, desired) {
        (Value::Object(l), Value::Object(d)) => d.iter().all(|(k, dv)| match l.get(k) {
            Some(lv) => contains(lv, dv),
            None => is_empty(dv),
        }),
        (Value::Array(l), Value::Array(d)) => {
            l.len() >= d.len() && l.iter().zip(d).all(|(lv, dv)| contains(lv, dv))
        }
        (Value::Null, d) => is_empty(d),
        (l, d) => l == d,
    }
}

/// The apiserver drops empty lists and maps; treat them as absent.
fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

fn needs_apply<K: Serialize + Resource>(live: &K, desired: &K, hash: &str) -> bool {
    if live
        .annotations()
        .get(DESIRED_HASH_ANNOTATION)
        .map(String::as_str)
        != Some(hash)
    {
        return true;
    }
    let (Ok(l), Ok(d)) = (serde_json::to_value(live), serde_json::to_value(desired)) else {
        return true;
    };
    !contains(&l, &d)
}

/// Applies `desired` unless the cached live object already matches it.
/// Returns the live object (the cached one or the apply's answer).
pub async fn ensure<K>(
    api: &Api<K>,
    cache: &Store<K>,
    mut desired: K,
    metrics: &Metrics,
) -> Result<Arc<K>, kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + Serialize + DeserializeOwned + Debug,
{
    let hash = stamp_desired_hash(&mut desired);
    let name = desired.name_any();
    let mut key = ObjectRef::<K>::new(&name);
    if let Some(ns) = desired.namespace() {
        key = key.within(&ns);
    }
    if let Some(live) = cache.get(&key)
        && !needs_apply(live.as_ref(), &desired, &hash)
    {
        return Ok(live);
    }
    let applied = api
        .patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&desired),
        )
        .await?;
    metrics.api_write(K::kind(&()).as_ref(), "apply");
    Ok(Arc::new(applied))
}

/// Deletes the cached objects of this kind in `namespace` (None: cluster
/// scope) that carry `selector`'s labels and whose names are not in `keep`
/// (what this reconcile applied of the kind). Already gone is fine.
pub async fn prune<K>(
    api: &Api<K>,
    namespace: Option<&str>,
    cache: &Store<K>,
    selector: &[(&str, &str)],
    keep: &BTreeSet<String>,
    metrics: &Metrics,
) -> Result<usize, kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    let stale: Vec<String> = cache
        .state()
        .iter()
        .filter(|o| namespace.is_none() || o.namespace().as_deref() == namespace)
        .filter(|o| {
            selector
                .iter()
                .all(|(k, v)| o.labels().get(*k).map(String::as_str) == Some(*v))
        })
        .filter(|o| !keep.contains(&o.name_any()))
        .map(|o| o.name_any())
        .collect();
    for name in &stale {
        match api.delete(name, &DeleteParams::background()).await {
            Ok(_) => metrics.api_write(K::kind(&()).as_ref(), "delete"),
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(stale.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_and_extra_fields_do_not_count() {
        let desired =
            json!({"spec": {"replicas": 2, "ports": [{"name": "mcp", "port": 8090}]}, "rules": []});
        let live = json!({"spec": {"replicas": 2, "ports": [{"name": "mcp", "port": 8090, "protocol": "TCP"}], "clusterIP": "10.0.0.1"}, "status": {}});
        assert!(contains(&live, &desired));
    }

    #[test]
    fn changed_or_missing_fields_count() {
        let desired = json!({"spec": {"replicas": 2, "ports": [{"name": "mcp", "port": 8090}]}});
        assert!(!contains(
            &json!({"spec": {"replicas": 3, "ports": [{"name": "mcp", "port": 8090}]}}),
            &desired
        ));
        assert!(!contains(
            &json!({"spec": {"replicas": 2, "ports": []}}),
            &desired
        ));
        assert!(!contains(&json!({"spec": {"replicas": 2}}), &desired));
        assert!(!contains(
            &json!({"spec": {"replicas": 2, "ports": [{"name": "x", "port": 8090}]}}),
            &desired
        ));
    }
}
