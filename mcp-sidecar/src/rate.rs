//! Per-caller rate limits: a token bucket per subject (governor's keyed
//! limiter), so that one agent in a loop cannot starve the others or flood
//! the apiserver with access reviews.

use std::num::NonZeroU32;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

use crate::config::Limits;
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

#[cfg(test)]
mod tests {
    use super::*;

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
