//! Tool calls as Kafka jobs (`e2e/bench SECONDS jobs`): from submit to
//! reply through the sidecar's job worker, next to the same tool over MCP
//! HTTP and to the floor of one produce and one fetch round trip on the
//! same broker; then the job path's throughput with 1, 2 and 3 sidecars in
//! the group. Both clients are this process: an rdkafka producer (acks=all,
//! no linger) and a consumer assigned to every reply partition, both with
//! TCP_NODELAY as the sidecar has it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::{Value, json};
use tokio::sync::oneshot;

use super::{
    Args, Figures, Launch, Protocol, Ready, Sidecar, get_once, in_server_seconds, mcp_calls,
    mean_ms_since, measure, start_sidecar,
};

const PARTITIONS: i32 = 6;
/// The tool both paths call: one metadata request and one ListOffsets, as
/// the main table's `describe_topic`.
const TOOL: &str = "describe_topic";
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

struct Topics {
    requests: String,
    replies: String,
    dead_letters: String,
    journal: String,
    /// For the floor: records produced here are fetched back by the same
    /// kind of consumer the replies are.
    ping: String,
}

impl Topics {
    fn new() -> Self {
        let tag = format!("bench-jobs-{}", std::process::id());
        Self {
            requests: format!("{tag}-requests"),
            replies: format!("{tag}-replies"),
            dead_letters: format!("{tag}-dead"),
            journal: format!("{tag}-journal"),
            ping: format!("{tag}-ping"),
        }
    }

    fn all(&self) -> [&str; 5] {
        [
            &self.requests,
            &self.replies,
            &self.dead_letters,
            &self.journal,
            &self.ping,
        ]
    }

    async fn create(&self, admin: &AdminClient<DefaultClientContext>) {
        fn new(name: &str) -> NewTopic<'_> {
            NewTopic::new(name, PARTITIONS, TopicReplication::Fixed(1))
        }
        let journal = new(&self.journal)
            .set("cleanup.policy", "compact,delete")
            .set("retention.ms", "86400000");
        let topics = [
            new(&self.requests),
            new(&self.replies),
            new(&self.dead_letters),
            journal,
            new(&self.ping),
        ];
        for created in admin
            .create_topics(&topics, &AdminOptions::new())
            .await
            .expect("create the job topics")
        {
            created.expect("a job topic");
        }
    }
}

/// Records of a topic by the jobId in their value, handed to whoever waits
/// for that id.
#[derive(Clone, Default)]
struct Waiting(Arc<Mutex<HashMap<String, oneshot::Sender<Value>>>>);

impl Waiting {
    fn expect(&self, id: &str) -> oneshot::Receiver<Value> {
        let (tx, rx) = oneshot::channel();
        self.0.lock().expect("waiting").insert(id.to_string(), tx);
        rx
    }

    /// A consumer of every partition of `topic` from its end, dispatching
    /// each record to its waiter.
    fn listen(&self, bootstrap: &str, topic: &str) {
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", format!("{topic}-reader"))
            .set("enable.auto.commit", "false")
            .set("socket.nagle.disable", "true")
            .create()
            .expect("reply consumer");
        let mut assignment = TopicPartitionList::new();
        for p in 0..PARTITIONS {
            assignment
                .add_partition_offset(topic, p, Offset::End)
                .expect("assignment");
        }
        consumer.assign(&assignment).expect("assign");
        let waiting = self.clone();
        tokio::spawn(async move {
            loop {
                let Ok(message) = consumer.recv().await else {
                    continue;
                };
                let Some(value) = message
                    .payload()
                    .and_then(|p| serde_json::from_slice::<Value>(p).ok())
                else {
                    continue;
                };
                let Some(id) = value["jobId"].as_str() else {
                    continue;
                };
                let waiter = waiting.0.lock().expect("waiting").remove(id);
                if let Some(tx) = waiter {
                    let _ = tx.send(value);
                }
            }
        });
    }
}

/// Produces `value` keyed by `id` to `topic` and waits for the record
/// `waiting` hands over for that id: true when it came and `ok(record)`.
async fn round_trip(
    producer: &FutureProducer,
    waiting: &Waiting,
    topic: &str,
    id: &str,
    value: &Value,
    ok: fn(&Value) -> bool,
) -> bool {
    let answer = waiting.expect(id);
    let payload = value.to_string();
    let record = FutureRecord::to(topic).key(id).payload(&payload);
    if producer.send(record, REPLY_TIMEOUT).await.is_err() {
        return false;
    }
    match tokio::time::timeout(REPLY_TIMEOUT, answer).await {
        Ok(Ok(record)) => ok(&record),
        _ => false,
    }
}

fn producer(bootstrap: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("linger.ms", "0")
        .set("socket.nagle.disable", "true")
        .create()
        .expect("producer")
}

fn job(id: &str, topic: &str) -> Value {
    json!({"jobId": id, "tool": TOOL, "arguments": {"topic": topic}})
}

/// Submits the job `id` as `tool` calls go: a value, no token (the
/// sidecar's auth is `none`, as the HTTP sidecar's is), the reply topic in
/// its header; true once the broker has it.
async fn send_job(producer: &FutureProducer, topics: &Topics, id: &str, target: &str) -> bool {
    let payload = job(id, target).to_string();
    let record = FutureRecord::to(&topics.requests)
        .key(id)
        .payload(&payload)
        .headers(OwnedHeaders::new().insert(Header {
            key: "replyTo",
            value: Some(topics.replies.as_str()),
        }));
    producer.send(record, REPLY_TIMEOUT).await.is_ok()
}

/// A job submitted and its reply waited for: true when it came and says ok.
async fn submit(
    producer: &FutureProducer,
    replies: &Waiting,
    topics: &Topics,
    id: &str,
    target: &str,
) -> bool {
    let answer = replies.expect(id);
    if !send_job(producer, topics, id, target).await {
        return false;
    }
    match tokio::time::timeout(REPLY_TIMEOUT, answer).await {
        Ok(Ok(reply)) => reply["ok"] == json!(true),
        _ => false,
    }
}

/// Where a job's time goes, from clocks on this one host: submit to the
/// worker's `startedAt`, `startedAt` to `finishedAt` (the call, its audit
/// and the reply's making), `finishedAt` to the reply's arrival here, and
/// the whole job. (p50, p99) of `count` jobs, one at a time; None when
/// one failed.
async fn job_stages(
    producer: &FutureProducer,
    replies: &Waiting,
    topics: &Topics,
    target: &str,
    count: usize,
) -> Option<[(f64, f64); 4]> {
    fn at(reply: &Value, field: &str) -> Option<jiff::Timestamp> {
        reply[field].as_str()?.parse().ok()
    }
    let ms =
        |from: jiff::Timestamp, to: jiff::Timestamp| to.duration_since(from).as_secs_f64() * 1e3;
    let mut stages: [Vec<f64>; 4] = Default::default();
    for n in 0..count {
        let id = format!("stages-{}-{n}", std::process::id());
        let answer = replies.expect(&id);
        let submitted = jiff::Timestamp::now();
        if !send_job(producer, topics, &id, target).await {
            return None;
        }
        let reply = tokio::time::timeout(REPLY_TIMEOUT, answer)
            .await
            .ok()?
            .ok()?;
        let back = jiff::Timestamp::now();
        let (started, finished) = (at(&reply, "startedAt")?, at(&reply, "finishedAt")?);
        stages[0].push(ms(submitted, started));
        stages[1].push(ms(started, finished));
        stages[2].push(ms(finished, back));
        stages[3].push(ms(submitted, back));
    }
    Some(stages.map(|mut v| {
        v.sort_by(f64::total_cmp);
        (v[v.len() / 2], v[v.len() * 99 / 100])
    }))
}

fn jobs_config(a: &Args, topics: &Topics) -> Value {
    json!({
        "server": {"name": "bench-jobs", "environment": "dev"},
        "kafka": {"bootstrapServers": [a.bootstrap]},
        "tools": [TOOL],
        "auth": {"mode": "none"},
        "limits": {"callsPerSecond": 1_000_000, "callBurst": 1_000_000},
        "jobs": {
            "requestTopic": topics.requests,
            "replyTopics": [topics.replies],
            "deadLetterTopic": topics.dead_letters,
            "journalTopic": topics.journal,
            "group": format!("{}-workers", topics.requests),
        },
    })
}

/// Jobs submitted by `workers` concurrent submitters for `seconds`.
async fn job_calls(
    a: &Args,
    topics: &Arc<Topics>,
    producer: &FutureProducer,
    replies: &Waiting,
    workers: usize,
    server: Option<u32>,
    target: &str,
) -> Figures {
    let sequence = Arc::new(std::sync::atomic::AtomicU64::new(0));
    measure(workers, a.seconds, server, |_| {
        let (producer, replies, topics, sequence, target) = (
            producer.clone(),
            replies.clone(),
            topics.clone(),
            sequence.clone(),
            target.to_string(),
        );
        move || {
            let (producer, replies, topics, target) = (
                producer.clone(),
                replies.clone(),
                topics.clone(),
                target.clone(),
            );
            let n = sequence.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            async move {
                let id = format!("bench-{}-{n}", std::process::id());
                submit(&producer, &replies, &topics, &id, &target).await
            }
        }
    })
    .await
}

/// The floor: a record produced (acks=all) and fetched back, by the same
/// clients as a job's submit and reply.
async fn floor_calls(
    a: &Args,
    topics: &Arc<Topics>,
    producer: &FutureProducer,
    pings: &Waiting,
    workers: usize,
) -> Figures {
    let sequence = Arc::new(std::sync::atomic::AtomicU64::new(0));
    measure(workers, a.seconds, None, |_| {
        let (producer, pings, topics, sequence) = (
            producer.clone(),
            pings.clone(),
            topics.clone(),
            sequence.clone(),
        );
        move || {
            let (producer, pings, topics) = (producer.clone(), pings.clone(), topics.clone());
            let n = sequence.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            async move {
                let id = format!("ping-{n}");
                round_trip(
                    &producer,
                    &pings,
                    &topics.ping,
                    &id,
                    &json!({"jobId": id}),
                    |_| true,
                )
                .await
            }
        }
    })
    .await
}

/// Waits until the group answers (its first assignment takes a rebalance).
async fn answered(producer: &FutureProducer, replies: &Waiting, topics: &Topics, target: &str) {
    for attempt in 0..60 {
        if submit(
            producer,
            replies,
            topics,
            &format!("warm-{attempt}"),
            target,
        )
        .await
        {
            return;
        }
    }
    panic!("the job workers did not answer");
}

/// The request partitions a sidecar owns now, from its lag metric (set on
/// assignment, dropped on revocation).
async fn owned_partitions(base: &str) -> Vec<i32> {
    let answer = get_once(&format!("{base}/metrics"))
        .await
        .map(http::Response::into_body)
        .unwrap_or_default();
    String::from_utf8_lossy(&answer)
        .lines()
        .filter_map(|l| l.strip_prefix("mcp_kafka_jobs_lag{partition=\""))
        .filter_map(|rest| rest.split('"').next()?.parse().ok())
        .collect()
}

/// Waits until the group has settled onto `sidecars` (cooperative-sticky
/// takes two rounds): each owns some partitions and every partition is
/// owned once. Seconds it took.
async fn settled(sidecars: &[String]) -> f64 {
    let started = std::time::Instant::now();
    loop {
        let mut owned = Vec::new();
        let mut each_owns = true;
        for base in sidecars {
            let mine = owned_partitions(base).await;
            each_owns &= !mine.is_empty();
            owned.extend(mine);
        }
        owned.sort_unstable();
        if each_owns && owned == (0..PARTITIONS).collect::<Vec<_>>() {
            return started.elapsed().as_secs_f64();
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the group did not settle: {owned:?} owned"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn row(label: &str, workers: usize, f: &Figures) {
    let errors = f.errors_note();
    println!(
        "{:<44} {:>4} {:>9.3} {:>9.3} {:>9.0} {:>10.3}{errors}",
        label, workers, f.p50_ms, f.p99_ms, f.per_second, f.cpu_ms_per_call
    );
}

pub async fn job_figures(a: &Args, admin: &AdminClient<DefaultClientContext>, target: &str) {
    let topics = Arc::new(Topics::new());
    topics.create(admin).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let producer = producer(&a.bootstrap);
    let (replies, pings) = (Waiting::default(), Waiting::default());
    replies.listen(&a.bootstrap, &topics.replies);
    pings.listen(&a.bootstrap, &topics.ping);

    let http_config = json!({
        "server": {"name": "bench-jobs-http", "environment": "dev"},
        "kafka": {"bootstrapServers": [a.bootstrap]},
        "tools": [TOOL],
        "auth": {"mode": "none"},
        "limits": {"callsPerSecond": 1_000_000, "callBurst": 1_000_000},
    });
    let launch = |config| Launch::Config {
        config,
        kubeconfig: "",
    };
    let mut workers_up: Vec<Sidecar> = Vec::new();
    let mut worker_bases: Vec<String> = Vec::new();
    let (first, first_base, _) =
        start_sidecar(a, launch(jobs_config(a, &topics)), Ready::Readyz).await;
    let first_pid = first.0.id();
    workers_up.push(first);
    worker_bases.push(first_base.clone());
    answered(&producer, &replies, &topics, target).await;

    println!();
    println!(
        "tool calls as Kafka jobs ({TOOL}; {PARTITIONS}-partition topics; acks=all, no linger, TCP_NODELAY)"
    );
    println!(
        "{:<44} {:>4} {:>9} {:>9} {:>9} {:>10}",
        "operation", "conc", "p50 ms", "p99 ms", "/s", "cpu ms/op"
    );
    let args = json!({"topic": target});
    // p50s of the HTTP call and of the floor, one at a time.
    let mut one_at_a_time = (f64::NAN, f64::NAN);
    // The tool's own mean time inside each sidecar, one at a time: (HTTP, job).
    let mut in_server_ms = (f64::NAN, f64::NAN);
    for workers in [1usize, 16] {
        // The HTTP sidecar runs only while it is measured: it would
        // otherwise share the 2 cores idly with the job cells.
        let (http, base, _) = start_sidecar(a, launch(http_config.clone()), Ready::Readyz).await;
        let url = format!("{base}/mcp");
        let http_before = in_server_seconds(&base, TOOL).await;
        let over_http = mcp_calls(
            (&url, http.0.id()),
            Protocol::Sessions,
            workers,
            a.seconds,
            TOOL,
            &args,
        )
        .await;
        let http_in_server = mean_ms_since(http_before, in_server_seconds(&base, TOOL).await);
        drop(http);
        let jobs_before = in_server_seconds(&first_base, TOOL).await;
        let as_jobs = job_calls(
            a,
            &topics,
            &producer,
            &replies,
            workers,
            Some(first_pid),
            target,
        )
        .await;
        let jobs_in_server = mean_ms_since(jobs_before, in_server_seconds(&first_base, TOOL).await);
        let floor = floor_calls(a, &topics, &producer, &pings, workers).await;
        row("over MCP HTTP", workers, &over_http);
        row("as a job (1 sidecar)", workers, &as_jobs);
        row("floor: one produce + one fetch", workers, &floor);
        if workers == 1 {
            one_at_a_time = (over_http.p50_ms, floor.p50_ms);
            in_server_ms = (http_in_server, jobs_in_server);
        }
        println!(
            "  job p50 - HTTP p50 = {:.3} ms, floor p50 {:.3} ms; job/HTTP throughput {:.2}",
            as_jobs.p50_ms - over_http.p50_ms,
            floor.p50_ms,
            as_jobs.per_second / over_http.per_second
        );
    }
    match job_stages(&producer, &replies, &topics, target, 500).await {
        Some(stages) => {
            let [to_worker, in_worker, back, whole] = stages.map(|(p50, _)| p50);
            let [to_worker_99, in_worker_99, back_99, whole_99] = stages.map(|(_, p99)| p99);
            let (http, floor) = one_at_a_time;
            println!(
                "  a job's stages, medians of 500 one at a time: submit to startedAt {to_worker:.3} ms, startedAt to finishedAt {in_worker:.3} ms, finishedAt to the reply here {back:.3} ms; the whole job {whole:.3} ms"
            );
            println!(
                "  and their p99s: {to_worker_99:.3}, {in_worker_99:.3}, {back_99:.3}; the whole job {whole_99:.3} ms"
            );
            // A job has two Kafka legs (the request's, the reply's) where
            // the HTTP call has its own transport: with both legs at the
            // floor, it adds 2 floors less what HTTP spends outside the
            // worker's part.
            let http_transport = http - in_worker;
            println!(
                "  one at a time a job adds {:.3} ms to the HTTP call ({http:.3} ms); with both legs at the floor ({floor:.3} ms) it adds at least 2 x {floor:.3} - {http_transport:.3} (the HTTP call outside the worker's part) = {:.3} ms",
                whole - http,
                2.0 * floor - http_transport
            );
        }
        None => println!("  a job's stages: a job was not answered"),
    }
    let (http_call, job_call) = in_server_ms;
    println!(
        "  the tool's own time inside the sidecar (its histogram's mean), one at a time: over HTTP {http_call:.3} ms, as a job {job_call:.3} ms"
    );
    for sidecars in [2usize, 3] {
        let (more, base, _) =
            start_sidecar(a, launch(jobs_config(a, &topics)), Ready::Readyz).await;
        workers_up.push(more);
        worker_bases.push(base);
        let settled = settled(&worker_bases).await;
        answered(&producer, &replies, &topics, target).await;
        println!("  the group took {settled:.1} s to settle onto {sidecars} sidecars");
        let f = job_calls(a, &topics, &producer, &replies, 16, None, target).await;
        row(&format!("as a job ({sidecars} sidecars)"), 16, &f);
    }
    drop(workers_up);
    admin
        .delete_topics(&topics.all(), &AdminOptions::new())
        .await
        .ok();
}
