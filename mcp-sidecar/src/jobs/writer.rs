//! What the workers write (replies, journal entries, dead letters), acks=all
//! and idempotent, in one of two ways:
//!
//! - `write`: in a Kafka transaction. A mutation's reply and its journal
//!   entry are committed together or not at all, so it is answered exactly
//!   once however the worker stops. One transactional producer per worker,
//!   on a thread of its own; the writes that wait while a transaction
//!   commits go together in the next one (group commit), so concurrent
//!   jobs share the commit's round trips.
//! - `write_in_order`: one record after the other, each acknowledged before
//!   the next is sent, no transaction. An observe job's reply, then its
//!   journal entry: a worker that dies between them leaves a reply without
//!   an entry (the redelivered job runs again and is answered twice, which
//!   an observe job may be), never an entry without its reply. This saves
//!   the transaction's round trips (AddPartitionsToTxn, EndTxn, the
//!   markers): about 3-4 ms a job.

use std::sync::mpsc;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, FutureProducer, FutureRecord, Producer};
use tokio::sync::oneshot;

/// Most writes in one transaction.
const MAX_BATCH: usize = 256;

/// One record to write.
#[derive(Debug, Clone)]
pub struct Out {
    pub topic: String,
    /// None: by key (replies, dead letters); journal entries name theirs.
    pub partition: Option<i32>,
    pub key: String,
    pub value: Vec<u8>,
}

struct Batch {
    records: Vec<Out>,
    done: oneshot::Sender<Result<(), String>>,
}

/// The handle jobs write through.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Batch>,
    /// Idempotent, acks=all, not transactional (`write_in_order`).
    plain: FutureProducer,
    timeout: Duration,
}

impl Writer {
    /// Starts the producer (`transactional_id` fences an older producer of
    /// the same id: a restarted worker's unfinished transaction is aborted).
    pub fn start(
        base: &ClientConfig,
        transactional_id: &str,
        timeout: Duration,
    ) -> Result<Self, String> {
        let mut config = base.clone();
        let ms = timeout.as_millis().max(1000).to_string();
        config
            .set("transactional.id", transactional_id)
            .set("acks", "all")
            .set("enable.idempotence", "true")
            // A transaction that a dead worker left open blocks readers of
            // its partitions (read_committed) until the coordinator aborts
            // it: after this long.
            .set("transaction.timeout.ms", ms.as_str())
            .set("message.timeout.ms", ms.as_str())
            // Replies are small and waited for: send at once.
            .set("linger.ms", "1")
            // No report for a delivered message: the commit waits on
            // librdkafka's own count (see `delivered`); a failed one still
            // reports, and its transaction fails.
            .set("delivery.report.only.error", "true");
        let producer: BaseProducer = config
            .create()
            .map_err(|e| format!("creating the job producer: {e}"))?;
        producer
            .init_transactions(timeout)
            .map_err(|e| format!("initializing the job producer's transactions: {e}"))?;
        let mut plain = base.clone();
        plain
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("message.timeout.ms", ms.as_str())
            // Each record is waited for before the next: never linger.
            .set("linger.ms", "0");
        let plain: FutureProducer = plain
            .create()
            .map_err(|e| format!("creating the job producer: {e}"))?;
        let (tx, rx) = mpsc::channel::<Batch>();
        std::thread::Builder::new()
            .name("jobs-writer".into())
            .spawn(move || write_loop(producer, rx, timeout))
            .map_err(|e| format!("starting the job writer: {e}"))?;
        Ok(Self { tx, plain, timeout })
    }

    /// Writes `records` one after the other, outside a transaction: each
    /// is acknowledged by every in-sync replica before the next is sent,
    /// so a worker that stops midway leaves some first ones written, never
    /// a later one without those before it. Says why not, if not.
    pub async fn write_in_order(&self, records: Vec<Out>) -> Result<(), String> {
        for out in &records {
            let mut record = FutureRecord::to(&out.topic)
                .key(&out.key)
                .payload(&out.value);
            if let Some(p) = out.partition {
                record = record.partition(p);
            }
            self.plain
                .send(record, self.timeout)
                .await
                .map_err(|(e, _)| format!("writing a job's answer: {e}"))?;
        }
        Ok(())
    }

    /// Writes `records` in one committed transaction (with whatever else
    /// waits), or says why not.
    pub async fn write(&self, records: Vec<Out>) -> Result<(), String> {
        let (done, answer) = oneshot::channel();
        self.tx
            .send(Batch { records, done })
            .map_err(|_| "the job writer has stopped".to_string())?;
        answer
            .await
            .map_err(|_| "the job writer has stopped".to_string())?
    }
}

fn write_loop(producer: BaseProducer, rx: mpsc::Receiver<Batch>, timeout: Duration) {
    while let Ok(first) = rx.recv() {
        let mut batches = vec![first];
        while batches.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(b) => batches.push(b),
                Err(_) => break,
            }
        }
        let result = transact(&producer, &batches, timeout);
        let fatal = matches!(&result, Err((_, true)));
        let answer = result.map_err(|(e, _)| e);
        for batch in batches {
            let _ = batch.done.send(answer.clone());
        }
        if fatal {
            // Fenced by a newer producer of this id, or broken: every later
            // write fails (the worker restarts with a new producer).
            tracing::error!(error = ?answer.err(), "the job producer cannot go on");
            return;
        }
    }
}

/// Waits until what was sent is delivered (or `timeout` passed), so that
/// commit_transaction finds nothing in flight: rust-rdkafka's flush, which
/// it calls first, polls in 100 ms steps that last their whole 100 ms (every
/// transaction took 100 ms), and shorter steps spin.
fn delivered(producer: &BaseProducer, timeout: Duration) {
    crate::kafka::flush_blocking(producer.client(), timeout);
}

/// One transaction of every record of `batches`. Err((why, fatal)).
fn transact(
    producer: &BaseProducer,
    batches: &[Batch],
    timeout: Duration,
) -> Result<(), (String, bool)> {
    let fatal = |e: &KafkaError| {
        matches!(e, KafkaError::Transaction(r) if r.is_fatal())
            || matches!(
                e.rdkafka_error_code(),
                Some(RDKafkaErrorCode::Fenced | RDKafkaErrorCode::ProducerFenced)
            )
    };
    let fail = |e: KafkaError| {
        let is_fatal = fatal(&e);
        if !is_fatal {
            let _ = producer.abort_transaction(timeout);
        }
        Err((format!("writing a job's answer: {e}"), is_fatal))
    };
    if let Err(e) = producer.begin_transaction() {
        return fail(e);
    }
    for out in batches.iter().flat_map(|b| &b.records) {
        let mut record = BaseRecord::to(&out.topic).key(&out.key).payload(&out.value);
        if let Some(p) = out.partition {
            record = record.partition(p);
        }
        let mut record = record;
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    producer.poll(Duration::from_millis(10));
                    record = back;
                }
                Err((e, _)) => return fail(e),
            }
        }
    }
    delivered(producer, timeout);
    match producer.commit_transaction(timeout) {
        Ok(()) => Ok(()),
        Err(e) => fail(e),
    }
}
