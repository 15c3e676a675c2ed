//! A client of the Confluent Schema Registry REST API (which Apicurio's
//! `/apis/ccompat/v7` speaks too). Schemas by id are cached (ids are
//! immutable: a registry never gives an id another schema), compiled once,
//! and concurrent callers of one id share one fetch. Every request is
//! bounded by `schemaRegistry.timeoutMs` and its answer by a byte cap.
//! Credentials are read from their files per request and never appear in
//! an error.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Codec, Format};
use crate::config::SchemaRegistryConfig;
use crate::error::{ErrorCode, ToolError, ToolResult};
use crate::outbound::{HttpClient, HttpFailure, read_secret};

/// Largest registry answer read: a schema with its metadata (Confluent's
/// own limit on a schema is 1 MiB of text, JSON-escaped here).
pub const MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;
/// Most schemas (by text size) kept compiled.
const CACHE_BYTES: u64 = 64 * 1024 * 1024;
/// How long where an id is registered is trusted: unlike the schema, it
/// changes (the registry gives an identical schema the same id under
/// every subject it is registered under, so new subjects join later).
const PLACEMENTS_TTL: Duration = Duration::from_secs(60);
/// Most ids whose placements are kept.
const PLACEMENTS_CACHED: u64 = 10_000;
/// Most references followed for one schema, all levels together.
pub const MAX_REFERENCES: usize = 64;

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// A schema reference: another subject's version, under a name the schema
/// uses for it (an import path, a named type, a `$ref`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Reference {
    pub name: String,
    pub subject: String,
    pub version: i32,
}

/// One registered schema, compiled. Where it is registered is not part of
/// it (see `SchemaRegistry::placements`): one id may be many subjects'.
pub struct RegisteredSchema {
    pub id: u32,
    pub format: Format,
    pub codec: Codec,
}

/// A subject's version as the registry answers it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubjectVersion {
    pub subject: String,
    pub version: i32,
    pub id: u32,
    pub schema: String,
    #[serde(default)]
    pub schema_type: Option<String>,
    #[serde(default)]
    pub references: Vec<Reference>,
}

/// The answer of `GET /schemas/ids/{id}`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SchemaById {
    pub schema: String,
    #[serde(default)]
    pub schema_type: Option<String>,
    #[serde(default)]
    pub references: Vec<Reference>,
}

/// A subject version that holds a schema id.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Placement {
    pub subject: String,
    pub version: i32,
}

/// A configured registry.
pub struct SchemaRegistry {
    config: SchemaRegistryConfig,
    base: String,
    http: HttpClient,
    by_id: moka::future::Cache<u32, Arc<RegisteredSchema>>,
    placements: moka::future::Cache<u32, Arc<Vec<Placement>>>,
}

impl SchemaRegistry {
    /// Reads the CA (if any) now, so that a bad file fails the config load.
    pub fn new(config: &SchemaRegistryConfig) -> anyhow::Result<Arc<Self>> {
        let http = HttpClient::new(
            config.ca_file.as_deref(),
            Duration::from_millis(config.timeout_ms),
            "schemaRegistry.caFile",
        )?;
        let by_id = moka::future::Cache::builder()
            .weigher(|_, s: &Arc<RegisteredSchema>| s.codec.weight())
            .max_capacity(CACHE_BYTES)
            .build();
        let placements = moka::future::Cache::builder()
            .time_to_live(PLACEMENTS_TTL)
            .max_capacity(PLACEMENTS_CACHED)
            .build();
        Ok(Arc::new(Self {
            base: config.url.trim_end_matches('/').to_string(),
            config: config.clone(),
            http,
            by_id,
            placements,
        }))
    }

    pub fn config(&self) -> &SchemaRegistryConfig {
        &self.config
    }

    /// The schema with id `id`, compiled: from the cache, or fetched once
    /// however many callers ask at the same time.
    pub async fn schema_by_id(&self, id: u32) -> ToolResult<Arc<RegisteredSchema>> {
        self.by_id
            .try_get_with(id, async move {
                let raw: SchemaById = self.get_json(&format!("/schemas/ids/{id}")).await?;
                let format = Format::from_registry(raw.schema_type.as_deref())?;
                let references = self.resolve_references(&raw.references).await?;
                let codec = Codec::compile(format, &raw.schema, &references)
                    .map_err(|e| ToolError::invalid(format!("schema id {id}: {e}")))?;
                Ok(Arc::new(RegisteredSchema { id, format, codec }))
            })
            .await
            .map_err(|e: Arc<ToolError>| (*e).clone())
    }

    /// The subject versions that hold schema id `id` (cached a minute:
    /// subjects registering the same schema join later).
    pub async fn placements(&self, id: u32) -> ToolResult<Arc<Vec<Placement>>> {
        self.placements
            .try_get_with(id, async move {
                self.get_json::<Vec<Placement>>(&format!("/schemas/ids/{id}/versions"))
                    .await
                    .map(Arc::new)
            })
            .await
            .map_err(|e: Arc<ToolError>| (*e).clone())
    }

    /// A subject's version (`None`: the latest), as registered.
    pub async fn subject_version(
        &self,
        subject: &str,
        version: Option<i32>,
    ) -> ToolResult<SubjectVersion> {
        let version = version.map_or("latest".to_string(), |v| v.to_string());
        self.get_json(&format!(
            "/subjects/{}/versions/{version}",
            segment(subject)
        ))
        .await
    }

    /// A subject's version compiled, with its id (for encoding).
    pub async fn compiled(
        &self,
        subject: &str,
        version: Option<i32>,
    ) -> ToolResult<(SubjectVersion, Arc<RegisteredSchema>)> {
        let found = self.subject_version(subject, version).await?;
        let schema = self.schema_by_id(found.id).await?;
        Ok((found, schema))
    }

    /// The texts of `references` and of theirs, by reference name, each once.
    pub async fn resolve_references(
        &self,
        references: &[Reference],
    ) -> ToolResult<Vec<(String, String)>> {
        let mut resolved: Vec<(String, String)> = Vec::new();
        let mut todo: Vec<Reference> = references.to_vec();
        while let Some(reference) = todo.pop() {
            if resolved.iter().any(|(name, _)| *name == reference.name) {
                continue;
            }
            if resolved.len() >= MAX_REFERENCES {
                return Err(ToolError::new(
                    ErrorCode::LimitExceeded,
                    format!("the schema has more than {MAX_REFERENCES} references"),
                ));
            }
            let found = self
                .subject_version(&reference.subject, Some(reference.version))
                .await
                .map_err(|e| ToolError {
                    message: format!(
                        "reference {} ({} version {}): {}",
                        reference.name, reference.subject, reference.version, e.message
                    ),
                    ..e
                })?;
            todo.extend(found.references);
            resolved.push((reference.name, found.schema));
        }
        Ok(resolved)
    }

    /// GET `path` (under the base URL) and read its JSON answer.
    pub async fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> ToolResult<T> {
        let answer = self.call(http::Method::GET, path, None).await?;
        serde_json::from_slice(&answer).map_err(|e| {
            unavailable(format!(
                "{} answered JSON of another shape: {e}",
                self.where_()
            ))
        })
    }

    /// One request: `body` as the registry's JSON; the answer's body if
    /// its status is a success, else the registry's refusal as a typed error.
    pub async fn call(
        &self,
        method: http::Method,
        path: &str,
        body: Option<&Value>,
    ) -> ToolResult<Bytes> {
        let uri: http::Uri = format!("{}{path}", self.base)
            .parse()
            .map_err(|e| ToolError::invalid(format!("registry path {path:?}: {e}")))?;
        let mut request = http::Request::builder().method(method).uri(uri).header(
            http::header::ACCEPT,
            format!("{CONTENT_TYPE}, application/json"),
        );
        if let Some(auth) = self.authorization().await? {
            request = request.header(http::header::AUTHORIZATION, auth);
        }
        let body = match body {
            Some(v) => {
                request = request.header(http::header::CONTENT_TYPE, CONTENT_TYPE);
                Bytes::from(serde_json::to_vec(v).unwrap_or_default())
            }
            None => Bytes::new(),
        };
        let request = request
            .body(Full::new(body))
            .map_err(|e| ToolError::new(ErrorCode::Internal, e.to_string()))?;
        let timeout = Duration::from_millis(self.config.timeout_ms);
        let sent = tokio::time::timeout(timeout, self.http.send(request, MAX_ANSWER_BYTES)).await;
        let (status, answer) = match sent {
            Err(_) => {
                return Err(unavailable(format!(
                    "{} did not answer within {} ms (schemaRegistry.timeoutMs)",
                    self.where_(),
                    self.config.timeout_ms
                )));
            }
            Ok(Err(HttpFailure::NoAnswer(why))) => {
                return Err(unavailable(format!(
                    "{} did not answer: {why}",
                    self.where_()
                )));
            }
            Ok(Err(HttpFailure::TooLarge(cap))) => {
                return Err(ToolError::new(
                    ErrorCode::LimitExceeded,
                    format!("{} answered more than {cap} bytes", self.where_()),
                ));
            }
            Ok(Err(HttpFailure::BrokeOff(why))) => {
                return Err(unavailable(format!(
                    "{} broke off its answer: {why}",
                    self.where_()
                )));
            }
            Ok(Ok(answer)) => answer,
        };
        if status.is_success() {
            return Ok(answer);
        }
        Err(refusal(status, &answer, &self.where_()))
    }

    /// The Authorization header, read from its files now (a rotated Secret
    /// is used at once).
    async fn authorization(&self) -> ToolResult<Option<String>> {
        use base64::Engine;
        if let Some(path) = &self.config.bearer_token_file {
            let token = read_secret("schemaRegistry.bearerTokenFile", path)
                .await
                .map_err(unavailable)?;
            return Ok(Some(format!("Bearer {token}")));
        }
        if let Some(basic) = &self.config.basic_auth {
            let user = read_secret(
                "schemaRegistry.basicAuth.usernameFile",
                &basic.username_file,
            )
            .await
            .map_err(unavailable)?;
            let password = read_secret(
                "schemaRegistry.basicAuth.passwordFile",
                &basic.password_file,
            )
            .await
            .map_err(unavailable)?;
            let pair =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            return Ok(Some(format!("Basic {pair}")));
        }
        Ok(None)
    }

    /// The registry, for messages (the URL carries no credentials: the
    /// config refuses them).
    fn where_(&self) -> String {
        format!("the schema registry at {}", self.config.url)
    }
}

pub fn unavailable(message: String) -> ToolError {
    ToolError::new(ErrorCode::SchemaRegistryUnavailable, message)
}

/// A registry's refusal (`{"error_code": 40401, "message": "..."}`) as a
/// typed error: not found, incompatible (409), invalid (422), not allowed,
/// or the registry failing (5xx, worth a retry).
fn refusal(status: http::StatusCode, body: &[u8], where_: &str) -> ToolError {
    #[derive(Deserialize)]
    struct Refusal {
        #[serde(default)]
        error_code: Option<i64>,
        #[serde(default)]
        message: Option<String>,
    }
    let said = serde_json::from_slice::<Refusal>(body).ok();
    let message = match &said {
        Some(Refusal {
            error_code,
            message: Some(m),
        }) => format!(
            "{where_} answered HTTP {}{}: {m}",
            status.as_u16(),
            error_code
                .map(|c| format!(" (error {c})"))
                .unwrap_or_default()
        ),
        _ => {
            let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
            format!("{where_} answered HTTP {}: {text:?}", status.as_u16())
        }
    };
    let code = match status.as_u16() {
        404 => ErrorCode::NotFound,
        409 => ErrorCode::Conflict,
        400 | 422 => ErrorCode::InvalidArgument,
        401 | 403 => ErrorCode::PermissionDenied,
        _ => ErrorCode::SchemaRegistryUnavailable,
    };
    let mut err = ToolError::new(code, message);
    err.retriable = status.is_server_error() || status.as_u16() == 429;
    err
}

/// One path segment, percent-encoded (subject names may hold anything).
pub fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_map_to_stable_codes() {
        let not_found = refusal(
            http::StatusCode::NOT_FOUND,
            br#"{"error_code":40403,"message":"Schema 99 not found"}"#,
            "the schema registry at http://r",
        );
        assert_eq!(
            (not_found.code, not_found.retriable),
            (ErrorCode::NotFound, false)
        );
        assert!(not_found.message.contains("40403") && not_found.message.contains("Schema 99"));
        let incompatible = refusal(http::StatusCode::CONFLICT, b"{}", "r");
        assert_eq!(incompatible.code, ErrorCode::Conflict);
        let invalid = refusal(
            http::StatusCode::UNPROCESSABLE_ENTITY,
            br#"{"error_code":42201,"message":"Invalid schema"}"#,
            "r",
        );
        assert_eq!(invalid.code, ErrorCode::InvalidArgument);
        let down = refusal(http::StatusCode::BAD_GATEWAY, b"<html>", "r");
        assert_eq!(
            (down.code, down.retriable),
            (ErrorCode::SchemaRegistryUnavailable, true)
        );
        assert!(down.message.contains("<html>"));
        assert_eq!(
            refusal(http::StatusCode::UNAUTHORIZED, b"", "r").code,
            ErrorCode::PermissionDenied
        );
    }

    #[test]
    fn subjects_are_one_path_segment() {
        assert_eq!(segment("orders-value"), "orders-value");
        assert_eq!(segment("a/b c:%"), "a%2Fb%20c%3A%25");
    }
}
