//! When to look at a server again. Pure: what one reconcile found in,
//! the controller's next action out.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::Action;

/// How often an unchanged server is looked at again (reads caches only).
pub const RESYNC: Duration = Duration::from_secs(300);
/// While a referenced Secret is missing (those Secrets are not watched).
pub const SECRET_RETRY: Duration = Duration::from_secs(30);
/// Looking a second late makes sure a window has really closed (and a
/// token is really due) when the reconcile runs.
const LATE: Duration = Duration::from_secs(1);

/// What one successful reconcile found that decides the next look.
#[derive(Debug, Clone, Default)]
pub struct Found {
    /// The fence does not hold: nothing runs, and only a change (of the
    /// namespace label or the server) can alter that.
    pub fence_broken: bool,
    /// A referenced Secret is missing.
    pub secrets_missing: bool,
    /// When the exposed tools change by themselves (a break-glass window ends).
    pub tools_change_at: Option<Timestamp>,
    /// When the first issued token is due to be replaced.
    pub next_rotation: Option<Timestamp>,
}

/// The next look after a successful reconcile.
pub fn after_success(found: &Found, now: Timestamp) -> Action {
    if found.fence_broken {
        return Action::await_change();
    }
    if found.secrets_missing {
        return Action::requeue(SECRET_RETRY);
    }
    let wake = [found.tools_change_at, found.next_rotation]
        .into_iter()
        .flatten()
        .min();
    // A time already past (a clock step, a slow reconcile) is "now".
    let until = wake.map(|t| Duration::try_from(t.duration_since(now)).unwrap_or_default());
    Action::requeue(until.map_or(RESYNC, |d| (d + LATE).min(RESYNC)))
}

/// The longest wait after failures: 5 minutes, as the README says.
pub const MOST_BACKOFF: Duration = Duration::from_secs(300);

/// The delay after the `failures`-th failure in a row of one server:
/// 1 s, 2 s, 4 s ... 256 s, then 300 s (5 minutes) from the tenth on.
pub fn after_failures(failures: u32) -> Duration {
    // 2^9 s is past the bound already; a larger shift would overflow.
    let exponent = failures.saturating_sub(1).min(9);
    Duration::from_secs(1u64 << exponent).min(MOST_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::SignedDuration;

    fn now() -> Timestamp {
        "2026-01-01T00:00:00Z".parse().unwrap()
    }

    fn at(seconds: i64) -> Option<Timestamp> {
        Some(now() + SignedDuration::from_secs(seconds))
    }

    #[test]
    fn a_broken_fence_waits_for_a_change_and_a_missing_secret_is_retried() {
        let broken = Found {
            fence_broken: true,
            secrets_missing: true,
            tools_change_at: at(5),
            ..Default::default()
        };
        assert_eq!(after_success(&broken, now()), Action::await_change());
        let missing = Found {
            secrets_missing: true,
            next_rotation: at(5),
            ..Default::default()
        };
        assert_eq!(
            after_success(&missing, now()),
            Action::requeue(SECRET_RETRY)
        );
    }

    #[test]
    fn the_earliest_of_window_end_and_token_rotation_a_second_late_at_most_the_resync() {
        let secs = |found: Found| after_success(&found, now());
        assert_eq!(secs(Found::default()), Action::requeue(RESYNC));
        assert_eq!(
            secs(Found {
                tools_change_at: at(8),
                ..Default::default()
            }),
            Action::requeue(Duration::from_secs(9))
        );
        assert_eq!(
            secs(Found {
                tools_change_at: at(120),
                next_rotation: at(100),
                ..Default::default()
            }),
            Action::requeue(Duration::from_secs(101))
        );
        assert_eq!(
            secs(Found {
                next_rotation: at(3600),
                ..Default::default()
            }),
            Action::requeue(RESYNC),
            "an hour away: the resync comes first"
        );
        assert_eq!(
            secs(Found {
                tools_change_at: at(-30),
                ..Default::default()
            }),
            Action::requeue(LATE),
            "already past"
        );
    }

    #[test]
    fn failures_back_off_exponentially_from_a_second_to_five_minutes() {
        let delays: Vec<u64> = (1..=12).map(|n| after_failures(n).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        assert_eq!(after_failures(u32::MAX), Duration::from_secs(300));
        assert_eq!(after_failures(0), Duration::from_secs(1));
    }
}
