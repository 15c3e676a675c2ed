//! Rate limits (governor's token buckets): per caller, for tool calls and
//! `tools/list`, so that one agent in a loop cannot starve the others or
//! flood the apiserver with access reviews; and before a caller is known,
//! for the TokenReviews of tokens never accepted here, per source address
//! and overall, so that random tokens cannot either.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota};

use crate::config::{AuthConfig, Limits};
use crate::error::{ErrorCode, ToolError};

/// Past this many callers, the buckets that are full again are dropped
/// (keeps memory bounded; a full bucket is the same as none).
const FORGET_AFTER_KEYS: usize = 10_000;

pub struct CallRate {
    per_second: u32,
    burst: u32,
    buckets: DefaultKeyedRateLimiter<String>,
}

impl CallRate {
    pub fn new(limits: &Limits) -> Self {
        let per_second = NonZeroU32::new(limits.calls_per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(limits.call_burst).unwrap_or(NonZeroU32::MIN);
        Self {
            per_second: per_second.get(),
            burst: burst.get(),
            buckets: DefaultKeyedRateLimiter::keyed(
                Quota::per_second(per_second).allow_burst(burst),
            ),
        }
    }

    /// Whether these limits are the ones this limiter enforces (a reload keeps the buckets then).
    pub fn enforces(&self, limits: &Limits) -> bool {
        self.per_second == limits.calls_per_second && self.burst == limits.call_burst
    }

    /// Takes one call from `caller`'s bucket, or says when to retry.
    pub fn admit(&self, caller: &str) -> Result<(), ToolError> {
        if self.buckets.len() > FORGET_AFTER_KEYS {
            self.buckets.retain_recent();
        }
        self.buckets
            .check_key(&caller.to_string())
            .map_err(|not_until| {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                ToolError::new(
                    ErrorCode::LimitExceeded,
                    format!(
                        "more than {} calls per second (burst {}) from this caller; retry in {} ms",
                        self.per_second,
                        self.burst,
                        wait.as_millis().max(1)
                    ),
                )
                .retry_later()
            })
    }
}

/// The TokenReviews this server may ask for tokens it has not accepted
/// before: a bucket per source address and one for all, each refilling at
/// its rate per second with bursts of twice as many.
pub struct UnseenTokens {
    per_source: DefaultKeyedRateLimiter<IpAddr>,
    overall: DefaultDirectRateLimiter,
}

impl UnseenTokens {
    pub fn new(auth: &AuthConfig) -> Self {
        let quota = |per_second: u32| {
            let per_second = NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN);
            let burst = NonZeroU32::new(per_second.get().saturating_mul(2)).unwrap_or(per_second);
            Quota::per_second(per_second).allow_burst(burst)
        };
        Self {
            per_source: DefaultKeyedRateLimiter::keyed(quota(
                auth.token_reviews_per_source_per_second,
            )),
            overall: DefaultDirectRateLimiter::direct(quota(auth.token_reviews_per_second)),
        }
    }

    /// Takes one review from `source`'s bucket (when the source is known),
    /// then one from the common bucket; or says how long to wait. The
    /// source goes first, so that one flooding address empties its own
    /// bucket and leaves the common one to the others.
    pub fn admit(&self, source: Option<IpAddr>) -> Result<(), Duration> {
        let now = DefaultClock::default().now();
        if let Some(source) = source {
            if self.per_source.len() > FORGET_AFTER_KEYS {
                self.per_source.retain_recent();
            }
            self.per_source
                .check_key(&source)
                .map_err(|not_until| not_until.wait_time_from(now))?;
        }
        self.overall
            .check()
            .map_err(|not_until| not_until.wait_time_from(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unseen_tokens_are_bounded_per_source_and_overall() {
        let auth = AuthConfig {
            token_reviews_per_second: 2,
            token_reviews_per_source_per_second: 1,
            ..AuthConfig::default()
        };
        let unseen = UnseenTokens::new(&auth);
        let (a, b, c) = (
            IpAddr::from([127, 0, 0, 2]),
            IpAddr::from([127, 0, 0, 3]),
            IpAddr::from([127, 0, 0, 4]),
        );
        // Bursts of twice the rate: two per source, four in all.
        assert!(unseen.admit(Some(a)).is_ok() && unseen.admit(Some(a)).is_ok());
        let wait = unseen.admit(Some(a)).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        assert!(unseen.admit(Some(b)).is_ok() && unseen.admit(Some(b)).is_ok());
        assert!(unseen.admit(Some(c)).is_err(), "the common bucket is empty");
        assert!(unseen.admit(None).is_err());
    }

    #[test]
    fn each_caller_has_its_own_bucket() {
        let limits = Limits {
            calls_per_second: 1,
            call_burst: 3,
            ..Limits::default()
        };
        let rate = CallRate::new(&limits);
        for _ in 0..3 {
            rate.admit("alice").unwrap();
        }
        let e = rate.admit("alice").unwrap_err();
        assert_eq!((e.code, e.retriable), (ErrorCode::LimitExceeded, true));
        assert!(e.message.contains("retry in"), "{e}");
        rate.admit("bob").unwrap();
        assert!(rate.enforces(&limits) && !rate.enforces(&Limits::default()));
    }
}
