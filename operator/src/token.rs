//! Tokens for clients: minted with the TokenRequest API for a
//! ServiceAccount with the server's audience. A token kept in a Secret is
//! reused until 80% of its lifetime has passed (as the kubelet rotates
//! projected tokens), then replaced.

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Api;
use kube::api::PostParams;

use crate::build::IssuedToken;
use crate::build::rbac::{
    EXPIRES_AT_ANNOTATION, ISSUED_AT_ANNOTATION, LIFETIME_ANNOTATION,
    SERVICE_ACCOUNT_UID_ANNOTATION, TOKEN_KEY,
};

/// When a token should be replaced: at 80% of its lifetime.
pub fn rotate_at(token: &IssuedToken) -> Timestamp {
    let lifetime = token.expires_at.duration_since(token.issued_at);
    token.issued_at + SignedDuration::from_millis(lifetime.as_millis() as i64 * 4 / 5)
}

/// The token kept in `secret`, if it may still be used at `now` for a
/// client whose spec asks for `lifetime_seconds` and whose ServiceAccount
/// has `service_account_uid`.
pub fn reusable(
    secret: &Secret,
    lifetime_seconds: i64,
    service_account_uid: &str,
    now: Timestamp,
) -> Option<IssuedToken> {
    let annotations = secret.metadata.annotations.as_ref()?;
    let token = secret.data.as_ref()?.get(TOKEN_KEY)?;
    let kept = IssuedToken {
        token: String::from_utf8(token.0.clone()).ok()?,
        issued_at: annotations.get(ISSUED_AT_ANNOTATION)?.parse().ok()?,
        expires_at: annotations.get(EXPIRES_AT_ANNOTATION)?.parse().ok()?,
        lifetime_seconds: annotations.get(LIFETIME_ANNOTATION)?.parse().ok()?,
        service_account_uid: annotations.get(SERVICE_ACCOUNT_UID_ANNOTATION)?.clone(),
    };
    let valid = kept.lifetime_seconds == lifetime_seconds
        && kept.service_account_uid == service_account_uid
        && now < rotate_at(&kept)
        && !kept.token.is_empty();
    valid.then_some(kept)
}

/// Mints a token for `service_account` with `audience`.
pub async fn mint(
    api: &Api<ServiceAccount>,
    service_account: &str,
    service_account_uid: &str,
    audience: &str,
    lifetime_seconds: i64,
) -> Result<IssuedToken, kube::Error> {
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            audiences: Some(vec![audience.to_string()]),
            expiration_seconds: Some(lifetime_seconds),
            bound_object_ref: None,
        }),
        ..Default::default()
    };
    let issued_at = Timestamp::now();
    let answer = api
        .create_token_request(service_account, &PostParams::default(), &request)
        .await?;
    let status = answer.status.unwrap_or_default();
    let expires_at = status.expiration_timestamp.map_or(
        issued_at + SignedDuration::from_secs(lifetime_seconds),
        |t| t.0,
    );
    Ok(IssuedToken {
        token: status.token.unwrap_or_default(),
        issued_at,
        expires_at,
        lifetime_seconds,
        service_account_uid: service_account_uid.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn secret_for(token: &IssuedToken) -> Secret {
        let mut s = Secret::default();
        s.metadata.annotations = Some(BTreeMap::from([
            (
                ISSUED_AT_ANNOTATION.to_string(),
                token.issued_at.to_string(),
            ),
            (
                EXPIRES_AT_ANNOTATION.to_string(),
                token.expires_at.to_string(),
            ),
            (
                LIFETIME_ANNOTATION.to_string(),
                token.lifetime_seconds.to_string(),
            ),
            (
                SERVICE_ACCOUNT_UID_ANNOTATION.to_string(),
                token.service_account_uid.clone(),
            ),
        ]));
        s.data = Some(BTreeMap::from([(
            TOKEN_KEY.to_string(),
            k8s_openapi::ByteString(token.token.clone().into_bytes()),
        )]));
        s
    }

    #[test]
    fn tokens_are_reused_until_eighty_percent_of_their_life() {
        let token = IssuedToken {
            token: "t".into(),
            issued_at: t("2026-01-01T00:00:00Z"),
            expires_at: t("2026-01-01T01:00:00Z"),
            lifetime_seconds: 3600,
            service_account_uid: "uid-1".into(),
        };
        assert_eq!(rotate_at(&token), t("2026-01-01T00:48:00Z"));
        let secret = secret_for(&token);
        assert_eq!(
            reusable(&secret, 3600, "uid-1", t("2026-01-01T00:47:59Z")),
            Some(token.clone())
        );
        assert_eq!(
            reusable(&secret, 3600, "uid-1", t("2026-01-01T00:48:00Z")),
            None,
            "rotation due"
        );
        assert_eq!(
            reusable(&secret, 600, "uid-1", t("2026-01-01T00:10:00Z")),
            None,
            "lifetime changed"
        );
        assert_eq!(
            reusable(&secret, 3600, "uid-2", t("2026-01-01T00:10:00Z")),
            None,
            "ServiceAccount recreated"
        );
        assert_eq!(
            reusable(&Secret::default(), 3600, "uid-1", t("2026-01-01T00:10:00Z")),
            None,
            "not a token Secret"
        );
    }
}
