//! The job worker: one consumer in the server's group (cooperative-sticky)
//! on a thread of its own, which reads request records, decides each
//! against the journal, and hands it to a task on the async runtime; the
//! task runs it through the call path (`KafkaMcp::call_as`) and writes the
//! answer; the thread commits offsets as far as every record before them
//! is answered, and pauses its partitions while `maxInFlight` jobs run
//! (once the cap has held for `PAUSE_AFTER`).

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::journal::{self, Decision, Entries, Entry};
use super::record::{self, Parsed, Reply};
use super::writer::{Out, Writer};
use crate::config::JobsConfig;
use crate::error::{ErrorCode, ToolError};
use crate::metrics::Metrics;
use crate::plan;
use crate::server::{CallInfo, KafkaMcp};
use crate::tool_name::ToolName;

/// Largest reply the worker writes: a result above it is answered
/// LIMIT_EXCEEDED (brokers take 1 MiB records by default; the journal
/// entry repeats the reply).
const MAX_REPLY_BYTES: usize = 900 * 1024;
/// How often the group's lag is measured.
const LAG_EVERY: Duration = Duration::from_secs(5);
/// How often answered offsets are committed while jobs run (a revoke and a
/// shutdown commit at once). Committing after every job cost the broker two
/// OffsetCommits a job, on the cores the jobs run on; what a crash leaves
/// uncommitted is redelivered and passed over by the journal, as before.
const COMMIT_EVERY: Duration = Duration::from_millis(200);
/// How long the worker waits at the cap for a slot before it pauses its
/// partitions. Pausing makes the consumer drop what it fetched and fetch
/// it again on resume: for a cap that clears within milliseconds (one
/// submitter per slot, each waiting for its reply) that churn cost more
/// than the wait. Meanwhile no record is taken; what was fetched waits in
/// the consumer's queue, which is bounded (`queued.max.messages.kbytes`).
const PAUSE_AFTER: Duration = Duration::from_millis(100);
/// The env var of the test-only fault (debug builds only, see `fault`).
pub const FAULT_ENV: &str = "MCP_KAFKA_SIDECAR_TEST_FAULT";

/// Starts the worker of `mcp`'s config's `jobs` section, if it has one.
/// It runs until `shutdown`, then finishes the jobs it runs, commits and
/// leaves the group; the returned receiver says when it has.
pub fn spawn(
    mcp: KafkaMcp,
    shutdown: CancellationToken,
) -> Option<tokio::sync::oneshot::Receiver<()>> {
    let jobs = mcp.runtime().config.jobs.clone()?;
    let handle = tokio::runtime::Handle::current();
    let (stopped, done) = tokio::sync::oneshot::channel();
    let started = std::thread::Builder::new()
        .name("jobs".into())
        .spawn(move || {
            let mut backoff = Duration::from_secs(1);
            while !shutdown.is_cancelled() {
                match run(&mcp, &jobs, &handle, &shutdown) {
                    Ok(()) => break,
                    Err(e) => {
                        tracing::error!(error = %e, "the job worker stopped; it starts again");
                        std::thread::sleep(backoff);
                        backoff = (backoff * 2).min(Duration::from_secs(30));
                    }
                }
            }
            let _ = stopped.send(());
        });
    match started {
        Ok(_) => Some(done),
        Err(e) => {
            tracing::error!(error = %e, "the job worker did not start");
            None
        }
    }
}

/// What the tasks need.
struct Env {
    mcp: KafkaMcp,
    writer: Writer,
    jobs: JobsConfig,
    metrics: Arc<Metrics>,
    window: Duration,
    done: Sender<Event>,
    in_flight: Arc<InFlight>,
}

/// How many jobs run: taken by the consumer thread (the only one that
/// takes, and only below the cap), given back by each job's task (see
/// `Slot`). The consumer thread learns of the rest of a job's end (its
/// offset, its journal entry) only when it next looks at its completions,
/// which may be 100 ms later while it waits for records: counted there,
/// a free slot looked taken for that long, and the cap was hit when it
/// was not.
#[derive(Default)]
struct InFlight(AtomicUsize);

impl InFlight {
    fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// One job's place under `maxInFlight`: given back once its reply is
/// written, or when the job ends without one. An observe job's journal
/// entry, written after its reply, does not hold it: it did, and 16
/// submitters against the default cap of 16 found the cap full while
/// their replies were already in, so the worker waited and paused, and
/// the job path had a third of HTTP's throughput.
struct Slot {
    in_flight: Arc<InFlight>,
    metrics: Arc<Metrics>,
    held: AtomicBool,
    /// Wakes the consumer thread if it waits at the cap.
    freed: Sender<Event>,
}

impl Slot {
    fn take(env: &Env) -> Self {
        env.in_flight.0.fetch_add(1, Ordering::SeqCst);
        env.metrics.jobs.in_flight.inc();
        Self {
            in_flight: Arc::clone(&env.in_flight),
            metrics: Arc::clone(&env.metrics),
            held: AtomicBool::new(true),
            freed: env.done.clone(),
        }
    }

    fn give_back(&self) {
        if self.held.swap(false, Ordering::SeqCst) {
            self.in_flight.0.fetch_sub(1, Ordering::SeqCst);
            self.metrics.jobs.in_flight.dec();
            let _ = self.freed.send(Event::SlotFree);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.give_back();
    }
}

/// What a job's task tells the consumer thread.
enum Event {
    /// Its slot is free. An observe job frees it once its reply is
    /// written: before its journal entry is, and before it is `Done`.
    SlotFree,
    Done(Completion),
}

/// A job's end, as the consumer thread learns it.
struct Completion {
    partition: i32,
    offset: i64,
    key: String,
    /// The jobId's journal entry now.
    entry: Option<Entry>,
    /// The answer could not be written: the worker must start over.
    failed: Option<String>,
}

/// One assigned request partition.
struct Partition {
    journal: Entries,
    /// Offsets of records being answered.
    in_flight: BTreeSet<i64>,
    /// The offset after the last record read.
    next: Option<i64>,
    committed: i64,
    /// Keys with a record being answered: a later record with the same key
    /// waits for it (and its journal entry), so one key is decided at a time.
    running: HashMap<String, (i64, watch::Receiver<Option<Entry>>)>,
}

impl Partition {
    /// Where the group may resume: the first record not yet answered.
    fn commit_position(&self) -> Option<i64> {
        self.in_flight.first().copied().or(self.next)
    }
}

#[derive(Default)]
struct State {
    partitions: HashMap<i32, Partition>,
    paused: bool,
    /// Partitions were assigned since the lag was last measured: measure
    /// it now, so the lag metric says at once which partitions are here.
    assigned: bool,
    /// Why the worker must start over (a journal not read, an answer not written).
    broken: Option<String>,
}

/// The consumer's context: the state, shared by the poll loop and the
/// rebalance callbacks (both on the consumer thread).
struct Worker {
    state: Mutex<State>,
    done: Mutex<Receiver<Event>>,
    in_flight: Arc<InFlight>,
    base: ClientConfig,
    jobs: JobsConfig,
    window: Duration,
    journal_wait: Duration,
    drain_wait: Duration,
    metrics: Arc<Metrics>,
}

impl ClientContext for Worker {}

impl ConsumerContext for Worker {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let revoked: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
            // The next owner must find every started job of these
            // partitions answered: finish them first (cooperative
            // rebalancing keeps the other partitions running meanwhile).
            self.drain(&revoked, self.drain_wait);
            self.commit(consumer, Some(&revoked), CommitMode::Sync);
            let mut state = self.lock();
            for p in revoked {
                state.partitions.remove(&p);
                self.metrics.jobs.forget_partition(p);
            }
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let assigned: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
            match journal::load(
                &self.base,
                &self.jobs.journal_topic,
                &assigned,
                self.journal_wait,
                self.window,
            ) {
                Ok(journals) => {
                    let mut state = self.lock();
                    state.assigned = true;
                    for (p, journal) in journals {
                        tracing::info!(
                            partition = p,
                            entries = journal.len(),
                            "job partition assigned"
                        );
                        state.partitions.insert(
                            p,
                            Partition {
                                journal,
                                in_flight: BTreeSet::new(),
                                next: None,
                                committed: -1,
                                running: HashMap::new(),
                            },
                        );
                    }
                }
                Err(e) => {
                    self.lock().broken = Some(e);
                }
            }
            if self.lock().paused {
                let _ = consumer.pause(tpl);
            }
        }
    }
}

impl Worker {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes in one job's end.
    fn complete(&self, c: Completion) {
        let mut state = self.lock();
        if let Some(why) = c.failed {
            state.broken.get_or_insert(why);
        }
        if let Some(part) = state.partitions.get_mut(&c.partition) {
            part.in_flight.remove(&c.offset);
            if let Some(entry) = c.entry {
                part.journal.insert(c.key.clone(), entry);
            }
            if part
                .running
                .get(&c.key)
                .is_some_and(|(o, _)| *o == c.offset)
            {
                part.running.remove(&c.key);
            }
        }
    }

    /// Forgets journal entries older than the dedup window (their records
    /// were committed long since), so memory holds one window of jobs.
    fn forget_old(&self) {
        let now = jiff::Timestamp::now();
        for part in self.lock().partitions.values_mut() {
            journal::forget_old(&mut part.journal, now, self.window);
        }
    }

    /// A free slot needs nothing: the count is already down.
    fn take_event(&self, event: Event) {
        if let Event::Done(c) = event {
            self.complete(c);
        }
    }

    /// Takes in the ends that arrived.
    fn take_completions(&self) {
        let done = self.done.lock().unwrap_or_else(|p| p.into_inner());
        while let Ok(event) = done.try_recv() {
            self.take_event(event);
        }
    }

    /// Waits until fewer than `max` jobs run: true if they do within `wait`.
    fn wait_for_slot(&self, max: usize, wait: Duration) -> bool {
        let until = Instant::now() + wait;
        while self.in_flight.get() >= max {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            let next = {
                let done = self.done.lock().unwrap_or_else(|p| p.into_inner());
                done.recv_timeout(left)
            };
            if let Ok(event) = next {
                self.take_event(event);
            }
        }
        true
    }

    /// Waits (at most `wait`) until no job of `partitions` runs.
    fn drain(&self, partitions: &[i32], wait: Duration) {
        let until = Instant::now() + wait;
        let busy = |w: &Worker| {
            let state = w.lock();
            partitions.iter().any(|p| {
                state
                    .partitions
                    .get(p)
                    .is_some_and(|x| !x.in_flight.is_empty())
            })
        };
        while busy(self) {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                tracing::warn!(?partitions, "jobs still run on partitions being given up");
                return;
            }
            let next = {
                let done = self.done.lock().unwrap_or_else(|p| p.into_inner());
                done.recv_timeout(left.min(Duration::from_millis(100)))
            };
            if let Ok(event) = next {
                self.take_event(event);
            }
        }
    }

    /// Commits, for `only` (or every) assigned partition, up to its first
    /// record not yet answered.
    fn commit(&self, consumer: &BaseConsumer<Self>, only: Option<&[i32]>, mode: CommitMode) {
        let mut tpl = TopicPartitionList::new();
        let mut state = self.lock();
        for (p, part) in state.partitions.iter_mut() {
            if only.is_some_and(|o| !o.contains(p)) {
                continue;
            }
            if let Some(position) = part.commit_position().filter(|pos| *pos > part.committed) {
                let _ = tpl.add_partition_offset(
                    &self.jobs.request_topic,
                    *p,
                    Offset::Offset(position),
                );
                part.committed = position;
            }
        }
        drop(state);
        if tpl.count() > 0
            && let Err(e) = consumer.commit(&tpl, mode)
        {
            tracing::warn!(error = %e, "committing job offsets failed (the records are answered; a redelivery is passed over)");
        }
    }
}

/// One life of the worker: until `shutdown` (Ok) or until it must start over (Err).
fn run(
    mcp: &KafkaMcp,
    jobs: &JobsConfig,
    handle: &tokio::runtime::Handle,
    shutdown: &CancellationToken,
) -> Result<(), String> {
    let rt = mcp.runtime();
    let base = rt.kafka.base_config();
    let timeout = rt.kafka.timeout();
    let group = jobs.group_for(&rt.config.server);
    check_topics(&base, jobs, timeout)?;
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "local".into());
    let writer = Writer::start(
        &base,
        &format!("{group}.{host}.{}", std::process::id()),
        timeout,
    )?;
    let (done_tx, done_rx) = mpsc::channel();
    let in_flight = Arc::new(InFlight::default());
    let window = Duration::from_secs(jobs.dedup_window_seconds);
    let metrics = Arc::clone(&mcp.metrics);
    let env = Arc::new(Env {
        mcp: mcp.clone(),
        writer,
        jobs: jobs.clone(),
        metrics: Arc::clone(&metrics),
        window,
        done: done_tx,
        in_flight: Arc::clone(&in_flight),
    });
    let worker = Worker {
        state: Mutex::new(State::default()),
        done: Mutex::new(done_rx),
        in_flight,
        base: base.clone(),
        jobs: jobs.clone(),
        window,
        // A transaction a dead worker left open is aborted within the
        // transaction timeout (the writer's `timeout`).
        journal_wait: timeout * 3,
        // The longest a call runs (see `KafkaMcp::run`), and its writes.
        drain_wait: timeout * 4 + Duration::from_millis(rt.config.limits.max_consume_timeout_ms),
        metrics: Arc::clone(&metrics),
    };
    drop(rt);
    let consumer: BaseConsumer<Worker> = consumer_config(&base, &group)
        .create_with_context(worker)
        .map_err(|e| format!("creating the job consumer: {e}"))?;
    consumer
        .subscribe(&[&jobs.request_topic])
        .map_err(|e| format!("subscribing to {}: {e}", jobs.request_topic))?;
    tracing::info!(topic = %jobs.request_topic, %group, "taking jobs");
    let max = jobs.max_in_flight as usize;
    let (mut lag_at, mut committed_at) = (Instant::now(), Instant::now());
    let worker = consumer.context();
    loop {
        worker.take_completions();
        if let Some(why) = worker.lock().broken.take() {
            return Err(why);
        }
        if committed_at.elapsed() >= COMMIT_EVERY {
            worker.commit(&consumer, None, CommitMode::Async);
            committed_at = Instant::now();
        }
        if shutdown.is_cancelled() {
            let all: Vec<i32> = worker.lock().partitions.keys().copied().collect();
            worker.drain(&all, worker.drain_wait);
            worker.commit(&consumer, None, CommitMode::Sync);
            consumer.unsubscribe();
            return Ok(());
        }
        let assigned = std::mem::take(&mut worker.lock().assigned);
        if assigned || lag_at.elapsed() >= LAG_EVERY {
            measure_lag(&consumer);
            worker.forget_old();
            lag_at = Instant::now();
        }
        // At the cap no record is taken: never more than `maxInFlight` run.
        if worker.in_flight.get() >= max {
            if worker.wait_for_slot(max, PAUSE_AFTER) {
                continue;
            }
            // Still full: pause, and serve the group (heartbeats,
            // rebalances) while paused.
            set_paused(&consumer, true);
            if let Some(Ok(message)) = consumer.poll(Duration::ZERO) {
                // Fetched before the pause: it waits for a free slot.
                while !worker.wait_for_slot(max, PAUSE_AFTER) {}
                receive(worker, &env, handle, &message);
            }
            continue;
        }
        set_paused(&consumer, false);
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => receive(worker, &env, handle, &message),
            Some(Err(e)) => tracing::warn!(error = %e, "the job consumer"),
            None => {}
        }
    }
}

/// Pauses (or resumes) every assigned partition, if not already so.
fn set_paused(consumer: &BaseConsumer<Worker>, pause: bool) {
    let worker = consumer.context();
    if worker.lock().paused != pause
        && let Ok(assignment) = consumer.assignment()
    {
        let changed = if pause {
            consumer.pause(&assignment)
        } else {
            consumer.resume(&assignment)
        };
        if changed.is_ok() {
            worker.lock().paused = pause;
        }
    }
}

fn measure_lag(consumer: &BaseConsumer<Worker>) {
    let worker = consumer.context();
    let positions: Vec<(i32, Option<i64>)> = worker
        .lock()
        .partitions
        .iter()
        .map(|(p, part)| (*p, part.commit_position()))
        .collect();
    for (p, position) in positions {
        if let Ok((low, high)) =
            consumer.fetch_watermarks(&worker.jobs.request_topic, p, Duration::from_secs(1))
        {
            // Nothing read yet: all that is there is lag.
            let lag = high - position.unwrap_or(low).max(low);
            worker.metrics.jobs.set_lag(p, lag.max(0));
        }
    }
}

/// Takes one request record: decides it, and starts its task.
fn receive(
    worker: &Worker,
    env: &Arc<Env>,
    handle: &tokio::runtime::Handle,
    message: &BorrowedMessage<'_>,
) {
    let (partition, offset) = (message.partition(), message.offset());
    env.metrics.jobs.received.inc();
    let parsed = record::parse(message.payload());
    let key = parsed
        .job_id()
        .map_or_else(|| format!("@{offset}"), str::to_string);
    let mut header_names = Vec::new();
    let (mut token, mut reply_to) = (None, None);
    if let Some(headers) = message.headers() {
        for h in headers.iter() {
            header_names.push(h.key.to_string());
            if h.key.eq_ignore_ascii_case(record::TOKEN_HEADER) {
                token = record::bearer(h.value);
            } else if h.key == record::REPLY_TO_HEADER {
                reply_to = Some(h.value.unwrap_or_default().to_vec());
            }
        }
    }
    let mut state = worker.lock();
    let Some(part) = state.partitions.get_mut(&partition) else {
        // A record of a partition whose journal was not read: never passed
        // over (a later commit would skip it); the worker starts over.
        state.broken.get_or_insert_with(|| {
            format!("a record of partition {partition}, whose journal is not read")
        });
        return;
    };
    part.next = Some(offset + 1);
    let now = jiff::Timestamp::now();
    let (decision, previous) = match part.running.get(&key) {
        Some((_, running)) => (Pending::After(running.clone()), None),
        None => {
            let entry = part.journal.get(&key);
            match journal::decide(entry, offset, now, worker.window) {
                Decision::Answered => return,
                d => (Pending::Now(d), entry.cloned()),
            }
        }
    };
    let (tx, rx) = watch::channel(None);
    part.running.insert(key.clone(), (offset, rx));
    part.in_flight.insert(offset);
    drop(state);
    let slot = Slot::take(env);
    let received = Received {
        partition,
        offset,
        key,
        token,
        reply_to,
        header_names,
        value: message.payload().map(<[u8]>::to_vec),
        slot,
    };
    let env = Arc::clone(env);
    handle.spawn(async move {
        // `answer` owns the record, and its slot: given back by now.
        let completion = answer(&env, received, parsed, decision, previous).await;
        let entry = completion.entry.clone();
        // The consumer thread takes the ends of one key's jobs in the
        // order they ended: this one is in the channel before the next
        // job of its key learns of its entry (and may end).
        let _ = env.done.send(Event::Done(completion));
        if let Some(entry) = entry {
            let _ = tx.send(Some(entry));
        }
    });
}

/// A decision, or a record that waits for another of its key.
enum Pending {
    Now(Decision),
    After(watch::Receiver<Option<Entry>>),
}

struct Received {
    partition: i32,
    offset: i64,
    key: String,
    token: Option<String>,
    reply_to: Option<Vec<u8>>,
    header_names: Vec<String>,
    value: Option<Vec<u8>>,
    slot: Slot,
}

/// Answers one record; says how it ended.
async fn answer(
    env: &Env,
    rec: Received,
    parsed: Parsed,
    pending: Pending,
    mut previous: Option<Entry>,
) -> Completion {
    let end = |entry: Option<Entry>, failed: Option<String>| Completion {
        partition: rec.partition,
        offset: rec.offset,
        key: rec.key.clone(),
        entry,
        failed,
    };
    let decision = match pending {
        Pending::Now(d) => d,
        Pending::After(mut earlier) => {
            let entry = earlier
                .wait_for(Option::is_some)
                .await
                .ok()
                .and_then(|e| e.clone());
            let Some(entry) = entry else {
                return end(None, Some("a job of the same key did not finish".into()));
            };
            let decision =
                journal::decide(Some(&entry), rec.offset, jiff::Timestamp::now(), env.window);
            previous = Some(entry);
            if decision == Decision::Answered {
                return end(previous, None);
            }
            decision
        }
    };
    let started_at = jiff::Timestamp::now();
    let request_topic = &env.jobs.request_topic;
    let mut info = CallInfo {
        request_id: format!("{request_topic}/{}@{}", rec.partition, rec.offset),
        session_id: None,
        via: Some("kafka"),
        job_id: parsed.job_id().map(str::to_string),
    };
    let journal_entry = |entry: &Entry| Out {
        topic: env.jobs.journal_topic.clone(),
        partition: Some(rec.partition),
        key: rec.key.clone(),
        value: serde_json::to_vec(entry).unwrap_or_default(),
    };
    let (job, job_id) = match parsed {
        Parsed::Unusable(reason) => {
            let letter = record::dead_letter(
                &reason,
                request_topic,
                rec.partition,
                rec.offset,
                rec.value.as_deref(),
                rec.header_names,
            );
            let entry = Entry::done("", json!({"deadLettered": true}), rec.offset, None);
            let outs = vec![
                Out {
                    topic: env.jobs.dead_letter_topic.clone(),
                    partition: None,
                    key: info.request_id.clone(),
                    value: letter.to_string().into_bytes(),
                },
                journal_entry(&entry),
            ];
            // Dead letter first, then the entry that passes over its record.
            if let Err(e) = env.writer.write_in_order(outs).await {
                return end(None, Some(e));
            }
            info.job_id = None;
            let why = format!(
                "dead-lettered to {}: {}",
                env.jobs.dead_letter_topic, reason.message
            );
            env.mcp
                .audit_unrun(None, &info, "", &Value::Null, reason.code.as_str(), why)
                .await;
            env.metrics.jobs.dead_lettered.inc();
            return end(Some(entry), None);
        }
        Parsed::Refused {
            job_id,
            tool,
            error,
        } => ((tool, Value::Null, None, Some(error)), job_id),
        Parsed::Job(job) => ((job.tool, job.arguments, job.deadline, None), job.job_id),
    };
    let (tool, args, deadline, refused) = job;
    let (reply_topic, misdirected) =
        record::reply_topic(rec.reply_to.as_deref(), &env.jobs.reply_topics);
    let unrun = |answer: Result<Value, ToolError>, why: String| (answer, Some(why));
    let (answer, unrun_reason): (Result<Value, ToolError>, Option<String>) = if let Some(e) =
        refused.or(misdirected)
    {
        let why = e.message.clone();
        unrun(Err(e), why)
    } else {
        match decision {
            Decision::Answered => unreachable_answered(),
            Decision::Replay(reply) => {
                // Sent as it was the first time.
                return finish(
                    env,
                    &rec,
                    &info,
                    reply_topic,
                    &tool,
                    &args,
                    Stored(reply),
                    previous.as_ref(),
                )
                .await;
            }
            Decision::OutcomeUnknown => unrun(
                Err(ToolError::new(
                    ErrorCode::OutcomeUnknown,
                    format!(
                        "job {job_id} ({tool}) was started by a worker that stopped before it answered: it may or may not have changed Kafka, and is not run again; check the state, then submit a new job"
                    ),
                )),
                "a worker started this mutation and stopped before answering; not run again".into(),
            ),
            Decision::Run if deadline.is_some_and(|d| d < jiff::Timestamp::now()) => unrun(
                Err(ToolError::new(
                    ErrorCode::Timeout,
                    format!(
                        "the job's deadline {} passed before it ran",
                        deadline.map(|d| d.to_string()).unwrap_or_default()
                    ),
                )),
                "the deadline passed before the job ran".into(),
            ),
            Decision::Run => match env.mcp.authenticate(rec.token.as_deref()).await {
                Err(e) => {
                    let why = e.message.clone();
                    unrun(Err(e), why)
                }
                Ok(subject) => {
                    let mutation = is_mutation(&tool) && !plan::is_dry_run(&args);
                    if mutation {
                        // Durable before the mutation runs: a worker that
                        // dies from here on leaves OUTCOME_UNKNOWN behind.
                        let started = Entry::started(&tool);
                        if let Err(e) = env.writer.write(vec![journal_entry(&started)]).await {
                            return end(None, Some(e));
                        }
                        previous = Some(started);
                    }
                    let answer = env
                        .mcp
                        .call_as(subject.as_ref(), &info, &tool, args.clone())
                        .await;
                    if mutation {
                        fault::after_mutation();
                    }
                    (answer, None)
                }
            },
        }
    };
    if let Some(why) = &unrun_reason {
        let code = answer.as_ref().map_or_else(|e| e.code.as_str(), |_| "ok");
        env.mcp
            .audit_unrun(None, &info, &tool, &args, code, why.clone())
            .await;
    }
    finish(
        env,
        &rec,
        &info,
        reply_topic,
        &tool,
        &args,
        Fresh(answer, started_at, job_id),
        previous.as_ref(),
    )
    .await
}

fn unreachable_answered() -> (Result<Value, ToolError>, Option<String>) {
    // `receive` passes over answered records; kept total for the compiler.
    (
        Err(ToolError::new(
            ErrorCode::Internal,
            "an answered record was taken again",
        )),
        None,
    )
}

/// What a reply is made of.
enum ReplyBody {
    /// A reply written before (a duplicate's).
    Stored(Value),
    /// The answer of this run: (answer, startedAt, jobId).
    Fresh(Result<Value, ToolError>, jiff::Timestamp, String),
}
use ReplyBody::{Fresh, Stored};

/// Writes the reply and the journal entry (together or in order, below),
/// counts it, and lets records of the same key go on.
#[allow(clippy::too_many_arguments)]
async fn finish(
    env: &Env,
    rec: &Received,
    info: &CallInfo,
    reply_topic: &str,
    tool: &str,
    args: &Value,
    body: ReplyBody,
    previous: Option<&Entry>,
) -> Completion {
    // Each reply is serialized once: its size is that of the bytes sent.
    let (reply, reply_bytes, outcome) = match body {
        Stored(reply) => {
            let outcome = reply_outcome(&reply);
            let why = format!(
                "a duplicate of job {} answered before: its reply was sent again",
                info.job_id.as_deref().unwrap_or_default()
            );
            env.mcp
                .audit_unrun(None, info, tool, args, &outcome, why)
                .await;
            let bytes = serde_json::to_vec(&reply).unwrap_or_default();
            (reply, bytes, outcome)
        }
        Fresh(answer, started_at, job_id) => {
            let mut reply = Reply::new(&job_id, &answer, started_at).to_json();
            let mut bytes = serde_json::to_vec(&reply).unwrap_or_default();
            if bytes.len() > MAX_REPLY_BYTES {
                let too_big = Err(ToolError::new(
                    ErrorCode::LimitExceeded,
                    format!(
                        "the result is {} bytes, more than a reply holds ({MAX_REPLY_BYTES}); ask for less",
                        bytes.len()
                    ),
                ));
                reply = Reply::new(&job_id, &too_big, started_at).to_json();
                bytes = serde_json::to_vec(&reply).unwrap_or_default();
            }
            let outcome = reply_outcome(&reply);
            (reply, bytes, outcome)
        }
    };
    let reply_out = Out {
        topic: reply_topic.to_string(),
        partition: None,
        key: info.job_id.clone().unwrap_or_default(),
        value: reply_bytes,
    };
    let journal = |reply: Value| {
        let entry = Entry::done(tool, reply, rec.offset, previous);
        let out = Out {
            topic: env.jobs.journal_topic.clone(),
            partition: Some(rec.partition),
            key: rec.key.clone(),
            value: serde_json::to_vec(&entry).unwrap_or_default(),
        };
        (entry, out)
    };
    let failed = |e: String| Completion {
        partition: rec.partition,
        offset: rec.offset,
        key: rec.key.clone(),
        entry: None,
        failed: Some(e),
    };
    // A mutation job (whatever its outcome: run, refused, OUTCOME_UNKNOWN)
    // is answered exactly once: its reply and entry in one transaction. An
    // observe job at least once: its reply, then its entry (each
    // acknowledged before the next, the entry made once the reply is on
    // its way); its slot is free once the reply is written.
    let entry = if is_mutation(tool) {
        let (entry, entry_out) = journal(reply);
        if let Err(e) = env.writer.write(vec![reply_out, entry_out]).await {
            return failed(e);
        }
        entry
    } else {
        if let Err(e) = env.writer.write_in_order(vec![reply_out]).await {
            return failed(e);
        }
        rec.slot.give_back();
        let (entry, entry_out) = journal(reply);
        if let Err(e) = env.writer.write_in_order(vec![entry_out]).await {
            return failed(e);
        }
        entry
    };
    env.metrics.jobs.answered(&outcome);
    Completion {
        partition: rec.partition,
        offset: rec.offset,
        key: rec.key.clone(),
        entry: Some(entry),
        failed: None,
    }
}

/// A tool that changes Kafka (its dry run included: answered as its apply is).
fn is_mutation(tool: &str) -> bool {
    tool.parse::<ToolName>().is_ok_and(|t| t.is_mutation())
}

/// `ok` or the error code of a reply.
fn reply_outcome(reply: &Value) -> String {
    if reply["ok"] == true {
        "ok".into()
    } else {
        reply["error"]["code"]
            .as_str()
            .unwrap_or("INTERNAL")
            .to_string()
    }
}

/// The job consumer: in the group, committing only what is answered,
/// reading committed records only, fetching little ahead.
fn consumer_config(base: &ClientConfig, group: &str) -> ClientConfig {
    let mut config = base.clone();
    config
        .set("group.id", group)
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        // Jobs submitted before any worker ran are jobs too.
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        // A worker that dies gives up its partitions within this.
        .set("session.timeout.ms", "10000")
        // A member learns of a rebalance from its next heartbeat, and a
        // cooperative one takes two rounds: a new worker got its first
        // partitions 4-5 s after it joined with 2 s heartbeats.
        .set("heartbeat.interval.ms", "1000")
        // What is fetched ahead of the jobs running is bounded (librdkafka's
        // default is 64 MiB per consumer).
        .set("queued.max.messages.kbytes", "1024")
        .set("enable.partition.eof", "false");
    config
}

/// The job topics exist, and the journal has a partition for each request partition.
fn check_topics(base: &ClientConfig, jobs: &JobsConfig, timeout: Duration) -> Result<(), String> {
    let probe: BaseConsumer = base
        .clone()
        .create()
        .map_err(|e| format!("creating a metadata client: {e}"))?;
    let count = |topic: &str| -> Result<usize, String> {
        let metadata = probe
            .fetch_metadata(Some(topic), timeout)
            .map_err(|e| format!("reading metadata of {topic}: {e}"))?;
        match metadata.topics().first() {
            Some(t) if t.error().is_none() && !t.partitions().is_empty() => {
                Ok(t.partitions().len())
            }
            _ => Err(format!(
                "the job topic {topic:?} does not exist (the sidecar creates none)"
            )),
        }
    };
    let requests = count(&jobs.request_topic)?;
    let journal = count(&jobs.journal_topic)?;
    if journal < requests {
        return Err(format!(
            "the journal topic {:?} has {journal} partitions, fewer than the request topic {:?} ({requests}): it needs one per request partition",
            jobs.journal_topic, jobs.request_topic
        ));
    }
    count(&jobs.dead_letter_topic)?;
    for topic in &jobs.reply_topics {
        count(topic)?;
    }
    Ok(())
}

/// The test-only fault: with `MCP_KAFKA_SIDECAR_TEST_FAULT=exit-after-mutation`,
/// a debug build exits right after a mutation job ran and before it is
/// answered (what a crash there leaves: OUTCOME_UNKNOWN). Release builds
/// have no such switch.
mod fault {
    #[cfg(debug_assertions)]
    pub fn after_mutation() {
        if std::env::var(super::FAULT_ENV).as_deref() == Ok("exit-after-mutation") {
            eprintln!(
                "{}=exit-after-mutation: exiting before the reply",
                super::FAULT_ENV
            );
            std::process::exit(86);
        }
    }

    #[cfg(not(debug_assertions))]
    pub fn after_mutation() {}
}
