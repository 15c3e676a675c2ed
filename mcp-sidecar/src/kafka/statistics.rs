//! Requests the clients sent, by API, as librdkafka itself counts them:
//! each long-lived client emits statistics (`statistics.interval.ms`),
//! whose per-broker `req` object counts the requests sent by API name.
//! What each emission adds goes to `mcp_kafka_broker_requests_total` on
//! /metrics and to this `Kafka`'s own tally ([`Kafka::requests_sent`]),
//! which tests read: the README's request counts are measured, not argued.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use rdkafka::ClientContext;
use rdkafka::client::DefaultClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaError;
use serde::Deserialize;

use super::Kafka;
use super::ffi::{self, EventQueue};

/// Which of the sidecar's clients sent a request (the `client` label).
///
/// Not counted: the peek consumers and the short-lived group consumers
/// (committed offsets, resets). A group consumer lives for one request,
/// less than an interval. A client's statistics carry about 1 KB for each
/// partition of every topic it ever touched (librdkafka does not forget
/// them): a peek consumer's grew to 175 KB after peeks of 30 six-partition
/// topics, and there are eight of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ClientRole {
    /// Metadata (the cache and the probe), admin requests, group listings.
    Admin,
    /// Tools' publishes and the audit topic.
    Producer,
    /// Offset lookups (ListOffsets).
    Lookup,
}

impl ClientRole {
    pub fn as_str(self) -> &'static str {
        match self {
            ClientRole::Admin => "admin",
            ClientRole::Producer => "producer",
            ClientRole::Lookup => "lookup",
        }
    }
}

/// What one role's clients sent, as of their last statistics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoleCounts {
    /// Statistics emissions read: one more means counts newer than before.
    pub statistics: u64,
    /// Requests sent, by API name (`Metadata`, `ListOffsets`, ...).
    pub requests: BTreeMap<String, u64>,
}

/// What a `Kafka`'s clients sent since it connected, by role.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestsSent(BTreeMap<ClientRole, RoleCounts>);

impl RequestsSent {
    /// `role`'s clients' requests of `api` (librdkafka's name for it).
    pub fn requests(&self, role: ClientRole, api: &str) -> u64 {
        self.0
            .get(&role)
            .and_then(|c| c.requests.get(api))
            .copied()
            .unwrap_or(0)
    }

    /// Statistics emissions read from `role`'s clients.
    pub fn statistics(&self, role: ClientRole) -> u64 {
        self.0.get(&role).map_or(0, |c| c.statistics)
    }

    pub fn of(&self, role: ClientRole) -> Option<&RoleCounts> {
        self.0.get(&role)
    }
}

/// One `Kafka`'s tally, shared by its clients' contexts.
#[derive(Default)]
pub(super) struct Tally(Mutex<RequestsSent>);

impl Tally {
    fn add(&self, role: ClientRole, sent: &[(String, u64)]) {
        let mut tally = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let counts = tally.0.entry(role).or_default();
        counts.statistics += 1;
        for (api, n) in sent {
            *counts.requests.entry(api.clone()).or_default() += n;
        }
    }

    fn snapshot(&self) -> RequestsSent {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The context of a counted client: counts what its statistics say it
/// sent, and hands everything else to `inner` (logs, errors).
pub struct Counted<C = DefaultClientContext> {
    inner: C,
    role: ClientRole,
    tally: Arc<Tally>,
    /// What this client's last statistics said, per broker and API.
    last: Mutex<LastSeen>,
    /// Statistics that do not parse are logged once, not every interval.
    warned: AtomicBool,
}

impl<C> Counted<C> {
    pub(super) fn wrapping(inner: C, role: ClientRole, tally: &Arc<Tally>) -> Self {
        Self {
            inner,
            role,
            tally: Arc::clone(tally),
            last: Mutex::new(LastSeen::default()),
            warned: AtomicBool::new(false),
        }
    }
}

impl Counted {
    pub(super) fn new(role: ClientRole, tally: &Arc<Tally>) -> Self {
        Self::wrapping(DefaultClientContext, role, tally)
    }
}

impl<C: ClientContext> ClientContext for Counted<C> {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        self.inner.log(level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.inner.error(error, reason);
    }

    /// Parses only the brokers' request counts, not rust-rdkafka's whole
    /// `Statistics` (every topic and partition the client knows).
    fn stats_raw(&self, statistics: &[u8]) {
        let sent = {
            let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
            last.sent_since(statistics)
        };
        match sent {
            Ok(sent) => {
                for (api, n) in &sent {
                    crate::metrics::count_kafka_requests(self.role.as_str(), api, *n);
                }
                self.tally.add(self.role, &sent);
            }
            Err(e) => {
                if !self.warned.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        client = self.role.as_str(),
                        "librdkafka statistics not understood, requests not counted: {e}"
                    );
                }
            }
        }
    }
}

impl<C: ClientContext> ConsumerContext for Counted<C> {}

/// The part of librdkafka's statistics read here.
#[derive(Deserialize)]
struct Statistics<'a> {
    #[serde(borrow, default)]
    brokers: HashMap<Cow<'a, str>, Broker<'a>>,
}

#[derive(Deserialize)]
struct Broker<'a> {
    /// Requests sent to this broker by API, since its handle was created.
    #[serde(borrow, default)]
    req: HashMap<Cow<'a, str>, u64>,
}

/// A client's last request counts, per broker handle and API.
#[derive(Default)]
struct LastSeen(HashMap<String, HashMap<String, u64>>);

impl LastSeen {
    /// What `statistics` (one emission) says was sent since the last one:
    /// per API, only those with new requests. librdkafka counts per broker
    /// handle; a handle that disappears (decommissioned) is forgotten, and
    /// one whose count went down is a new handle under the same name.
    fn sent_since(&mut self, statistics: &[u8]) -> Result<Vec<(String, u64)>, serde_json::Error> {
        let now: Statistics<'_> = serde_json::from_slice(statistics)?;
        self.0
            .retain(|broker, _| now.brokers.contains_key(broker.as_str()));
        let mut sent: BTreeMap<&str, u64> = BTreeMap::new();
        for (broker, counts) in &now.brokers {
            let last = self.0.entry(broker.to_string()).or_default();
            for (api, &count) in &counts.req {
                let before = last.get(api.as_ref()).copied();
                let new = match before {
                    Some(before) if count >= before => count - before,
                    _ => count,
                };
                if before != Some(count) {
                    last.insert(api.to_string(), count);
                }
                if new > 0 {
                    *sent.entry(api.as_ref()).or_default() += new;
                }
            }
        }
        Ok(sent
            .into_iter()
            .map(|(api, n)| (api.to_string(), n))
            .collect())
    }
}

impl Kafka {
    /// Serves what librdkafka queued for the clients that nothing else
    /// polls: the statistics, logs and errors of the admin client and the
    /// lookup consumer (the producer polls itself). Unserved, they pile up.
    /// Blocking, briefly.
    pub(super) fn serve_events(&self) {
        ffi::serve_events(self.admin.inner(), EventQueue::Main);
        ffi::serve_events(
            rdkafka::consumer::Consumer::client(&self.lookup),
            EventQueue::Consumer,
        );
    }

    /// What this `Kafka`'s clients sent since it connected, as of each one's
    /// last statistics (emitted every statistics interval), after serving
    /// what was queued. For tests: a count that goes up by one
    /// statistics emission includes every request sent before this call.
    pub fn requests_sent(&self) -> RequestsSent {
        self.serve_events();
        self.sent.snapshot()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn emission(brokers: &[(&str, &[(&str, u64)])]) -> Vec<u8> {
        let brokers: serde_json::Map<String, serde_json::Value> = brokers
            .iter()
            .map(|(name, req)| {
                let req: serde_json::Map<String, serde_json::Value> = req
                    .iter()
                    .map(|(api, n)| (api.to_string(), (*n).into()))
                    .collect();
                (
                    name.to_string(),
                    serde_json::json!({"name": name, "state": "UP", "req": req, "rtt": {"avg": 1}}),
                )
            })
            .collect();
        serde_json::to_vec(&serde_json::json!({
            "name": "rdkafka#producer-1", "type": "producer", "ts": 1, "brokers": brokers,
            "topics": {"t": {"partitions": {"0": {"partition": 0}}}},
        }))
        .unwrap()
    }

    fn sent(pairs: &[(&str, u64)]) -> Vec<(String, u64)> {
        pairs.iter().map(|(a, n)| (a.to_string(), *n)).collect()
    }

    #[test]
    fn counts_what_each_emission_adds_over_all_brokers() {
        let mut last = LastSeen::default();
        let first = emission(&[
            ("b:9092/bootstrap", &[("Metadata", 2), ("ApiVersion", 1)]),
            ("b:9092/1", &[("Metadata", 1), ("ListOffsets", 0)]),
        ]);
        assert_eq!(
            last.sent_since(&first).unwrap(),
            sent(&[("ApiVersion", 1), ("Metadata", 3)])
        );
        assert_eq!(last.sent_since(&first).unwrap(), sent(&[]), "nothing new");
        let second = emission(&[
            ("b:9092/bootstrap", &[("Metadata", 2), ("ApiVersion", 1)]),
            ("b:9092/1", &[("Metadata", 4), ("ListOffsets", 2)]),
        ]);
        assert_eq!(
            last.sent_since(&second).unwrap(),
            sent(&[("ListOffsets", 2), ("Metadata", 3)])
        );
    }

    #[test]
    fn a_broker_handle_that_goes_and_comes_back_counts_from_zero() {
        let mut last = LastSeen::default();
        last.sent_since(&emission(&[
            ("b/1", &[("Fetch", 10)]),
            ("b/2", &[("Fetch", 5)]),
        ]))
        .unwrap();
        // b/2 decommissioned: what it sent stays counted, nothing is subtracted.
        assert_eq!(
            last.sent_since(&emission(&[("b/1", &[("Fetch", 12)])]))
                .unwrap(),
            sent(&[("Fetch", 2)])
        );
        // A new handle under the old name starts again from zero.
        assert_eq!(
            last.sent_since(&emission(&[
                ("b/1", &[("Fetch", 12)]),
                ("b/2", &[("Fetch", 3)])
            ]))
            .unwrap(),
            sent(&[("Fetch", 3)])
        );
        // A count that went down: a new handle that already sent 1.
        assert_eq!(
            last.sent_since(&emission(&[
                ("b/1", &[("Fetch", 1)]),
                ("b/2", &[("Fetch", 3)])
            ]))
            .unwrap(),
            sent(&[("Fetch", 1)])
        );
    }

    #[test]
    fn statistics_that_do_not_parse_are_an_error_and_change_nothing() {
        let mut last = LastSeen::default();
        last.sent_since(&emission(&[("b/1", &[("Metadata", 1)])]))
            .unwrap();
        assert!(last.sent_since(b"{\"brokers\": 3}").is_err());
        assert!(last.sent_since(b"not json").is_err());
        assert_eq!(
            last.sent_since(&emission(&[("b/1", &[("Metadata", 2)])]))
                .unwrap(),
            sent(&[("Metadata", 1)])
        );
    }

    #[test]
    fn each_role_keeps_its_own_counts() {
        let tally = Arc::new(Tally::default());
        let lookup = Counted::new(ClientRole::Lookup, &tally);
        let producer = Counted::new(ClientRole::Producer, &tally);
        lookup.stats_raw(&emission(&[("b/1", &[("ListOffsets", 2)])]));
        producer.stats_raw(&emission(&[("b/1", &[("ListOffsets", 5), ("Fetch", 1)])]));
        lookup.stats_raw(&emission(&[("b/1", &[("ListOffsets", 4)])]));
        let sent = tally.snapshot();
        assert_eq!(sent.requests(ClientRole::Lookup, "ListOffsets"), 4);
        assert_eq!(sent.statistics(ClientRole::Lookup), 2);
        assert_eq!(sent.requests(ClientRole::Producer, "ListOffsets"), 5);
        assert_eq!(sent.requests(ClientRole::Producer, "Fetch"), 1);
        assert_eq!(sent.requests(ClientRole::Admin, "Metadata"), 0);
        // Statistics that do not parse are not an emission read.
        lookup.stats_raw(b"{");
        assert_eq!(tally.snapshot().statistics(ClientRole::Lookup), 2);
    }
}
