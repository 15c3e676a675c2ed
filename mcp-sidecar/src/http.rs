//! The HTTP face of the sidecar: MCP at `/mcp` (rmcp's Streamable HTTP
//! service, behind authentication and a request body limit), `/healthz`,
//! `/readyz` and `/metrics`, the last on a listener of its own when
//! `listen.metricsAddress` is set.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio_util::sync::CancellationToken;
use tower_http::limit::RequestBodyLimitLayer;

use crate::metrics::Metrics;
use crate::server::KafkaMcp;

/// Host names always accepted on `/mcp` (rmcp's DNS-rebinding guard).
const LOOPBACK_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "[::1]"];

/// What the sidecar serves: the MCP listener's routes, and when
/// `listen.metricsAddress` is set, the metrics listener's (then `/metrics`
/// is served there only).
pub struct Routers {
    pub mcp: Router,
    pub metrics: Option<Router>,
}

pub fn router(mcp: KafkaMcp, allowed_hosts: &[String], shutdown: CancellationToken) -> Routers {
    let mut config = StreamableHttpServerConfig::default();
    config.allowed_hosts = LOOPBACK_HOSTS
        .iter()
        .map(|h| h.to_string())
        .chain(allowed_hosts.iter().cloned())
        .collect();
    config.cancellation_token = shutdown;
    // A 2026-07-28 request (no session) is answered with plain JSON rather
    // than a one-event SSE stream when it is a bare result: no tool here
    // sends notifications before its answer (rmcp falls back to SSE if one
    // does). Sessions of earlier revisions keep their SSE streams.
    config.json_response = true;
    // A listen-time setting, like the address: a reload does not change it.
    let max_body = mcp.runtime().config.limits.max_request_bytes;
    // rmcp has its own cap (4 MiB); ours answers first, with LIMIT_EXCEEDED,
    // and theirs must not be smaller, or a body we allow would be refused.
    config.max_request_body_bytes = max_body;
    let handler = mcp.clone();
    let sessions = Arc::new(LocalSessionManager::default());
    let service: Arc<StreamableHttpService<KafkaMcp, LocalSessionManager>> = Arc::new(
        StreamableHttpService::new(move || Ok(handler.clone()), Arc::clone(&sessions), config),
    );
    // Called through an Arc: as a tower service it is cloned, its config
    // and host list with it, several times per request.
    let mcp_endpoint = any(move |request: Request| {
        let service = Arc::clone(&service);
        async move { service.handle(request).await }
    });
    let scrape = get(move |state| metrics(state, Arc::clone(&sessions)));
    let own_listener = mcp.runtime().config.listen.metrics_address.is_some();
    let mut app = Router::new()
        .nest_service("/mcp", mcp_endpoint)
        // Outermost last: count every request, authenticate it, then bound its body.
        .layer(RequestBodyLimitLayer::new(max_body))
        .layer(middleware::map_response(move |r: Response| {
            explain_too_large(r, max_body)
        }))
        .layer(middleware::from_fn_with_state(
            mcp.token_check(),
            crate::auth::require_token,
        ))
        .layer(middleware::from_fn_with_state(
            Arc::clone(&mcp.metrics),
            count_inflight,
        ))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz));
    let metrics_app = if own_listener {
        Some(
            Router::new()
                .route("/metrics", scrape)
                .with_state(mcp.clone()),
        )
    } else {
        app = app.route("/metrics", scrape);
        None
    };
    Routers {
        mcp: app.with_state(mcp),
        metrics: metrics_app,
    }
}

/// A body over the limit never reaches MCP: answer with a JSON-RPC error
/// that carries the tool surface's code, so that clients can tell why.
async fn explain_too_large(response: Response, max_body: usize) -> Response {
    if response.status() != StatusCode::PAYLOAD_TOO_LARGE {
        return response;
    }
    limit_exceeded(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the request body is larger than this server's limit of {max_body} bytes"),
        None,
    )
}

/// A request refused by a limit before MCP (413 for its body, 429 for
/// unseen tokens): a JSON-RPC error whose `data.code` is the tool
/// surface's `LIMIT_EXCEEDED`, so that clients can tell why, and for a
/// limit that passes, `Retry-After` (whole seconds, at least 1).
pub fn limit_exceeded(
    status: StatusCode,
    message: String,
    retry_after: Option<Duration>,
) -> Response {
    let body = serde_json::json!({
        "jsonrpc": "2.0",
        "id": null,
        "error": {
            "code": -32600,
            "message": format!("LIMIT_EXCEEDED: {message}"),
            "data": { "code": "LIMIT_EXCEEDED", "retriable": retry_after.is_some() },
        },
    });
    let mut response = (status, axum::Json(body)).into_response();
    if let Some(wait) = retry_after {
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
    }
    response
}

/// Counts a request in `mcp_kafka_inflight_requests` until its answer
/// starts, or until its client hangs up: then this future is dropped
/// mid-await, and the guard's drop ends the count.
async fn count_inflight(
    State(metrics): State<Arc<Metrics>>,
    request: Request,
    next: Next,
) -> Response {
    let _serving = metrics.request_started();
    next.run(request).await
}

/// Ready when the config is loaded (it is, once serving), Kafka answered
/// metadata recently, and the cluster-ID fence holds.
async fn readyz(State(mcp): State<KafkaMcp>) -> Response {
    let rt = mcp.runtime();
    let up = rt.kafka.is_healthy();
    mcp.metrics.kafka_up.set(i64::from(up));
    if !up {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "kafka: no metadata answer recently\n",
        )
            .into_response();
    }
    match rt.kafka.fence() {
        Ok(()) => (StatusCode::OK, "ok\n").into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("fenced: {}\n", e.message),
        )
            .into_response(),
    }
}

async fn metrics(State(mcp): State<KafkaMcp>, sessions: Arc<LocalSessionManager>) -> Response {
    mcp.metrics
        .kafka_up
        .set(i64::from(mcp.runtime().kafka.is_healthy()));
    // Sessions end on DELETE or after rmcp's idle timeout (5 minutes).
    let open = sessions.sessions.read().await.len();
    mcp.metrics
        .active_sessions
        .set(i64::try_from(open).unwrap_or(i64::MAX));
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        mcp.metrics.encode(),
    )
        .into_response()
}
