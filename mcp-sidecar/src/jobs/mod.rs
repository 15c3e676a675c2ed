//! Tool calls as Kafka jobs: every replica of a server is a worker in one
//! consumer group on the server's request topic. A job is one record,
//! value `{jobId, tool, arguments, deadline?}`, the caller's bearer token
//! in its `authorization` header; it runs through the same call path as an
//! MCP call (`KafkaMcp::call_as`: TokenReview, SubjectAccessReview per
//! tool, policy, fence, scopes, plans, rate limits, one audit record, here
//! with `via: kafka` and the jobId), and its reply
//! `{jobId, ok, result | error, startedAt, finishedAt}` is written, keyed
//! by jobId, to a reply topic.
//!
//! Delivery: an offset is committed only once its record is answered; a
//! mutation's reply and its journal entry are one transaction, so it is
//! answered exactly once and run at most once; an observe job's reply is
//! written before its journal entry, without a transaction, so it is
//! answered at least once and may run again after a crash (see `journal`).
//!
//! - `record`: the request, reply and dead-letter records;
//! - `journal`: what was started and answered, per request partition;
//! - `writer`: the transactions;
//! - `worker`: the consumer, its partitions, offsets and flow control;
//! - `metrics`: received, answered by outcome, in flight, lag.

pub mod journal;
pub mod metrics;
pub mod record;
mod worker;
mod writer;

pub use metrics::JobMetrics;
pub use worker::{FAULT_ENV, spawn};
