//! mcp-kafka-sidecar: the MCP server for one Apache Kafka cluster.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use axum::serve::ListenerExt;
use clap::Parser;
use mcp_kafka_sidecar::auth::Authorizer;
use mcp_kafka_sidecar::auth::oidc::IdentityProvider;
use mcp_kafka_sidecar::config::{
    AuthConfig, AuthMode, KafkaConfig, Limits, ListenConfig, ServerIdentity, SidecarConfig,
    ToolNameSet,
};
use mcp_kafka_sidecar::metrics::Metrics;
use mcp_kafka_sidecar::server::{KafkaMcp, Runtime};
use mcp_kafka_sidecar::tool_name::{ToolGroup, ToolName};
use mcp_kafka_sidecar::{http, reload};
use tokio_util::sync::CancellationToken;

/// An MCP server (Streamable HTTP at /mcp, or stdio) for one Apache Kafka cluster.
///
/// In a pod the operator passes --config. On a workstation, --bootstrap-servers
/// alone runs a `dev` server on loopback without authentication, with the
/// observe tools (add mutations with --tools).
#[derive(Debug, Parser)]
#[command(version, about, long_about)]
struct Cli {
    /// The config file (YAML or JSON) rendered by the operator; reloaded when it changes.
    #[arg(long, env = "MCP_KAFKA_CONFIG", conflicts_with = "bootstrap_servers")]
    config: Option<PathBuf>,
    /// Standalone mode: Kafka brokers as HOST:PORT[,HOST:PORT...].
    #[arg(long, value_delimiter = ',')]
    bootstrap_servers: Vec<String>,
    /// Standalone mode: the listen address (must be loopback: there is no auth).
    #[arg(long, default_value = "127.0.0.1:8090")]
    listen: SocketAddr,
    /// Standalone mode: tools to enable, by name or group (observe, mutate, all), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "observe")]
    tools: Vec<String>,
    /// Standalone mode: the names the tools answer to, comma-separated:
    /// native (list_topics, ...) and confluent (mcp-confluent's list-topics, ...).
    #[arg(long, value_delimiter = ',', default_value = "native")]
    tool_names: Vec<ToolNameSet>,
    /// Serve MCP over stdin/stdout instead of HTTP (for local MCP clients).
    #[arg(long)]
    stdio: bool,
    /// Extra Host header values accepted on /mcp (e.g. a Service DNS name).
    #[arg(long = "allowed-host")]
    allowed_hosts: Vec<String>,
    /// Standalone mode: tool calls per second allowed (bursts of twice as many);
    /// more get LIMIT_EXCEEDED.
    #[arg(long, default_value_t = Limits::default().calls_per_second)]
    calls_per_second: u32,
    /// Standalone mode: how old the cluster metadata that list_topics,
    /// list_brokers, cluster_status and describe_topic answer from may be
    /// (0: ask Kafka on every call). This server's own changes show at once.
    #[arg(long, default_value_t = KafkaConfig::default_metadata_max_age_ms())]
    metadata_max_age_ms: u64,
}

fn parse_tools(list: &[String]) -> anyhow::Result<Vec<ToolName>> {
    let mut tools = Vec::new();
    for item in list.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        match item {
            "observe" => tools.extend(ToolName::in_group(ToolGroup::Observe)),
            "mutate" => tools.extend(ToolName::in_group(ToolGroup::Mutate)),
            "all" => tools.extend(ToolName::ALL.iter().copied()),
            name => tools.push(name.parse().map_err(|e| anyhow::anyhow!("--tools: {e}"))?),
        }
    }
    tools.sort();
    tools.dedup();
    Ok(tools)
}

/// The config of a workstation's standalone server.
fn standalone_config(cli: &Cli) -> anyhow::Result<SidecarConfig> {
    let config = SidecarConfig {
        server: ServerIdentity {
            name: "standalone".into(),
            namespace: None,
            environment: "dev".into(),
        },
        listen: ListenConfig {
            address: cli.listen,
            allowed_hosts: cli.allowed_hosts.clone(),
            metrics_address: None,
        },
        kafka: KafkaConfig {
            bootstrap_servers: cli.bootstrap_servers.clone(),
            expected_cluster_id: None,
            tls: None,
            sasl: None,
            request_timeout_ms: 10_000,
            metadata_max_age_ms: cli.metadata_max_age_ms,
        },
        tools: parse_tools(&cli.tools)?,
        tool_names: cli.tool_names.clone(),
        limits: Limits {
            calls_per_second: cli.calls_per_second,
            call_burst: cli.calls_per_second.saturating_mul(2),
            ..Limits::default()
        },
        auth: AuthConfig {
            mode: AuthMode::None,
            ..Default::default()
        },
        mutations: None,
        break_glass: None,
        plans: Default::default(),
        audit: Default::default(),
        scope: None,
        client_scopes: Vec::new(),
        // cluster_metrics needs a Prometheus: a config file names one.
        metrics: None,
        // The job path needs its topics: a config file names them.
        jobs: None,
        schema_registry: None,
    };
    config.validate().context("standalone mode")?;
    Ok(config)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Logs go to stderr as JSON: stdout belongs to the stdio transport.
    // rmcp logs a service's start and end at info, which in the 2026-07-28
    // protocol (no sessions: a service per request) is three lines per call,
    // one a dump of the client's capabilities: its warnings and errors only,
    // unless RUST_LOG says otherwise.
    tracing_subscriber::fmt()
        .json()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,rmcp=warn".into()),
        )
        .init();
    let cli = Cli::parse();
    let (config, config_source) = match &cli.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let config =
                SidecarConfig::parse(&text).with_context(|| format!("in {}", path.display()))?;
            (config, Some((path.clone(), text)))
        }
        None if cli.bootstrap_servers.is_empty() => {
            anyhow::bail!(
                "give --config FILE, or --bootstrap-servers HOST:PORT for a standalone dev server (see --help)"
            )
        }
        None => (standalone_config(&cli)?, None),
    };
    let runtime = Runtime::start(config, None)?;
    let config = runtime.config.clone();
    let metrics = std::sync::Arc::new(Metrics::new());
    let listen = config.listen.clone();
    let tools: Vec<&str> = config.tools.iter().map(|t| t.as_str()).collect();
    tracing::info!(server = %config.server.name, environment = %config.server.environment, ?tools, auth = ?config.auth.mode, "starting");
    let mcp = match config.auth.mode {
        AuthMode::None => KafkaMcp::new(runtime, metrics),
        AuthMode::Kubernetes => {
            if cli.stdio {
                anyhow::bail!(
                    "--stdio has no callers to authenticate: it is only for auth.mode none"
                );
            }
            let client = kube::Client::try_default()
                .await
                .context("auth.mode kubernetes needs the Kubernetes API (in-cluster, or KUBECONFIG) for TokenReview and SubjectAccessReview")?;
            let mut authorizer = Authorizer::new(client, &runtime.config.auth);
            if let Some(oidc) = &runtime.config.auth.oidc {
                let provider = IdentityProvider::new(oidc, std::sync::Arc::clone(&metrics))?;
                provider.prefetch();
                tracing::info!(issuer = %oidc.issuer, resource = %oidc.resource, metadata = %oidc.metadata_url(), "signing in with an identity provider");
                authorizer = authorizer.signing_in_with(provider);
            }
            KafkaMcp::with_authorizer(runtime, metrics, authorizer)
        }
    };
    if let Some((path, text)) = config_source {
        reload::spawn(mcp.clone(), path, text);
    }

    if cli.stdio {
        use rmcp::ServiceExt;
        let mcp = mcp.with_auditor(mcp_kafka_sidecar::audit::Auditor::to_stderr());
        let service = mcp
            .serve(rmcp::transport::stdio())
            .await
            .context("starting the stdio transport")?;
        service.waiting().await.context("serving stdio")?;
        return Ok(());
    }

    let shutdown = CancellationToken::new();
    // The job worker (with a `jobs` section) stops taking jobs at shutdown,
    // and finishes the ones it runs before the process ends.
    let jobs_stopped = mcp_kafka_sidecar::jobs::spawn(mcp.clone(), shutdown.clone());
    let routers = http::router(mcp, &listen.allowed_hosts, shutdown.clone());
    // Both listeners are bound before either serves: a port taken stops the
    // process at start, not halfway.
    let mcp_listener = bind(listen.address).await?;
    let metrics_listener = match (listen.metrics_address, routers.metrics) {
        (Some(address), Some(app)) => Some((bind(address).await?, app, address)),
        _ => None,
    };
    tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            shutdown_signal().await;
            shutdown.cancel();
        }
    });
    // When one listener ends (on an error), the other is stopped too: the
    // pod restarts rather than serving half.
    let serve_mcp = async {
        tracing::info!(address = %listen.address, "serving MCP at /mcp");
        // The client's address keys the per-source limit on TokenReviews.
        let app = routers
            .mcp
            .into_make_service_with_connect_info::<SocketAddr>();
        let served = axum::serve(mcp_listener, app)
            .with_graceful_shutdown(shutdown.clone().cancelled_owned())
            .await;
        shutdown.cancel();
        served
    };
    let serve_metrics = async {
        let Some((listener, app, address)) = metrics_listener else {
            return Ok(());
        };
        tracing::info!(%address, "serving /metrics");
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.clone().cancelled_owned())
            .await;
        shutdown.cancel();
        served
    };
    let (served_mcp, served_metrics) = tokio::join!(serve_mcp, serve_metrics);
    if let Some(stopped) = jobs_stopped {
        let _ = stopped.await;
    }
    served_mcp.context("serving HTTP")?;
    served_metrics.context("serving /metrics")?;
    Ok(())
}

/// A TCP listener on `address`, answering without Nagle's delay.
async fn bind(
    address: SocketAddr,
) -> anyhow::Result<
    axum::serve::TapIo<
        tokio::net::TcpListener,
        impl FnMut(&mut tokio::net::TcpStream) + Send + 'static,
    >,
> {
    Ok(tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("listening on {address}"))?
        // An SSE answer is several small writes: without TCP_NODELAY, Nagle
        // holds the last one until the client's delayed ACK (~40 ms a call).
        .tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        }))
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return ctrl_c.await.unwrap_or(()),
            };
        tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
    }
    #[cfg(not(unix))]
    ctrl_c.await.unwrap_or(());
}
