//! The children of one server, every owned kind: applied in an order that
//! lets each step use the one before (a client's ServiceAccount exists
//! before a token is minted for it), then whatever this apply did not keep
//! is pruned, kind by kind. What to keep is the names this apply itself
//! applied (or found in place), never a second list kept by hand.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Resource, ResourceExt};

use super::apply::{ensure, prune};
use super::drift;
use super::{Context, Error};
use crate::build::{self, Inputs, MANAGED_BY, SERVER_LABEL, SERVER_NAMESPACE_LABEL, names};
use crate::crd::McpKafkaServer;
use crate::owned::{Kind, Names, Owned};
use crate::status::Serving;
use crate::token;

/// What the apply step made, for status and requeue.
pub struct Applied {
    pub serving: Serving,
    /// When the first issued token is due to be replaced.
    pub next_rotation: Option<Timestamp>,
    /// Clients whose token was minted in this reconcile.
    pub rotated: Vec<String>,
    /// What was removed from the sidecar's pod template (not set by the operator).
    pub template_drift: Vec<String>,
}

/// Applies what differs of every object the server should have, mints or
/// reuses its clients' tokens, and prunes the rest.
pub async fn apply_all(
    ctx: &Context,
    inputs: &Inputs<'_>,
    now: Timestamp,
) -> Result<Applied, Error> {
    let (name, namespace) = (inputs.name(), inputs.namespace());
    let c = &ctx.caches.owned;
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
        mut secrets,
    } = build::desired(inputs);

    let cluster = Api::all(ctx.client.clone());
    let service_accounts = ensure_each(
        ctx,
        &namespaced(ctx, &namespace),
        &c.service_accounts,
        service_accounts,
    )
    .await?;
    let cluster_role_bindings = ensure_each(
        ctx,
        &cluster,
        &c.cluster_role_bindings,
        cluster_role_bindings,
    )
    .await?;
    let roles = ensure_each(ctx, &namespaced(ctx, &namespace), &c.roles, roles).await?;
    let role_bindings = ensure_each(
        ctx,
        &namespaced(ctx, &namespace),
        &c.role_bindings,
        role_bindings,
    )
    .await?;
    let config_maps = ensure_each(
        ctx,
        &namespaced(ctx, &namespace),
        &c.config_maps,
        config_maps,
    )
    .await?;
    let services = ensure_each(ctx, &namespaced(ctx, &namespace), &c.services, services).await?;
    let network_policies = ensure_each(
        ctx,
        &namespaced(ctx, &namespace),
        &c.network_policies,
        network_policies,
    )
    .await?;
    let pod_disruption_budgets = ensure_each(
        ctx,
        &namespaced(ctx, &namespace),
        &c.pod_disruption_budgets,
        pod_disruption_budgets,
    )
    .await?;
    let desired_deployments = deployments.clone();
    let deployments = ensure_each(
        ctx,
        &namespaced(ctx, &namespace),
        &c.deployments,
        deployments,
    )
    .await?;
    // Apply puts back what the operator sets; what others added stays until removed.
    let mut template_drift = Vec::new();
    for (desired, live) in desired_deployments.iter().zip(&deployments) {
        template_drift.extend(
            drift::restore_template(&namespaced(ctx, &namespace), desired, live, &ctx.metrics)
                .await?,
        );
    }

    // Tokens for issueToken clients: reuse the kept one while it is fresh.
    let sa_uids: BTreeMap<String, String> = service_accounts
        .iter()
        .map(|sa| (sa.name_any(), sa.uid().unwrap_or_default()))
        .collect();
    let mut token_secrets = BTreeMap::new();
    let (mut next_rotation, mut rotated) = (None, Vec::new());
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
                let sa_api: Api<ServiceAccount> = namespaced(ctx, &namespace);
                let minted = token::mint(&sa_api, &sa, &sa_uid, &audience, lifetime).await?;
                ctx.metrics.api_write("TokenRequest", "create");
                rotated.push(client_spec.name.clone());
                minted
            }
        };
        next_rotation = [next_rotation, Some(token::rotate_at(&token))]
            .into_iter()
            .flatten()
            .min();
        secrets.push(build::token_secret(inputs, &client_spec.name, &token));
        token_secrets.insert(client_spec.name.clone(), secret_name);
    }
    let secrets = ensure_each(ctx, &namespaced(ctx, &namespace), &c.secrets, secrets).await?;

    // Prune what this server no longer needs (a removed client, replicas back to 1).
    let keep = Owned {
        service_accounts: names_of(&service_accounts),
        cluster_role_bindings: names_of(&cluster_role_bindings),
        roles: names_of(&roles),
        role_bindings: names_of(&role_bindings),
        config_maps: names_of(&config_maps),
        services: names_of(&services),
        network_policies: names_of(&network_policies),
        pod_disruption_budgets: names_of(&pod_disruption_budgets),
        deployments: names_of(&deployments),
        secrets: names_of(&secrets),
    };
    prune_all(ctx, inputs.server, &keep).await?;

    let replicas = deployments.first().map(|d| {
        let status = d.status.clone().unwrap_or_default();
        (
            status.available_replicas.unwrap_or(0),
            inputs.server.spec.replicas,
        )
    });
    Ok(Applied {
        serving: Serving {
            tools: inputs.tools.to_vec(),
            endpoint: Some(names::endpoint(
                &namespace,
                &name,
                &ctx.config.cluster_domain,
            )),
            replicas,
            token_secrets,
            scope: inputs.scope.server.clone(),
            client_scopes: inputs.scope.clients.clone(),
            jobs: build::jobs_status(&build::sidecar_config(inputs)),
            auth: build::auth_status(&build::sidecar_config(inputs)),
        },
        next_rotation,
        rotated,
        template_drift,
    })
}

fn namespaced<K: Kind + Resource<Scope = NamespaceResourceScope>>(
    ctx: &Context,
    namespace: &str,
) -> Api<K> {
    Api::namespaced(ctx.client.clone(), namespace)
}

/// Ensures each object; returns the live ones.
async fn ensure_each<K: Kind>(
    ctx: &Context,
    api: &Api<K>,
    cache: &Store<K>,
    desired: Vec<K>,
) -> Result<Vec<Arc<K>>, Error> {
    let mut live = Vec::with_capacity(desired.len());
    for object in desired {
        live.push(ensure(api, cache, object, &ctx.metrics).await?);
    }
    Ok(live)
}

fn names_of<K: Kind>(objects: &[Arc<K>]) -> BTreeSet<String> {
    objects.iter().map(|o| o.name_any()).collect()
}

/// Deletes every object of this server whose name `keep` does not hold for
/// its kind ([`Owned::none`]: all of them).
pub async fn prune_all(
    ctx: &Context,
    server: &McpKafkaServer,
    keep: &Owned<Names>,
) -> Result<(), Error> {
    let (name, namespace) = (
        server.name_any(),
        server.namespace().ok_or(Error::NotNamespaced)?,
    );
    let ns = namespace.as_str();
    let selector = [(SERVER_LABEL, name.as_str()), MANAGED_BY];
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
    } = &ctx.caches.owned;
    prune_in(ctx, ns, service_accounts, &selector, &keep.service_accounts).await?;
    prune_in(ctx, ns, roles, &selector, &keep.roles).await?;
    prune_in(ctx, ns, role_bindings, &selector, &keep.role_bindings).await?;
    prune_in(ctx, ns, config_maps, &selector, &keep.config_maps).await?;
    prune_in(ctx, ns, secrets, &selector, &keep.secrets).await?;
    prune_in(ctx, ns, services, &selector, &keep.services).await?;
    prune_in(ctx, ns, network_policies, &selector, &keep.network_policies).await?;
    prune_in(
        ctx,
        ns,
        pod_disruption_budgets,
        &selector,
        &keep.pod_disruption_budgets,
    )
    .await?;
    prune_in(ctx, ns, deployments, &selector, &keep.deployments).await?;
    // Cluster-scoped: the server's namespace is in a label, not in the object's place.
    let crb_selector = [
        (SERVER_LABEL, name.as_str()),
        (SERVER_NAMESPACE_LABEL, ns),
        MANAGED_BY,
    ];
    prune(
        &Api::all(ctx.client.clone()),
        None,
        cluster_role_bindings,
        &crb_selector,
        &keep.cluster_role_bindings,
        &ctx.metrics,
    )
    .await?;
    Ok(())
}

async fn prune_in<K: Kind + Resource<Scope = NamespaceResourceScope>>(
    ctx: &Context,
    namespace: &str,
    cache: &Store<K>,
    selector: &[(&str, &str)],
    keep: &BTreeSet<String>,
) -> Result<(), Error> {
    prune(
        &namespaced(ctx, namespace),
        Some(namespace),
        cache,
        selector,
        keep,
        &ctx.metrics,
    )
    .await?;
    Ok(())
}
