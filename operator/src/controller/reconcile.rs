//! One server's reconcile: dereference → validate → build and apply →
//! status and Events → the next look. The finalizer runs [`cleanup`]
//! instead when the server is being deleted.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{self, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Client, ResourceExt};
use tracing::{info, warn};

use super::children::{Applied, apply_all, prune_all};
use super::requeue::{self, Found};
use super::{Context, Error, FINALIZER, events};
use crate::build::{self, FIELD_MANAGER, Inputs, names};
use crate::config::MutationRule;
use crate::crd::{McpKafkaServer, McpKafkaServerSpec};
use crate::fence::{self, ENVIRONMENT_LABEL};
use crate::owned::Owned;
use crate::policy::{self, Policy};
use crate::scope;
use crate::status::{self, Observed, Serving};

/// The controller's reconcile: the finalizer's apply or cleanup, measured.
pub(super) async fn reconcile(
    server: Arc<McpKafkaServer>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let started = Instant::now();
    let result = async {
        ctx.caches_ready
            .get_or_try_init(|| ctx.caches.ready())
            .await?;
        let namespace = server.namespace().ok_or(Error::NotNamespaced)?;
        let api: Api<McpKafkaServer> = Api::namespaced(ctx.client.clone(), &namespace);
        finalizer(&api, FINALIZER, server.clone(), |event| async {
            match event {
                finalizer::Event::Apply(s) => reconcile_server(s, &ctx).await,
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

/// Exponential backoff per server (see [`requeue::after_failures`]).
pub(super) fn error_policy(
    server: Arc<McpKafkaServer>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
    let mut failures = ctx.failures.lock().unwrap_or_else(|p| p.into_inner());
    let n = failures
        .entry(ObjectRef::from_obj(server.as_ref()))
        .or_insert(0);
    *n = n.saturating_add(1);
    let delay = requeue::after_failures(*n);
    warn!(server = %server.name_any(), namespace = ?server.namespace(), category = error.metric_label(), error = %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

async fn reconcile_server(server: Arc<McpKafkaServer>, ctx: &Context) -> Result<Action, Error> {
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
    let decision = policy::needs_schema_registry(
        policy::needs_metrics_source(
            policy::decide(&spec.tools, &policy, mutations, now),
            spec.metrics.is_some(),
        ),
        spec.schema_registry.is_some(),
    );
    let sign_in = build::oidc::resolve(spec, &ctx.config);
    let user_prefix = sign_in
        .as_ref()
        .ok()
        .and_then(|s| s.as_ref())
        .map(|s| s.config.username_prefix.as_str());
    let scopes = scope::decide(&policy, &namespace, &name, spec, user_prefix);

    // Build and apply.
    let mut failure = None;
    let mut applied = Applied {
        serving: Serving::default(),
        next_rotation: None,
        rotated: Vec::new(),
        template_drift: Vec::new(),
    };
    match &fence {
        // Nothing may run outside its fence: remove whatever was deployed.
        Err(_) => {
            if let Err(e) = prune_all(ctx, &server, &Owned::none()).await {
                failure = Some(e);
            }
        }
        // Keep what runs (a pod without its Secret would not start anyway),
        // and report it as it is.
        Ok(_) if !missing_secrets.is_empty() => {
            applied.serving = left_running(ctx, &server, now);
        }
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
                scope: &scopes,
            };
            match apply_all(ctx, &inputs, now).await {
                Ok(a) => applied = a,
                Err(e) => {
                    // Status names the failure; what it says runs is what
                    // the apply was making.
                    applied.serving = Serving {
                        tools: decision.effective.clone(),
                        endpoint: Some(names::endpoint(
                            &namespace,
                            &name,
                            &ctx.config.cluster_domain,
                        )),
                        scope: scopes.server.clone(),
                        client_scopes: scopes.clients.clone(),
                        jobs: build::jobs_status(&build::sidecar_config(&inputs)),
                        auth: build::auth_status(&build::sidecar_config(&inputs)),
                        ..Serving::default()
                    };
                    failure = Some(e);
                }
            }
        }
    }

    // Status, and Events for what changed.
    let observed = Observed {
        generation: server.metadata.generation,
        fence: fence.as_ref().map(|_| ()).map_err(Clone::clone),
        policy_source: policy.source.clone(),
        effective_tools: decision.effective.clone(),
        denied_tools: decision.denied.clone(),
        scope_cuts: scopes.cuts.clone(),
        missing_secrets: missing_secrets.clone(),
        sign_in_problem: sign_in.as_ref().err().map(ToString::to_string),
        applied: failure.as_ref().map_or(Ok(()), |e| Err(e.to_string())),
        serving: applied.serving,
    };
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
    }
    let chosen = events::chosen(
        &name,
        server.status.as_ref(),
        &new_status,
        &applied.rotated,
        &applied.template_drift,
    );
    events::publish(ctx, &server, chosen).await;
    if let Some(e) = failure {
        return Err(e);
    }

    Ok(requeue::after_success(
        &Found {
            fence_broken: fence.is_err(),
            secrets_missing: !missing_secrets.is_empty(),
            tools_change_at: decision.changes_at,
            next_rotation: applied.next_rotation,
        },
        now,
    ))
}

/// What runs of this server while the operator does not apply (from the
/// caches of what it made before): the sidecar Deployment, the tools and
/// scopes its ConfigMap gives it, its Service's endpoint, the clients'
/// token Secrets.
/// Nothing if there is no Deployment.
fn left_running(ctx: &Context, server: &McpKafkaServer, now: Timestamp) -> Serving {
    let (name, namespace) = (server.name_any(), server.namespace().unwrap_or_default());
    // A generic closure cannot be written: the key type differs by kind.
    fn key<K: kube::Resource<DynamicType = ()>>(name: &str, namespace: &str) -> ObjectRef<K> {
        ObjectRef::new(name).within(namespace)
    }
    let owned = &ctx.caches.owned;
    let Some(deployment) = owned
        .deployments
        .get(&key(&names::sidecar(&name), &namespace))
    else {
        return Serving::default();
    };
    let available = deployment
        .status
        .as_ref()
        .and_then(|s| s.available_replicas)
        .unwrap_or(0);
    let desired = deployment
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1);
    let config_map = owned
        .config_maps
        .get(&key(&names::config_map(&name), &namespace));
    let tools = config_map
        .as_ref()
        .and_then(|cm| build::served_tools(cm, now))
        .unwrap_or_default();
    let (scope, client_scopes) = config_map
        .as_ref()
        .and_then(|cm| build::served_scope(cm))
        .unwrap_or_default();
    let jobs = config_map.as_ref().and_then(|cm| build::served_jobs(cm));
    let auth = config_map.as_ref().and_then(|cm| build::served_auth(cm));
    let endpoint = owned
        .services
        .get(&key(&names::sidecar(&name), &namespace))
        .map(|_| names::endpoint(&namespace, &name, &ctx.config.cluster_domain));
    let token_secrets: BTreeMap<String, String> = server
        .spec
        .clients
        .iter()
        .filter(|c| c.issue_token.is_some())
        .map(|c| (c.name.clone(), names::token_secret(&name, &c.name)))
        .filter(|(_, secret)| owned.secrets.get(&key(secret, &namespace)).is_some())
        .collect();
    Serving {
        tools,
        endpoint,
        replicas: Some((available, desired)),
        token_secrets,
        scope,
        client_scopes,
        jobs,
        auth,
    }
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
    // A pod whose CA Secret is missing never starts: say which it is.
    referenced.extend(
        spec.auth
            .as_ref()
            .and_then(|a| a.oidc.as_ref())
            .and_then(|o| o.ca_secret_ref.as_ref())
            .map(|r| r.name.clone()),
    );
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let mut missing = Vec::new();
    for name in referenced {
        if api.get_metadata_opt(&name).await?.is_none() {
            missing.push(name);
        }
    }
    Ok(missing)
}
