//! The McpKafkaServer controller. One reconcile is a pipeline with the client
//! only at its edges: dereference (namespace label, policy, Secrets; from
//! watch caches) → validate (fence, tool policy; pure) → build (pure) →
//! apply (server-side apply of what differs, prune the rest) → status.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{self, finalizer};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::{info, warn};

use crate::apply::{Keep, ensure, keep_key, prune};
use crate::build::{
    self, FIELD_MANAGER, Inputs, MANAGED_BY, SERVER_LABEL, SERVER_NAMESPACE_LABEL, names,
};
use crate::config::{MutationRule, OperatorConfig};
use crate::crd::{McpKafkaServer, McpKafkaServerSpec, McpToolPolicy};
use crate::fence::{self, ENVIRONMENT_LABEL};
use crate::metrics::Metrics;
use crate::policy::{self, Policy};
use crate::status::{self, Observed};
use crate::token;

/// Holds a server until the operator removed what owner references cannot
/// (its cluster-scoped ClusterRoleBinding).
pub const FINALIZER: &str = "mcpkafka.dev/cleanup";
/// How often an unchanged server is looked at again (reads caches only).
const RESYNC: Duration = Duration::from_secs(300);
/// While a referenced Secret is missing (those Secrets are not watched).
const SECRET_RETRY: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("watch caches not filled within a minute: {0} (can the operator list and watch them?)")]
    CachesNotReady(String),
    #[error("{0}")]
    Finalizer(#[source] Box<finalizer::Error<Error>>),
    #[error("the object has no namespace")]
    NotNamespaced,
}

impl Error {
    /// The category in metrics and Events.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(kube::Error::Api(s)) if s.code == 403 => "forbidden",
            Error::Kube(kube::Error::Api(s)) if s.code == 409 => "conflict",
            Error::Kube(kube::Error::Api(s)) if s.code == 422 => "invalid",
            Error::Kube(kube::Error::Api(_)) => "api",
            Error::Kube(_) => "transport",
            Error::CachesNotReady(_) => "caches",
            Error::Finalizer(e) => match e.as_ref() {
                finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => {
                    e.metric_label()
                }
                _ => "finalizer",
            },
            Error::NotNamespaced => "invalid",
        }
    }
}

/// Watch caches of what the reconciler reads: it never GETs these.
#[derive(Clone)]
pub struct Caches {
    pub namespaces: Store<Namespace>,
    pub policies: Store<McpToolPolicy>,
    pub service_accounts: Store<ServiceAccount>,
    pub roles: Store<Role>,
    pub role_bindings: Store<RoleBinding>,
    pub config_maps: Store<ConfigMap>,
    pub secrets: Store<Secret>,
    pub services: Store<Service>,
    pub network_policies: Store<NetworkPolicy>,
    pub pod_disruption_budgets: Store<PodDisruptionBudget>,
    pub deployments: Store<Deployment>,
    pub cluster_role_bindings: Store<ClusterRoleBinding>,
}

impl Caches {
    /// Waits until every cache holds its initial list; names the ones that
    /// do not within a minute (a missing RBAC rule for a kind shows up here).
    async fn ready(&self) -> Result<(), Error> {
        use futures::FutureExt;
        let timeout = Duration::from_secs(60);
        let waits: Vec<(&str, futures::future::BoxFuture<'_, bool>)> = vec![
            (
                "namespaces",
                self.namespaces
                    .wait_until_ready()
                    .map(|r| r.is_ok())
                    .boxed(),
            ),
            (
                "mcptoolpolicies",
                self.policies.wait_until_ready().map(|r| r.is_ok()).boxed(),
            ),
            (
                "serviceaccounts",
                self.service_accounts
                    .wait_until_ready()
                    .map(|r| r.is_ok())
                    .boxed(),
            ),
            (
                "roles",
                self.roles.wait_until_ready().map(|r| r.is_ok()).boxed(),
            ),
            (
                "rolebindings",
                self.role_bindings
                    .wait_until_ready()
                    .map(|r| r.is_ok())
                    .boxed(),
            ),
            (
                "configmaps",
                self.config_maps
                    .wait_until_ready()
                    .map(|r| r.is_ok())
                    .boxed(),
            ),
            (
                "secrets",
                self.secrets.wait_until_ready().map(|r| r.is_ok()).boxed(),
            ),
            (
                "services",
                self.services.wait_until_ready().map(|r| r.is_ok()).boxed(),
            ),
            (
                "networkpolicies",
                self.network_policies
                    .wait_until_ready()
                    .map(|r| r.is_ok())
                    .boxed(),
            ),
            (
                "poddisruptionbudgets",
                self.pod_disruption_budgets
                    .wait_until_ready()
                    .map(|r| r.is_ok())
                    .boxed(),
            ),
            (
                "deployments",
                self.deployments
                    .wait_until_ready()
                    .map(|r| r.is_ok())
                    .boxed(),
            ),
            (
                "clusterrolebindings",
                self.cluster_role_bindings
                    .wait_until_ready()
                    .map(|r| r.is_ok())
                    .boxed(),
            ),
        ];
        let (names, futures): (Vec<&str>, Vec<_>) = waits.into_iter().unzip();
        let mut pending: Vec<_> = names
            .into_iter()
            .zip(futures.into_iter().map(|f| f.shared()))
            .collect();
        let all = futures::future::join_all(pending.iter().map(|(_, f)| f.clone()));
        if tokio::time::timeout(timeout, all).await.is_ok() {
            return Ok(());
        }
        pending.retain(|(_, f)| f.peek().is_none());
        let names: Vec<&str> = pending.into_iter().map(|(n, _)| n).collect();
        Err(Error::CachesNotReady(names.join(", ")))
    }
}

pub struct Context {
    pub client: Client,
    pub config: OperatorConfig,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub caches: Caches,
    /// Consecutive failures per server, for exponential backoff.
    failures: Mutex<HashMap<ObjectRef<McpKafkaServer>, u32>>,
    /// Set once every cache is filled. Reconciles wait on this cell, not on
    /// the stores: concurrent waiters on one store were seen to sleep until
    /// their timeout.
    caches_ready: tokio::sync::OnceCell<()>,
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

/// A cache of objects the operator made (selected by its label), with
/// managed fields dropped to save memory, and the stream that feeds it.
fn cached<K>(
    client: &Client,
    config: watcher::Config,
) -> (
    Store<K>,
    impl Stream<Item = Result<K, watcher::Error>> + Send + 'static,
)
where
    K: Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store();
    let stream = watcher(Api::<K>::all(client.clone()), config)
        .backoff(WatchBackoff::new())
        .modify(|o: &mut K| o.meta_mut().managed_fields = None)
        .reflect(writer)
        .touched_objects();
    (reader, stream)
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
    let managed = watcher::Config::default().labels(&format!("{}={}", MANAGED_BY.0, MANAGED_BY.1));
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
    let (service_accounts, sa_events) = cached(&client, managed.clone());
    let (roles, role_events) = cached(&client, managed.clone());
    let (role_bindings, rb_events) = cached(&client, managed.clone());
    let (config_maps, cm_events) = cached(&client, managed.clone());
    let (secrets, secret_events) = cached(&client, managed.clone());
    let (services, service_events) = cached(&client, managed.clone());
    let (network_policies, np_events) = cached(&client, managed.clone());
    let (pod_disruption_budgets, pdb_events) = cached(&client, managed.clone());
    let (deployments, deployment_events) = cached(&client, managed.clone());
    let (cluster_role_bindings, crb_events) = cached(&client, managed.clone());
    let caches = Caches {
        namespaces,
        policies,
        service_accounts,
        roles,
        role_bindings,
        config_maps,
        secrets,
        services,
        network_policies,
        pod_disruption_budgets,
        deployments,
        cluster_role_bindings,
    };

    let ctx = Arc::new(Context {
        recorder: Recorder::new(client.clone(), reporter),
        client,
        config,
        metrics,
        caches,
        failures: Mutex::new(HashMap::new()),
        caches_ready: tokio::sync::OnceCell::new(),
    });

    let (by_namespace, by_policy) = (servers.clone(), servers.clone());
    controller
        .owns_stream(sa_events)
        .owns_stream(role_events)
        .owns_stream(rb_events)
        .owns_stream(cm_events)
        .owns_stream(secret_events)
        .owns_stream(service_events)
        .owns_stream(np_events)
        .owns_stream(pdb_events)
        .owns_stream(deployment_events)
        // A namespace label or the namespace policy decides every server in it.
        .watches_stream(namespace_events, move |ns: Namespace| {
            servers_in(&by_namespace, &ns.name_any())
        })
        .watches_stream(policy_events, move |p: McpToolPolicy| {
            servers_in(&by_policy, &p.namespace().unwrap_or_default())
        })
        // Cluster-scoped, so not owned: map back through its labels.
        .watches_stream(crb_events, |crb: ClusterRoleBinding| {
            let labels = crb.labels();
            match (labels.get(SERVER_LABEL), labels.get(SERVER_NAMESPACE_LABEL)) {
                (Some(name), Some(ns)) => Some(ObjectRef::new(name).within(ns)),
                _ => None,
            }
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

async fn reconcile(server: Arc<McpKafkaServer>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let result = async {
        ctx.caches_ready
            .get_or_try_init(|| ctx.caches.ready())
            .await?;
        let namespace = server.namespace().ok_or(Error::NotNamespaced)?;
        let api: Api<McpKafkaServer> = Api::namespaced(ctx.client.clone(), &namespace);
        finalizer(&api, FINALIZER, server.clone(), |event| async {
            match event {
                finalizer::Event::Apply(s) => apply(s, &ctx).await,
                finalizer::Event::Cleanup(s) => cleanup(s, &ctx).await,
            }
        })
        .await
        .map_err(|e| Error::Finalizer(Box::new(e)))
    }
    .await;
    let outcome = match &result {
        Ok(_) => {
            ctx.failures
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&ObjectRef::from_obj(server.as_ref()));
            "ok"
        }
        Err(e) => e.metric_label(),
    };
    ctx.metrics.reconciled(outcome, started.elapsed());
    tracing::debug!(server = %server.name_any(), namespace = ?server.namespace(), outcome, took = ?started.elapsed(), "reconciled");
    result
}

/// Exponential backoff per server: 1 s, 2 s, 4 s ... up to 5 minutes.
fn error_policy(server: Arc<McpKafkaServer>, error: &Error, ctx: Arc<Context>) -> Action {
    let mut failures = ctx.failures.lock().unwrap_or_else(|p| p.into_inner());
    let n = failures
        .entry(ObjectRef::from_obj(server.as_ref()))
        .or_insert(0);
    *n = n.saturating_add(1);
    let delay = Duration::from_secs(1u64 << (*n - 1).min(8)).min(Duration::from_secs(300));
    warn!(server = %server.name_any(), namespace = ?server.namespace(), category = error.metric_label(), error = %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// What the apply step made, for status and requeue.
#[derive(Default)]
struct Applied {
    replicas: Option<(i32, i32)>,
    token_secrets: BTreeMap<String, String>,
    next_rotation: Option<Timestamp>,
    rotated: Vec<String>,
}

async fn apply(server: Arc<McpKafkaServer>, ctx: &Context) -> Result<Action, Error> {
    let (name, namespace) = (
        server.name_any(),
        server.namespace().ok_or(Error::NotNamespaced)?,
    );
    let now = Timestamp::now();

    // Dereference.
    let ns_object = ctx.caches.namespaces.get(&ObjectRef::new(&namespace));
    // A terminating namespace accepts no new objects, and takes this server
    // with it (the finalizer's cleanup still runs): nothing to apply.
    if ns_object
        .as_ref()
        .is_some_and(|ns| ns.metadata.deletion_timestamp.is_some())
    {
        return Ok(Action::await_change());
    }
    let label = ns_object.and_then(|ns| ns.labels().get(ENVIRONMENT_LABEL).cloned());
    let policy = match ctx
        .caches
        .policies
        .get(&ObjectRef::new("default").within(&namespace))
    {
        Some(p) => Policy::from_namespace(&namespace, &p.spec),
        None => Policy::operator_default(&ctx.config.default_policy),
    };
    let missing_secrets = missing_secrets(&ctx.client, &namespace, &server.spec).await?;

    // Validate.
    let spec = &server.spec;
    let fence = fence::check(
        &spec.environment,
        &namespace,
        label.as_deref(),
        spec.kafka.expected_cluster_id.as_deref(),
        &ctx.config,
    );
    let mutations = fence
        .as_ref()
        .map(|f| f.mutations)
        .unwrap_or(MutationRule::BreakGlass);
    let decision = policy::decide(&spec.tools, &policy, mutations, now);

    let mut observed = Observed {
        generation: server.metadata.generation,
        fence: fence.as_ref().map(|_| ()).map_err(Clone::clone),
        policy_source: policy.source.clone(),
        effective_tools: decision.effective.clone(),
        denied_tools: decision.denied.clone(),
        missing_secrets: missing_secrets.clone(),
        applied: Ok(()),
        replicas: None,
        endpoint: Some(names::endpoint(
            &namespace,
            &name,
            &ctx.config.cluster_domain,
        )),
        token_secrets: BTreeMap::new(),
    };

    // Build and apply.
    let mut failure = None;
    let mut applied = Applied::default();
    match &fence {
        // Nothing may run outside its fence: remove whatever was deployed.
        Err(_) => {
            if let Err(e) = prune_all(ctx, &server, &Default::default()).await {
                observed.applied = Err(e.to_string());
                failure = Some(e);
            }
        }
        // Keep what runs; a pod without its Secret would not start anyway.
        Ok(_) if !missing_secrets.is_empty() => {}
        Ok(fenced) => {
            let window = policy
                .open_window(now)
                .filter(|_| decision.changes_at.is_some());
            let inputs = Inputs {
                server: &server,
                config: &ctx.config,
                fenced,
                tools: &decision.effective,
                break_glass: window,
            };
            match apply_children(ctx, &inputs, now).await {
                Ok(a) => applied = a,
                Err(e) => {
                    observed.applied = Err(e.to_string());
                    failure = Some(e);
                }
            }
        }
    }
    observed.replicas = applied.replicas;
    observed.token_secrets = applied.token_secrets.clone();

    // Status, and Events for what changed.
    let new_status = status::compute(server.status.as_ref(), &observed, now);
    if server.status.as_ref() != Some(&new_status) {
        let api: Api<McpKafkaServer> = Api::namespaced(ctx.client.clone(), &namespace);
        let patch = serde_json::json!({ "apiVersion": "mcpkafka.dev/v1alpha1", "kind": "McpKafkaServer", "status": new_status });
        api.patch_status(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
        ctx.metrics.api_write("McpKafkaServer", "status");
        publish_changes(ctx, &server, &new_status).await;
    }
    for client in &applied.rotated {
        let note = format!(
            "issued a new token for client {client} in Secret {}",
            names::token_secret(&name, client)
        );
        publish(ctx, &server, EventType::Normal, "TokenIssued", note).await;
    }
    if let Some(e) = failure {
        return Err(e);
    }

    Ok(match &fence {
        Err(_) => Action::await_change(),
        Ok(_) if !missing_secrets.is_empty() => Action::requeue(SECRET_RETRY),
        Ok(_) => {
            let wake = [decision.changes_at, applied.next_rotation]
                .into_iter()
                .flatten()
                .min();
            let until = wake.map(|t| Duration::try_from(t.duration_since(now)).unwrap_or_default());
            // A second late, so the window has really closed when we look.
            Action::requeue(until.map_or(RESYNC, |d| (d + Duration::from_secs(1)).min(RESYNC)))
        }
    })
}

async fn apply_children(
    ctx: &Context,
    inputs: &Inputs<'_>,
    now: Timestamp,
) -> Result<Applied, Error> {
    let (client, c, m) = (&ctx.client, &ctx.caches, ctx.metrics.as_ref());
    let (name, namespace) = (inputs.name(), inputs.namespace());
    let desired = build::desired(inputs);

    let mut sa_uids = BTreeMap::new();
    for sa in desired.service_accounts.clone() {
        let live = ensure(
            &Api::namespaced(client.clone(), &namespace),
            &c.service_accounts,
            sa,
            m,
        )
        .await?;
        sa_uids.insert(live.name_any(), live.uid().unwrap_or_default());
    }
    if let Some(crb) = desired.cluster_role_binding.clone() {
        ensure(&Api::all(client.clone()), &c.cluster_role_bindings, crb, m).await?;
    }
    for role in desired.roles.clone() {
        ensure(
            &Api::namespaced(client.clone(), &namespace),
            &c.roles,
            role,
            m,
        )
        .await?;
    }
    for binding in desired.role_bindings.clone() {
        ensure(
            &Api::namespaced(client.clone(), &namespace),
            &c.role_bindings,
            binding,
            m,
        )
        .await?;
    }
    ensure_all(
        client,
        &namespace,
        &c.config_maps,
        desired.config_map.clone(),
        m,
    )
    .await?;
    ensure_all(client, &namespace, &c.services, desired.service.clone(), m).await?;
    ensure_all(
        client,
        &namespace,
        &c.network_policies,
        desired.network_policy.clone(),
        m,
    )
    .await?;
    ensure_all(
        client,
        &namespace,
        &c.pod_disruption_budgets,
        desired.pod_disruption_budget.clone(),
        m,
    )
    .await?;
    let deployment = ensure_all(
        client,
        &namespace,
        &c.deployments,
        desired.deployment.clone(),
        m,
    )
    .await?;

    // Tokens for issueToken clients: reuse the kept one while it is fresh.
    let mut applied = Applied::default();
    let mut secrets = Vec::new();
    for client_spec in inputs
        .server
        .spec
        .clients
        .iter()
        .filter(|c| c.issue_token.is_some())
    {
        let lifetime = client_spec
            .issue_token
            .as_ref()
            .map_or(3600, |t| t.expiration_seconds);
        let sa = names::client(&name, &client_spec.name);
        let sa_uid = sa_uids.get(&sa).cloned().unwrap_or_default();
        let secret_name = names::token_secret(&name, &client_spec.name);
        let kept = c
            .secrets
            .get(&ObjectRef::new(&secret_name).within(&namespace));
        let token = match kept.and_then(|s| token::reusable(&s, lifetime, &sa_uid, now)) {
            Some(t) => t,
            None => {
                let audience = names::audience(&namespace, &name);
                let sa_api: Api<ServiceAccount> = Api::namespaced(client.clone(), &namespace);
                let minted = token::mint(&sa_api, &sa, &sa_uid, &audience, lifetime).await?;
                m.api_write("TokenRequest", "create");
                applied.rotated.push(client_spec.name.clone());
                minted
            }
        };
        applied.next_rotation = [applied.next_rotation, Some(token::rotate_at(&token))]
            .into_iter()
            .flatten()
            .min();
        secrets.push(build::token_secret(inputs, &client_spec.name, &token));
        applied
            .token_secrets
            .insert(client_spec.name.clone(), secret_name);
    }
    for secret in secrets.clone() {
        ensure(
            &Api::namespaced(client.clone(), &namespace),
            &c.secrets,
            secret,
            m,
        )
        .await?;
    }

    // Prune what this server no longer needs (a removed client, replicas back to 1).
    let mut keep = Keep::new();
    keep.extend(desired.service_accounts.iter().map(keep_key));
    keep.extend(desired.roles.iter().map(keep_key));
    keep.extend(desired.role_bindings.iter().map(keep_key));
    keep.extend(desired.config_map.iter().map(keep_key));
    keep.extend(desired.service.iter().map(keep_key));
    keep.extend(desired.network_policy.iter().map(keep_key));
    keep.extend(desired.pod_disruption_budget.iter().map(keep_key));
    keep.extend(desired.deployment.iter().map(keep_key));
    keep.extend(desired.cluster_role_binding.iter().map(keep_key));
    keep.extend(secrets.iter().map(keep_key));
    prune_all(ctx, inputs.server, &keep).await?;

    applied.replicas = deployment.map(|d| {
        let status = d.status.clone().unwrap_or_default();
        (
            status.available_replicas.unwrap_or(0),
            inputs.server.spec.replicas,
        )
    });
    Ok(applied)
}

async fn ensure_all<K>(
    client: &Client,
    namespace: &str,
    cache: &Store<K>,
    desired: Option<K>,
    m: &Metrics,
) -> Result<Option<Arc<K>>, Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + Serialize
        + DeserializeOwned
        + std::fmt::Debug,
{
    match desired {
        Some(d) => Ok(Some(
            ensure(&Api::namespaced(client.clone(), namespace), cache, d, m).await?,
        )),
        None => Ok(None),
    }
}

/// Deletes every object of this server that is not in `keep`.
async fn prune_all(ctx: &Context, server: &McpKafkaServer, keep: &Keep) -> Result<(), Error> {
    let (name, namespace) = (
        server.name_any(),
        server.namespace().ok_or(Error::NotNamespaced)?,
    );
    let (client, c, m) = (&ctx.client, &ctx.caches, ctx.metrics.as_ref());
    let selector = [(SERVER_LABEL, name.as_str()), MANAGED_BY];
    let ns = namespace.as_str();
    prune(
        &Api::namespaced(client.clone(), ns),
        Some(ns),
        &c.service_accounts,
        &selector,
        keep,
        m,
    )
    .await?;
    prune(
        &Api::namespaced(client.clone(), ns),
        Some(ns),
        &c.roles,
        &selector,
        keep,
        m,
    )
    .await?;
    prune(
        &Api::namespaced(client.clone(), ns),
        Some(ns),
        &c.role_bindings,
        &selector,
        keep,
        m,
    )
    .await?;
    prune(
        &Api::namespaced(client.clone(), ns),
        Some(ns),
        &c.config_maps,
        &selector,
        keep,
        m,
    )
    .await?;
    prune(
        &Api::namespaced(client.clone(), ns),
        Some(ns),
        &c.secrets,
        &selector,
        keep,
        m,
    )
    .await?;
    prune(
        &Api::namespaced(client.clone(), ns),
        Some(ns),
        &c.services,
        &selector,
        keep,
        m,
    )
    .await?;
    prune(
        &Api::namespaced(client.clone(), ns),
        Some(ns),
        &c.network_policies,
        &selector,
        keep,
        m,
    )
    .await?;
    prune(
        &Api::namespaced(client.clone(), ns),
        Some(ns),
        &c.pod_disruption_budgets,
        &selector,
        keep,
        m,
    )
    .await?;
    prune(
        &Api::namespaced(client.clone(), ns),
        Some(ns),
        &c.deployments,
        &selector,
        keep,
        m,
    )
    .await?;
    let crb_selector = [
        (SERVER_LABEL, name.as_str()),
        (SERVER_NAMESPACE_LABEL, ns),
        MANAGED_BY,
    ];
    prune(
        &Api::all(client.clone()),
        None,
        &c.cluster_role_bindings,
        &crb_selector,
        keep,
        m,
    )
    .await?;
    Ok(())
}

/// The server is being deleted: owner references take the namespaced
/// objects; the ClusterRoleBinding is ours to remove.
async fn cleanup(server: Arc<McpKafkaServer>, ctx: &Context) -> Result<Action, Error> {
    let (name, namespace) = (
        server.name_any(),
        server.namespace().ok_or(Error::NotNamespaced)?,
    );
    let api: Api<ClusterRoleBinding> = Api::all(ctx.client.clone());
    match api
        .delete(
            &names::auth_delegator_binding(&namespace, &name),
            &Default::default(),
        )
        .await
    {
        Ok(_) => ctx.metrics.api_write("ClusterRoleBinding", "delete"),
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(e) => return Err(e.into()),
    }
    info!(server = %name, namespace = %namespace, "cleaned up");
    Ok(Action::await_change())
}

/// Referenced Secrets that do not exist (metadata reads only).
async fn missing_secrets(
    client: &Client,
    namespace: &str,
    spec: &McpKafkaServerSpec,
) -> Result<Vec<String>, Error> {
    let mut referenced = Vec::new();
    if let Some(tls) = &spec.kafka.tls {
        referenced.extend(tls.ca_secret_ref.as_ref().map(|r| r.name.clone()));
        referenced.extend(tls.client_cert_secret_ref.as_ref().map(|r| r.name.clone()));
    }
    referenced.extend(spec.kafka.sasl.as_ref().map(|s| s.secret_ref.name.clone()));
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let mut missing = Vec::new();
    for name in referenced {
        if api.get_metadata_opt(&name).await?.is_none() {
            missing.push(name);
        }
    }
    Ok(missing)
}

async fn publish(
    ctx: &Context,
    server: &McpKafkaServer,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: "Reconcile".into(),
        secondary: None,
    };
    match ctx.recorder.publish(&event, &server.object_ref(&())).await {
        Ok(()) => ctx.metrics.api_write("Event", "create"),
        // An Event is a courtesy; failing to write one must not fail the reconcile.
        Err(e) => warn!(error = %e, "publishing an event"),
    }
}

/// Events for what a person should notice, once per change.
async fn publish_changes(
    ctx: &Context,
    server: &McpKafkaServer,
    new: &crate::crd::McpKafkaServerStatus,
) {
    let old = server.status.clone().unwrap_or_default();
    let changed = |type_: &str| {
        let (a, b) = (status::find(&old, type_), status::find(new, type_));
        a.map(|c| (&c.status, &c.reason, &c.message))
            != b.map(|c| (&c.status, &c.reason, &c.message))
    };
    if changed(status::ENVIRONMENT_FENCED)
        && let Some(c) =
            status::find(new, status::ENVIRONMENT_FENCED).filter(|c| c.status == "False")
    {
        publish(
            ctx,
            server,
            EventType::Warning,
            &c.reason,
            c.message.clone(),
        )
        .await;
    }
    // A broken fence already has its Event above; other failures get theirs.
    let fence_holds =
        status::find(new, status::ENVIRONMENT_FENCED).is_some_and(|c| c.status == "True");
    if changed(status::RECONCILED)
        && fence_holds
        && let Some(c) = status::find(new, status::RECONCILED).filter(|c| c.status == "False")
    {
        publish(
            ctx,
            server,
            EventType::Warning,
            &c.reason,
            c.message.clone(),
        )
        .await;
    }
    if old.denied_tools != new.denied_tools && !new.denied_tools.is_empty() {
        let list: Vec<String> = new
            .denied_tools
            .iter()
            .map(|d| format!("{}: {}", d.name, d.reason))
            .collect();
        publish(
            ctx,
            server,
            EventType::Warning,
            "ToolsDenied",
            list.join("; "),
        )
        .await;
    }
    if old.effective_tools != new.effective_tools && !new.effective_tools.is_empty() {
        let list: Vec<&str> = new.effective_tools.iter().map(|t| t.as_str()).collect();
        publish(
            ctx,
            server,
            EventType::Normal,
            "ToolsExposed",
            list.join(", "),
        )
        .await;
    }
}

#[cfg(test)]
mod watch_backoff_tests {
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
