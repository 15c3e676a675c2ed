//! librdkafka settings: the base every client shares (the configured
//! cluster, its security, reconnects), and what each kind of client adds.

use std::time::Duration;

use rdkafka::ClientConfig;

use crate::config::KafkaConfig;

fn read_secret_file(path: &std::path::Path, what: &str) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("reading the {what} file {}: {e}", path.display()))?;
    Ok(text.trim_end_matches(['\n', '\r']).to_string())
}

/// librdkafka settings for the configured cluster. Credentials are read
/// from their files here and only handed to librdkafka.
pub(super) fn client_config(config: &KafkaConfig, client_id: &str) -> anyhow::Result<ClientConfig> {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", config.bootstrap_servers.join(","))
        .set("client.id", client_id)
        // A lookup of a missing topic must never create it, whatever the
        // broker's auto.create.topics.enable says (librdkafka's producer-side
        // default is true, and the admin client is a producer handle).
        .set("allow.auto.create.topics", "false")
        .set("socket.timeout.ms", config.request_timeout_ms.to_string())
        // Reconnect quickly after an outage, without hammering the broker.
        .set("reconnect.backoff.ms", "100")
        .set("reconnect.backoff.max.ms", "2000")
        // TCP_NODELAY, as Kafka's Java clients set it: librdkafka leaves
        // Nagle on, which can hold a small request back while an earlier
        // one on its connection is unacknowledged (pipelined produces; a
        // job's reply sent while another job's journal entry is in flight).
        .set("socket.nagle.disable", "true")
        .set("log_level", "4");
    let protocol = match (config.tls.is_some(), config.sasl.is_some()) {
        (false, false) => "PLAINTEXT",
        (true, false) => "SSL",
        (false, true) => "SASL_PLAINTEXT",
        (true, true) => "SASL_SSL",
    };
    c.set("security.protocol", protocol);
    if let Some(tls) = &config.tls {
        let files = [
            ("ssl.ca.location", &tls.ca_file),
            ("ssl.certificate.location", &tls.cert_file),
            ("ssl.key.location", &tls.key_file),
        ];
        for (key, file) in files {
            if let Some(path) = file {
                c.set(key, path.display().to_string());
            }
        }
    }
    if let Some(sasl) = &config.sasl {
        c.set("sasl.mechanism", sasl.mechanism.as_str())
            .set(
                "sasl.username",
                read_secret_file(&sasl.username_file, "SASL username")?,
            )
            .set(
                "sasl.password",
                read_secret_file(&sasl.password_file, "SASL password")?,
            );
    }
    Ok(c)
}

/// This server's principal as Kafka's default principal builder makes it:
/// with SASL (PLAIN, SCRAM), `User:<username>`. Over TLS alone it is the
/// certificate's subject as the broker's `ssl.principal.mapping.rules`
/// rewrite it, and over plaintext what the broker's principal builder
/// says (ANONYMOUS by default): not known here, so None.
pub(super) fn principal(config: &KafkaConfig) -> anyhow::Result<Option<String>> {
    config
        .sasl
        .as_ref()
        .map(|sasl| {
            read_secret_file(&sasl.username_file, "SASL username").map(|u| format!("User:{u}"))
        })
        .transpose()
}

/// How often the admin client, the producer and the lookup consumer emit
/// their statistics (the requests they sent: see `statistics`). An
/// emission is about 3 KB, plus about 1.1 KB per partition of every topic
/// the client holds (the admin client's grew to 545 KB once it had asked
/// for 140 topics, 501 partitions, by name). Each cost 7 ms of CPU in a
/// debug build (librdkafka writing it, unoptimized; parsing it takes
/// 0.6 ms optimized): every 15 s, well under 0.1% of a core.
pub(super) const STATISTICS_INTERVAL: Duration = Duration::from_secs(15);

/// `base` for a client whose statistics are read. Only for clients that are
/// polled or served (`Kafka::serve_events`): librdkafka queues every
/// emission for the application, and unread ones pile up.
fn counted(base: &ClientConfig, statistics_interval: Duration) -> ClientConfig {
    let mut config = base.clone();
    let ms = statistics_interval.as_millis().max(1);
    config.set("statistics.interval.ms", ms.to_string());
    config
}

/// The admin client: metadata, admin requests, group listings.
pub(super) fn admin_config(base: &ClientConfig, statistics_interval: Duration) -> ClientConfig {
    counted(base, statistics_interval)
}

/// The producer (tools' publishes and the audit topic): every write
/// acknowledged by all in-sync replicas, never duplicated by a retry.
pub(super) fn producer_config(
    base: &ClientConfig,
    request_timeout_ms: u64,
    statistics_interval: Duration,
) -> ClientConfig {
    let mut config = counted(base, statistics_interval);
    config
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("message.timeout.ms", request_timeout_ms.to_string());
    config
}

/// The offset-lookup consumer: ListOffsets only, never assigned,
/// subscribed or committed.
pub(super) fn lookup_config(base: &ClientConfig, statistics_interval: Duration) -> ClientConfig {
    let mut config = counted(base, statistics_interval);
    config
        .set("group.id", "mcp-kafka-sidecar-lookup")
        .set("enable.auto.commit", "false");
    config
}

/// A consumer that never joins or commits for `group` unless the caller
/// commits explicitly (offset resets do). Emits no statistics (see
/// `statistics::ClientRole`), nor does a peek consumer.
pub(super) fn group_consumer_config(base: &ClientConfig, group: &str) -> ClientConfig {
    let mut config = base.clone();
    config
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false");
    config
}

/// A pooled peek consumer (see `peek`): small fetches answered at once.
pub(super) fn peek_consumer_config(base: &ClientConfig) -> ClientConfig {
    let mut config = group_consumer_config(base, "mcp-kafka-sidecar-peek");
    config
        // A peek reads little: don't prefetch librdkafka's default 64 MiB.
        .set("queued.max.messages.kbytes", "4096")
        // librdkafka decodes every record a fetch brings, shown or
        // not: at most 64 KiB per partition (a default peek's
        // max_bytes; the broker still sends a larger batch whole),
        // not 1 MiB. A 10-message peek of a topic holding 6 MiB in 6
        // partitions took the sidecar 13-15 ms of CPU, now 2.8 ms.
        .set("max.partition.fetch.bytes", "65536")
        // The next peek on this consumer waits for the fetch still in
        // flight from this one, which the broker holds this long when
        // there is nothing new (default 500 ms). Measured directly, a
        // 10-message peek on a reused consumer took 19 ms with 20 ms,
        // 0.6 ms with 1 ms. A peek reads only up to the end it looked
        // up or its fetch found, so it seldom waits for new data.
        .set("fetch.wait.max.ms", "1")
        // Fetch again only once what was fetched is read, and then at
        // once (librdkafka re-checks after this backoff, default 1 s).
        // A peek that the first answer serves (most: they stop at a
        // cap or at the end that answer shows) then costs the broker
        // one fetch, not a second held one: the broker's CPU per
        // 5-message peek under load fell from 0.54 ms to 0.36-0.41 ms.
        .set("queued.min.messages", "1")
        .set("fetch.queue.backoff.ms", "1")
        // Says when a fetch reaches a partition's end (the last stable
        // offset under read_committed), which a peek needs where
        // transaction markers end a partition.
        .set("enable.partition.eof", "true")
        // A start that retention has deleted (a peek from earliest
        // starts at the log start this consumer last saw) reads from
        // the new log start, not from the end (librdkafka's default).
        .set("auto.offset.reset", "earliest");
    config
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{SaslConfig, SaslMechanism, TlsFiles};

    fn kafka_config() -> KafkaConfig {
        KafkaConfig {
            bootstrap_servers: vec!["kafka-0:9093".into(), "kafka-1:9093".into()],
            expected_cluster_id: None,
            tls: None,
            sasl: None,
            request_timeout_ms: 5_000,
            metadata_max_age_ms: 1_000,
        }
    }

    #[test]
    fn plaintext_by_default_and_never_auto_creates_topics() {
        let c = client_config(&kafka_config(), "id").unwrap();
        assert_eq!(c.get("security.protocol"), Some("PLAINTEXT"));
        assert_eq!(
            c.get("bootstrap.servers"),
            Some("kafka-0:9093,kafka-1:9093")
        );
        assert_eq!(c.get("allow.auto.create.topics"), Some("false"));
    }

    #[test]
    fn peek_consumers_keep_the_group_consumers_guards_and_override_eof() {
        let base = client_config(&kafka_config(), "id").unwrap();
        let c = peek_consumer_config(&base);
        assert_eq!(c.get("enable.auto.commit"), Some("false"));
        assert_eq!(c.get("enable.auto.offset.store"), Some("false"));
        assert_eq!(c.get("enable.partition.eof"), Some("true"));
        assert_eq!(c.get("group.id"), Some("mcp-kafka-sidecar-peek"));
        assert_eq!(c.get("allow.auto.create.topics"), Some("false"));
    }

    #[test]
    fn counted_clients_emit_statistics_and_consumers_do_not() {
        let base = client_config(&kafka_config(), "id").unwrap();
        let every = Duration::from_millis(1_500);
        for config in [
            admin_config(&base, every),
            producer_config(&base, 5_000, every),
            lookup_config(&base, every),
        ] {
            assert_eq!(config.get("statistics.interval.ms"), Some("1500"));
        }
        for config in [
            group_consumer_config(&base, "g"),
            peek_consumer_config(&base),
        ] {
            assert_eq!(config.get("statistics.interval.ms"), None);
        }
    }

    #[test]
    fn tls_and_scram_come_from_files() {
        let dir = std::env::temp_dir().join(format!("mcpk-kafka-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("username"), "agent\n").unwrap();
        std::fs::write(dir.join("password"), "canary-s3cret\n").unwrap();
        let mut config = kafka_config();
        config.tls = Some(TlsFiles {
            ca_file: Some(dir.join("ca.crt")),
            cert_file: None,
            key_file: None,
        });
        config.sasl = Some(SaslConfig {
            mechanism: SaslMechanism::ScramSha512,
            username_file: dir.join("username"),
            password_file: dir.join("password"),
        });
        let c = client_config(&config, "id").unwrap();
        assert_eq!(c.get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(c.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(c.get("sasl.username"), Some("agent"));
        assert_eq!(
            c.get("sasl.password"),
            Some("canary-s3cret"),
            "trailing newline of the mounted file dropped"
        );
        assert_eq!(
            c.get("ssl.ca.location"),
            Some(dir.join("ca.crt").to_str().unwrap())
        );

        // A missing credential file is an error that names the file, not a secret.
        std::fs::remove_file(dir.join("password")).unwrap();
        let err = client_config(&config, "id").unwrap_err().to_string();
        assert!(
            err.contains("SASL password file") && err.contains("password"),
            "{err}"
        );
        assert!(!err.contains("canary-s3cret"));
        std::fs::remove_dir_all(&dir).ok();
    }
}
