//! `cluster_metrics` against the test ground's real broker, its real JMX
//! exporter and the real Prometheus that scrapes it: a known load shows in
//! the rates within a stated tolerance, an idle topic is labelled missing,
//! bounds hold, and a stopped (or silent) Prometheus is a typed error
//! within the timeout that other tools do not feel.
//!
//! One test drives the live checks in order, because one of them stops the
//! ground's Prometheus and would fail any other query running meanwhile.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mcp_kafka_sidecar::config::SidecarConfig;
use mcp_kafka_sidecar::error::ErrorCode;
use mcp_kafka_sidecar::metrics::Metrics;
use mcp_kafka_sidecar::server::{KafkaMcp, Runtime};
use mcpk_e2e::{Ground, eventually, unique_name};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{Value, json};

/// The load: RATE messages of VALUE_BYTES a second, for LOAD_SECONDS.
const RATE: u64 = 200;
const VALUE_BYTES: usize = 1000;
const LOAD_SECONDS: u64 = 45;
/// Rates over 30 s of 5 s scrapes are extrapolated from 6 or 7 samples,
/// and bytes in counts record and batch overhead too: within 25%.
const TOLERANCE: f64 = 0.25;
const TIMEOUT_MS: u64 = 2000;

fn prometheus_url() -> String {
    Ground::get().prometheus_url.clone().unwrap_or_else(|| {
        panic!("the test ground has no Prometheus (PROMETHEUS_URL); restart it with this checkout's `e2e/stack up`")
    })
}

fn server(url: &str, scope: &str) -> KafkaMcp {
    let text = format!(
        "server: {{name: metrics-test, environment: dev}}\nlisten: {{address: '127.0.0.1:8090'}}\nauth: {{mode: none}}\nkafka: {{bootstrapServers: ['{}'], requestTimeoutMs: 5000}}\ntools: [cluster_metrics, list_topics, create_topic]\nlimits: {{callsPerSecond: 1000000, callBurst: 1000000}}\nmetrics: {{prometheus: {{url: '{url}', timeoutMs: {TIMEOUT_MS}, selector: 'job=\"kafka\"'}}}}\n{scope}",
        Ground::get().kafka_bootstrap_servers,
    );
    let config = SidecarConfig::parse(&text).expect("test config");
    KafkaMcp::new(
        Runtime::start(config, None).expect("runtime"),
        Arc::new(Metrics::new()),
    )
}

async fn ok(mcp: &KafkaMcp, tool: &str, args: Value) -> Value {
    match mcp.call(tool, args.clone()).await {
        Ok(v) => v,
        Err(e) => panic!("{tool}({args}) failed: {e}"),
    }
}

fn value(figure: &Value) -> f64 {
    figure["value"]
        .as_f64()
        .unwrap_or_else(|| panic!("no value: {figure}"))
}

fn within(what: &str, got: f64, expected: f64) {
    let low = expected * (1.0 - TOLERANCE);
    let high = expected * (1.0 + TOLERANCE);
    assert!(
        (low..=high).contains(&got),
        "{what}: {got:.1} is outside {low:.1}..{high:.1} (expected {expected:.1} ± {TOLERANCE})"
    );
}

/// `e2e/stack prometheus stop|start` on this ground.
fn stack_prometheus(action: &str) {
    let g = Ground::get();
    let port = |url: &Option<String>| -> String {
        let url = url.as_deref().expect("the ground's metrics URLs");
        let rest = url.rsplit_once(':').expect("a port").1;
        rest.split('/').next().unwrap_or_default().to_string()
    };
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../e2e/stack");
    let status = Command::new(script)
        .args(["prometheus", action])
        .env(
            "MCPK_STATE_DIR",
            g.stack_dir.as_ref().expect("MCPK_STACK_DIR"),
        )
        .env("MCPK_PROMETHEUS_PORT", port(&g.prometheus_url))
        .env("MCPK_KAFKA_EXPORTER_PORT", port(&g.kafka_exporter_url))
        .status()
        .expect("running e2e/stack");
    assert!(status.success(), "e2e/stack prometheus {action}");
}

/// Produces RATE messages a second to `topic` for LOAD_SECONDS while a
/// consumer reads it (so that FetchConsumer requests are measured too).
async fn load(topic: String) -> u64 {
    let producer: FutureProducer = Ground::get()
        .kafka_config()
        .set("linger.ms", "5")
        .create()
        .unwrap();
    let consumer: BaseConsumer = Ground::get()
        .kafka_config()
        .set("group.id", unique_name("metrics-load"))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&[&topic]).unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reading = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = consumer.poll(Duration::from_millis(100));
            }
        })
    };
    let payload = vec![b'x'; VALUE_BYTES];
    let started = Instant::now();
    let mut sent = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    while started.elapsed() < Duration::from_secs(LOAD_SECONDS) {
        tick.tick().await;
        let due = (started.elapsed().as_secs_f64() * RATE as f64) as u64;
        let sends: Vec<_> = (sent..due)
            .map(|_| {
                producer.send(
                    FutureRecord::<(), _>::to(&topic).payload(&payload),
                    Duration::from_secs(10),
                )
            })
            .collect();
        for s in futures::future::join_all(sends).await {
            s.map_err(|(e, _)| e).unwrap();
        }
        sent = due;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    reading.join().unwrap();
    sent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_metrics_on_the_real_prometheus() {
    let url = prometheus_url();
    let prefix = unique_name("metrics");
    let scope =
        format!("scope: {{topics: {{allow: [{{name: '{prefix}', patternType: prefix}}]}}}}\n");
    let mcp = server(&url, "");
    let loaded = format!("{prefix}.loaded");
    let idle = format!("{prefix}.idle");
    for topic in [&loaded, &idle] {
        ok(
            &mcp,
            "create_topic",
            json!({"topic": topic, "partitions": 1}),
        )
        .await;
    }

    // A known load: 200 messages/s of 1000 bytes. Measured over the last
    // 30 s while it still runs (a steady state, whole scrapes in the window).
    let load = tokio::spawn(load(loaded.clone()));
    tokio::time::sleep(Duration::from_secs(LOAD_SECONDS - 5)).await;
    let during = ok(
        &mcp,
        "cluster_metrics",
        json!({"window": "30s", "topic": loaded}),
    )
    .await;
    let busiest = ok(&mcp, "cluster_metrics", json!({"window": "30s", "top": 5})).await;
    let sent = load.await.unwrap();
    assert!(sent >= RATE * (LOAD_SECONDS - 1), "the load ran: {sent}");
    println!(
        "cluster_metrics for {loaded}: {}",
        serde_json::to_string_pretty(&during).unwrap()
    );

    assert_eq!(during["source"], "prometheus");
    assert_eq!(during["window_seconds"], 30);
    let topic = &during["topics"][0];
    assert_eq!(topic["topic"], loaded.as_str());
    let per_record = VALUE_BYTES as f64;
    within(
        "topic messages in/s",
        value(&topic["messages_in_per_sec"]),
        RATE as f64,
    );
    within(
        "topic bytes in/s",
        value(&topic["bytes_in_per_sec"]),
        RATE as f64 * per_record,
    );
    assert_eq!(topic["bytes_in_per_sec"]["unit"], "bytes/s");
    assert!(
        topic["bytes_in_per_sec"]["query"]
            .as_str()
            .unwrap()
            .contains(&format!("topic=\"{loaded}\"")),
        "{topic}"
    );
    // The consumer read it back: bytes out too.
    assert!(value(&topic["bytes_out_per_sec"]) > 0.0, "{topic}");
    // This ground runs no other load: the cluster is this topic, within
    // the same tolerance.
    let cluster = &during["cluster"];
    within(
        "cluster messages in/s",
        value(&cluster["messages_in_per_sec"]),
        RATE as f64,
    );
    within(
        "cluster bytes in/s",
        value(&cluster["bytes_in_per_sec"]),
        RATE as f64 * per_record,
    );
    assert!(value(&cluster["produce_requests_per_sec"]) > 0.0);
    assert!(value(&cluster["fetch_consumer_requests_per_sec"]) > 0.0);
    assert_eq!(value(&cluster["under_replicated_partitions"]), 0.0);
    assert_eq!(value(&cluster["offline_partitions"]), 0.0);
    assert_eq!(value(&cluster["active_controllers"]), 1.0);
    assert_eq!(value(&cluster["failed_produce_requests_per_sec"]), 0.0);
    for latency in ["produce_p99_ms", "fetch_consumer_p99_ms"] {
        assert!(
            value(&cluster[latency]) > 0.0,
            "{latency}: {}",
            cluster[latency]
        );
        assert!(cluster[latency]["unit"].as_str().unwrap().starts_with("ms"));
    }
    for idle_ratio in ["request_handler_idle_ratio", "network_processor_idle_ratio"] {
        assert!(value(&cluster[idle_ratio]) > 0.0, "{idle_ratio}");
    }
    assert!(
        cluster["bytes_in_per_sec"]["query"]
            .as_str()
            .unwrap()
            .contains("job=\"kafka\""),
        "the configured selector is in every query"
    );
    // One broker, with the same figures.
    let brokers = during["brokers"].as_array().unwrap();
    assert_eq!(brokers.len(), 1, "{brokers:?}");
    within(
        "broker messages in/s",
        value(&brokers[0]["figures"]["messages_in_per_sec"]),
        RATE as f64,
    );
    assert!(
        during["broker_queries"]["bytes_in_per_sec"]["query"]
            .as_str()
            .unwrap()
            .starts_with("sum by (instance)")
    );
    // The busiest topic is the loaded one.
    assert_eq!(busiest["topics"][0]["topic"], loaded.as_str(), "{busiest}");

    // An idle topic (never written) has no series: missing, labelled, not 0.
    let quiet = ok(
        &mcp,
        "cluster_metrics",
        json!({"window": "1m", "topic": idle}),
    )
    .await;
    let figure = &quiet["topics"][0]["bytes_in_per_sec"];
    assert!(figure["value"].is_null(), "{figure}");
    assert!(
        figure["missing"]
            .as_str()
            .unwrap()
            .contains("no series for topic"),
        "{figure}"
    );

    // With a scope, the topic list shows only topics in it.
    let scoped = server(&url, &scope);
    let listed = ok(
        &scoped,
        "cluster_metrics",
        json!({"window": "5m", "top": 50}),
    )
    .await;
    assert_eq!(listed["scoped"], true);
    let names: Vec<&str> = listed["topics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["topic"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        vec![loaded.as_str()],
        "only in-scope topics with series"
    );
    let outside = scoped
        .call("cluster_metrics", json!({"topic": "someone-else.orders"}))
        .await
        .unwrap_err();
    assert_eq!(outside.code, ErrorCode::PermissionDenied, "{outside}");

    // A ten-year window is refused before Prometheus is asked.
    let e = mcp
        .call("cluster_metrics", json!({"window": "3650d"}))
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidArgument, "{e}");

    // Prometheus stopped: a typed, retriable error within the timeout;
    // other tools answer as before; back when Prometheus is.
    stack_prometheus("stop");
    let asked = Instant::now();
    let e = mcp.call("cluster_metrics", json!({})).await.unwrap_err();
    let took = asked.elapsed();
    let other_tool = mcp.call("list_topics", json!({})).await;
    stack_prometheus_guarded_start(|| {
        assert_eq!(e.code, ErrorCode::MetricsUnavailable, "{e}");
        assert!(e.retriable, "{e}");
        assert!(took <= Duration::from_millis(TIMEOUT_MS + 1000), "{took:?}");
        assert!(
            other_tool.is_ok(),
            "list_topics without Prometheus: {other_tool:?}"
        );
    });
    println!("stopped Prometheus: {e} (after {took:?})");
    let back = eventually("cluster_metrics after Prometheus is back", || {
        let mcp = mcp.clone();
        async move {
            mcp.call("cluster_metrics", json!({"window": "5m"}))
                .await
                .ok()
        }
    })
    .await;
    assert!(
        value(&back["cluster"]["active_controllers"]) == 1.0,
        "{back}"
    );
}

/// Starts Prometheus again before the checks of a stopped one run, so that a
/// failed check does not leave the ground without it.
fn stack_prometheus_guarded_start(checks: impl FnOnce()) {
    stack_prometheus("start");
    checks();
}

/// A Prometheus that accepts connections and never answers (a hung
/// server): the call ends at the configured timeout with the typed error.
#[tokio::test]
async fn a_silent_prometheus_times_out_with_the_typed_error() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            open.push(socket);
        }
    });
    let mcp = server(&format!("http://{addr}"), "");
    let asked = Instant::now();
    let e = mcp.call("cluster_metrics", json!({})).await.unwrap_err();
    let took = asked.elapsed();
    held.abort();
    assert_eq!(e.code, ErrorCode::MetricsUnavailable, "{e}");
    assert!(e.retriable);
    assert!(e.message.contains("within 2000 ms"), "{e}");
    assert!(
        took >= Duration::from_millis(TIMEOUT_MS)
            && took <= Duration::from_millis(TIMEOUT_MS + 1000),
        "{took:?}"
    );
}
