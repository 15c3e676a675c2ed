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
    Args, Figures, Launch, Protocol, Ready, Session, Sidecar, in_server_seconds, mcp_calls,
    mean_ms_since, measure, metrics_text, start_sidecar,
};

const PARTITIONS: i32 = 6;
/// The tool both paths call: one metadata request and one ListOffsets, as
/// the main table's `describe_topic`.
const TOOL: &str = "describe_topic";
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);
/// Rounds of the one-at-a-time comparison (`in_turns`).
const TURNS: usize = 500;

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

/// Records of a topic by their key (a reply's is its jobId), their values
/// handed unparsed to whoever waits for that key: a waiter reads the
/// clock before it parses, as the HTTP client only scans its answer.
#[derive(Clone, Default)]
struct Waiting(Arc<Mutex<HashMap<String, oneshot::Sender<Vec<u8>>>>>);

impl Waiting {
    fn expect(&self, id: &str) -> oneshot::Receiver<Vec<u8>> {
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
                let Some(Ok(id)) = message.key_view::<str>() else {
                    continue;
                };
                let waiter = waiting.0.lock().expect("waiting").remove(id);
                if let Some(tx) = waiter {
                    let _ = tx.send(message.payload().unwrap_or_default().to_vec());
                }
            }
        });
    }
}

/// Produces a record keyed by `id` to `topic` and waits until `waiting`
/// hands it over: true when it came.
async fn round_trip(producer: &FutureProducer, waiting: &Waiting, topic: &str, id: &str) -> bool {
    let answer = waiting.expect(id);
    let payload = json!({"jobId": id}).to_string();
    let record = FutureRecord::to(topic).key(id).payload(&payload);
    if producer.send(record, REPLY_TIMEOUT).await.is_err() {
        return false;
    }
    matches!(tokio::time::timeout(REPLY_TIMEOUT, answer).await, Ok(Ok(_)))
}

/// A reply says ok.
fn says_ok(reply: &[u8]) -> bool {
    serde_json::from_slice::<Value>(reply).is_ok_and(|r| r["ok"] == json!(true))
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
        Ok(Ok(reply)) => says_ok(&reply),
        _ => false,
    }
}

/// Where one job's time goes, from clocks on this one host: submit to the
/// worker's `startedAt`, `startedAt` to `finishedAt` (the call, its audit
/// and the reply's making), `finishedAt` to the reply's arrival here, and
/// the whole job, in ms; None when it was not answered.
async fn job_stages(
    producer: &FutureProducer,
    replies: &Waiting,
    topics: &Topics,
    id: &str,
    target: &str,
) -> Option<[f64; 4]> {
    fn at(reply: &Value, field: &str) -> Option<jiff::Timestamp> {
        reply[field].as_str()?.parse().ok()
    }
    let ms =
        |from: jiff::Timestamp, to: jiff::Timestamp| to.duration_since(from).as_secs_f64() * 1e3;
    let answer = replies.expect(id);
    let submitted = jiff::Timestamp::now();
    if !send_job(producer, topics, id, target).await {
        return None;
    }
    let reply = tokio::time::timeout(REPLY_TIMEOUT, answer)
        .await
        .ok()?
        .ok()?;
    let back = jiff::Timestamp::now();
    let reply: Value = serde_json::from_slice(&reply).ok()?;
    let (started, finished) = (at(&reply, "startedAt")?, at(&reply, "finishedAt")?);
    Some([
        ms(submitted, started),
        ms(started, finished),
        ms(finished, back),
        ms(submitted, back),
    ])
}

/// The three paths one call at a time, measured in turns: each round makes
/// one HTTP call, one job and one floor ping, the first of them in turn,
/// so that a broker still warming up or a busy moment of the machine
/// weighs on all three alike (measured one after the other, the first
/// cell of a fresh ground took twice the later ones).
struct Turns {
    http: Vec<f64>,
    floor: Vec<f64>,
    /// A job's stages, as `job_stages` gives them.
    stages: [Vec<f64>; 4],
}

/// (p50, p99) of `samples`.
fn quantiles(samples: &mut [f64]) -> (f64, f64) {
    samples.sort_by(f64::total_cmp);
    let n = samples.len();
    (samples[n / 2], samples[n * 99 / 100])
}

async fn in_turns(
    http: &mut Session,
    producer: &FutureProducer,
    replies: &Waiting,
    pings: &Waiting,
    topics: &Topics,
    target: &str,
    rounds: usize,
) -> Result<Turns, String> {
    let args = json!({"topic": target});
    let mut turns = Turns {
        http: Vec::with_capacity(rounds),
        floor: Vec::with_capacity(rounds),
        stages: Default::default(),
    };
    let pid = std::process::id();
    for n in 0..rounds {
        for path in (0..3).map(|k| (n + k) % 3) {
            match path {
                0 => {
                    let t0 = std::time::Instant::now();
                    if !http.call(TOOL, &args).await {
                        return Err(format!("HTTP call {n} failed"));
                    }
                    turns.http.push(t0.elapsed().as_secs_f64() * 1e3);
                }
                1 => {
                    let id = format!("turn-{pid}-{n}");
                    let stages = job_stages(producer, replies, topics, &id, target)
                        .await
                        .ok_or_else(|| format!("job {id} was not answered"))?;
                    for (all, s) in turns.stages.iter_mut().zip(stages) {
                        all.push(s);
                    }
                }
                _ => {
                    let id = format!("turn-ping-{n}");
                    let t0 = std::time::Instant::now();
                    if !round_trip(producer, pings, &topics.ping, &id).await {
                        return Err(format!("floor ping {n} was not fetched back"));
                    }
                    turns.floor.push(t0.elapsed().as_secs_f64() * 1e3);
                }
            }
        }
    }
    Ok(turns)
}

/// Prints what `in_turns` measured: the goal's figures.
fn print_turns(mut t: Turns, rounds: usize, in_server_ms: (f64, f64)) {
    let (http, http_99) = quantiles(&mut t.http);
    let (floor, floor_99) = quantiles(&mut t.floor);
    let [to_worker, in_worker, back, whole] = t.stages.each_mut().map(|s| quantiles(s));
    println!(
        "  one at a time, {rounds} rounds of an HTTP call, a job and a floor ping in turn: p50 (p99) ms"
    );
    println!(
        "    over MCP HTTP {http:.3} ({http_99:.3}); as a job {:.3} ({:.3}); floor {floor:.3} ({floor_99:.3})",
        whole.0, whole.1
    );
    println!(
        "    a job's stages: submit to startedAt {:.3} ({:.3}), startedAt to finishedAt {:.3} ({:.3}), finishedAt to the reply here {:.3} ({:.3})",
        to_worker.0, to_worker.1, in_worker.0, in_worker.1, back.0, back.1
    );
    let (http_call, job_call) = in_server_ms;
    println!(
        "    the tool's own time inside the sidecar (its histogram's mean): over HTTP {http_call:.3}, as a job {job_call:.3}"
    );
    // A job has two Kafka legs (the request's, the reply's) where the HTTP
    // call has its own transport: with both legs at the floor, it adds 2
    // floors less what HTTP spends outside the worker's part.
    let added = whole.0 - http;
    let http_transport = http - in_worker.0;
    println!(
        "    a job adds {added:.3} ms to the HTTP call ({:.2} floors; the goal is 1 at most); its legs are {:.2} and {:.2} floors",
        added / floor,
        to_worker.0 / floor,
        back.0 / floor
    );
    println!(
        "    with both legs at the floor a job would add 2 x {floor:.3} - {http_transport:.3} (the HTTP call outside the worker's part) = {:.3} ms, {:.2} floors",
        2.0 * floor - http_transport,
        (2.0 * floor - http_transport) / floor
    );
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
                round_trip(&producer, &pings, &topics.ping, &id).await
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
    metrics_text(base)
        .await
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
    for workers in [1usize, 16] {
        // The HTTP sidecar runs only while it is measured: it would
        // otherwise share the 2 cores idly with the job cells.
        let (http, base, _) = start_sidecar(a, launch(http_config.clone()), Ready::Readyz).await;
        let over_http = mcp_calls(
            (&format!("{base}/mcp"), http.0.id()),
            Protocol::Sessions,
            workers,
            a.seconds,
            TOOL,
            &args,
        )
        .await;
        drop(http);
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
        let floor = floor_calls(a, &topics, &producer, &pings, workers).await;
        row("over MCP HTTP", workers, &over_http);
        row("as a job (1 sidecar)", workers, &as_jobs);
        row("floor: one produce + one fetch", workers, &floor);
        println!(
            "  job/HTTP throughput {:.2}",
            as_jobs.per_second / over_http.per_second
        );
    }
    // The latency goal, from the three paths measured in turns; the HTTP
    // sidecar runs beside the job worker only here, where both are idle
    // between calls.
    let (http, base, _) = start_sidecar(a, launch(http_config.clone()), Ready::Readyz).await;
    let mut session = Session::open(&format!("{base}/mcp")).await;
    let before = (
        in_server_seconds(&base, TOOL).await,
        in_server_seconds(&first_base, TOOL).await,
    );
    let turns = in_turns(
        &mut session,
        &producer,
        &replies,
        &pings,
        &topics,
        target,
        TURNS,
    )
    .await;
    let in_server_ms = (
        mean_ms_since(before.0, in_server_seconds(&base, TOOL).await),
        mean_ms_since(before.1, in_server_seconds(&first_base, TOOL).await),
    );
    drop(session);
    drop(http);
    match turns {
        Ok(turns) => print_turns(turns, TURNS, in_server_ms),
        Err(why) => println!("  one at a time in turns: {why}"),
    }
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
