//! Watches: the caches the reconciler reads (it never GETs what it made),
//! the streams that trigger reconciles, how their retries are paced, and the
//! kube-runtime `Controller` that ties them to [`reconcile`](super::reconcile).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kube::runtime::controller::{Config as ControllerConfig, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use tracing::warn;

use super::reconcile::{error_policy, reconcile};
use super::{Context, Error};
use crate::build::{MANAGED_BY, SERVER_LABEL, SERVER_NAMESPACE_LABEL};
use crate::config::OperatorConfig;
use crate::crd::{McpKafkaServer, McpToolPolicy};
use crate::metrics::Metrics;
use crate::owned::{Kind, Owned, PerKind};

/// The watch cache of each owned kind.
pub struct Cached;

impl PerKind for Cached {
    type Of<K: Kind> = Store<K>;
}

/// The watch stream of each owned kind, which feeds its cache and triggers
/// the owning server's reconcile.
struct Triggers;

impl PerKind for Triggers {
    type Of<K: Kind> = BoxStream<'static, Result<K, watcher::Error>>;
}

/// Watch caches of what the reconciler reads: it never GETs these.
pub struct Caches {
    pub namespaces: Store<Namespace>,
    pub policies: Store<McpToolPolicy>,
    /// What the operator made (selected by its label), by kind.
    pub owned: Owned<Cached>,
}

impl Caches {
    /// Waits until every cache holds its initial list; names the ones that
    /// do not within a minute (a missing RBAC rule for a kind shows up here).
    pub(super) async fn ready(&self) -> Result<(), Error> {
        let Owned {
            service_accounts,
            cluster_role_bindings,
            roles,
            role_bindings,
            config_maps,
            services,
            network_policies,
            pod_disruption_budgets,
            deployments,
            secrets,
        } = &self.owned;
        let waits = vec![
            filled(&self.namespaces),
            filled(&self.policies),
            filled(service_accounts),
            filled(cluster_role_bindings),
            filled(roles),
            filled(role_bindings),
            filled(config_maps),
            filled(services),
            filled(network_policies),
            filled(pod_disruption_budgets),
            filled(deployments),
            filled(secrets),
        ];
        let mut pending: Vec<_> = waits.into_iter().map(|(n, f)| (n, f.shared())).collect();
        let all = futures::future::join_all(pending.iter().map(|(_, f)| f.clone()));
        if tokio::time::timeout(Duration::from_secs(60), all)
            .await
            .is_ok()
        {
            return Ok(());
        }
        pending.retain(|(_, f)| f.peek().is_none());
        let names: Vec<&str> = pending.iter().map(|(n, _)| n.as_str()).collect();
        Err(Error::CachesNotReady(names.join(", ")))
    }
}

/// A cache's resource name (as RBAC names it) and a future that resolves
/// once the cache holds its initial list.
fn filled<K: Kind>(store: &Store<K>) -> (String, BoxFuture<'_, bool>) {
    (
        K::plural(&()).into_owned(),
        store.wait_until_ready().map(|r| r.is_ok()).boxed(),
    )
}

/// Retry delays of every watch: 0.5 s, doubling, at most 5 s, back to
/// 0.5 s after a success. kube's default grows to 30 s with as much jitter
/// again. A dozen watches retrying every 5 s is light for an apiserver.
#[derive(Clone)]
struct WatchBackoff {
    next: Duration,
}

impl WatchBackoff {
    const FIRST: Duration = Duration::from_millis(500);
    const MOST: Duration = Duration::from_secs(5);

    fn new() -> Self {
        Self { next: Self::FIRST }
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let now = self.next;
        self.next = (self.next * 2).min(Self::MOST);
        Some(now)
    }
}

impl kube::runtime::utils::Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

/// The controller's merged trigger stream passes each watch's error on at
/// once: the watches pace their own retries. With a delay there (kube's
/// default), one watch's error pauses every watch: after an apiserver
/// restart the watches' 410 Gone errors (stale resource versions) came one
/// per pause, and the operator saw no change for minutes (the outage test
/// in e2e/tests/python/test_faults_control_plane.py).
struct NoDelay;

impl Iterator for NoDelay {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        Some(Duration::ZERO)
    }
}

impl kube::runtime::utils::Backoff for NoDelay {
    fn reset(&mut self) {}
}

/// A cache of one kind, with managed fields dropped to save memory, and
/// the stream that feeds it.
fn cached<K: Kind>(
    client: &Client,
    config: watcher::Config,
) -> (Store<K>, BoxStream<'static, Result<K, watcher::Error>>) {
    let (reader, writer) = reflector::store();
    let stream = watcher(Api::<K>::all(client.clone()), config)
        .backoff(WatchBackoff::new())
        .modify(|o: &mut K| o.meta_mut().managed_fields = None)
        .reflect(writer)
        .touched_objects()
        .boxed();
    (reader, stream)
}

/// The cache and the stream of every owned kind, selected by the operator's label.
fn watch_owned(client: &Client) -> (Owned<Cached>, Owned<Triggers>) {
    let managed = watcher::Config::default().labels(&format!("{}={}", MANAGED_BY.0, MANAGED_BY.1));
    let (service_accounts, service_account_events) = cached(client, managed.clone());
    let (cluster_role_bindings, cluster_role_binding_events) = cached(client, managed.clone());
    let (roles, role_events) = cached(client, managed.clone());
    let (role_bindings, role_binding_events) = cached(client, managed.clone());
    let (config_maps, config_map_events) = cached(client, managed.clone());
    let (services, service_events) = cached(client, managed.clone());
    let (network_policies, network_policy_events) = cached(client, managed.clone());
    let (pod_disruption_budgets, pod_disruption_budget_events) = cached(client, managed.clone());
    let (deployments, deployment_events) = cached(client, managed.clone());
    let (secrets, secret_events) = cached(client, managed);
    (
        Owned {
            service_accounts,
            cluster_role_bindings,
            roles,
            role_bindings,
            config_maps,
            services,
            network_policies,
            pod_disruption_budgets,
            deployments,
            secrets,
        },
        Owned {
            service_accounts: service_account_events,
            cluster_role_bindings: cluster_role_binding_events,
            roles: role_events,
            role_bindings: role_binding_events,
            config_maps: config_map_events,
            services: service_events,
            network_policies: network_policy_events,
            pod_disruption_budgets: pod_disruption_budget_events,
            deployments: deployment_events,
            secrets: secret_events,
        },
    )
}

fn servers_in(store: &Store<McpKafkaServer>, namespace: &str) -> Vec<ObjectRef<McpKafkaServer>> {
    store
        .state()
        .iter()
        .filter(|s| s.namespace().as_deref() == Some(namespace))
        .map(|s| ObjectRef::from_obj(s.as_ref()))
        .collect()
}

/// Runs the controller until `shutdown` resolves.
pub async fn run(
    client: Client,
    config: OperatorConfig,
    metrics: Arc<Metrics>,
    reporter: Reporter,
    concurrency: u16,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    // The servers' own cache, without managed fields (a third of an object's
    // size, never read here): the largest saving at 1,000 servers.
    let (servers, servers_writer) = reflector::store();
    let server_events = watcher(
        Api::<McpKafkaServer>::all(client.clone()),
        watcher::Config::default(),
    )
    .backoff(WatchBackoff::new())
    .modify(|o: &mut McpKafkaServer| o.meta_mut().managed_fields = None)
    .reflect(servers_writer)
    .applied_objects();
    let controller = Controller::for_stream(server_events, servers.clone());

    let (namespaces, namespace_events) = cached::<Namespace>(&client, watcher::Config::default());
    let (policies, policy_events) = cached::<McpToolPolicy>(&client, watcher::Config::default());
    let (owned, triggers) = watch_owned(&client);
    let ctx = Arc::new(Context {
        recorder: Recorder::new(client.clone(), reporter),
        client,
        config,
        metrics,
        caches: Caches {
            namespaces,
            policies,
            owned,
        },
        failures: Mutex::new(HashMap::new()),
        caches_ready: tokio::sync::OnceCell::new(),
    });

    let Owned {
        service_accounts,
        cluster_role_bindings,
        roles,
        role_bindings,
        config_maps,
        services,
        network_policies,
        pod_disruption_budgets,
        deployments,
        secrets,
    } = triggers;
    let (by_namespace, by_policy) = (servers.clone(), servers.clone());
    controller
        .owns_stream(service_accounts)
        .owns_stream(roles)
        .owns_stream(role_bindings)
        .owns_stream(config_maps)
        .owns_stream(services)
        .owns_stream(network_policies)
        .owns_stream(pod_disruption_budgets)
        .owns_stream(deployments)
        .owns_stream(secrets)
        // Cluster-scoped, so not owned: map back through its labels.
        .watches_stream(cluster_role_bindings, |crb: ClusterRoleBinding| {
            let labels = crb.labels();
            match (labels.get(SERVER_LABEL), labels.get(SERVER_NAMESPACE_LABEL)) {
                (Some(name), Some(ns)) => Some(ObjectRef::new(name).within(ns)),
                _ => None,
            }
        })
        // A namespace label or the namespace policy decides every server in it.
        .watches_stream(namespace_events, move |ns: Namespace| {
            servers_in(&by_namespace, &ns.name_any())
        })
        .watches_stream(policy_events, move |p: McpToolPolicy| {
            servers_in(&by_policy, &p.namespace().unwrap_or_default())
        })
        .trigger_backoff(NoDelay)
        .with_config(ControllerConfig::default().concurrency(concurrency))
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                // A trigger for an object deleted meanwhile: nothing to do.
                Err(kube::runtime::controller::Error::ObjectNotFound(r)) => {
                    tracing::debug!(object = %r, "gone before its reconcile")
                }
                // Reconcile failures are reported by error_policy; these are queue and watch errors.
                Err(e) => warn!(error = %e, "controller"),
                Ok(_) => {}
            }
        })
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::utils::Backoff;

    #[test]
    fn watch_retries_double_to_five_seconds_and_start_over_after_a_success() {
        let mut b = WatchBackoff::new();
        let delays: Vec<u64> = b.by_ref().take(6).map(|d| d.as_millis() as u64).collect();
        assert_eq!(delays, [500, 1000, 2000, 4000, 5000, 5000]);
        b.reset();
        assert_eq!(b.next(), Some(Duration::from_millis(500)));
    }
}
