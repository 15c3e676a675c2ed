//! One librdkafka admin request on a private queue, for the admin calls
//! rust-rdkafka does not wrap (`consumer_groups`, `acls`,
//! `crate::incremental_alter`):
//! its options, queue and answer freed exactly once however the call ends,
//! the request timeout set, the wait bounded and the request-level error
//! classified in one place.

use std::ffi::{CStr, CString};
use std::os::raw::c_char;
use std::ptr;
use std::time::Duration;

use rdkafka::types::RDKafkaErrorCode;
use rdkafka_sys as rd;

use crate::error::{ErrorCode, ToolError, ToolResult};

/// A C string librdkafka owns, copied; null is empty.
pub(crate) unsafe fn text(p: *const c_char) -> String {
    if p.is_null() {
        String::new()
    } else {
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }
}

/// A string for librdkafka; one holding a NUL byte is an invalid argument
/// (`what` names it), not a panic.
pub(crate) fn cstring(s: &str, what: &str) -> ToolResult<CString> {
    CString::new(s).map_err(|_| ToolError::invalid(format!("{what} must not contain NUL bytes")))
}

/// One admin request on a private queue: the options, the queue and the
/// answer, each freed exactly once however the call ends.
pub(crate) struct Request {
    pub(crate) options: *mut rd::rd_kafka_AdminOptions_t,
    pub(crate) queue: *mut rd::rd_kafka_queue_t,
    event: *mut rd::rd_kafka_event_t,
    timeout_ms: i32,
}

impl Request {
    /// Options for `op` with `timeout` as the request timeout, and a queue;
    /// `rk` is a live client handle that outlives the request.
    pub(crate) fn new(
        rk: *mut rd::rd_kafka_t,
        op: rd::rd_kafka_admin_op_t,
        timeout: Duration,
    ) -> Self {
        let timeout_ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: `rk` is a live client handle; both objects are ours and
        // destroyed in `drop`. Setting the timeout fails only for a value
        // out of range (errstr is then written, and ignored: the default stays).
        unsafe {
            let options = rd::rd_kafka_AdminOptions_new(rk, op);
            if !options.is_null() {
                let mut errstr = [0 as c_char; 256];
                rd::rd_kafka_AdminOptions_set_request_timeout(
                    options,
                    timeout_ms,
                    errstr.as_mut_ptr(),
                    errstr.len(),
                );
            }
            Request {
                options,
                queue: rd::rd_kafka_queue_new(rk),
                event: ptr::null_mut(),
                timeout_ms,
            }
        }
    }

    pub(crate) fn ready(&self, what: &str) -> ToolResult<()> {
        if self.options.is_null() || self.queue.is_null() {
            return Err(ToolError::new(
                ErrorCode::Internal,
                format!("{what}: librdkafka refused to prepare the request"),
            ));
        }
        Ok(())
    }

    /// Waits for the answer (librdkafka times the request out at the
    /// request timeout: a second more is enough) and checks the
    /// request-level error. The event stays owned by `self`; its type is
    /// checked by the caller's `rd_kafka_event_*_result`, null for another.
    pub(crate) fn answer(&mut self, what: &str) -> ToolResult<*mut rd::rd_kafka_event_t> {
        self.answer_or_refusal(what)?
            .map_err(|refusal| refusal.into_tool_error(what))
    }

    /// `answer`, with a request-level error as Kafka's code, for a caller
    /// that reads one of them as an answer (describe_acls reads
    /// SECURITY_DISABLED so). No answer in time is still an error.
    pub(crate) fn answer_or_refusal(
        &mut self,
        what: &str,
    ) -> ToolResult<Result<*mut rd::rd_kafka_event_t, Refusal>> {
        // SAFETY: the queue is ours; the event polled is kept in `self` and
        // destroyed in `drop`, after the caller's last read of what it owns.
        unsafe {
            self.event = rd::rd_kafka_queue_poll(self.queue, self.timeout_ms.saturating_add(1_000));
            if self.event.is_null() {
                return Err(ToolError::new(
                    ErrorCode::Timeout,
                    format!("{what}: no answer in {} ms", self.timeout_ms),
                ));
            }
            let err = rd::rd_kafka_event_error(self.event);
            if err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                return Ok(Err(Refusal {
                    code: RDKafkaErrorCode::from(err),
                    detail: text(rd::rd_kafka_event_error_string(self.event)),
                }));
            }
            Ok(Ok(self.event))
        }
    }
}

/// A request-level error: Kafka's (or librdkafka's) code and text.
pub(crate) struct Refusal {
    pub(crate) code: RDKafkaErrorCode,
    pub(crate) detail: String,
}

impl Refusal {
    pub(crate) fn into_tool_error(self, what: &str) -> ToolError {
        let mut e = ToolError::from_kafka_code(what, self.code);
        if !self.detail.is_empty() {
            e.message = format!("{}: {}", e.message, self.detail);
        }
        e
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        // SAFETY: each pointer is null or ours, destroyed once here.
        unsafe {
            if !self.event.is_null() {
                rd::rd_kafka_event_destroy(self.event);
            }
            if !self.queue.is_null() {
                rd::rd_kafka_queue_destroy(self.queue);
            }
            if !self.options.is_null() {
                rd::rd_kafka_AdminOptions_destroy(self.options);
            }
        }
    }
}
