//! The McpKafkaServer controller. One reconcile is a pipeline with the client
//! only at its edges: dereference (namespace label, policy, Secrets; from
//! watch caches) → validate (fence, tool policy; pure) → build (pure) →
//! apply (server-side apply of what differs, prune the rest) → status.
//!
//! - [`watches`]: the watch caches and streams, their retry pacing, and the
//!   kube-runtime `Controller` that [`run`] starts;
//! - [`reconcile`]: the pipeline for one server, its finalizer cleanup, and
//!   the per-server error backoff;
//! - [`children`]: applying every owned kind of one server (with its token
//!   Secrets) and pruning what that apply did not keep;
//! - [`apply`]: apply one object only when it differs, prune one kind;
//! - [`drift`]: remove what another hand added to the sidecar's pod template;
//! - [`requeue`]: when to look at a server again (pure);
//! - [`events`]: which Events a change calls for (pure), and publishing them.

mod apply;
mod children;
mod drift;
mod events;
mod reconcile;
mod requeue;
mod watches;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use kube::Client;
use kube::runtime::events::Recorder;
use kube::runtime::finalizer;
use kube::runtime::reflector::ObjectRef;

use crate::config::OperatorConfig;
use crate::crd::McpKafkaServer;
use crate::metrics::Metrics;

pub use watches::{Caches, run};

/// Holds a server until the operator removed what owner references cannot
/// (its cluster-scoped ClusterRoleBinding).
pub const FINALIZER: &str = "mcpkafka.dev/cleanup";

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

/// What every reconcile shares.
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
