//! librdkafka calls that rust-rdkafka does not wrap, or wraps with a leak.
//! (IncrementalAlterConfigs has its own module: `crate::incremental_alter`.)

use std::ffi::CStr;
use std::time::Duration;

use rdkafka::client::NativeClient;

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
