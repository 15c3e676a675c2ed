//! A client of Prometheus' HTTP API for the instant queries of
//! `cluster_metrics`: POST `/api/v1/query`, one evaluation time for every
//! query of a call, answers read under a byte cap, and every failure (no
//! connection, a slow server, an error answer) one typed error,
//! `METRICS_UNAVAILABLE`, that never names the token.
//!
//! The HTTP client is the sidecar's one (`crate::outbound`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use serde::Deserialize;

use crate::config::PrometheusSource;
use crate::error::{ErrorCode, ToolError, ToolResult};
use crate::outbound::{HttpClient, HttpFailure};

/// Largest answer read from one query: a listing of every topic's rate on a
/// cluster of ten thousand topics is about 1.5 MiB.
pub const MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;

/// One series of an instant vector: its labels and value (NaN and the
/// infinities as Prometheus sent them).
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// An instant query's series, and whether Prometheus cut them at the limit.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Vector {
    pub samples: Vec<Sample>,
    pub truncated: bool,
}

/// A configured Prometheus.
pub struct Prometheus {
    source: PrometheusSource,
    query_url: http::Uri,
    client: HttpClient,
}

impl Prometheus {
    /// Reads the CA (if any) now, so that a bad file fails the config
    /// load, not the first call.
    pub fn new(source: &PrometheusSource) -> anyhow::Result<Arc<Self>> {
        let query_url: http::Uri = format!("{}/api/v1/query", source.url.trim_end_matches('/'))
            .parse()
            .map_err(|e| anyhow::anyhow!("metrics.prometheus.url: {e}"))?;
        let client = HttpClient::new(
            source.ca_file.as_deref(),
            Duration::from_millis(source.timeout_ms),
            "metrics.prometheus.caFile",
        )?;
        Ok(Arc::new(Self {
            source: source.clone(),
            query_url,
            client,
        }))
    }

    pub fn source(&self) -> &PrometheusSource {
        &self.source
    }

    /// The longest one call may wait for all its queries.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.source.timeout_ms)
    }

    /// Runs one instant query at `time` (Unix seconds), keeping at most
    /// `limit` series.
    pub async fn query(&self, promql: &str, time: f64, limit: usize) -> ToolResult<Vector> {
        let form = serde_urlencoded::to_string([
            ("query", promql.to_string()),
            ("time", format!("{time:.3}")),
            // Prometheus 3 cuts the answer itself; older ones ignore it,
            // and the cut below holds either way.
            ("limit", (limit + 1).to_string()),
        ])
        .map_err(|e| ToolError::new(ErrorCode::Internal, e.to_string()))?;
        let mut request = http::Request::post(self.query_url.clone())
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(http::header::ACCEPT, "application/json");
        if let Some(token) = self.bearer_token().await? {
            request = request.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = request
            .body(Full::new(Bytes::from(form)))
            .map_err(|e| ToolError::new(ErrorCode::Internal, e.to_string()))?;
        let (status, body) =
            self.client
                .send(request, MAX_ANSWER_BYTES)
                .await
                .map_err(|failure| match failure {
                    HttpFailure::NoAnswer(why) => {
                        unavailable(format!("{} did not answer: {why}", self.where_()))
                    }
                    HttpFailure::TooLarge(cap) => ToolError::new(
                        ErrorCode::LimitExceeded,
                        format!(
                            "{} answered more than {cap} bytes for one query",
                            self.where_()
                        ),
                    ),
                    HttpFailure::BrokeOff(why) => {
                        unavailable(format!("{} broke off its answer: {why}", self.where_()))
                    }
                })?;
        parse_answer(status, &body, limit).map_err(|(retriable, why)| {
            let mut err = unavailable(format!("{}: {why}", self.where_()));
            err.retriable = retriable;
            err
        })
    }

    /// The token, read per query: a rotated Secret is used at once. What
    /// fails names the file, never its content.
    async fn bearer_token(&self) -> ToolResult<Option<String>> {
        let Some(path) = &self.source.bearer_token_file else {
            return Ok(None);
        };
        let token = crate::outbound::read_secret("metrics.prometheus.bearerTokenFile", path)
            .await
            .map_err(unavailable)?;
        Ok(Some(token))
    }

    /// The server, for messages (the URL carries no credentials: the
    /// config refuses them).
    fn where_(&self) -> String {
        format!("Prometheus at {}", self.source.url)
    }
}

fn unavailable(message: String) -> ToolError {
    ToolError::new(ErrorCode::MetricsUnavailable, message)
}

#[derive(Deserialize)]
struct Answer {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct Data {
    #[serde(rename = "resultType")]
    result_type: String,
    #[serde(default)]
    result: Vec<Series>,
}

#[derive(Deserialize)]
struct Series {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    /// `[unix time, "value"]`.
    value: (serde_json::Value, String),
}

/// Reads an instant-query answer; an error is (retriable, why). A refusal
/// of the query (4xx: bad query, no permission) fails the same way next
/// time; an overloaded or failing server (5xx) may not.
fn parse_answer(
    status: http::StatusCode,
    body: &[u8],
    limit: usize,
) -> Result<Vector, (bool, String)> {
    let retriable = !status.is_client_error();
    let answer: Answer = serde_json::from_slice(body).map_err(|_| {
        let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
        (
            retriable,
            format!("answered HTTP {status} that is not the API's JSON: {text:?}"),
        )
    })?;
    if answer.status != "success" {
        return Err((
            retriable,
            format!(
                "answered HTTP {status}, {}: {}",
                answer.error_type.as_deref().unwrap_or("error"),
                answer.error.as_deref().unwrap_or("(no message)")
            ),
        ));
    }
    let data = answer
        .data
        .ok_or((false, "answered success without data".to_string()))?;
    if data.result_type != "vector" {
        return Err((
            false,
            format!(
                "answered a {} where a vector was asked for",
                data.result_type
            ),
        ));
    }
    let truncated = data.result.len() > limit;
    let samples = data
        .result
        .into_iter()
        .take(limit)
        .map(|s| Sample {
            labels: s.metric,
            // Prometheus writes NaN, +Inf and -Inf as such; anything else
            // unreadable is no number either.
            value: s.value.1.parse().unwrap_or(f64::NAN),
        })
        .collect();
    Ok(Vector { samples, truncated })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vector_is_read_with_its_labels_and_cut_at_the_limit() {
        let body = br#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"topic":"a"},"value":[1700000000.5,"12.5"]},
            {"metric":{"topic":"b"},"value":[1700000000.5,"NaN"]},
            {"metric":{"topic":"c"},"value":[1700000000.5,"+Inf"]}]}}"#;
        let v = parse_answer(http::StatusCode::OK, body, 10).unwrap();
        assert_eq!(v.samples.len(), 3);
        assert!(!v.truncated);
        assert_eq!(v.samples[0].labels["topic"], "a");
        assert_eq!(v.samples[0].value, 12.5);
        assert!(v.samples[1].value.is_nan());
        assert!(v.samples[2].value.is_infinite());
        let cut = parse_answer(http::StatusCode::OK, body, 2).unwrap();
        assert_eq!((cut.samples.len(), cut.truncated), (2, true));
    }

    #[test]
    fn errors_say_what_prometheus_said_and_whether_to_retry() {
        let bad = br#"{"status":"error","errorType":"bad_data","error":"parse error at char 5"}"#;
        let (retriable, why) = parse_answer(http::StatusCode::BAD_REQUEST, bad, 10).unwrap_err();
        assert!(!retriable);
        assert!(
            why.contains("bad_data") && why.contains("parse error"),
            "{why}"
        );
        let busy = br#"{"status":"error","errorType":"timeout","error":"query timed out"}"#;
        let (retriable, _) =
            parse_answer(http::StatusCode::SERVICE_UNAVAILABLE, busy, 10).unwrap_err();
        assert!(retriable);
        let (retriable, why) = parse_answer(
            http::StatusCode::BAD_GATEWAY,
            b"<html>bad gateway</html>",
            10,
        )
        .unwrap_err();
        assert!(retriable && why.contains("not the API's JSON"), "{why}");
        let matrix = br#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#;
        assert!(parse_answer(http::StatusCode::OK, matrix, 10).is_err());
    }
}
