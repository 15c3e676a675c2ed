//! The workers' journal: a compacted topic keyed by jobId whose partition
//! p belongs to request partition p, so whichever replica owns request
//! partition p reads journal partition p when it is assigned, and knows
//! every job of that partition that was started or answered.
//!
//! Two kinds of entry:
//! - `started`, before a mutation runs (a committed transaction, awaited):
//!   a redelivered mutation that finds it, without a `done`, may have
//!   changed Kafka, so it is answered OUTCOME_UNKNOWN, never run again;
//! - `done`: the reply, and the request offsets it answered. A mutation's
//!   is in the same transaction as its reply; an observe job's (and a
//!   dead-lettered record's) is written once its reply is acknowledged.
//!   Either way a redelivered record whose offset is there was answered
//!   (its reply is written) and is passed over; another record with that
//!   jobId within the dedup window gets the same reply again. An observe
//!   job whose worker died after its reply and before its entry runs again
//!   and is answered twice.
//!
//! Reading partition p waits until no transaction is open on it (its last
//! stable offset is its end), so an answer a dead worker committed is seen.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::kafka::QuietEof;

/// How many answered offsets one entry keeps (the first and the latest):
/// a jobId submitted more often than this within its window may be
/// answered twice after a crash, never run twice.
const MAX_OFFSETS: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum State {
    Started,
    Done,
}

/// One journal entry (the latest for its key is what counts).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    pub state: State,
    pub tool: String,
    /// When the entry was written.
    #[serde(with = "timestamp")]
    pub at: jiff::Timestamp,
    /// The request offsets (of this partition) answered with `reply`.
    #[serde(default)]
    pub offsets: Vec<i64>,
    /// `done`: the reply as it was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<Value>,
}

mod timestamp {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &jiff::Timestamp, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<jiff::Timestamp, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl Entry {
    pub fn started(tool: &str) -> Self {
        Self {
            state: State::Started,
            tool: tool.to_string(),
            at: jiff::Timestamp::now(),
            offsets: Vec::new(),
            reply: None,
        }
    }

    /// The `done` entry of a reply to the record at `offset`, after what
    /// the jobId's entry said before (`previous`).
    pub fn done(tool: &str, reply: Value, offset: i64, previous: Option<&Entry>) -> Self {
        let mut offsets: Vec<i64> = previous
            .filter(|p| p.state == State::Done)
            .map(|p| p.offsets.clone())
            .unwrap_or_default();
        offsets.push(offset);
        if offsets.len() > MAX_OFFSETS {
            offsets.drain(1..offsets.len() - (MAX_OFFSETS - 1));
        }
        Self {
            state: State::Done,
            tool: tool.to_string(),
            at: jiff::Timestamp::now(),
            offsets,
            reply: Some(reply),
        }
    }
}

/// What to do with a record, given its jobId's entry.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Not seen (or seen before the dedup window): run it.
    Run,
    /// This very record was answered (a redelivery after a crash or a
    /// rebalance): its reply is in the reply topic; pass over it.
    Answered,
    /// Another record with this jobId was answered within the window:
    /// send that reply again.
    Replay(Value),
    /// A mutation with this jobId started and was never answered: it may
    /// have changed Kafka. Answer OUTCOME_UNKNOWN, do not run it.
    OutcomeUnknown,
}

/// The decision for the record at `offset` whose jobId has `entry`.
pub fn decide(
    entry: Option<&Entry>,
    offset: i64,
    now: jiff::Timestamp,
    window: Duration,
) -> Decision {
    let Some(entry) = entry else {
        return Decision::Run;
    };
    if entry.state == State::Done && entry.offsets.contains(&offset) {
        return Decision::Answered;
    }
    let window = jiff::SignedDuration::try_from(window).unwrap_or(jiff::SignedDuration::MAX);
    if entry.at.checked_add(window).is_ok_and(|end| end < now) {
        return Decision::Run;
    }
    match (&entry.state, &entry.reply) {
        (State::Done, Some(reply)) => Decision::Replay(reply.clone()),
        _ => Decision::OutcomeUnknown,
    }
}

/// The entries of one journal partition, by key.
pub type Entries = HashMap<String, Entry>;

/// Forgets entries older than the window (and than any redelivery: the
/// records they answered were committed long since).
pub fn forget_old(entries: &mut Entries, now: jiff::Timestamp, window: Duration) {
    let window = jiff::SignedDuration::try_from(window).unwrap_or(jiff::SignedDuration::MAX);
    entries.retain(|_, e| e.at.checked_add(window).is_ok_and(|end| end >= now));
}

/// Reads journal partitions `partitions` to their ends, once no
/// transaction is open on them, within `wait`: one reader for all of them,
/// since a rebalance hands over several at once and each reader costs a
/// connection and a fetch session (a reader per partition took 0.3-1 s
/// each, one after the other, while the worker's consumer thread waited).
/// `base` is the consumer settings of the served cluster. Entries that do
/// not parse are skipped (logged).
pub fn load(
    base: &ClientConfig,
    topic: &str,
    partitions: &[i32],
    wait: Duration,
    window: Duration,
) -> Result<HashMap<i32, Entries>, String> {
    if partitions.is_empty() {
        return Ok(HashMap::new());
    }
    let consumer: BaseConsumer<QuietEof> = base
        .clone()
        .set("group.id", "mcp-kafka-sidecar-journal")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest")
        .create_with_context(QuietEof)
        .map_err(|e| format!("creating the journal reader: {e}"))?;
    let mut tpl = TopicPartitionList::new();
    for &p in partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .map_err(|e| e.to_string())?;
    }
    consumer.assign(&tpl).map_err(|e| e.to_string())?;
    let deadline = std::time::Instant::now() + wait;
    // Each partition's entries, and the offset after the last record read.
    let mut read: HashMap<i32, (Entries, i64)> = partitions
        .iter()
        .map(|&p| (p, (Entries::new(), 0)))
        .collect();
    let mut open: BTreeSet<i32> = partitions.iter().copied().collect();
    // At the last stable offset: the end only if no transaction is open
    // (markers and aborted records move the end too).
    let at_end = |p: i32, next: i64| -> Result<bool, String> {
        let (_, high) = consumer
            .fetch_watermarks(topic, p, Duration::from_secs(5))
            .map_err(|e| format!("journal {topic}/{p}: {e}"))?;
        let position = consumer
            .position()
            .ok()
            .and_then(|tpl| {
                tpl.find_partition(topic, p)
                    .and_then(|e| e.offset().to_raw())
            })
            .unwrap_or(next)
            .max(next);
        Ok(position >= high)
    };
    while !open.is_empty() {
        if std::time::Instant::now() > deadline {
            return Err(format!(
                "journal {topic}, partitions {open:?}: not readable to the end within {wait:?} (a transaction stays open?)"
            ));
        }
        let reached: Vec<i32> = match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => {
                let p = message.partition();
                let Some((entries, next)) = read.get_mut(&p) else {
                    continue;
                };
                *next = message.offset() + 1;
                let Some(key) = message.key().and_then(|k| std::str::from_utf8(k).ok()) else {
                    continue;
                };
                match message.payload().map(serde_json::from_slice::<Entry>) {
                    Some(Ok(entry)) => {
                        entries.insert(key.to_string(), entry);
                    }
                    // A tombstone: compaction's way of forgetting a key.
                    None => {
                        entries.remove(key);
                    }
                    Some(Err(e)) => {
                        tracing::warn!(topic, partition = p, offset = message.offset(), error = %e, "a journal entry does not parse; skipped");
                    }
                }
                continue;
            }
            Some(Err(KafkaError::PartitionEOF(p))) => vec![p],
            None => open.iter().copied().collect(),
            Some(Err(e)) => return Err(format!("journal {topic}: {e}")),
        };
        for p in reached {
            let next = read.get(&p).map_or(0, |(_, next)| *next);
            if open.contains(&p) && at_end(p, next)? {
                open.remove(&p);
            }
        }
    }
    let now = jiff::Timestamp::now();
    Ok(read
        .into_iter()
        .map(|(p, (mut entries, _))| {
            forget_old(&mut entries, now, window);
            (p, entries)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const WINDOW: Duration = Duration::from_secs(600);

    #[test]
    fn unseen_jobs_run_and_a_started_mutation_is_never_run_again() {
        let now = jiff::Timestamp::now();
        assert_eq!(decide(None, 5, now, WINDOW), Decision::Run);
        let started = Entry::started("publish_message");
        assert_eq!(
            decide(Some(&started), 5, now, WINDOW),
            Decision::OutcomeUnknown,
            "redelivered after a crash mid-mutation"
        );
        assert_eq!(
            decide(Some(&started), 9, now, WINDOW),
            Decision::OutcomeUnknown,
            "submitted again while its outcome is unknown"
        );
    }

    #[test]
    fn an_answered_record_is_passed_over_and_a_duplicate_gets_the_first_reply() {
        let now = jiff::Timestamp::now();
        let reply = json!({"jobId": "j", "ok": true, "result": {"n": 1}});
        let done = Entry::done("list_topics", reply.clone(), 5, None);
        assert_eq!(decide(Some(&done), 5, now, WINDOW), Decision::Answered);
        assert_eq!(
            decide(Some(&done), 8, now, WINDOW),
            Decision::Replay(reply.clone())
        );
        // The duplicate's answer is recorded with the first's offsets.
        let again = Entry::done("list_topics", reply.clone(), 8, Some(&done));
        assert_eq!(again.offsets, vec![5, 8]);
        assert_eq!(decide(Some(&again), 5, now, WINDOW), Decision::Answered);
        assert_eq!(decide(Some(&again), 8, now, WINDOW), Decision::Answered);
        // After a `started` (a mutation's second life), offsets start anew.
        let after_started = Entry::done("x", reply, 3, Some(&Entry::started("x")));
        assert_eq!(after_started.offsets, vec![3]);
    }

    #[test]
    fn the_window_bounds_dedup_but_not_redelivery() {
        let reply = json!({"ok": true});
        let done = Entry::done("list_topics", reply, 5, None);
        let later = done.at + jiff::SignedDuration::from_secs(601);
        assert_eq!(decide(Some(&done), 8, later, WINDOW), Decision::Run);
        assert_eq!(decide(Some(&done), 5, later, WINDOW), Decision::Answered);
        let mut entries = Entries::from([("j".to_string(), done)]);
        forget_old(&mut entries, later, WINDOW);
        assert!(entries.is_empty());
    }

    #[test]
    fn offsets_are_bounded_keeping_the_first() {
        let mut entry = Entry::done("t", json!({}), 0, None);
        for offset in 1..40 {
            entry = Entry::done("t", json!({}), offset, Some(&entry));
        }
        assert_eq!(entry.offsets.len(), MAX_OFFSETS);
        assert_eq!(entry.offsets[0], 0);
        assert_eq!(*entry.offsets.last().unwrap(), 39);
    }

    #[test]
    fn entries_round_trip() {
        let entry = Entry::done("t", json!({"jobId": "j"}), 4, None);
        let text = serde_json::to_string(&entry).unwrap();
        assert_eq!(serde_json::from_str::<Entry>(&text).unwrap(), entry);
        let started: Entry =
            serde_json::from_str(r#"{"state":"started","tool":"t","at":"2026-12-01T18:00:00Z"}"#)
                .unwrap();
        assert_eq!(started.state, State::Started);
    }
}
