//! Kubernetes does authentication and authorization: a caller's bearer
//! token is checked with a TokenReview (its audience must be this server's),
//! and each tool with a SubjectAccessReview for the custom verb `<tool>` on
//! `mcpkafkaservers/tools` of this server. Decisions are cached briefly, in
//! bounded caches, allowed and denied for different times (as
//! kube-rbac-proxy does). Anything that cannot be checked is refused.
//!
//! The apiserver is asked at a bounded rate: a token never accepted here
//! is reviewed only within the limits of `rate::UnseenTokens` (per source
//! address and overall), a refused one not again for the denial cache time,
//! and concurrent requests asking the same question share one review.
//!
//! With `auth.oidc`, tokens of that identity provider are verified here
//! instead (`oidc`), and authorized by the same SubjectAccessReview.

mod flights;
pub mod oidc;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
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

use self::flights::Flights;
use self::oidc::IdentityProvider;
use crate::config::{AuthConfig, AuthMode, ServerIdentity};
use crate::metrics::Metrics;
use crate::rate::UnseenTokens;
use crate::tool_name::ToolName;

/// Who is calling, as the TokenReview or the identity provider's token said.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Subject {
    pub username: String,
    pub uid: String,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
    /// Set for a person signed in with the identity provider.
    pub signed_in: Option<SignedIn>,
}

/// Where a signed-in caller's token came from (for the audit trail).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SignedIn {
    pub issuer: String,
    /// The OAuth client the person signed in through (`azp`).
    pub client: Option<String>,
}

/// Why a token was not accepted (said in `WWW-Authenticate`, never with the token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Missing,
    Invalid,
    /// TokenReview could not be asked, or the identity provider's keys
    /// could not be fetched: refused, not allowed (fail closed).
    Unverifiable,
    /// A token never accepted here, over the TokenReview limits: not a
    /// verdict on the token (HTTP 429, no challenge), try again after this.
    TooMany(Duration),
}

/// How long an accepted token is remembered as known (when its own `exp`
/// is not sooner): a known token whose decision is older than
/// `auth.allowCacheSeconds` is reviewed again, but outside the limits on
/// unseen tokens, so that a flood of random tokens cannot lock out callers
/// already in.
const KNOWN_FOR: Duration = Duration::from_secs(3600);

/// A token accepted (by TokenReview, or verified with the identity
/// provider's keys), its subject, and when.
#[derive(Clone)]
struct Accepted {
    subject: Arc<Subject>,
    reviewed: Instant,
    /// Until its `exp` (an expired token is never honoured from here), at most [`KNOWN_FOR`].
    keep: Duration,
}

struct AcceptedExpiry;

impl moka::Expiry<String, Accepted> for AcceptedExpiry {
    fn expire_after_create(
        &self,
        _key: &String,
        value: &Accepted,
        _created: Instant,
    ) -> Option<Duration> {
        Some(value.keep)
    }
}

/// (subject, namespace, server, tool): one authorization decision.
type GrantKey = (Arc<Subject>, String, String, ToolName);

/// "Could not ask the apiserver", shared by every caller that waited for the same review.
pub type Unchecked = Arc<kube::Error>;

pub struct Authorizer {
    client: kube::Client,
    allow_for: Duration,
    /// audience + sha256(token) -> the subject, for as long as the token is
    /// valid; its decision is reused for `allow_for`. Refused tokens are in
    /// `tokens_denied` (by hash too: no token is ever kept).
    tokens_accepted: moka::sync::Cache<String, Accepted>,
    tokens_denied: moka::sync::Cache<String, ()>,
    /// Reviews of tokens not accepted before, per source and overall.
    unseen: UnseenTokens,
    token_reviews: Flights<String, Result<Arc<Subject>, Refusal>>,
    grants_allowed: moka::sync::Cache<GrantKey, ()>,
    grants_denied: moka::sync::Cache<GrantKey, ()>,
    access_reviews: Flights<GrantKey, Result<bool, Unchecked>>,
    /// `auth.oidc`: the provider whose tokens are verified here.
    identity_provider: Option<Arc<IdentityProvider>>,
}

impl Authorizer {
    pub fn new(client: kube::Client, config: &AuthConfig) -> Self {
        let allowed = Duration::from_secs(config.allow_cache_seconds);
        let denied = Duration::from_secs(config.deny_cache_seconds);
        let size = config.cache_entries;
        Self {
            client,
            allow_for: allowed,
            tokens_accepted: moka::sync::Cache::builder()
                .max_capacity(size)
                .expire_after(AcceptedExpiry)
                .build(),
            tokens_denied: moka::sync::Cache::builder()
                .max_capacity(size)
                .time_to_live(denied)
                .build(),
            unseen: UnseenTokens::new(config),
            token_reviews: Flights::default(),
            grants_allowed: moka::sync::Cache::builder()
                .max_capacity(size)
                .time_to_live(allowed)
                .build(),
            grants_denied: moka::sync::Cache::builder()
                .max_capacity(size)
                .time_to_live(denied)
                .build(),
            access_reviews: Flights::default(),
            identity_provider: None,
        }
    }

    /// Accepts the tokens of `provider` as well, verified by this server.
    pub fn signing_in_with(mut self, provider: Arc<IdentityProvider>) -> Self {
        self.identity_provider = Some(provider);
        self
    }

    /// The subject a bearer token stands for, if its audience is
    /// `audience`. `source` is the client's address, for the limits on
    /// reviews of unseen tokens. Requests that carry the same token at
    /// the same time share one TokenReview.
    pub async fn authenticate(
        self: &Arc<Self>,
        token: &str,
        audience: &str,
        source: Option<IpAddr>,
    ) -> Result<Arc<Subject>, Refusal> {
        let key = format!("{audience}\n{}", hex(&Sha256::digest(token.as_bytes())));
        let known = self.tokens_accepted.get(&key);
        if let Some(accepted) = &known
            && accepted.reviewed.elapsed() < self.allow_for
        {
            return Ok(Arc::clone(&accepted.subject));
        }
        if self.tokens_denied.contains_key(&key) {
            return Err(Refusal::Invalid);
        }
        if let Some(idp) = self
            .identity_provider
            .as_ref()
            .filter(|idp| idp.claims_to_have_issued(token))
        {
            // Verified here with the provider's keys; the apiserver is not
            // asked, so the limits on unseen tokens do not apply.
            return self.verify_signed_in(idp, key, token).await;
        }
        let this = Arc::clone(self);
        let (token, audience) = (token.to_string(), audience.to_string());
        self.token_reviews
            .join_or_start(key.clone(), || {
                if known.is_none()
                    && let Err(wait) = self.unseen.admit(source)
                {
                    return Err(Err(Refusal::TooMany(wait)));
                }
                Ok(this.review_token(key, token, audience))
            })
            .await
    }

    /// A token of the identity provider, verified, its answer remembered
    /// as a TokenReview's is.
    async fn verify_signed_in(
        &self,
        idp: &Arc<IdentityProvider>,
        key: String,
        token: &str,
    ) -> Result<Arc<Subject>, Refusal> {
        match idp.verify(token).await {
            Ok((subject, left)) => {
                let subject = Arc::new(subject);
                self.remember_accepted(key, &subject, left);
                Ok(subject)
            }
            Err(Refusal::Invalid) => {
                self.remember_refused(key);
                Err(Refusal::Invalid)
            }
            Err(other) => Err(other),
        }
    }

    /// An accepted token's subject, reused for `allow_for` and known until
    /// it expires (at most [`KNOWN_FOR`]).
    fn remember_accepted(&self, key: String, subject: &Arc<Subject>, left: Duration) {
        let keep = KNOWN_FOR.min(left);
        if !keep.is_zero() {
            self.tokens_accepted.insert(
                key,
                Accepted {
                    subject: Arc::clone(subject),
                    reviewed: Instant::now(),
                    keep,
                },
            );
        }
    }

    fn remember_refused(&self, key: String) {
        // No longer known either (a token that was revoked).
        self.tokens_accepted.invalidate(&key);
        self.tokens_denied.insert(key, ());
    }

    /// One TokenReview, its answer remembered.
    async fn review_token(
        self: Arc<Self>,
        key: String,
        token: String,
        audience: String,
    ) -> Result<Arc<Subject>, Refusal> {
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: token.clone(),
                audiences: Some(vec![audience.clone()]),
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
            .is_none_or(|a| a.contains(&audience));
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
                    signed_in: None,
                });
                self.remember_accepted(
                    key,
                    &subject,
                    seconds_until_expiry(&token).unwrap_or(KNOWN_FOR),
                );
                Ok(subject)
            }
            None => {
                self.remember_refused(key);
                Err(Refusal::Invalid)
            }
        }
    }

    /// Whether `subject` may call `tool` on this server. Errors mean "could
    /// not ask", which callers must treat as a refusal. Concurrent asks of
    /// the same question share one SubjectAccessReview.
    pub async fn may_call(
        self: &Arc<Self>,
        subject: &Arc<Subject>,
        server: &ServerIdentity,
        tool: ToolName,
    ) -> Result<bool, Unchecked> {
        let namespace = server.namespace.clone().unwrap_or_default();
        let key = (Arc::clone(subject), namespace, server.name.clone(), tool);
        if self.grants_allowed.contains_key(&key) {
            return Ok(true);
        }
        if self.grants_denied.contains_key(&key) {
            return Ok(false);
        }
        let this = Arc::clone(self);
        self.access_reviews
            .join_or_start(key.clone(), || Ok(this.review_access(key)))
            .await
    }

    /// One SubjectAccessReview, its answer remembered.
    async fn review_access(self: Arc<Self>, key: GrantKey) -> Result<bool, Unchecked> {
        let (subject, namespace, server, tool) = &key;
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
                    name: Some(server.clone()),
                    namespace: Some(namespace.clone()),
                    verb: Some(tool.as_str().into()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let answer = Api::<SubjectAccessReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await
            .map_err(Arc::new)?;
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
    let exp = oidc::unverified_claim(token, "exp")?.as_i64()?;
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

/// What the `/mcp` guard needs: who checks callers, the audience their
/// tokens must be minted for (like the listen address, fixed at start), and
/// where refusals are counted.
#[derive(Clone)]
pub struct TokenCheck {
    callers: Callers,
    audience: Arc<str>,
    /// With `auth.oidc`: the challenge's parameters that name the
    /// Protected Resource Metadata (and the scopes to ask for), in every
    /// 401, so that MCP clients find where to sign in.
    sign_in: Option<Arc<str>>,
    metrics: Arc<Metrics>,
}

impl TokenCheck {
    pub fn new(
        callers: Callers,
        audience: String,
        sign_in: Option<String>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            callers,
            audience: audience.into(),
            sign_in: sign_in.map(Into::into),
            metrics,
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
    let refuse = |refusal: Refusal| {
        check.metrics.record_auth_refusal(refusal.as_label());
        refusal_response(&refusal, &check.audience, check.sign_in.as_deref())
    };
    let authorizer = match &check.callers {
        Callers::Anyone => return next.run(request).await,
        Callers::Nobody => return refuse(Refusal::Unverifiable),
        Callers::Kubernetes(authorizer) => authorizer,
    };
    let source = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| source_key(peer.ip()));
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
        Some(token) => {
            authorizer
                .authenticate(token, &check.audience, source)
                .await
        }
    };
    match result {
        Ok(subject) => {
            request.extensions_mut().insert(subject);
            next.run(request).await
        }
        Err(refusal) => refuse(refusal),
    }
}

/// The bucket a client's address falls in: the address itself, or for IPv6
/// its /64, which one host typically has whole (a bucket per address would
/// give it 2^64 of them).
fn source_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
        v4 => v4,
    }
}

impl Refusal {
    /// The `reason` label of `mcp_kafka_auth_refusals_total`.
    fn as_label(&self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Invalid => "invalid",
            Self::Unverifiable => "unverifiable",
            Self::TooMany(_) => "too_many",
        }
    }
}

/// A refused token is 401 with a `WWW-Authenticate` challenge (sign in
/// again), naming the Protected Resource Metadata when there is one (the
/// MCP authorization spec's discovery starts there); too many unseen
/// tokens is 429 with `Retry-After` and no challenge, which clients do not
/// take for a bad token. A caller RBAC refuses a tool is never answered
/// here (a 403 `insufficient_scope` would make clients sign in again): that
/// is a tool error.
fn refusal_response(refusal: &Refusal, audience: &str, sign_in: Option<&str>) -> Response {
    let (error, description) = match refusal {
        Refusal::Missing => (None, "a bearer token is required"),
        Refusal::Invalid => (
            Some("invalid_token"),
            "the token is not valid for this server's audience",
        ),
        Refusal::Unverifiable => (Some("invalid_token"), "the token could not be verified now"),
        Refusal::TooMany(wait) => {
            return crate::http::limit_exceeded(
                StatusCode::TOO_MANY_REQUESTS,
                "too many requests with tokens this server has not seen; retry later".into(),
                Some(*wait),
            );
        }
    };
    let mut challenge = format!("Bearer realm=\"mcp-kafka-sidecar\", audience=\"{audience}\"");
    if let Some(sign_in) = sign_in {
        challenge.push_str(", ");
        challenge.push_str(sign_in);
    }
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
    fn an_ipv6_client_is_one_source_per_64() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(source_key(a), source_key(b));
        assert_ne!(source_key(a), source_key(c));
        let mapped: IpAddr = "::ffff:10.0.0.7".parse().unwrap();
        assert_eq!(source_key(mapped), IpAddr::from([10, 0, 0, 7]));
        assert_eq!(
            source_key(IpAddr::from([10, 0, 0, 7])),
            IpAddr::from([10, 0, 0, 7])
        );
    }

    #[test]
    fn too_many_unseen_tokens_is_429_with_retry_after_and_no_challenge() {
        let busy = refusal_response(&Refusal::TooMany(Duration::from_millis(1500)), "aud", None);
        assert_eq!(busy.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(busy.headers()[header::RETRY_AFTER], "2");
        assert!(busy.headers().get(header::WWW_AUTHENTICATE).is_none());
        let refused = refusal_response(&Refusal::Invalid, "aud", None);
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
        assert!(
            refused.headers()[header::WWW_AUTHENTICATE]
                .to_str()
                .unwrap()
                .starts_with("Bearer ")
        );
    }

    #[test]
    fn every_401_names_the_resource_metadata_when_there_is_one() {
        let url = "https://mcp.example/.well-known/oauth-protected-resource/mcp";
        let sign_in = format!("resource_metadata=\"{url}\"");
        for refusal in [Refusal::Missing, Refusal::Invalid, Refusal::Unverifiable] {
            let refused = refusal_response(&refusal, "aud", Some(&sign_in));
            assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
            let challenge = refused.headers()[header::WWW_AUTHENTICATE]
                .to_str()
                .unwrap();
            assert!(
                challenge.contains(&format!("resource_metadata=\"{url}\"")),
                "{challenge}"
            );
            assert_eq!(
                challenge.contains("error=\"invalid_token\""),
                refusal != Refusal::Missing,
                "{challenge}"
            );
        }
        let without = refusal_response(&Refusal::Invalid, "aud", None);
        assert!(
            !without.headers()[header::WWW_AUTHENTICATE]
                .to_str()
                .unwrap()
                .contains("resource_metadata")
        );
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
