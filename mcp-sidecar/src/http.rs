//! The HTTP face of the sidecar: MCP at `/mcp` (rmcp's Streamable HTTP
//! service, behind authentication and a request body limit), `/healthz`,
//! `/readyz` and `/metrics`, the last on a listener of its own when
//! `listen.metricsAddress` is set; with `auth.oidc`, the Protected Resource
//! Metadata (RFC 9728) at `/.well-known/oauth-protected-resource`.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio_util::sync::CancellationToken;

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
    // rmcp's own cap is fixed when the service is made; `limit_body` reads
    // the body first, under the limit of the config in force now (a reload
    // may raise it), so rmcp's must not refuse what ours admitted.
    config.max_request_body_bytes = usize::MAX;
    let handler = mcp.clone();
    let sessions = Arc::new(LocalSessionManager::default());
    let service: Arc<StreamableHttpService<KafkaMcp, LocalSessionManager>> = Arc::new(
        StreamableHttpService::new(move || Ok(handler.clone()), Arc::clone(&sessions), config),
    );
    // Called through an Arc: as a tower service it is cloned, its config
    // and host list with it, several times per request.
    let mcp_endpoint = any(move |request: Request| {
        let service = Arc::clone(&service);
        async move {
            let ends_session = request.method() == Method::DELETE;
            let mut response = service.handle(request).await;
            // rmcp answers a session's DELETE with 202 Accepted; the
            // official Python SDK takes only 200 and 204 there and logs
            // "Session termination failed: 202" at every session's end.
            // The session is already closed: 204 says so to every client.
            if ends_session && response.status() == StatusCode::ACCEPTED {
                *response.status_mut() = StatusCode::NO_CONTENT;
            }
            response
        }
    });
    let scrape = get(move |state| metrics(state, Arc::clone(&sessions)));
    let own_listener = mcp.runtime().config.listen.metrics_address.is_some();
    let mut app = Router::new()
        .nest_service("/mcp", mcp_endpoint)
        // Outermost last: count every request, authenticate it, then bound its body.
        .layer(middleware::from_fn_with_state(mcp.clone(), limit_body))
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
    if let Some(oidc) = &mcp.runtime().config.auth.oidc {
        app = with_resource_metadata(app, oidc, &mcp.runtime().config.server.name);
    }
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

/// Serves the Protected Resource Metadata, unauthenticated, at the root
/// form and at the forms suffixed with `/mcp` and with the public
/// resource's own path (RFC 9728 section 3.1; MCP clients try the suffixed
/// form first). Public metadata, so any origin may read it (browser-based
/// clients such as the MCP Inspector fetch it directly).
fn with_resource_metadata(
    app: Router<KafkaMcp>,
    oidc: &crate::config::OidcConfig,
    server_name: &str,
) -> Router<KafkaMcp> {
    let document = crate::auth::oidc::resource_metadata(oidc, server_name).to_string();
    let serve = get(move || {
        let document = document.clone();
        async move {
            (
                [
                    (header::CONTENT_TYPE, "application/json"),
                    (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
                    (header::CACHE_CONTROL, "max-age=300"),
                ],
                document,
            )
        }
    });
    let root = "/.well-known/oauth-protected-resource";
    let own_path = resource_path_route(&oidc.resource);
    let mut app = app
        .route(root, serve.clone())
        .route(&format!("{root}/mcp"), serve.clone());
    if let Some(path) = own_path {
        app = app.route(&format!("{root}{path}"), serve);
    }
    app
}

/// The public resource's path, when the metadata needs a route of its own
/// for it (not empty, not `/mcp`); `None` too for a path axum would read as
/// a parameter or wildcard, or refuse (that resource is served at the root
/// form only).
fn resource_path_route(resource: &str) -> Option<&str> {
    let (_, rest) = resource.split_once("://")?;
    let path = rest[rest.find('/')?..].trim_end_matches('/');
    let plain = path
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/-._~".contains(&b));
    (plain && !path.is_empty() && path != "/mcp" && !path.contains("//")).then_some(path)
}

/// Reads a `/mcp` request's body up to `limits.maxRequestBytes` of the
/// config in force now (so that a reload changes it for existing sessions
/// too); over it, the request never reaches MCP and is answered 413 with a
/// JSON-RPC error carrying the tool surface's code. A body announced larger
/// than the limit is refused before it is read. rmcp reads the whole body
/// before it parses it, so holding it here first costs no more memory.
async fn limit_body(State(mcp): State<KafkaMcp>, request: Request, next: Next) -> Response {
    let limit = mcp.runtime().config.limits.max_request_bytes;
    let too_large = || {
        limit_exceeded(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is larger than this server's limit of {limit} bytes"),
            None,
        )
    };
    let announced = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > limit as u64) {
        return too_large();
    }
    let (parts, body) = request.into_parts();
    match Limited::new(body, limit).collect().await {
        Ok(collected) => {
            next.run(Request::from_parts(parts, Body::from(collected.to_bytes())))
                .await
        }
        Err(e) if e.is::<LengthLimitError>() => too_large(),
        Err(_) => (
            StatusCode::BAD_REQUEST,
            "the request body could not be read\n",
        )
            .into_response(),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resource_path_gets_a_metadata_route_only_when_axum_takes_it_literally() {
        for (resource, route) in [
            ("https://mcp.example/mcp", None),
            ("https://mcp.example", None),
            ("https://mcp.example/", None),
            (
                "https://mcp.example/kafka/orders/mcp/",
                Some("/kafka/orders/mcp"),
            ),
            ("https://mcp.example/:id/mcp", None),
            ("https://mcp.example/{x}", None),
            ("https://mcp.example/a//b", None),
            ("https://mcp.example/%7Bx%7D", None),
        ] {
            assert_eq!(resource_path_route(resource), route, "{resource}");
        }
        // Each route it gives is one axum accepts (it panics on the others).
        let _ = Router::<()>::new().route(
            &format!(
                "/.well-known/oauth-protected-resource{}",
                resource_path_route("https://m/kafka-1/o.r_d~s").unwrap()
            ),
            get(|| async { "" }),
        );
    }
}
