//! The kinds of object a server owns, named once.
//!
//! [`Owned`] has one field per kind. What a field holds depends on the step
//! ([`PerKind`]): the objects the build step wants ([`Objects`]), the names
//! the apply step applied in this reconcile and prune therefore keeps
//! ([`Names`]), and in the controller the watch caches and watch streams.
//! Every step destructures an `Owned` without `..` or builds one as a struct
//! literal, so a new kind is a compile error until build, apply, prune, the
//! caches and the watches all handle it. (Before, each kind was named in six
//! places by hand; a kind applied but missing from the keep list would have
//! been deleted again by the same reconcile, every time.)

use std::collections::BTreeSet;
use std::fmt::Debug;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, Role, RoleBinding};
use kube::Resource;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A kind of object the operator makes (what apply and the caches need of it).
pub trait Kind:
    Resource<DynamicType = ()> + Clone + Serialize + DeserializeOwned + Debug + Send + Sync + 'static
{
}

impl<K> Kind for K where
    K: Resource<DynamicType = ()>
        + Clone
        + Serialize
        + DeserializeOwned
        + Debug
        + Send
        + Sync
        + 'static
{
}

/// What each field of an [`Owned`] holds for its kind `K`.
pub trait PerKind {
    type Of<K: Kind>;
}

/// One value per owned kind. Namespaced kinds first, in the order they are
/// applied; the one cluster-scoped kind is the sidecar's auth-delegator
/// ClusterRoleBinding, which owner references cannot remove (the finalizer does).
pub struct Owned<S: PerKind> {
    pub service_accounts: S::Of<ServiceAccount>,
    pub cluster_role_bindings: S::Of<ClusterRoleBinding>,
    pub roles: S::Of<Role>,
    pub role_bindings: S::Of<RoleBinding>,
    pub config_maps: S::Of<ConfigMap>,
    pub services: S::Of<Service>,
    pub network_policies: S::Of<NetworkPolicy>,
    pub pod_disruption_budgets: S::Of<PodDisruptionBudget>,
    pub deployments: S::Of<Deployment>,
    /// Token Secrets of `issueToken` clients: the build step cannot make
    /// them (they hold a minted token), so it leaves this empty and the apply
    /// step adds them once it has the tokens.
    pub secrets: S::Of<Secret>,
}

/// The desired objects of each kind (the build step's output).
pub struct Objects;

impl PerKind for Objects {
    type Of<K: Kind> = Vec<K>;
}

/// The names of each kind applied in one reconcile: what prune keeps.
/// Names repeat across kinds (`orders-mcp` is a Deployment, a Service and a
/// ServiceAccount), never within one.
pub struct Names;

impl PerKind for Names {
    type Of<K: Kind> = BTreeSet<String>;
}

impl Owned<Names> {
    /// Nothing kept: prune removes every object of the server.
    pub fn none() -> Self {
        Owned {
            service_accounts: BTreeSet::new(),
            cluster_role_bindings: BTreeSet::new(),
            roles: BTreeSet::new(),
            role_bindings: BTreeSet::new(),
            config_maps: BTreeSet::new(),
            services: BTreeSet::new(),
            network_policies: BTreeSet::new(),
            pod_disruption_budgets: BTreeSet::new(),
            deployments: BTreeSet::new(),
            secrets: BTreeSet::new(),
        }
    }
}
