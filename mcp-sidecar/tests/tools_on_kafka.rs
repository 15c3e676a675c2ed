//! Every tool against the real broker of the test ground, through the same
//! call path the MCP handler uses, with the effect checked on Kafka itself.

use std::sync::Arc;
use std::time::Duration;

use mcp_kafka_sidecar::config::SidecarConfig;
use mcp_kafka_sidecar::error::ErrorCode;
use mcp_kafka_sidecar::kafka::{ClientRole, Kafka, RequestsSent};
use mcp_kafka_sidecar::metrics::Metrics;
use mcp_kafka_sidecar::rate::CallRate;
use mcp_kafka_sidecar::server::{KafkaMcp, Runtime};
use mcpk_e2e::{Ground, eventually, unique_name};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{Value, json};

const TIMEOUT: Duration = Duration::from_secs(30);

/// A dev server on the ground's broker with the given tools (no rate limit
/// to speak of: these tests call as fast as they can).
fn server_with_tools(tools: &[&str]) -> KafkaMcp {
    server_with(
        tools,
        mcp_kafka_sidecar::config::KafkaConfig::default_metadata_max_age_ms(),
    )
}

fn server_with(tools: &[&str], metadata_max_age_ms: u64) -> KafkaMcp {
    server_with_limits(tools, metadata_max_age_ms, "")
}

/// `more_limits`: further `limits` fields, each after a comma.
fn server_with_limits(tools: &[&str], metadata_max_age_ms: u64, more_limits: &str) -> KafkaMcp {
    KafkaMcp::new(
        Runtime::start(test_config(tools, metadata_max_age_ms, more_limits), None)
            .expect("kafka clients"),
        Arc::new(Metrics::new()),
    )
}

/// How often the clients of `server_without_probe` say what they sent.
const STATISTICS: Duration = Duration::from_millis(500);

/// A server like `server_with`, whose Kafka clients run no health probe:
/// the probe asks for metadata every 2 s, which would count among the
/// requests a test measures. Nothing else asks Kafka unless a call does.
fn server_without_probe(tools: &[&str], metadata_max_age_ms: u64) -> (KafkaMcp, Arc<Kafka>) {
    let config = test_config(tools, metadata_max_age_ms, "");
    let kafka = Kafka::connect_with(&config.kafka, "mcp-kafka-sidecar/requests-test", STATISTICS)
        .expect("kafka clients");
    let runtime = Runtime {
        rate: Arc::new(CallRate::new(&config.limits)),
        kafka: Arc::clone(&kafka),
        audit_sink: None,
        prometheus: None,
        schema_registry: None,
        config,
    };
    (KafkaMcp::new(runtime, Arc::new(Metrics::new())), kafka)
}

fn test_config(tools: &[&str], metadata_max_age_ms: u64, more_limits: &str) -> SidecarConfig {
    let text = format!(
        "server: {{name: tools-test, environment: dev}}\nlisten: {{address: '127.0.0.1:8090'}}\nauth: {{mode: none}}\nkafka: {{bootstrapServers: ['{}'], requestTimeoutMs: 5000, metadataMaxAgeMs: {metadata_max_age_ms}}}\ntools: [{}]\nlimits: {{callsPerSecond: 1000000, callBurst: 1000000{more_limits}}}\n",
        Ground::get().kafka_bootstrap_servers,
        tools.join(", ")
    );
    SidecarConfig::parse(&text).expect("test config")
}

fn server() -> KafkaMcp {
    let all: Vec<&str> = mcp_kafka_sidecar::tool_name::ToolName::ALL
        .iter()
        .map(|t| t.as_str())
        .collect();
    server_with_tools(&all)
}

async fn ok(mcp: &KafkaMcp, tool: &str, args: Value) -> Value {
    match mcp.call(tool, args.clone()).await {
        Ok(v) => v,
        Err(e) => panic!("{tool}({args}) failed: {e}"),
    }
}

async fn err(mcp: &KafkaMcp, tool: &str, args: Value) -> ErrorCode {
    match mcp.call(tool, args.clone()).await {
        Ok(v) => panic!("{tool}({args}) succeeded but should fail: {v}"),
        Err(e) => e.code,
    }
}

fn partition_count(topic: &str) -> usize {
    Ground::get().partition_count(topic)
}

fn topic_exists(topic: &str) -> bool {
    Ground::get().topic_exists(topic)
}

async fn produce(topic: &str, count: usize, value: impl Fn(usize) -> String) {
    let producer: FutureProducer = Ground::get().kafka_config().create().unwrap();
    for i in 0..count {
        let v = value(i);
        let key = format!("k{i}");
        producer
            .send(FutureRecord::to(topic).key(&key).payload(&v), TIMEOUT)
            .await
            .map_err(|(e, _)| e)
            .unwrap();
    }
}

async fn new_topic(mcp: &KafkaMcp, prefix: &str, partitions: i32) -> String {
    let topic = unique_name(prefix);
    ok(
        mcp,
        "create_topic",
        json!({"topic": topic, "partitions": partitions}),
    )
    .await;
    let t = topic.clone();
    eventually("the new topic in metadata", || {
        let t = t.clone();
        async move { (partition_count(&t) == partitions as usize).then_some(()) }
    })
    .await;
    topic
}

/// A group member reads `count` messages and commits where it is.
fn read_and_commit(consumer: &rdkafka::consumer::BaseConsumer, count: usize) {
    let mut read = 0;
    while read < count {
        if let Some(m) = consumer.poll(Duration::from_millis(500)) {
            m.unwrap();
            read += 1;
        }
    }
    consumer.commit_consumer_state(CommitMode::Sync).unwrap();
}

#[tokio::test]
async fn create_topic_dry_run_validates_without_creating_then_creates() {
    let mcp = server();
    let topic = unique_name("t-create");
    let dry = ok(
        &mcp,
        "create_topic",
        json!({"topic": topic, "partitions": 3, "dry_run": true}),
    )
    .await;
    assert_eq!(dry["created"], false);
    assert!(!topic_exists(&topic), "a dry run created the topic");
    // Kafka itself validates in a dry run: an impossible replication factor is refused.
    let code = err(
        &mcp,
        "create_topic",
        json!({"topic": topic, "partitions": 1, "replication_factor": 3, "dry_run": true}),
    )
    .await;
    assert_eq!(code, ErrorCode::InvalidArgument);

    let made = ok(
        &mcp,
        "create_topic",
        json!({"topic": topic, "partitions": 3, "configs": {"retention.ms": "3600000"}}),
    )
    .await;
    assert_eq!(made["created"], true);
    eventually("3 partitions", || async {
        (partition_count(&topic) == 3).then_some(())
    })
    .await;
    assert_eq!(
        err(
            &mcp,
            "create_topic",
            json!({"topic": topic, "partitions": 3})
        )
        .await,
        ErrorCode::Conflict
    );
    assert_eq!(
        err(
            &mcp,
            "create_topic",
            json!({"topic": "bad/name", "partitions": 1})
        )
        .await,
        ErrorCode::InvalidArgument
    );
    assert_eq!(
        err(
            &mcp,
            "create_topic",
            json!({"topic": "x", "partitions": -1})
        )
        .await,
        ErrorCode::InvalidArgument
    );
    assert_eq!(
        err(
            &mcp,
            "create_topic",
            json!({"topic": "x", "partitions": "three"})
        )
        .await,
        ErrorCode::InvalidArgument
    );
}

#[tokio::test]
async fn list_and_describe_topics_report_real_partitions_and_offsets() {
    let mcp = server();
    let topic = new_topic(&mcp, "t-describe", 2).await;
    produce(&topic, 7, |i| format!("m{i}")).await;

    let listed = ok(&mcp, "list_topics", json!({"name_contains": topic})).await;
    assert_eq!(listed["total"], 1);
    assert_eq!(listed["topics"][0]["partitions"], 2);
    let with_internal = ok(&mcp, "list_topics", json!({"include_internal": true})).await;
    let names: Vec<&str> = with_internal["topics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(
        !ok(&mcp, "list_topics", json!({})).await["topics"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["internal"] == true)
    );
    assert!(
        names.iter().any(|n| n.starts_with("__")),
        "internal topics shown when asked: {names:?}"
    );

    let d = ok(&mcp, "describe_topic", json!({"topic": topic})).await;
    assert_eq!(d["partitions"].as_array().unwrap().len(), 2);
    assert_eq!(d["retained_messages"], 7);
    assert_eq!(d["partitions"][0]["leader"], 1);
    let missing = unique_name("missing");
    assert_eq!(
        err(&mcp, "describe_topic", json!({"topic": missing})).await,
        ErrorCode::NotFound
    );
    assert_eq!(
        err(
            &mcp,
            "publish_message",
            json!({"topic": missing, "value": "x"})
        )
        .await,
        ErrorCode::NotFound
    );
    assert_eq!(
        err(&mcp, "consume_messages", json!({"topic": missing})).await,
        ErrorCode::NotFound
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !topic_exists(&missing),
        "looking up a missing topic created it (broker auto-creation)"
    );
    assert_eq!(
        err(&mcp, "describe_topic", json!({"topic": topic, "extra": 1})).await,
        ErrorCode::InvalidArgument
    );

    let offsets = ok(
        &mcp,
        "fetch_offsets",
        json!({"topic": topic, "timestamp_ms": 0}),
    )
    .await;
    let latest: i64 = offsets["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["latest"].as_i64().unwrap())
        .sum();
    assert_eq!(latest, 7);
    assert!(
        offsets["partitions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["at_timestamp"] == p["earliest"])
    );
    assert_eq!(
        err(
            &mcp,
            "fetch_offsets",
            json!({"topic": topic, "partition": 9})
        )
        .await,
        ErrorCode::NotFound
    );
}

#[tokio::test]
async fn list_topics_paginates_with_a_cursor() {
    let mcp = server();
    let prefix = unique_name("t-page");
    for i in 0..5 {
        ok(
            &mcp,
            "create_topic",
            json!({"topic": format!("{prefix}-{i}"), "partitions": 1}),
        )
        .await;
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut args = json!({"name_contains": prefix, "limit": 2});
        if let Some(c) = &cursor {
            args["cursor"] = json!(c);
        }
        let page =
            eventually("a page of 5 topics", || {
                let (mcp, args) = (mcp.clone(), args.clone());
                async move {
                    Some(mcp.call("list_topics", args).await.unwrap()).filter(|p| p["total"] == 5)
                }
            })
            .await;
        assert!(page["topics"].as_array().unwrap().len() <= 2);
        seen.extend(
            page["topics"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["name"].as_str().unwrap().to_string()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    let expected: Vec<String> = (0..5).map(|i| format!("{prefix}-{i}")).collect();
    assert_eq!(seen, expected);
    assert_eq!(
        err(&mcp, "list_topics", json!({"limit": 100_000})).await,
        ErrorCode::LimitExceeded
    );
}

#[tokio::test]
async fn cluster_status_brokers_and_configs() {
    let mcp = server();
    let status = ok(&mcp, "cluster_status", json!({})).await;
    assert_eq!(
        status["cluster_id"],
        Ground::get().kafka_cluster_id.as_str()
    );
    assert_eq!(status["broker_count"], 1);
    assert_eq!(status["offline_partitions"], 0);
    let brokers = ok(&mcp, "list_brokers", json!({})).await;
    assert_eq!(brokers["brokers"][0]["id"], 1);

    let broker = ok(
        &mcp,
        "describe_configs",
        json!({"resource_type": "broker", "name": "1", "include_defaults": true}),
    )
    .await;
    assert!(
        broker["configs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "log.dirs")
    );
    assert_eq!(
        err(
            &mcp,
            "describe_configs",
            json!({"resource_type": "broker", "name": "one"})
        )
        .await,
        ErrorCode::InvalidArgument
    );
    assert_eq!(
        err(
            &mcp,
            "describe_configs",
            json!({"resource_type": "queue", "name": "1"})
        )
        .await,
        ErrorCode::InvalidArgument
    );
}

#[tokio::test]
async fn create_partitions_and_update_topic_config_change_kafka() {
    let mcp = server();
    let topic = new_topic(&mcp, "t-grow", 2).await;

    let dry = ok(
        &mcp,
        "create_partitions",
        json!({"topic": topic, "total": 4, "dry_run": true}),
    )
    .await;
    assert_eq!(
        (dry["before"].as_u64(), dry["after"].as_u64()),
        (Some(2), Some(4))
    );
    assert_eq!(partition_count(&topic), 2, "a dry run added partitions");
    assert_eq!(
        ok(&mcp, "describe_topic", json!({"topic": topic})).await["partitions"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    ok(
        &mcp,
        "create_partitions",
        json!({"topic": topic, "total": 4}),
    )
    .await;
    // The tool's own change shows in its next read, offsets of new partitions
    // included (though the clients' own metadata knew 2 partitions).
    let described = ok(&mcp, "describe_topic", json!({"topic": topic})).await;
    assert_eq!(
        described["partitions"].as_array().unwrap().len(),
        4,
        "{described}"
    );
    eventually("4 partitions", || async {
        (partition_count(&topic) == 4).then_some(())
    })
    .await;
    assert_eq!(
        err(
            &mcp,
            "create_partitions",
            json!({"topic": topic, "total": 3})
        )
        .await,
        ErrorCode::InvalidArgument
    );

    ok(
        &mcp,
        "update_topic_config",
        json!({"topic": topic, "set": {"retention.ms": "7200000", "cleanup.policy": "compact"}}),
    )
    .await;
    let before = ok(
        &mcp,
        "describe_configs",
        json!({"resource_type": "topic", "name": topic}),
    )
    .await;
    let value = |d: &Value, name: &str| {
        d["configs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .and_then(|c| c["value"].as_str().map(String::from))
    };
    assert_eq!(value(&before, "retention.ms").as_deref(), Some("7200000"));

    // Incremental: changing one config keeps the other; deleting restores the default.
    let change = ok(
        &mcp,
        "update_topic_config",
        json!({"topic": topic, "set": {"retention.ms": "60000"}, "delete": ["cleanup.policy"]}),
    )
    .await;
    assert_eq!(
        change["visible"], true,
        "the tool returned before the broker showed its own change"
    );
    let changes = change["changes"].as_array().unwrap();
    assert!(
        changes.iter().any(|c| c["name"] == "retention.ms"
            && c["before"] == "7200000"
            && c["after"] == "60000")
    );
    let after = ok(
        &mcp,
        "describe_configs",
        json!({"resource_type": "topic", "name": topic}),
    )
    .await;
    assert_eq!(value(&after, "retention.ms").as_deref(), Some("60000"));
    assert_eq!(
        value(&after, "cleanup.policy"),
        None,
        "deleted config is back to default"
    );

    let dry = ok(
        &mcp,
        "update_topic_config",
        json!({"topic": topic, "set": {"retention.ms": "1000"}, "dry_run": true}),
    )
    .await;
    assert_eq!(dry["dry_run"], true);
    let unchanged = ok(
        &mcp,
        "describe_configs",
        json!({"resource_type": "topic", "name": topic}),
    )
    .await;
    assert_eq!(value(&unchanged, "retention.ms").as_deref(), Some("60000"));
    let code = err(
        &mcp,
        "update_topic_config",
        json!({"topic": topic, "set": {"retention.ms": "not-a-number"}}),
    )
    .await;
    assert_eq!(code, ErrorCode::InvalidArgument);
    let kept = ok(
        &mcp,
        "describe_configs",
        json!({"resource_type": "topic", "name": topic}),
    )
    .await;
    assert_eq!(
        value(&kept, "retention.ms").as_deref(),
        Some("60000"),
        "a rejected change altered Kafka"
    );
}

#[tokio::test]
async fn publish_then_consume_round_trips_keys_values_and_headers() {
    let mcp = server();
    let topic = new_topic(&mcp, "t-pub", 1).await;
    let sent = ok(&mcp, "publish_message", json!({"topic": topic, "key": "order-1", "value": "{\"total\": 42}", "headers": {"trace": "abc"}})).await;
    assert_eq!(
        (sent["partition"].as_i64(), sent["offset"].as_i64()),
        (Some(0), Some(0))
    );
    ok(
        &mcp,
        "publish_message",
        json!({"topic": topic, "value": "//4A", "encoding": "base64"}),
    )
    .await;
    let dry = ok(
        &mcp,
        "publish_message",
        json!({"topic": topic, "value": "x", "dry_run": true}),
    )
    .await;
    assert_eq!(dry["offset"], Value::Null);
    assert_eq!(
        err(
            &mcp,
            "publish_message",
            json!({"topic": topic, "value": "x", "partition": 5})
        )
        .await,
        ErrorCode::NotFound
    );
    assert_eq!(
        err(
            &mcp,
            "publish_message",
            json!({"topic": topic, "value": "***", "encoding": "base64"})
        )
        .await,
        ErrorCode::InvalidArgument
    );

    let got = ok(
        &mcp,
        "consume_messages",
        json!({"topic": topic, "from": "earliest"}),
    )
    .await;
    let msgs = got["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 2, "{got}");
    assert_eq!(msgs[0]["key"], json!({"text": "order-1"}));
    assert_eq!(msgs[0]["value"], json!({"json": {"total": 42}}));
    assert_eq!(msgs[0]["headers"]["trace"], json!({"text": "abc"}));
    assert_eq!(msgs[1]["value"], json!({"base64": "//4A"}));
    assert_eq!(got["stopped_by"], "end");
}

#[tokio::test]
async fn consume_respects_start_positions_and_caps_on_10000_large_messages() {
    let mcp = server();
    let topic = new_topic(&mcp, "t-caps", 2).await;
    let big = "v".repeat(2_000);
    let producer: FutureProducer = Ground::get()
        .kafka_config()
        .set("linger.ms", "20")
        .create()
        .unwrap();
    let sends = (0..10_000).map(|i| {
        let p = producer.clone();
        let (topic, big) = (topic.clone(), big.clone());
        async move {
            let key = format!("k{i}");
            p.send(FutureRecord::to(&topic).key(&key).payload(&big), TIMEOUT)
                .await
                .map_err(|(e, _)| e)
                .unwrap();
        }
    });
    futures::future::join_all(sends).await;

    let default = ok(
        &mcp,
        "consume_messages",
        json!({"topic": topic, "from": "earliest"}),
    )
    .await;
    assert_eq!(
        default["messages"].as_array().unwrap().len(),
        10,
        "default message cap"
    );
    let most = ok(
        &mcp,
        "consume_messages",
        json!({"topic": topic, "from": "earliest", "max_messages": 100, "max_bytes": 1_048_576}),
    )
    .await;
    assert_eq!(most["messages"].as_array().unwrap().len(), 100);
    let by_bytes = ok(
        &mcp,
        "consume_messages",
        json!({"topic": topic, "from": "earliest", "max_messages": 100, "max_bytes": 10_000}),
    )
    .await;
    let n = by_bytes["messages"].as_array().unwrap().len();
    assert!(
        n < 5 && by_bytes["stopped_by"] == "max_bytes",
        "{n} messages, {}",
        by_bytes["stopped_by"]
    );
    assert_eq!(
        err(
            &mcp,
            "consume_messages",
            json!({"topic": topic, "max_messages": 101})
        )
        .await,
        ErrorCode::LimitExceeded
    );
    assert_eq!(
        err(
            &mcp,
            "consume_messages",
            json!({"topic": topic, "max_bytes": 2_000_000})
        )
        .await,
        ErrorCode::LimitExceeded
    );
    assert_eq!(
        err(
            &mcp,
            "consume_messages",
            json!({"topic": topic, "timeout_ms": 60_000})
        )
        .await,
        ErrorCode::LimitExceeded
    );

    let latest = ok(
        &mcp,
        "consume_messages",
        json!({"topic": topic, "partition": 0, "from": "latest", "max_messages": 3}),
    )
    .await;
    let offsets: Vec<i64> = latest["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["offset"].as_i64().unwrap())
        .collect();
    let high = ok(
        &mcp,
        "fetch_offsets",
        json!({"topic": topic, "partition": 0}),
    )
    .await["partitions"][0]["latest"]
        .as_i64()
        .unwrap();
    assert_eq!(offsets, vec![high - 3, high - 2, high - 1]);
    let at = ok(
        &mcp,
        "consume_messages",
        json!({"topic": topic, "partition": 1, "from": "offset", "offset": 5, "max_messages": 2}),
    )
    .await;
    assert_eq!(at["messages"][0]["offset"], 5);
    let future = ok(
        &mcp,
        "consume_messages",
        json!({"topic": topic, "from": "timestamp", "timestamp_ms": 4_102_444_800_000i64}),
    )
    .await;
    assert!(
        future["messages"].as_array().unwrap().is_empty(),
        "nothing is newer than the year 2100"
    );
    assert_eq!(
        err(
            &mcp,
            "consume_messages",
            json!({"topic": topic, "from": "offset", "offset": 1})
        )
        .await,
        ErrorCode::InvalidArgument
    );
}

/// A partition answers a fetch with at most 1 MiB, so this peek needs four;
/// a peek consumer fetches again only once what it holds is read (it does
/// not prefetch), and must then fetch at once: within the default 2 s.
#[tokio::test]
async fn a_peek_larger_than_one_fetch_reads_to_the_end() {
    let age = mcp_kafka_sidecar::config::KafkaConfig::default_metadata_max_age_ms();
    let mcp = server_with_limits(
        &["create_topic", "consume_messages"],
        age,
        ", maxConsumeBytes: 4194304",
    );
    let topic = new_topic(&mcp, "t-multi-fetch", 1).await;
    produce(&topic, 4, |i| format!("{i}{}", "x".repeat(700_000))).await;
    let got = ok(
        &mcp,
        "consume_messages",
        json!({"topic": topic, "from": "earliest", "max_messages": 4, "max_bytes": 4_194_304}),
    )
    .await;
    let firsts: Vec<String> = values(&got).iter().map(|v| v[..1].to_string()).collect();
    assert_eq!(firsts, texts("", 0..4), "stopped by {}", got["stopped_by"]);
    assert_eq!(got["stopped_by"], "end");
}

/// A committed transaction ends with a marker that takes an offset but is
/// never delivered: a peek that waited for the offset before the high
/// watermark would wait out its timeout. It ends where the fetch found
/// the partition's end instead.
#[tokio::test]
async fn a_peek_ends_at_a_transaction_marker_without_waiting() {
    let mcp = server_with_tools(&["create_topic", "consume_messages", "fetch_offsets"]);
    let topic = new_topic(&mcp, "t-txn", 1).await;
    let t = topic.clone();
    tokio::task::spawn_blocking(move || {
        use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
        let producer: BaseProducer = Ground::get()
            .kafka_config()
            .set("transactional.id", unique_name("txn"))
            .create()
            .unwrap();
        producer.init_transactions(TIMEOUT).unwrap();
        producer.begin_transaction().unwrap();
        for i in 0..3 {
            producer
                .send(
                    BaseRecord::<str, str>::to(&t)
                        .key("k")
                        .payload(&format!("t{i}")),
                )
                .map_err(|(e, _)| e)
                .unwrap();
        }
        producer.commit_transaction(TIMEOUT).unwrap();
    })
    .await
    .unwrap();
    // The coordinator writes the marker after the commit returns.
    eventually("three records and the commit marker", || {
        let (mcp, topic) = (mcp.clone(), topic.clone());
        async move {
            let answer = ok(&mcp, "fetch_offsets", json!({"topic": topic})).await;
            (answer["partitions"][0]["latest"] == 4).then_some(())
        }
    })
    .await;
    for from in ["earliest", "latest"] {
        let got = ok(
            &mcp,
            "consume_messages",
            json!({"topic": topic, "from": from, "max_messages": 10, "timeout_ms": 10_000}),
        )
        .await;
        assert_eq!(values(&got), texts("t", 0..3), "from {from}");
        assert_eq!(got["stopped_by"], "end", "from {from}");
    }
}

/// A peek from earliest starts where its consumer last saw the log start,
/// without asking Kafka: after the head is deleted (as retention does) it
/// must read from the new log start, not from the end (librdkafka's default
/// reset) and not fail.
#[tokio::test]
async fn a_peek_from_earliest_after_the_head_is_deleted_reads_from_the_new_start() {
    let mcp = server_with_tools(&["create_topic", "consume_messages"]);
    let topic = new_topic(&mcp, "t-deleted-head", 1).await;
    produce(&topic, 10, |i| format!("v{i}")).await;
    let peek = json!({"topic": topic, "from": "earliest", "max_messages": 3});
    // One after the other, so each reuses the consumer the last one left.
    assert_eq!(
        values(&ok(&mcp, "consume_messages", peek.clone()).await),
        texts("v", 0..3)
    );
    let admin: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> =
        Ground::get().kafka_config().create().unwrap();
    let mut before = rdkafka::TopicPartitionList::new();
    before
        .add_partition_offset(&topic, 0, rdkafka::Offset::Offset(5))
        .unwrap();
    let deleted = admin
        .delete_records(&before, &rdkafka::admin::AdminOptions::new())
        .await
        .unwrap();
    assert_eq!(
        deleted.elements()[0].offset(),
        rdkafka::Offset::Offset(5),
        "{:?}",
        deleted.elements()[0].error()
    );
    let got = ok(&mcp, "consume_messages", peek).await;
    assert_eq!(
        values(&got),
        texts("v", 5..8),
        "stopped by {}",
        got["stopped_by"]
    );
    assert_eq!(got["messages"][0]["offset"], 5);
}

/// A peek from earliest or from a time looks no end offsets up: each
/// partition ends where its fetches find the end. An empty partition ends
/// with its first fetch (the "end" it reports), one with messages at the
/// last of them, so the peek stops by "end", not by its 10 s timeout.
#[tokio::test]
async fn a_peek_without_ends_looked_up_ends_empty_and_read_partitions() {
    let mcp = server_with_tools(&["create_topic", "consume_messages"]);
    let topic = new_topic(&mcp, "t-sparse", 3).await;
    let producer: FutureProducer = Ground::get().kafka_config().create().unwrap();
    for i in 0..4 {
        let v = format!("v{i}");
        producer
            .send(
                FutureRecord::<(), _>::to(&topic).partition(1).payload(&v),
                TIMEOUT,
            )
            .await
            .map_err(|(e, _)| e)
            .unwrap();
    }
    // Twice each: the second peek runs on the consumer the first left.
    for from in [
        json!({"from": "earliest"}),
        json!({"from": "earliest"}),
        json!({"from": "timestamp", "timestamp_ms": 0}),
        json!({"from": "timestamp", "timestamp_ms": 0}),
    ] {
        let mut peek = json!({"topic": topic, "max_messages": 10, "timeout_ms": 10_000});
        peek.as_object_mut()
            .unwrap()
            .extend(from.as_object().unwrap().clone());
        let got = ok(&mcp, "consume_messages", peek).await;
        assert_eq!(values(&got), texts("v", 0..4), "{from}");
        assert_eq!(got["stopped_by"], "end", "{from}");
    }
}

/// Message values of a consume_messages answer, as text.
fn values(answer: &Value) -> Vec<String> {
    answer["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["value"]["text"].as_str().unwrap_or("?").to_string())
        .collect()
}

fn texts(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{prefix}{i}")).collect()
}

#[tokio::test]
async fn peeks_on_reused_consumers_show_only_what_each_asked_for() {
    let mcp = server();
    let (a, b) = (
        new_topic(&mcp, "t-peek-a", 1).await,
        new_topic(&mcp, "t-peek-b", 1).await,
    );
    produce(&a, 50, |i| format!("a{i}")).await;
    produce(&b, 50, |i| format!("b{i}")).await;
    // Peek consumers are reused: no peek may show what an earlier one fetched.
    for _ in 0..3 {
        let first = ok(
            &mcp,
            "consume_messages",
            json!({"topic": a, "from": "earliest", "max_messages": 5}),
        )
        .await;
        assert_eq!(values(&first), texts("a", 0..5));
        let last = ok(
            &mcp,
            "consume_messages",
            json!({"topic": b, "from": "latest", "max_messages": 3}),
        )
        .await;
        assert_eq!(values(&last), texts("b", 47..50));
        let middle = ok(
            &mcp,
            "consume_messages",
            json!({"topic": a, "partition": 0, "from": "offset", "offset": 20, "max_messages": 4}),
        )
        .await;
        assert_eq!(values(&middle), texts("a", 20..24));
    }
    // And side by side: as many peeks at once as the server runs (8).
    let peeks = (0..8).map(|i| {
        let (mcp, topic, prefix) = (mcp.clone(), if i % 2 == 0 { a.clone() } else { b.clone() }, if i % 2 == 0 { "a" } else { "b" });
        async move {
            let got = ok(&mcp, "consume_messages", json!({"topic": topic, "partition": 0, "from": "offset", "offset": i * 5, "max_messages": 5})).await;
            assert_eq!(values(&got), texts(prefix, i * 5..i * 5 + 5), "peek {i}");
        }
    });
    futures::future::join_all(peeks).await;
}

#[tokio::test]
async fn a_peek_that_finds_every_consumer_busy_is_told_to_retry() {
    let mcp = server();
    let topic = new_topic(&mcp, "t-peek-busy", 1).await;
    produce(&topic, 3, |i| format!("m{i}")).await;
    // Hold every peek slot, as PEEK_CONSUMERS long peeks would.
    let kafka = Arc::clone(&mcp.runtime().kafka);
    let mut held = Vec::new();
    for _ in 0..mcp_kafka_sidecar::kafka::PEEK_CONSUMERS {
        held.push(kafka.peek_slot(Duration::from_secs(5)).await.unwrap());
    }
    let peek = json!({"topic": topic, "from": "earliest", "timeout_ms": 300});
    let busy = mcp
        .call("consume_messages", peek.clone())
        .await
        .expect_err("no consumer is free");
    assert_eq!(busy.code, ErrorCode::LimitExceeded, "{busy}");
    assert!(busy.retriable, "a busy server is worth retrying: {busy}");
    // A slot freed while the peek waits serves it, within its timeout_ms.
    let waiting = tokio::spawn({
        let (mcp, peek) = (
            mcp.clone(),
            json!({"topic": topic, "from": "earliest", "timeout_ms": 5000}),
        );
        async move { mcp.call("consume_messages", peek).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(held);
    let served = waiting
        .await
        .unwrap()
        .expect("served once a consumer is free");
    assert_eq!(values(&served), texts("m", 0..3));
}

#[tokio::test]
async fn cached_metadata_shows_own_changes_at_once_and_others_soon() {
    let cached = server_with(&["list_topics", "describe_topic", "create_topic"], 60_000);
    let uncached = server_with(&["list_topics"], 0);
    let names = |answer: Value| -> Vec<String> {
        answer["topics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_string())
            .collect()
    };
    ok(&cached, "list_topics", json!({})).await;

    // Another client makes a topic: a server without the cache lists it at
    // once; the cached one describes it at once (a topic it does not know
    // is asked for live) and lists it after its next refresh.
    let other = unique_name("t-other");
    let admin: rdkafka::admin::AdminClient<_> = Ground::get().kafka_config().create().unwrap();
    let new = rdkafka::admin::NewTopic::new(&other, 1, rdkafka::admin::TopicReplication::Fixed(1));
    admin
        .create_topics(&[new], &rdkafka::admin::AdminOptions::new())
        .await
        .unwrap()[0]
        .as_ref()
        .unwrap();
    eventually("the other client's topic in metadata", || async {
        topic_exists(&other).then_some(())
    })
    .await;
    assert!(
        names(ok(&uncached, "list_topics", json!({"name_contains": other})).await).contains(&other)
    );
    assert_eq!(
        ok(&cached, "describe_topic", json!({"topic": other})).await["partitions"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    eventually(
        "the other client's topic listed by the cached server",
        || {
            let (cached, other) = (cached.clone(), other.clone());
            async move {
                names(ok(&cached, "list_topics", json!({"name_contains": other})).await)
                    .contains(&other)
                    .then_some(())
            }
        },
    )
    .await;

    // This server's own change drops the cache: listed by the very next call.
    ok(&cached, "list_topics", json!({})).await;
    let own = unique_name("t-own");
    ok(
        &cached,
        "create_topic",
        json!({"topic": own, "partitions": 2}),
    )
    .await;
    let listed = ok(&cached, "list_topics", json!({"name_contains": own})).await;
    assert_eq!(listed["topics"][0]["partitions"], 2, "{listed}");
}

#[tokio::test]
async fn groups_lag_reset_and_delete_follow_the_real_group() {
    let mcp = server();
    let topic = new_topic(&mcp, "t-group", 2).await;
    let group = unique_name("g");
    produce(&topic, 100, |i| format!("m{i}")).await;

    // A real consumer reads 100 messages and commits, then stays in the group.
    let consumer = Ground::get().group_consumer(&group, &topic);
    read_and_commit(&consumer, 100);
    produce(&topic, 30, |i| format!("late{i}")).await;

    let lag = ok(
        &mcp,
        "get_consumer_lag",
        json!({"group_id": group, "topic": topic}),
    )
    .await;
    assert_eq!(lag["total_lag"], 30, "{lag}");
    let all_topics = ok(&mcp, "get_consumer_lag", json!({"group_id": group})).await;
    assert_eq!(all_topics["total_lag"], 30);

    let listed = ok(&mcp, "list_groups", json!({"name_contains": group})).await;
    assert_eq!(listed["groups"][0]["group_id"], group.as_str());
    assert_eq!(listed["groups"][0]["type"], "classic", "{listed}");
    let described = ok(&mcp, "describe_group", json!({"group_id": group})).await;
    assert_eq!(described["state"], "Stable");
    assert_eq!(described["type"], "classic", "{described}");
    let assigned: usize = described["members"][0]["assignment"][&topic]
        .as_array()
        .map_or(0, Vec::len);
    assert_eq!(assigned, 2, "{described}");

    // While the consumer is a member, resets and deletes are refused.
    let reset = json!({"group_id": group, "topic": topic, "to": "earliest"});
    assert_eq!(
        err(&mcp, "reset_group_offsets", reset.clone()).await,
        ErrorCode::Conflict
    );
    assert_eq!(
        err(&mcp, "delete_group", json!({"group_id": group})).await,
        ErrorCode::Conflict
    );
    consumer.unsubscribe();
    drop(consumer);
    eventually("the group to become empty", || {
        let (mcp, group) = (mcp.clone(), group.clone());
        async move {
            (mcp.call("describe_group", json!({"group_id": group}))
                .await
                .ok()?["state"]
                == "Empty")
                .then_some(())
        }
    })
    .await;

    let dry = ok(
        &mcp,
        "reset_group_offsets",
        json!({"group_id": group, "topic": topic, "to": "earliest", "dry_run": true}),
    )
    .await;
    assert!(
        dry["partitions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["after"] == 0)
    );
    assert_eq!(
        ok(
            &mcp,
            "get_consumer_lag",
            json!({"group_id": group, "topic": topic})
        )
        .await["total_lag"],
        30
    );
    ok(&mcp, "reset_group_offsets", reset).await;
    assert_eq!(
        ok(
            &mcp,
            "get_consumer_lag",
            json!({"group_id": group, "topic": topic})
        )
        .await["total_lag"],
        130
    );
    ok(
        &mcp,
        "reset_group_offsets",
        json!({"group_id": group, "topic": topic, "partition": 0, "to": "offset", "offset": 10}),
    )
    .await;
    let lag = ok(
        &mcp,
        "get_consumer_lag",
        json!({"group_id": group, "topic": topic}),
    )
    .await;
    let p0 = lag["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["partition"] == 0)
        .unwrap()
        .clone();
    assert_eq!(p0["committed_offset"], 10);
    assert_eq!(
        err(
            &mcp,
            "reset_group_offsets",
            json!({"group_id": group, "topic": topic, "to": "timestamp"})
        )
        .await,
        ErrorCode::InvalidArgument
    );

    ok(
        &mcp,
        "delete_group",
        json!({"group_id": group, "dry_run": true}),
    )
    .await;
    ok(&mcp, "delete_group", json!({"group_id": group})).await;
    assert_eq!(
        err(&mcp, "describe_group", json!({"group_id": group})).await,
        ErrorCode::NotFound
    );
    assert_eq!(
        err(&mcp, "delete_group", json!({"group_id": group})).await,
        ErrorCode::NotFound
    );
}

/// A member of Kafka 4's consumer group protocol (KIP-848): the broker
/// assigns its partitions, and the classic DescribeGroups does not see it.
#[tokio::test]
async fn a_group_of_the_consumer_protocol_is_seen_with_its_member_and_guarded() {
    let mcp = server();
    let topic = new_topic(&mcp, "t-kip848", 2).await;
    let group = unique_name("g-kip848");
    let client_id = unique_name("kip848-member");
    produce(&topic, 20, |i| format!("m{i}")).await;

    let consumer: BaseConsumer = Ground::get()
        .kafka_config()
        .set("group.id", &group)
        .set("group.protocol", "consumer")
        .set("client.id", &client_id)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("a consumer of the consumer group protocol");
    consumer.subscribe(&[&topic]).expect("subscribe");
    read_and_commit(&consumer, 20);
    produce(&topic, 7, |i| format!("late{i}")).await;

    // Both partitions are this member's once the broker's assignment is
    // reconciled (it read from both already: this is quick).
    let described = eventually("the member with both partitions", || {
        let (mcp, group) = (mcp.clone(), group.clone());
        let topic = topic.clone();
        async move {
            let d = mcp
                .call("describe_group", json!({"group_id": group}))
                .await
                .ok()?;
            (d["members"][0]["assignment"][&topic] == json!([0, 1])).then_some(d)
        }
    })
    .await;
    assert_eq!(described["type"], "consumer", "{described}");
    assert_eq!(described["protocol_type"], "consumer", "{described}");
    let state = described["state"].as_str().unwrap_or_default();
    assert!(!["Empty", "Dead"].contains(&state), "{described}");
    let members = described["members"].as_array().unwrap();
    assert_eq!(members.len(), 1, "{described}");
    assert_eq!(members[0]["client_id"], client_id.as_str(), "{described}");
    assert!(
        !members[0]["member_id"]
            .as_str()
            .unwrap_or_default()
            .is_empty(),
        "{described}"
    );

    let listed = ok(&mcp, "list_groups", json!({"name_contains": group})).await;
    assert_eq!(listed["total"], 1, "{listed}");
    assert_eq!(listed["groups"][0]["group_id"], group.as_str());
    assert_eq!(listed["groups"][0]["type"], "consumer", "{listed}");
    let listed_state = listed["groups"][0]["state"].as_str().unwrap_or_default();
    assert!(!["Empty", "Dead"].contains(&listed_state), "{listed}");

    let lag = json!({"group_id": group, "topic": topic});
    assert_eq!(
        ok(&mcp, "get_consumer_lag", lag.clone()).await["total_lag"],
        7
    );

    // While it is a member, a reset (planned or not) and a delete are refused
    // before anything changes.
    let reset = json!({"group_id": group, "topic": topic, "to": "earliest"});
    let mut dry = reset.clone();
    dry["dry_run"] = json!(true);
    assert_eq!(
        err(&mcp, "reset_group_offsets", dry).await,
        ErrorCode::Conflict
    );
    assert_eq!(
        err(&mcp, "reset_group_offsets", reset.clone()).await,
        ErrorCode::Conflict
    );
    assert_eq!(
        err(&mcp, "delete_group", json!({"group_id": group})).await,
        ErrorCode::Conflict
    );
    assert_eq!(
        ok(&mcp, "get_consumer_lag", lag.clone()).await["total_lag"],
        7
    );

    consumer.unsubscribe();
    drop(consumer);
    eventually("the group to become empty", || {
        let (mcp, group) = (mcp.clone(), group.clone());
        async move {
            let d = mcp
                .call("describe_group", json!({"group_id": group}))
                .await
                .ok()?;
            (d["state"] == "Empty" && d["type"] == "consumer").then_some(())
        }
    })
    .await;
    ok(&mcp, "reset_group_offsets", reset).await;
    assert_eq!(ok(&mcp, "get_consumer_lag", lag).await["total_lag"], 27);
    ok(&mcp, "delete_group", json!({"group_id": group})).await;
    assert_eq!(
        err(&mcp, "describe_group", json!({"group_id": group})).await,
        ErrorCode::NotFound
    );
}

#[tokio::test]
async fn delete_topic_dry_run_reports_then_deletes() {
    let mcp = server();
    let topic = new_topic(&mcp, "t-delete", 2).await;
    produce(&topic, 5, |i| format!("m{i}")).await;
    let dry = ok(
        &mcp,
        "delete_topic",
        json!({"topic": topic, "dry_run": true}),
    )
    .await;
    assert_eq!(
        (
            dry["partitions"].as_u64(),
            dry["retained_messages"].as_i64()
        ),
        (Some(2), Some(5))
    );
    assert!(topic_exists(&topic), "a dry run deleted the topic");
    ok(&mcp, "delete_topic", json!({"topic": topic})).await;
    eventually("the topic to disappear", || async {
        (!topic_exists(&topic)).then_some(())
    })
    .await;
    assert_eq!(
        err(&mcp, "delete_topic", json!({"topic": topic})).await,
        ErrorCode::NotFound
    );
}

#[tokio::test]
async fn tools_not_enabled_are_not_callable() {
    let mcp = server_with_tools(&["list_topics"]);
    assert_eq!(
        err(&mcp, "create_topic", json!({"topic": "x", "partitions": 1})).await,
        ErrorCode::NotFound
    );
    assert_eq!(
        err(&mcp, "no_such_tool", json!({})).await,
        ErrorCode::NotFound
    );
    ok(&mcp, "list_topics", json!({})).await;
}

/// What Kafka holds that a bad call could change, of what one test owns
/// (sibling tests create and delete their own topics meanwhile): which of
/// the topics it names, or whose names start with its topic's, exist and
/// with how many partitions; its topic's configs and offsets; its group's
/// committed offsets on its topic.
async fn kafka_state(
    mcp: &KafkaMcp,
    topic: &str,
    named: &std::collections::BTreeSet<String>,
    group: &str,
) -> Value {
    let admin: rdkafka::admin::AdminClient<_> = Ground::get().kafka_config().create().unwrap();
    let md = admin.inner().fetch_metadata(None, TIMEOUT).unwrap();
    let derived = format!("{topic}-");
    let topics: std::collections::BTreeMap<String, usize> = md
        .topics()
        .iter()
        .filter(|t| t.name() == topic || t.name().starts_with(&derived) || named.contains(t.name()))
        .map(|t| (t.name().to_string(), t.partitions().len()))
        .collect();
    assert!(topics.contains_key(topic), "{topic} is not in {topics:?}");
    let lag = json!({"group_id": group, "topic": topic});
    let group_offsets = match mcp.call("get_consumer_lag", lag).await {
        Ok(lag) => lag,
        Err(e) => json!(e.code.as_str()),
    };
    json!({
        "topics": topics,
        "configs": ok(mcp, "describe_configs", json!({"resource_type": "topic", "name": topic})).await,
        "offsets": ok(mcp, "fetch_offsets", json!({"topic": topic})).await,
        "group_offsets": group_offsets,
    })
}

#[tokio::test]
async fn malicious_arguments_get_typed_errors_and_leave_kafka_unchanged() {
    let mcp = server();
    let topic = new_topic(&mcp, "t-evil", 2).await;
    produce(&topic, 3, |i| format!("m{i}")).await;
    // Names a refused call would create start with the test topic's, so
    // that no other test (nor another run of this one) makes or removes them.
    let name = |suffix: &str| format!("{topic}-{suffix}");
    let group = format!("g-{topic}");
    let one_mib = "k".repeat(1 << 20);
    let far_future = 253_402_300_800_000i64; // 9999-12-31
    use ErrorCode::{InvalidArgument as Invalid, LimitExceeded as Limit, NotFound};
    let cases: Vec<(&str, Value, ErrorCode)> = vec![
        // Names with path and control characters, or past Kafka's length.
        (
            "create_topic",
            json!({"topic": "../../etc/passwd", "partitions": 1}),
            Invalid,
        ),
        (
            "create_topic",
            json!({"topic": "evil\u{0}name", "partitions": 1}),
            Invalid,
        ),
        (
            "create_topic",
            json!({"topic": "line\nbreak", "partitions": 1}),
            Invalid,
        ),
        (
            "create_topic",
            json!({"topic": "..", "partitions": 1}),
            Invalid,
        ),
        (
            "create_topic",
            json!({"topic": "x".repeat(250), "partitions": 1}),
            Invalid,
        ),
        (
            "describe_topic",
            json!({"topic": "%2e%2e/\u{1b}[31m"}),
            Invalid,
        ),
        ("delete_topic", json!({"topic": "*"}), Invalid),
        ("delete_group", json!({"group_id": "g\u{7}bell"}), Invalid),
        // Negative and huge counts.
        (
            "create_topic",
            json!({"topic": name("neg"), "partitions": -1}),
            Invalid,
        ),
        (
            "create_topic",
            json!({"topic": name("huge"), "partitions": 4_294_967_296i64}),
            Invalid,
        ),
        (
            "create_topic",
            json!({"topic": name("rf"), "partitions": 1, "replication_factor": 1000}),
            Invalid,
        ),
        (
            "create_partitions",
            json!({"topic": topic, "total": -5}),
            Invalid,
        ),
        (
            "create_partitions",
            json!({"topic": topic, "total": 1_099_511_627_776i64}),
            Invalid,
        ),
        ("list_topics", json!({"limit": 1_000_000_000_000i64}), Limit),
        ("list_topics", json!({"limit": -1}), Invalid),
        (
            "consume_messages",
            json!({"topic": topic, "max_messages": -3}),
            Invalid,
        ),
        (
            "consume_messages",
            json!({"topic": topic, "max_bytes": 1_000_000_000_000i64}),
            Limit,
        ),
        (
            "consume_messages",
            json!({"topic": topic, "partition": -1}),
            NotFound,
        ),
        (
            "consume_messages",
            json!({"topic": topic, "from": "offset", "partition": 0, "offset": -7}),
            Invalid,
        ),
        (
            "consume_messages",
            json!({"topic": topic, "from": "timestamp", "timestamp_ms": -1}),
            Invalid,
        ),
        (
            "fetch_offsets",
            json!({"topic": topic, "partition": 2_147_483_647}),
            NotFound,
        ),
        (
            "reset_group_offsets",
            json!({"group_id": group, "topic": topic, "to": "offset", "offset": -5}),
            Invalid,
        ),
        // Configs Kafka would reject: refused, nothing half-applied.
        (
            "create_topic",
            json!({"topic": name("cfg"), "partitions": 1, "configs": {"retention.ms": "forever"}}),
            Invalid,
        ),
        (
            "create_topic",
            json!({"topic": name("cfg2"), "partitions": 1, "configs": {"no.such.config": "1"}}),
            Invalid,
        ),
        (
            "update_topic_config",
            json!({"topic": topic, "set": {"cleanup.policy": "explode"}}),
            Invalid,
        ),
        (
            "update_topic_config",
            json!({"topic": topic, "set": {"retention.ms": "1000", "min.insync.replicas": "-4"}}),
            Invalid,
        ),
        // A 1 MiB key (with its value, past the publish cap).
        (
            "publish_message",
            json!({"topic": topic, "key": one_mib, "value": "v"}),
            Limit,
        ),
        // Wrong types and unknown fields.
        (
            "create_topic",
            json!({"topic": ["a"], "partitions": 1}),
            Invalid,
        ),
        (
            "describe_topic",
            json!({"topic": "t", "sneaky": true}),
            Invalid,
        ),
    ];
    let named = cases
        .iter()
        .filter_map(|(_, args, _)| args["topic"].as_str().map(str::to_string))
        .collect();
    let before = kafka_state(&mcp, &topic, &named, &group).await;
    let mut wrong = Vec::new();
    for (tool, args, expected) in &cases {
        match mcp.call(tool, args.clone()).await {
            Err(e) if e.code == *expected && !e.message.is_empty() => {}
            other => wrong.push(format!(
                "{tool}({}): {:?}, expected {expected:?}",
                &args.to_string()[..args.to_string().len().min(120)],
                other.map(|_| "ok")
            )),
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // A timestamp far in the future is not an error: nothing is that new.
    let future = ok(
        &mcp,
        "consume_messages",
        json!({"topic": topic, "from": "timestamp", "timestamp_ms": far_future}),
    )
    .await;
    assert_eq!(future["messages"], json!([]));
    let at = ok(
        &mcp,
        "fetch_offsets",
        json!({"topic": topic, "timestamp_ms": far_future}),
    )
    .await;
    assert!(
        at["partitions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["at_timestamp"] == p["latest"]),
        "{at}"
    );
    assert_eq!(
        kafka_state(&mcp, &topic, &named, &group).await,
        before,
        "a refused call changed Kafka"
    );
}

/// What `kafka`'s clients sent, as `role`'s statistics emitted after this
/// call say: every request `role` sent before the call is counted (the
/// call serves what was queued, and waits for the next emission).
async fn sent_from_now(kafka: &Kafka, role: ClientRole) -> RequestsSent {
    let seen = kafka.requests_sent().statistics(role);
    eventually("the next statistics", || async {
        let now = kafka.requests_sent();
        (now.statistics(role) > seen).then_some(now)
    })
    .await
}

/// `role`'s requests of `api` while `calls` ran, and what `calls` answered.
async fn requests_during<T>(
    kafka: &Kafka,
    role: ClientRole,
    api: &str,
    calls: impl std::future::Future<Output = T>,
) -> (u64, T) {
    let before = sent_from_now(kafka, role).await;
    let answer = calls.await;
    let after = sent_from_now(kafka, role).await;
    (
        after.requests(role, api) - before.requests(role, api),
        answer,
    )
}

#[tokio::test]
async fn fetch_offsets_asks_two_list_offsets_per_leader_not_two_per_partition() {
    let (mcp, kafka) = server_without_probe(
        &["create_topic", "describe_topic", "fetch_offsets"],
        mcp_kafka_sidecar::config::KafkaConfig::default_metadata_max_age_ms(),
    );
    let topic = new_topic(&mcp, "t-offsets-cost", 6).await;
    produce(&topic, 12, |i| format!("m{i}")).await;
    // The first lookup of a new topic finds its leaders, and may ask again
    // while the broker takes them up: not what is measured here.
    ok(&mcp, "fetch_offsets", json!({"topic": topic})).await;
    let described = ok(&mcp, "describe_topic", json!({"topic": topic})).await;
    let leaders: std::collections::BTreeSet<i64> = described["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["leader"].as_i64().unwrap())
        .collect();
    assert!(
        leaders.len() < 6,
        "one leader per partition: nothing to show"
    );

    let (list_offsets, offsets) = requests_during(
        &kafka,
        ClientRole::Lookup,
        "ListOffsets",
        ok(&mcp, "fetch_offsets", json!({"topic": topic})),
    )
    .await;
    let partitions = offsets["partitions"].as_array().unwrap();
    assert_eq!(partitions.len(), 6);
    let retained: i64 = partitions
        .iter()
        .map(|p| p["latest"].as_i64().unwrap() - p["earliest"].as_i64().unwrap())
        .sum();
    assert_eq!(retained, 12, "{offsets}");
    // Earliest and latest: one request each per leader (the ground's one
    // broker leads all six), where asking per partition would make 12.
    assert_eq!(
        list_offsets,
        2 * leaders.len() as u64,
        "ListOffsets requests for 6 partitions on {} leader(s)",
        leaders.len()
    );
}

#[tokio::test]
async fn concurrent_metadata_misses_cost_one_request_and_uncached_calls_one_each() {
    const CALLS: usize = 8;
    let default_max_age = mcp_kafka_sidecar::config::KafkaConfig::default_metadata_max_age_ms();
    let (cached, cached_kafka) = server_without_probe(&["list_topics"], default_max_age);
    let (uncached, uncached_kafka) = server_without_probe(&["list_topics"], 0);
    // A first call connects (librdkafka asks for metadata of its own on
    // each new connection): not what is measured here.
    ok(&cached, "list_topics", json!({"limit": 1})).await;
    ok(&uncached, "list_topics", json!({"limit": 1})).await;

    let burst = |mcp: KafkaMcp, kafka: Arc<Kafka>| async move {
        let calls = async {
            // A cold cache: every call misses.
            kafka.forget_metadata();
            let calls = (0..CALLS).map(|_| ok(&mcp, "list_topics", json!({"limit": 1})));
            futures::future::join_all(calls).await
        };
        let (metadata, answers) =
            requests_during(&kafka, ClientRole::Admin, "Metadata", calls).await;
        assert!(answers.iter().all(|a| a["total"].as_u64() > Some(0)));
        metadata
    };
    let (shared, each) = tokio::join!(
        burst(cached.clone(), cached_kafka),
        burst(uncached.clone(), uncached_kafka)
    );
    // Without a cache the same burst asks once a call: what is counted is
    // every request.
    assert_eq!(
        each, CALLS as u64,
        "Metadata requests of {CALLS} uncached calls"
    );
    assert_eq!(shared, 1, "Metadata requests of {CALLS} concurrent misses");
}
