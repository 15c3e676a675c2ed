//! Config reload: the file is re-read when its content changes (polling
//! copes with the symlink swaps of a mounted ConfigMap, which file-event
//! watchers often miss). A bad file keeps the last good config running.

use std::path::PathBuf;
use std::time::Duration;

use crate::config::SidecarConfig;
use crate::server::{KafkaMcp, Runtime};

const POLL_EVERY: Duration = Duration::from_secs(2);

pub fn spawn(mcp: KafkaMcp, path: PathBuf, mut last_text: String) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(POLL_EVERY).await;
            let Ok(text) = tokio::fs::read_to_string(&path).await else {
                tracing::warn!(path = %path.display(), "config file unreadable; keeping the last good config");
                continue;
            };
            if text == last_text {
                continue;
            }
            last_text = text.clone();
            match apply(&mcp, &text) {
                Ok(()) => {
                    mcp.metrics.record_reload("ok");
                    tracing::info!(path = %path.display(), "config reloaded");
                }
                Err(e) => {
                    mcp.metrics.record_reload("invalid");
                    tracing::error!(path = %path.display(), error = %e, "config reload rejected; keeping the last good config");
                }
            }
        }
    })
}

fn apply(mcp: &KafkaMcp, text: &str) -> anyhow::Result<()> {
    let config = SidecarConfig::parse(text)?;
    let current = mcp.runtime();
    // Fail closed: switching authentication on or off needs a restart.
    if config.auth.mode != current.config.auth.mode {
        anyhow::bail!(
            "auth.mode changed from {:?} to {:?}; restart the sidecar to change it",
            current.config.auth.mode,
            config.auth.mode
        );
    }
    if config.auth != current.config.auth {
        tracing::warn!(
            "auth settings changed (decision caches, limits, identity provider); they take effect at the next restart"
        );
    }
    if config.listen != current.config.listen {
        tracing::warn!("listen settings changed; they take effect at the next restart");
    }
    // The worker owns its consumer group membership and in-flight jobs;
    // under the operator a changed section rolls the Pods out anyway (the
    // config's hash is in the Pod template).
    if config.jobs != current.config.jobs {
        tracing::warn!(
            "jobs settings changed (topics, group, maxInFlight, dedup window); they take effect at the next restart"
        );
    }
    // New Kafka clients only when the connection changed; sessions stay.
    mcp.replace_runtime(Runtime::start(config, Some(&current))?);
    Ok(())
}
