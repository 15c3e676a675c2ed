//! `mcp-kafka-operator run`: JSON logs, `/metrics` `/healthz` `/readyz`,
//! leader election on a Lease, and the controller until SIGTERM/SIGINT or
//! until leadership is lost (then the process exits, as controller-runtime
//! managers do, and its restart stands by again).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use kube::Client;
use kube::runtime::events::Reporter;
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::OperatorConfig;
use crate::controller;
use crate::metrics::Metrics;

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The operator config file (YAML); without it the defaults apply:
    /// read-only default policy, environments dev/staging/prod.
    #[arg(long, env = "MCPK_OPERATOR_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address of `/metrics`, `/healthz` and `/readyz`.
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub metrics_address: SocketAddr,
    /// Elect a leader through a Lease, so that only one replica reconciles.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,
    /// Namespace of the leader Lease (in a pod: the pod's namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "mcp-kafka-operator")]
    pub lease_namespace: String,
    #[arg(long, default_value = "mcp-kafka-operator")]
    pub lease_name: String,
    /// This replica's identity in the Lease and in Events.
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Servers reconciled at the same time.
    #[arg(long, default_value_t = 8)]
    pub concurrency: u16,
}

#[derive(Clone)]
struct Health {
    metrics: Arc<Metrics>,
    /// Ready once the client works: a standby replica is ready too (it
    /// serves nothing but its metrics; readiness gates rollouts, not traffic).
    ready: Arc<AtomicBool>,
}

fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .json()
        .with_current_span(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .try_init();
}

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    init_logging();
    let config = match &args.config {
        Some(path) => OperatorConfig::parse(
            &std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?,
        )?,
        None => OperatorConfig::default(),
    };
    let client = Client::try_default().await?;
    let identity = args
        .identity
        .clone()
        .unwrap_or_else(|| format!("mcp-kafka-operator-{}", std::process::id()));
    let metrics = Arc::new(Metrics::new());
    let health = Health {
        metrics: metrics.clone(),
        ready: Arc::new(AtomicBool::new(false)),
    };

    let shutdown = CancellationToken::new();
    spawn_signal_handler(shutdown.clone());
    let listener = tokio::net::TcpListener::bind(args.metrics_address).await?;
    info!(address = %listener.local_addr()?, "serving /metrics /healthz /readyz");
    let ops = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(health.clone());
    let ops_shutdown = shutdown.clone();
    tokio::spawn(async move {
        let _ = axum::serve(listener, ops)
            .with_graceful_shutdown(ops_shutdown.cancelled_owned())
            .await;
    });

    // Leader election: wait for the Lease, and stop when it is lost.
    let mut leadership = None;
    if args.leader_election {
        let manager = LeaseManagerBuilder::new(client.clone(), &args.lease_name)
            .with_namespace(&args.lease_namespace)
            .with_identity(&identity)
            .with_duration(LEASE_SECONDS)
            .with_grace(LEASE_GRACE_SECONDS)
            .build()
            .await
            .map_err(|e| lease_error(e, &args))?;
        health.ready.store(true, Ordering::Relaxed);
        info!(lease = %args.lease_name, namespace = %args.lease_namespace, identity = %identity, "waiting for leadership");
        tokio::select! {
            _ = wait_for_leadership(&manager) => {}
            _ = shutdown.cancelled() => return Ok(()),
        }
        info!(identity = %identity, "became leader");
        let release = CancellationToken::new();
        let task = tokio::spawn(hold(manager, shutdown.clone(), release.clone()));
        leadership = Some((task, release));
    }
    metrics.leader.set(1);
    health.ready.store(true, Ordering::Relaxed);

    let reporter = Reporter {
        controller: "mcp-kafka-operator".into(),
        instance: Some(identity),
    };
    let stop = shutdown.clone();
    controller::run(
        client,
        config,
        metrics.clone(),
        reporter,
        args.concurrency,
        async move { stop.cancelled().await },
    )
    .await;
    info!("controller stopped");
    shutdown.cancel();
    // Released only now that nothing reconciles any more, so that a standby
    // taking over at once never overlaps with this replica.
    if let Some((task, release)) = leadership {
        release.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    Ok(())
}

/// How long the Lease holds without a renewal, and how long before its
/// end the leader renews it (so every 10 s).
const LEASE_SECONDS: u64 = 15;
const LEASE_GRACE_SECONDS: u64 = 5;

/// Standing by until the Lease is this replica's. Nothing is held yet, so
/// an error (the apiserver away, a missing rule) is only retried, with backoff.
async fn wait_for_leadership(manager: &LeaseManager) {
    let mut retry = Duration::from_secs(1);
    loop {
        match manager.changed().await {
            Ok(true) => return,
            Ok(false) => retry = Duration::from_secs(1),
            Err(e) => {
                warn!(error = %e, retry_in = ?retry, "leader election: the Lease could not be read or taken");
                tokio::time::sleep(retry).await;
                retry = (retry * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// Renews the Lease while leading, until `release` (then gives it up) or
/// until leadership ends (then cancels `lost`, which stops the controller
/// and the process; its restart stands by). Leadership ends when another
/// replica holds the Lease, and when a renewal fails (the apiserver away,
/// the Lease or its namespace gone, the Lease rule revoked): the renewal
/// is made 5 s before the Lease runs out, after which a standby may take
/// it, so carrying on would mean two leaders. (`LeaseManager::watch`,
/// used before, retried such errors forever and never reported the loss:
/// the leader went on reconciling without a Lease.)
async fn hold(manager: LeaseManager, lost: CancellationToken, release: CancellationToken) {
    loop {
        tokio::select! {
            biased;
            _ = release.cancelled() => {
                if let Err(e) = manager.release().await {
                    warn!(error = %e, "releasing the Lease (a standby takes it when it runs out)");
                }
                return;
            }
            changed = manager.changed() => match changed {
                Ok(true) => continue,
                Ok(false) => {
                    error!("lost leadership: another replica holds the Lease; stopping");
                    break;
                }
                Err(e) => {
                    error!(error = %e, "lost leadership: the Lease could not be renewed; stopping");
                    break;
                }
            },
        }
    }
    lost.cancel();
}

/// Why the Lease could not be had, in words that say what to change. The
/// Lease is created on start when missing, but not its namespace: a 404 is
/// that namespace (the flag's default is the chart's namespace, which a
/// run outside a pod or with another release name does not have).
fn lease_error(error: kube_lease_manager::LeaseManagerError, args: &RunArgs) -> anyhow::Error {
    use kube_lease_manager::LeaseManagerError::KubeError;
    match &error {
        KubeError(kube::Error::Api(s)) if s.code == 404 => anyhow::anyhow!(
            "the Lease namespace {:?} does not exist: create it, or set --lease-namespace \
             (or POD_NAMESPACE) to the namespace of the leader Lease, or run with \
             --leader-election=false",
            args.lease_namespace
        ),
        _ => anyhow::anyhow!(
            "leader election on Lease {}/{} (--lease-namespace, --lease-name): {error}",
            args.lease_namespace,
            args.lease_name
        ),
    }
}

fn spawn_signal_handler(shutdown: CancellationToken) {
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(_) => return,
                };
            tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        info!("shutdown requested");
        shutdown.cancel();
    });
}

async fn readyz(State(health): State<Health>) -> impl IntoResponse {
    if health.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ok\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n")
    }
}

async fn metrics_text(State(health): State<Health>) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        health.metrics.encode(),
    )
}
