//! Sign-in with an OpenID Connect identity provider, the resource-server
//! side of the MCP authorization spec: the provider's access tokens are
//! JWTs this server verifies itself, with the keys its discovery document
//! points at, and their user and groups (prefixed) are then authorized by
//! the same SubjectAccessReview per tool as a Kubernetes caller.
//!
//! The apiserver is not asked: a TokenReview with this server's audience
//! refuses IdP tokens (it honours only its own `--api-audiences`), and
//! making the apiserver trust the provider would turn every user's MCP
//! token into a Kubernetes API credential.
//!
//! Keys are fetched at start, again every `refreshSeconds` in the
//! background, and at once (at most every [`MIN_FETCH_INTERVAL`]) when a
//! token names a key not seen yet, as after a rotation. While the provider
//! cannot be reached the keys fetched last keep serving for
//! `keysMaxAgeSeconds`; a token signed by any other key is refused.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::flights::Flights;
use super::{Refusal, SignedIn, Subject};
use crate::config::OidcConfig;
use crate::metrics::Metrics;
use crate::outbound::{HttpClient, HttpFailure};

/// The least time between two fetches of the provider's keys: a stream of
/// tokens naming unknown keys must not become a stream of requests to it.
pub const MIN_FETCH_INTERVAL: Duration = Duration::from_secs(10);

/// Largest discovery document or key set read.
const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

/// Signatures accepted: public-key ones only. `none` does not parse, and
/// an HMAC token (`HS256`, whose "key" would be something public) is refused
/// before any key is looked at.
const ASYMMETRIC: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// Added to every signed-in user's groups, as the apiserver does for every
/// user it authenticates, so that RBAC reads them alike.
const AUTHENTICATED_GROUP: &str = "system:authenticated";

/// One identity provider: its settings, its keys, and how to fetch them.
pub struct IdentityProvider {
    config: OidcConfig,
    http: HttpClient,
    discovery_url: http::Uri,
    keys: RwLock<Option<Arc<KeySet>>>,
    fetches: Flights<(), Result<(), String>>,
    last_fetch_started: Mutex<Option<Instant>>,
    /// `iss`, `aud` (the resource or an extra audience), `exp` and `nbf`
    /// with the configured skew; the algorithm is set per key.
    validation: Validation,
    metrics: Arc<Metrics>,
}

/// The keys of one fetch.
struct KeySet {
    by_id: HashMap<String, Arc<VerifyingKey>>,
    /// Keys without a `kid`: only for tokens without one, and only when
    /// the set holds a single key (there is nothing else to tell them apart).
    unnamed: Vec<Arc<VerifyingKey>>,
    fetched: Instant,
}

struct VerifyingKey {
    key: DecodingKey,
    /// The key's own `alg`, or every signature algorithm of its kind.
    algorithms: Vec<Algorithm>,
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
}

#[derive(Deserialize)]
struct KeyDocuments {
    keys: Vec<Value>,
}

impl IdentityProvider {
    /// Reads the CA (if any) now, so that a bad file fails the start.
    pub fn new(config: &OidcConfig, metrics: Arc<Metrics>) -> anyhow::Result<Arc<Self>> {
        let timeout = Duration::from_millis(config.fetch_timeout_ms);
        let http = HttpClient::new(config.ca_file.as_deref(), timeout, "auth.oidc.caFile")?;
        let discovery_url = format!(
            "{}/.well-known/openid-configuration",
            config.issuer.trim_end_matches('/')
        )
        .parse()
        .map_err(|e| anyhow::anyhow!("auth.oidc.issuer: {e}"))?;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&[&config.issuer]);
        let audiences: Vec<&str> = std::iter::once(config.resource.as_str())
            .chain(config.audiences.iter().map(String::as_str))
            .collect();
        validation.set_audience(&audiences);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.validate_nbf = true;
        validation.leeway = config.clock_skew_seconds;
        Ok(Arc::new(Self {
            config: config.clone(),
            http,
            discovery_url,
            keys: RwLock::new(None),
            fetches: Flights::default(),
            last_fetch_started: Mutex::new(None),
            validation,
            metrics,
        }))
    }

    pub fn config(&self) -> &OidcConfig {
        &self.config
    }

    /// Whether `token` says it comes from this provider (read without
    /// verifying: it only picks the path that then verifies it).
    pub fn claims_to_have_issued(&self, token: &str) -> bool {
        unverified_claim(token, "iss").is_some_and(|iss| iss == self.config.issuer)
    }

    /// Fetches the keys in the background now (at start, so that the first
    /// signed-in caller finds them).
    pub fn prefetch(self: &Arc<Self>) {
        let this = Arc::clone(self);
        tokio::spawn(async move { this.fetch_keys().await });
    }

    /// The subject a token of this provider stands for, and until when.
    pub async fn verify(self: &Arc<Self>, token: &str) -> Result<(Subject, Duration), Refusal> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| Refusal::Invalid)?;
        if !ASYMMETRIC.contains(&header.alg) {
            tracing::debug!(alg = ?header.alg, "refused a token signed with a symmetric algorithm");
            return Err(Refusal::Invalid);
        }
        let kid = header.kid.as_deref();
        let key = match self.usable_keys().await?.find(kid, header.alg) {
            Some(key) => key,
            None => {
                // A key not seen yet: the provider may have rotated its keys.
                self.fetch_keys().await;
                let refetched = self.usable_keys().await?;
                refetched.find(kid, header.alg).ok_or_else(|| {
                    tracing::debug!(
                        kid,
                        "refused a token signed by a key the provider does not publish"
                    );
                    Refusal::Invalid
                })?
            }
        };
        let mut validation = self.validation.clone();
        validation.algorithms = vec![header.alg];
        let claims = jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &validation)
            .map_err(|e| {
                tracing::debug!(error = %e, "refused a token of the identity provider");
                Refusal::Invalid
            })?
            .claims;
        let subject = self.subject_of(&claims).ok_or(Refusal::Invalid)?;
        let exp = claims.get("exp").and_then(Value::as_i64).unwrap_or(0);
        let left = exp - jiff::Timestamp::now().as_second();
        Ok((
            subject,
            Duration::from_secs(u64::try_from(left).unwrap_or(0)),
        ))
    }

    /// The user and groups the claims name, prefixed; `None` if the user claim
    /// is missing or not a string (a token naming nobody is not accepted).
    fn subject_of(&self, claims: &Map<String, Value>) -> Option<Subject> {
        let c = &self.config;
        let user = claims
            .get(&c.username_claim)
            .and_then(Value::as_str)
            .filter(|u| !u.is_empty())?;
        let mut groups: Vec<String> = match claims.get(&c.groups_claim) {
            Some(Value::String(g)) => vec![format!("{}{g}", c.groups_prefix)],
            Some(Value::Array(gs)) => gs
                .iter()
                .filter_map(Value::as_str)
                .map(|g| format!("{}{g}", c.groups_prefix))
                .collect(),
            _ => Vec::new(),
        };
        groups.push(AUTHENTICATED_GROUP.into());
        let text = |name: &str| claims.get(name).and_then(Value::as_str).map(String::from);
        Some(Subject {
            username: format!("{}{user}", c.username_prefix),
            uid: text("sub").unwrap_or_default(),
            groups,
            extra: Default::default(),
            signed_in: Some(SignedIn {
                issuer: c.issuer.clone(),
                client: text("azp").or_else(|| text("client_id")),
            }),
        })
    }

    /// The keys to verify with now: those fetched last, while not older than
    /// `keysMaxAgeSeconds` (refreshed in the background once older than
    /// `refreshSeconds`); with none, a fetch is waited for.
    async fn usable_keys(self: &Arc<Self>) -> Result<Arc<KeySet>, Refusal> {
        if let Some(keys) = self.fresh_enough() {
            // Spawned only when a fetch may start, not once per request
            // while the provider is down.
            let stale = keys.fetched.elapsed() >= Duration::from_secs(self.config.refresh_seconds);
            if stale && !self.fetch_started_recently() {
                self.prefetch();
            }
            return Ok(keys);
        }
        self.fetch_keys().await;
        self.fresh_enough().ok_or(Refusal::Unverifiable)
    }

    fn fresh_enough(&self) -> Option<Arc<KeySet>> {
        let keys = self
            .keys
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()?;
        let max_age = Duration::from_secs(self.config.keys_max_age_seconds);
        (keys.fetched.elapsed() < max_age).then_some(keys)
    }

    fn fetch_started_recently(&self) -> bool {
        self.last_fetch_started
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|t| t.elapsed() < MIN_FETCH_INTERVAL)
    }

    /// Joins the fetch in flight, or starts one unless one started less
    /// than [`MIN_FETCH_INTERVAL`] ago. A failed fetch keeps the old keys.
    async fn fetch_keys(self: &Arc<Self>) {
        let this = Arc::clone(self);
        let _ = self
            .fetches
            .join_or_start((), || {
                let mut last = self
                    .last_fetch_started
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                if last.is_some_and(|t| t.elapsed() < MIN_FETCH_INTERVAL) {
                    return Err(Err("fetched moments ago".into()));
                }
                *last = Some(Instant::now());
                Ok(async move { this.fetch_and_keep().await })
            })
            .await;
    }

    async fn fetch_and_keep(self: Arc<Self>) -> Result<(), String> {
        let timeout = Duration::from_millis(self.config.fetch_timeout_ms);
        let fetched = tokio::time::timeout(timeout, self.fetch())
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {} ms", timeout.as_millis())));
        match fetched {
            Ok(keys) => {
                tracing::info!(issuer = %self.config.issuer, keys = keys.by_id.len() + keys.unnamed.len(), "fetched the identity provider's signing keys");
                *self.keys.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(keys));
                self.metrics.record_oidc_key_fetch("ok");
                Ok(())
            }
            Err(e) => {
                tracing::warn!(issuer = %self.config.issuer, error = %e, "could not fetch the identity provider's signing keys; keeping the ones fetched before");
                self.metrics.record_oidc_key_fetch("failed");
                Err(e)
            }
        }
    }

    /// The discovery document, then the key set it points at.
    async fn fetch(&self) -> Result<KeySet, String> {
        let discovery: Discovery = self.get_json(&self.discovery_url).await?;
        // OpenID Connect Discovery 1.0, section 4.3: a document naming
        // another issuer is not this provider's.
        if discovery.issuer != self.config.issuer {
            return Err(format!(
                "the discovery document names issuer {:?}, not {:?}",
                discovery.issuer, self.config.issuer
            ));
        }
        if !discovery.jwks_uri.starts_with("https://") {
            return Err("the discovery document's jwks_uri is not https://".into());
        }
        let jwks_uri: http::Uri = discovery
            .jwks_uri
            .parse()
            .map_err(|e| format!("the discovery document's jwks_uri: {e}"))?;
        let documents: KeyDocuments = self.get_json(&jwks_uri).await?;
        KeySet::from_documents(documents.keys)
    }

    async fn get_json<T: for<'de> Deserialize<'de>>(&self, url: &http::Uri) -> Result<T, String> {
        let request = http::Request::get(url.clone())
            .header(http::header::ACCEPT, "application/json")
            .body(Full::new(Bytes::new()))
            .map_err(|e| e.to_string())?;
        let (status, body) =
            self.http
                .send(request, MAX_DOCUMENT_BYTES)
                .await
                .map_err(|failure| match failure {
                    HttpFailure::NoAnswer(cause) => format!("{url}: {cause}"),
                    HttpFailure::TooLarge(cap) => format!("{url}: the answer is over {cap} bytes"),
                    HttpFailure::BrokeOff(cause) => format!("{url}: the answer broke off: {cause}"),
                })?;
        if status != http::StatusCode::OK {
            return Err(format!("{url} answered {status}"));
        }
        serde_json::from_slice(&body).map_err(|e| format!("{url}: {e}"))
    }
}

impl KeySet {
    /// The signature keys of a JWKS; others (encryption keys, symmetric
    /// keys, kinds this server cannot use) are skipped one by one, so that
    /// one odd key does not cost the whole set.
    fn from_documents(documents: Vec<Value>) -> Result<Self, String> {
        let mut by_id = HashMap::new();
        let mut unnamed = Vec::new();
        for document in documents {
            let Ok(jwk) = serde_json::from_value::<Jwk>(document) else {
                continue;
            };
            let Some(key) = VerifyingKey::of(&jwk) else {
                continue;
            };
            match jwk.common.key_id {
                Some(id) => {
                    by_id.insert(id, Arc::new(key));
                }
                None => unnamed.push(Arc::new(key)),
            }
        }
        if by_id.is_empty() && unnamed.is_empty() {
            return Err("the key set holds no signature key this server can use".into());
        }
        Ok(Self {
            by_id,
            unnamed,
            fetched: Instant::now(),
        })
    }

    /// The key that may have signed a token with this `kid` and `alg`.
    fn find(&self, kid: Option<&str>, alg: Algorithm) -> Option<Arc<VerifyingKey>> {
        let key = match kid {
            Some(kid) => self.by_id.get(kid)?,
            None if self.by_id.is_empty() && self.unnamed.len() == 1 => &self.unnamed[0],
            None => return None,
        };
        key.algorithms.contains(&alg).then(|| Arc::clone(key))
    }
}

impl VerifyingKey {
    fn of(jwk: &Jwk) -> Option<Self> {
        if matches!(jwk.common.public_key_use, Some(ref u) if *u != PublicKeyUse::Signature) {
            return None;
        }
        // Public keys only: a symmetric key in a published set is a mistake.
        let kind: &[Algorithm] = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => &ASYMMETRIC[..6],
            AlgorithmParameters::EllipticCurve(_) => &ASYMMETRIC[6..8],
            AlgorithmParameters::OctetKeyPair(_) => &ASYMMETRIC[8..],
            _ => return None,
        };
        let algorithms = match jwk.common.key_algorithm {
            None => kind.to_vec(),
            Some(alg) => {
                let alg = signature_algorithm(alg)?;
                kind.contains(&alg).then(|| vec![alg])?
            }
        };
        let key = DecodingKey::from_jwk(jwk).ok()?;
        Some(Self { key, algorithms })
    }
}

/// A JWK's `alg` as a signature algorithm (`None` for encryption ones).
fn signature_algorithm(alg: KeyAlgorithm) -> Option<Algorithm> {
    Some(match alg {
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}

/// A claim of a JWT, read without verifying it.
pub(super) fn unverified_claim(token: &str, claim: &str) -> Option<Value> {
    use base64::Engine;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice::<Map<String, Value>>(&bytes)
        .ok()?
        .remove(claim)
}

/// The Protected Resource Metadata (RFC 9728) of this server: where
/// clients learn which provider to sign in with, and what to ask it for.
pub fn resource_metadata(config: &OidcConfig, server_name: &str) -> Value {
    let mut metadata = serde_json::json!({
        "resource": config.resource,
        "authorization_servers": [config.issuer],
        "bearer_methods_supported": ["header"],
        "resource_name": format!("Kafka MCP server {server_name}"),
    });
    if !config.scopes.is_empty() {
        metadata["scopes_supported"] = serde_json::json!(config.scopes);
    }
    metadata
}

/// What a 401's `WWW-Authenticate` adds for sign-in: the metadata's URL,
/// and the scopes to ask for (MCP clients take the challenge's `scope`
/// first, then the metadata's; without either, some ask for every scope the
/// provider lists, which providers may refuse to register).
pub fn challenge_parameters(config: &OidcConfig) -> String {
    let mut parameters = format!("resource_metadata=\"{}\"", config.metadata_url());
    if !config.scopes.is_empty() {
        parameters.push_str(&format!(", scope=\"{}\"", config.scopes.join(" ")));
    }
    parameters
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};

    /// An Ed25519 key from a fixed seed (PKCS#8 v1 DER: a fixed prefix and
    /// the seed), so that the tests need no key generator and hold no PEM.
    fn signing_key(seed: u8) -> EncodingKey {
        let mut der = vec![
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ];
        der.extend([seed; 32]);
        EncodingKey::from_ed_der(&der)
    }

    fn published(seed: u8, kid: &str) -> Value {
        let mut jwk = Jwk::from_encoding_key(&signing_key(seed), Algorithm::EdDSA).unwrap();
        jwk.common.key_id = Some(kid.into());
        serde_json::to_value(jwk).unwrap()
    }

    fn config() -> OidcConfig {
        serde_yaml::from_str(
            "{issuer: \"https://idp.example/realms/mcp\", resource: \"https://mcp.example/mcp\"}",
        )
        .unwrap()
    }

    /// A provider whose keys are `keys`, as if just fetched.
    fn provider_with(keys: Vec<Value>) -> Arc<IdentityProvider> {
        let idp = IdentityProvider::new(&config(), Arc::new(Metrics::new())).unwrap();
        *idp.keys.write().unwrap() = Some(Arc::new(KeySet::from_documents(keys).unwrap()));
        // No fetch may start while a test runs (there is no provider to ask).
        *idp.last_fetch_started.lock().unwrap() = Some(Instant::now());
        idp
    }

    fn token(seed: u8, kid: &str, claims: Value) -> String {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(kid.into());
        jsonwebtoken::encode(&header, &claims, &signing_key(seed)).unwrap()
    }

    fn claims(extra: Value) -> Value {
        let now = jiff::Timestamp::now().as_second();
        let mut claims = serde_json::json!({
            "iss": "https://idp.example/realms/mcp",
            "aud": ["https://mcp.example/mcp", "account"],
            "sub": "0b5e-alice",
            "azp": "vscode",
            "groups": ["kafka-operators"],
            "exp": now + 300,
            "iat": now,
        });
        claims
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        claims
    }

    #[tokio::test]
    async fn a_token_of_the_provider_names_its_prefixed_user_and_groups() {
        let idp = provider_with(vec![published(1, "k1")]);
        let (subject, left) = idp
            .verify(&token(1, "k1", claims(serde_json::json!({}))))
            .await
            .unwrap();
        assert_eq!(subject.username, "oidc:0b5e-alice");
        assert_eq!(
            subject.groups,
            ["oidc:kafka-operators", "system:authenticated"]
        );
        let signed_in = subject.signed_in.unwrap();
        assert_eq!(signed_in.issuer, "https://idp.example/realms/mcp");
        assert_eq!(signed_in.client.as_deref(), Some("vscode"));
        assert!(left <= Duration::from_secs(300) && left > Duration::from_secs(290));
        // One group as a string is one group too.
        let (one, _) = idp
            .verify(&token(
                1,
                "k1",
                claims(serde_json::json!({"groups": "ops"})),
            ))
            .await
            .unwrap();
        assert_eq!(one.groups, ["oidc:ops", "system:authenticated"]);
    }

    #[tokio::test]
    async fn tokens_for_others_from_others_expired_unsigned_or_forged_are_refused() {
        let idp = provider_with(vec![published(1, "k1")]);
        let now = jiff::Timestamp::now().as_second();
        let refused = [
            (
                "another server",
                token(
                    1,
                    "k1",
                    claims(serde_json::json!({"aud": "https://other.example/mcp"})),
                ),
            ),
            ("no audience", {
                let mut c = claims(serde_json::json!({}));
                c.as_object_mut().unwrap().remove("aud");
                token(1, "k1", c)
            }),
            (
                "another issuer",
                token(
                    1,
                    "k1",
                    claims(serde_json::json!({"iss": "https://idp.example/realms/other"})),
                ),
            ),
            (
                "expired",
                token(1, "k1", claims(serde_json::json!({"exp": now - 31}))),
            ),
            (
                "not yet valid",
                token(1, "k1", claims(serde_json::json!({"nbf": now + 120}))),
            ),
            (
                "no user",
                token(1, "k1", claims(serde_json::json!({"sub": 7}))),
            ),
            (
                "signed by another key under k1's name",
                token(2, "k1", claims(serde_json::json!({}))),
            ),
        ];
        for (what, token) in refused {
            assert_eq!(
                idp.verify(&token).await.err(),
                Some(Refusal::Invalid),
                "{what}"
            );
        }
        // Within the clock skew (30 s), an expired token still passes.
        idp.verify(&token(1, "k1", claims(serde_json::json!({"exp": now - 5}))))
            .await
            .unwrap();

        use base64::Engine;
        let b64 = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        let body = b64(claims(serde_json::json!({})));
        let unsigned = format!(
            "{}.{body}.",
            b64(serde_json::json!({"alg": "none", "kid": "k1"}))
        );
        assert_eq!(idp.verify(&unsigned).await.err(), Some(Refusal::Invalid));
        // HS256 keyed with the public key's bytes: the classic confusion.
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("k1".into());
        let public = published(1, "k1")["x"].as_str().unwrap().to_string();
        let hmac = jsonwebtoken::encode(
            &header,
            &claims(serde_json::json!({})),
            &EncodingKey::from_secret(public.as_bytes()).unwrap(),
        )
        .unwrap();
        assert_eq!(idp.verify(&hmac).await.err(), Some(Refusal::Invalid));
    }

    #[tokio::test]
    async fn a_token_naming_an_unknown_key_is_refused_when_no_fetch_can_find_it() {
        let idp = provider_with(vec![published(1, "k1")]);
        let by_new_key = token(2, "k2", claims(serde_json::json!({})));
        assert_eq!(idp.verify(&by_new_key).await.err(), Some(Refusal::Invalid));
    }

    #[test]
    fn a_key_set_keeps_signature_keys_only() {
        let rsa_enc = serde_json::json!({"kty": "RSA", "use": "enc", "alg": "RSA-OAEP", "kid": "e", "n": "sXch", "e": "AQAB"});
        let oct = serde_json::json!({"kty": "oct", "kid": "h", "k": "c2VjcmV0"});
        let odd = serde_json::json!({"kty": "XYZ", "kid": "x"});
        let set = KeySet::from_documents(vec![rsa_enc, oct, odd, published(1, "k1")]).unwrap();
        assert_eq!(set.by_id.keys().collect::<Vec<_>>(), ["k1"]);
        assert!(set.find(Some("k1"), Algorithm::EdDSA).is_some());
        assert!(set.find(Some("k1"), Algorithm::RS256).is_none());
        assert!(set.find(None, Algorithm::EdDSA).is_none());
        assert!(KeySet::from_documents(vec![]).is_err());
    }

    #[test]
    fn the_metadata_names_the_resource_and_its_provider() {
        let mut c = config();
        let m = resource_metadata(&c, "orders");
        assert_eq!(m["resource"], "https://mcp.example/mcp");
        assert_eq!(
            m["authorization_servers"][0],
            "https://idp.example/realms/mcp"
        );
        assert!(m.get("scopes_supported").is_none());
        assert_eq!(
            challenge_parameters(&c),
            "resource_metadata=\"https://mcp.example/.well-known/oauth-protected-resource/mcp\""
        );
        c.scopes = vec!["kafka".into(), "offline_access".into()];
        assert_eq!(
            resource_metadata(&c, "orders")["scopes_supported"][0],
            "kafka"
        );
        assert!(challenge_parameters(&c).ends_with(", scope=\"kafka offline_access\""));
    }
}
