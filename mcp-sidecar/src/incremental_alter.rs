//! IncrementalAlterConfigs for one topic, through librdkafka directly.
//!
//! rust-rdkafka 0.39 wraps only the legacy AlterConfigs, which replaces a
//! resource's whole config set and (in its result future) drops the
//! per-resource errors, so a config the broker rejects looks like success.
//! librdkafka has had `rd_kafka_IncrementalAlterConfigs` since 2.2: this
//! calls it through rdkafka-sys on a private queue and reads the
//! per-resource error, which is the lowest-risk real path. Blocking: run it
//! off the async runtime.

use std::ffi::{CStr, CString};
use std::os::raw::c_char;
use std::ptr;
use std::time::Duration;

use rdkafka::types::RDKafkaErrorCode;
use rdkafka_sys as rd;

use crate::error::{ErrorCode, ToolError, ToolResult};

/// One change to a topic config.
pub enum ConfigOp<'a> {
    Set(&'a str, &'a str),
    /// Back to the default.
    Delete(&'a str),
}

fn cstring(s: &str, what: &str) -> ToolResult<CString> {
    CString::new(s).map_err(|_| ToolError::invalid(format!("{what} must not contain NUL bytes")))
}

unsafe fn text(p: *const c_char) -> String {
    if p.is_null() {
        String::new()
    } else {
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }
}

/// Frees what it owns however the call ends.
struct Owned {
    resource: *mut rd::rd_kafka_ConfigResource_t,
    options: *mut rd::rd_kafka_AdminOptions_t,
    queue: *mut rd::rd_kafka_queue_t,
    event: *mut rd::rd_kafka_event_t,
}

impl Drop for Owned {
    fn drop(&mut self) {
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
            if !self.resource.is_null() {
                rd::rd_kafka_ConfigResource_destroy(self.resource);
            }
        }
    }
}

pub fn alter_topic_configs(
    admin: &crate::kafka::Admin,
    topic: &str,
    ops: &[ConfigOp<'_>],
    validate_only: bool,
    timeout: Duration,
) -> ToolResult<()> {
    let what = format!("update configs of topic {topic:?}");
    let name = cstring(topic, "topic")?;
    let rk = admin.inner().native_ptr();
    let timeout_ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    let mut owned = Owned {
        resource: ptr::null_mut(),
        options: ptr::null_mut(),
        queue: ptr::null_mut(),
        event: ptr::null_mut(),
    };
    // SAFETY: every pointer comes from librdkafka, is checked for null, and is
    // destroyed exactly once by `Owned`; the resource is not destroyed by
    // the admin call (librdkafka copies its arguments).
    unsafe {
        owned.resource = rd::rd_kafka_ConfigResource_new(
            rd::rd_kafka_ResourceType_t::RD_KAFKA_RESOURCE_TOPIC,
            name.as_ptr(),
        );
        for op in ops {
            let (key, op_type, value) = match op {
                ConfigOp::Set(k, v) => (
                    *k,
                    rd::rd_kafka_AlterConfigOpType_t::RD_KAFKA_ALTER_CONFIG_OP_TYPE_SET,
                    Some(*v),
                ),
                ConfigOp::Delete(k) => (
                    *k,
                    rd::rd_kafka_AlterConfigOpType_t::RD_KAFKA_ALTER_CONFIG_OP_TYPE_DELETE,
                    None,
                ),
            };
            let key = cstring(key, "config name")?;
            let value = value.map(|v| cstring(v, "config value")).transpose()?;
            let err = rd::rd_kafka_ConfigResource_add_incremental_config(
                owned.resource,
                key.as_ptr(),
                op_type,
                value.as_ref().map_or(ptr::null(), |v| v.as_ptr()),
            );
            if !err.is_null() {
                let message = text(rd::rd_kafka_error_string(err));
                rd::rd_kafka_error_destroy(err);
                return Err(ToolError::invalid(format!("{what}: {message}")));
            }
        }
        owned.options = rd::rd_kafka_AdminOptions_new(
            rk,
            rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_INCREMENTALALTERCONFIGS,
        );
        let mut errstr = [0 as c_char; 512];
        rd::rd_kafka_AdminOptions_set_request_timeout(
            owned.options,
            timeout_ms,
            errstr.as_mut_ptr(),
            errstr.len(),
        );
        rd::rd_kafka_AdminOptions_set_validate_only(
            owned.options,
            i32::from(validate_only),
            errstr.as_mut_ptr(),
            errstr.len(),
        );
        owned.queue = rd::rd_kafka_queue_new(rk);
        let mut resources = [owned.resource];
        rd::rd_kafka_IncrementalAlterConfigs(
            rk,
            resources.as_mut_ptr(),
            1,
            owned.options,
            owned.queue,
        );
        // The request times out inside librdkafka at timeout_ms; wait a little longer.
        owned.event = rd::rd_kafka_queue_poll(owned.queue, timeout_ms.saturating_add(1_000));
        if owned.event.is_null() {
            return Err(ToolError::new(
                ErrorCode::Timeout,
                format!("{what}: no answer in {timeout:?}"),
            ));
        }
        let err = rd::rd_kafka_event_error(owned.event);
        if err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            return Err(ToolError::from_kafka_code(
                &what,
                RDKafkaErrorCode::from(err),
            ));
        }
        let result = rd::rd_kafka_event_IncrementalAlterConfigs_result(owned.event);
        if result.is_null() {
            return Err(ToolError::new(
                ErrorCode::Internal,
                format!("{what}: unexpected answer type"),
            ));
        }
        let mut n = 0usize;
        let answered = rd::rd_kafka_IncrementalAlterConfigs_result_resources(result, &mut n);
        for i in 0..n {
            let r = *answered.add(i);
            let code = rd::rd_kafka_ConfigResource_error(r);
            if code != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                let detail = text(rd::rd_kafka_ConfigResource_error_string(r));
                let mut e = ToolError::from_kafka_code(&what, RDKafkaErrorCode::from(code));
                if !detail.is_empty() {
                    e.message = format!("{}: {detail}", e.message);
                }
                return Err(e);
            }
        }
    }
    Ok(())
}
