//! librdkafka calls that rust-rdkafka does not wrap, or wraps with a leak.
//! (IncrementalAlterConfigs has its own module, `crate::incremental_alter`,
//! and so do ListConsumerGroups and DescribeConsumerGroups: `consumer_groups`.)

use std::ffi::CStr;
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::client::{Client, NativeClient};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;

/// Asks the cluster for its ID. rust-rdkafka's `fetch_cluster_id` copies
/// librdkafka's string and never frees it (about 40 bytes lost a call:
/// the sidecar's RSS grew 2.5 MiB in 60,000 cluster_status calls);
/// this frees it with `rd_kafka_mem_free`, as librdkafka asks. Blocking.
pub(super) fn cluster_id(client: &NativeClient, timeout: Duration) -> Option<String> {
    let rk = client.ptr();
    let timeout_ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: `rk` lives as long as `client`; the returned string is
    // librdkafka's own allocation, read once and freed exactly once.
    unsafe {
        let id = rdkafka_sys::rd_kafka_clusterid(rk, timeout_ms);
        if id.is_null() {
            return None;
        }
        let text = CStr::from_ptr(id).to_str().ok().map(str::to_string);
        rdkafka_sys::rd_kafka_mem_free(rk, id.cast());
        text
    }
}

/// The partition's high watermark as the last fetch response said it
/// (librdkafka stores it before it hands out that response's messages);
/// no request. rust-rdkafka does not wrap this call.
pub(super) fn fetched_high_watermark(
    client: &NativeClient,
    topic: &CStr,
    partition: i32,
) -> Option<i64> {
    let (mut low, mut high) = (-1i64, -1i64);
    // SAFETY: the client lives as long as `client`; `topic` is a valid C
    // string for the call; librdkafka writes the two offsets and keeps no pointer.
    let err = unsafe {
        rdkafka_sys::rd_kafka_get_watermark_offsets(
            client.ptr(),
            topic.as_ptr(),
            partition,
            &mut low,
            &mut high,
        )
    };
    (err == rdkafka_sys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0)
        .then_some(high)
}

/// Which queue a client's application events (statistics, logs, errors)
/// arrive on: the main queue, or for a consumer with a `group.id` the
/// consumer queue, which rust-rdkafka forwards the main queue to.
pub(super) enum EventQueue {
    Main,
    Consumer,
}

/// Events served in one call at most: a bound on the time one call takes
/// (a handful queue up between two probes).
const MAX_EVENTS: usize = 1024;

/// Serves what librdkafka queued on `client`'s `queue` without waiting,
/// as rust-rdkafka's own polling would: statistics, logs and errors go to
/// the client's context; anything else (no fetches or rebalances on the
/// clients served here: none is assigned or subscribed) is dropped.
/// rust-rdkafka polls the admin client only for its admin results, and a
/// consumer's `poll(0)` serves one event at most.
pub(super) fn serve_events<C: ClientContext>(client: &Client<C>, queue: EventQueue) {
    let rk = client.native_ptr();
    // SAFETY: `rk` lives as long as `client`; the queue handle is ours and
    // destroyed below; every event polled is destroyed exactly once, after
    // the last read of the strings it owns.
    unsafe {
        let q = match queue {
            EventQueue::Main => rdkafka_sys::rd_kafka_queue_get_main(rk),
            EventQueue::Consumer => rdkafka_sys::rd_kafka_queue_get_consumer(rk),
        };
        if q.is_null() {
            return;
        }
        for _ in 0..MAX_EVENTS {
            let event = rdkafka_sys::rd_kafka_queue_poll(q, 0);
            if event.is_null() {
                break;
            }
            match rdkafka_sys::rd_kafka_event_type(event) {
                rdkafka_sys::RD_KAFKA_EVENT_STATS => {
                    let json = rdkafka_sys::rd_kafka_event_stats(event);
                    if !json.is_null() {
                        client.context().stats_raw(CStr::from_ptr(json).to_bytes());
                    }
                }
                rdkafka_sys::RD_KAFKA_EVENT_LOG => {
                    let (mut fac, mut text, mut level) = (std::ptr::null(), std::ptr::null(), 0);
                    if rdkafka_sys::rd_kafka_event_log(event, &mut fac, &mut text, &mut level) == 0
                        && !fac.is_null()
                        && !text.is_null()
                    {
                        client.context().log(
                            log_level(level),
                            CStr::from_ptr(fac).to_string_lossy().trim(),
                            CStr::from_ptr(text).to_string_lossy().trim(),
                        );
                    }
                }
                rdkafka_sys::RD_KAFKA_EVENT_ERROR => {
                    let code = rdkafka_sys::rd_kafka_event_error(event);
                    let reason = rdkafka_sys::rd_kafka_event_error_string(event);
                    let reason = if reason.is_null() {
                        Default::default()
                    } else {
                        CStr::from_ptr(reason).to_string_lossy()
                    };
                    client
                        .context()
                        .error(KafkaError::Global(code.into()), reason.trim());
                }
                _ => {}
            }
            rdkafka_sys::rd_kafka_event_destroy(event);
        }
        rdkafka_sys::rd_kafka_queue_destroy(q);
    }
}

/// librdkafka's syslog level as rust-rdkafka names it.
fn log_level(level: i32) -> RDKafkaLogLevel {
    match level {
        i32::MIN..=0 => RDKafkaLogLevel::Emerg,
        1 => RDKafkaLogLevel::Alert,
        2 => RDKafkaLogLevel::Critical,
        3 => RDKafkaLogLevel::Error,
        4 => RDKafkaLogLevel::Warning,
        5 => RDKafkaLogLevel::Notice,
        6 => RDKafkaLogLevel::Info,
        _ => RDKafkaLogLevel::Debug,
    }
}

/// Waits, blocking, until every message `client` produced is delivered
/// (or `timeout` passed). For a producer with
/// `delivery.report.only.error=true`: a delivered message leaves no report
/// to serve, so librdkafka's own flush can wait on its count alone.
/// rust-rdkafka's flush polls its queue in steps that last their whole
/// length (100 ms), and a shorter step rounds to a non-blocking poll that
/// spins.
pub fn flush_blocking<C: ClientContext>(client: &Client<C>, timeout: Duration) {
    let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: the handle lives as long as `client`; rd_kafka_flush only
    // waits on it.
    unsafe {
        rdkafka_sys::rd_kafka_flush(client.native_ptr(), ms);
    }
}
