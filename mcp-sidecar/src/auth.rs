//! Kubernetes does authentication and authorization: a caller's bearer
//! token is checked with a TokenReview (its audience must be this server's),
//! and each tool with a SubjectAccessReview for the custom verb `<tool>` on
//! `mcpkafkaservers/tools` of this server. Decisions are cached briefly, in
//! bounded caches, allowed and denied for different times (as
//! kube-rbac-proxy does). Anything that cannot be checked is refused.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::Api;
use kube::api::PostParams;
use sha2::{Digest, Sha256};

use crate::config::{AuthConfig, AuthMode, ServerIdentity};
use crate::tool_name::ToolName;

/// Who is calling, as the TokenReview said.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Subject {
    pub username: String,
    pub uid: String,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

/// Why a token was not accepted (said in `WWW-Authenticate`, never with the token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Missing,
    Invalid,
    /// TokenReview could not be asked: refused, not allowed (fail closed).
    Unverifiable,
}

/// An accepted token's subject, kept for `ttl`: the allow-cache time, or
/// less when the token expires sooner (an expired token is never honoured
/// from the cache).
#[derive(Clone)]
struct Accepted {
    subject: Arc<Subject>,
    ttl: Duration,
}

struct AcceptedExpiry;

impl moka::Expiry<String, Accepted> for AcceptedExpiry {
    fn expire_after_create(
        &self,
        _key: &String,
        value: &Accepted,
        _created: std::time::Instant,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

pub struct Authorizer {
    client: kube::Client,
    allow_for: Duration,
    /// audience + sha256(token) -> the subject; refused tokens in `tokens_denied`.
    tokens_allowed: moka::sync::Cache<String, Accepted>,
    tokens_denied: moka::sync::Cache<String, ()>,
    /// (subject, namespace, server, tool) -> allowed?
    grants_allowed: moka::sync::Cache<(Arc<Subject>, String, String, ToolName), ()>,
    grants_denied: moka::sync::Cache<(Arc<Subject>, String, String, ToolName), ()>,
}

impl Authorizer {
    pub fn new(client: kube::Client, config: &AuthConfig) -> Self {
        let allowed = Duration::from_secs(config.allow_cache_seconds);
        let denied = Duration::from_secs(config.deny_cache_seconds);
        let size = config.cache_entries;
        Self {
            client,
            allow_for: allowed,
            tokens_allowed: moka::sync::Cache::builder()
                .max_capacity(size)
                .expire_after(AcceptedExpiry)
                .build(),
            tokens_denied: moka::sync::Cache::builder()
                .max_capacity(size)
                .time_to_live(denied)
                .build(),
            grants_allowed: moka::sync::Cache::builder()
                .max_capacity(size)
                .time_to_live(allowed)
                .build(),
            grants_denied: moka::sync::Cache::builder()
                .max_capacity(size)
                .time_to_live(denied)
                .build(),
        }
    }

    /// The subject a bearer token stands for, if its audience is `audience`.
    pub async fn authenticate(&self, token: &str, audience: &str) -> Result<Arc<Subject>, Refusal> {
        let key = format!("{audience}\n{}", hex(&Sha256::digest(token.as_bytes())));
        if let Some(accepted) = self.tokens_allowed.get(&key) {
            return Ok(accepted.subject);
        }
        if self.tokens_denied.contains_key(&key) {
            return Err(Refusal::Invalid);
        }
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: token.to_string(),
                audiences: Some(vec![audience.to_string()]),
            },
            ..Default::default()
        };
        let answer = Api::<TokenReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "TokenReview failed; refusing the caller");
                Refusal::Unverifiable
            })?;
        let status = answer.status.unwrap_or_default();
        let audience_ok = status
            .audiences
            .as_ref()
            .is_none_or(|a| a.iter().any(|x| x == audience));
        match status
            .user
            .filter(|_| status.authenticated == Some(true) && audience_ok)
        {
            Some(user) => {
                let subject = Arc::new(Subject {
                    username: user.username.unwrap_or_default(),
                    uid: user.uid.unwrap_or_default(),
                    groups: user.groups.unwrap_or_default(),
                    extra: user.extra.unwrap_or_default(),
                });
                let ttl = seconds_until_expiry(token)
                    .map_or(self.allow_for, |left| self.allow_for.min(left));
                if !ttl.is_zero() {
                    self.tokens_allowed.insert(
                        key,
                        Accepted {
                            subject: subject.clone(),
                            ttl,
                        },
                    );
                }
                Ok(subject)
            }
            None => {
                self.tokens_denied.insert(key, ());
                Err(Refusal::Invalid)
            }
        }
    }

    /// Whether `subject` may call `tool` on this server. Errors mean "could
    /// not ask", which callers must treat as a refusal.
    pub async fn may_call(
        &self,
        subject: &Arc<Subject>,
        server: &ServerIdentity,
        tool: ToolName,
    ) -> Result<bool, kube::Error> {
        let namespace = server.namespace.clone().unwrap_or_default();
        let key = (
            subject.clone(),
            namespace.clone(),
            server.name.clone(),
            tool,
        );
        if self.grants_allowed.contains_key(&key) {
            return Ok(true);
        }
        if self.grants_denied.contains_key(&key) {
            return Ok(false);
        }
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(subject.username.clone()),
                uid: Some(subject.uid.clone()),
                groups: Some(subject.groups.clone()),
                extra: Some(subject.extra.clone()),
                resource_attributes: Some(ResourceAttributes {
                    group: Some("mcpkafka.dev".into()),
                    resource: Some("mcpkafkaservers".into()),
                    subresource: Some("tools".into()),
                    name: Some(server.name.clone()),
                    namespace: Some(namespace),
                    verb: Some(tool.as_str().into()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let answer = Api::<SubjectAccessReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await?;
        let allowed = answer.status.is_some_and(|s| s.allowed);
        if allowed {
            self.grants_allowed.insert(key, ());
        } else {
            self.grants_denied.insert(key, ());
        }
        Ok(allowed)
    }
}

/// How long until a JWT's `exp`, read without verifying (TokenReview
/// verified it); only ever used to keep a cached answer for less time.
fn seconds_until_expiry(token: &str) -> Option<Duration> {
    use base64::Engine;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let exp = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()?
        .get("exp")?
        .as_i64()?;
    let left = exp - jiff::Timestamp::now().as_second();
    Some(Duration::from_secs(u64::try_from(left).unwrap_or(0)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Who checks the callers of a server: decided once, at start (a reload
/// cannot change `auth.mode`), and used by the `/mcp` guard and by every
/// tool call alike.
#[derive(Clone)]
pub enum Callers {
    /// `auth.mode: none` (dev on loopback): callers are not authenticated.
    Anyone,
    /// Kubernetes authenticates each caller and authorizes each tool.
    Kubernetes(Arc<Authorizer>),
    /// `auth.mode: kubernetes` without an authorizer: nobody is let in.
    Nobody,
}

impl Callers {
    /// The fail-closed rule, in one place: a config that asks for
    /// Kubernetes auth is never served without it.
    pub fn new(mode: AuthMode, authorizer: Option<Arc<Authorizer>>) -> Self {
        match (authorizer, mode) {
            (Some(authorizer), _) => Self::Kubernetes(authorizer),
            (None, AuthMode::None) => Self::Anyone,
            (None, AuthMode::Kubernetes) => Self::Nobody,
        }
    }
}

/// What the `/mcp` guard needs: who checks callers, and the audience their
/// tokens must be minted for (like the listen address, fixed at start).
#[derive(Clone)]
pub struct TokenCheck {
    callers: Callers,
    audience: Arc<str>,
}

impl TokenCheck {
    pub fn new(callers: Callers, audience: String) -> Self {
        Self {
            callers,
            audience: audience.into(),
        }
    }
}

/// The `/mcp` guard: no valid bearer token for this server's audience, no
/// MCP session. The subject rides along in the request's extensions, where
/// the MCP handler finds it.
pub async fn require_token(
    State(check): State<TokenCheck>,
    mut request: Request,
    next: Next,
) -> Response {
    let audience = &*check.audience;
    let authorizer = match &check.callers {
        Callers::Anyone => return next.run(request).await,
        Callers::Nobody => return unauthorized(&Refusal::Unverifiable, audience),
        Callers::Kubernetes(authorizer) => authorizer,
    };
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty());
    let result = match token {
        None => Err(Refusal::Missing),
        Some(token) => authorizer.authenticate(token, audience).await,
    };
    match result {
        Ok(subject) => {
            request.extensions_mut().insert(subject);
            next.run(request).await
        }
        Err(refusal) => unauthorized(&refusal, audience),
    }
}

fn unauthorized(refusal: &Refusal, audience: &str) -> Response {
    let (error, description) = match refusal {
        Refusal::Missing => (None, "a bearer token is required"),
        Refusal::Invalid => (
            Some("invalid_token"),
            "the token is not valid for this server's audience",
        ),
        Refusal::Unverifiable => (Some("invalid_token"), "the token could not be verified now"),
    };
    let mut challenge = format!("Bearer realm=\"mcp-kafka-sidecar\", audience=\"{audience}\"");
    if let Some(e) = error {
        challenge.push_str(&format!(
            ", error=\"{e}\", error_description=\"{description}\""
        ));
    }
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, challenge)],
        format!("{description}\n"),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn jwt_with_exp(exp: i64) -> String {
        let b64 = |v: serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        format!(
            "{}.{}.sig",
            b64(serde_json::json!({"alg": "RS256"})),
            b64(serde_json::json!({"exp": exp, "sub": "x"}))
        )
    }

    #[test]
    fn kubernetes_auth_without_an_authorizer_lets_nobody_in() {
        assert!(matches!(
            Callers::new(AuthMode::Kubernetes, None),
            Callers::Nobody
        ));
        assert!(matches!(
            Callers::new(AuthMode::None, None),
            Callers::Anyone
        ));
    }

    #[test]
    fn a_cached_answer_never_outlives_the_token() {
        let now = jiff::Timestamp::now().as_second();
        let left = seconds_until_expiry(&jwt_with_exp(now + 12)).unwrap();
        assert!(
            (Duration::from_secs(10)..=Duration::from_secs(12)).contains(&left),
            "{left:?}"
        );
        assert_eq!(
            seconds_until_expiry(&jwt_with_exp(now - 5)),
            Some(Duration::ZERO)
        );
        assert_eq!(seconds_until_expiry("not-a-jwt"), None);
        assert_eq!(seconds_until_expiry("a.!!!.c"), None);
    }
}
