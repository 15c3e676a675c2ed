//! IncrementalAlterConfigs for one topic, through librdkafka directly.
//!
//! rust-rdkafka 0.39 wraps only the legacy AlterConfigs, which replaces a
//! resource's whole config set and (in its result future) drops the
//! per-resource errors, so a config the broker rejects looks like success.
//! librdkafka has had `rd_kafka_IncrementalAlterConfigs` since 2.2: this
//! calls it through rdkafka-sys on a private queue and reads the
//! per-resource error, which is the lowest-risk real path. Blocking: run it
//! off the async runtime.

use std::os::raw::c_char;
use std::ptr;
use std::time::Duration;

use rdkafka::types::RDKafkaErrorCode;
use rdkafka_sys as rd;

use crate::error::{ErrorCode, ToolError, ToolResult};
use crate::kafka::admin_request::{Request, cstring, text};

/// One change to a topic config.
pub enum ConfigOp<'a> {
    Set(&'a str, &'a str),
    /// Back to the default.
    Delete(&'a str),
}

/// The config resource, freed however the call ends (the request's options,
/// queue and answer are freed by `Request`).
struct Resource(*mut rd::rd_kafka_ConfigResource_t);

impl Drop for Resource {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: ours, destroyed once here; the admin call copied it.
            unsafe { rd::rd_kafka_ConfigResource_destroy(self.0) };
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
    let mut request = Request::new(
        rk,
        rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_INCREMENTALALTERCONFIGS,
        timeout,
    );
    request.ready(&what)?;
    // SAFETY: every pointer comes from librdkafka, is checked for null, and is
    // destroyed exactly once by `Resource` or `Request`; the resource is not
    // destroyed by the admin call (librdkafka copies its arguments).
    unsafe {
        let resource = Resource(rd::rd_kafka_ConfigResource_new(
            rd::rd_kafka_ResourceType_t::RD_KAFKA_RESOURCE_TOPIC,
            name.as_ptr(),
        ));
        if resource.0.is_null() {
            return Err(ToolError::new(
                ErrorCode::Internal,
                format!("{what}: librdkafka refused to prepare the request"),
            ));
        }
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
                resource.0,
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
        let mut errstr = [0 as c_char; 512];
        rd::rd_kafka_AdminOptions_set_validate_only(
            request.options,
            i32::from(validate_only),
            errstr.as_mut_ptr(),
            errstr.len(),
        );
        let mut resources = [resource.0];
        rd::rd_kafka_IncrementalAlterConfigs(
            rk,
            resources.as_mut_ptr(),
            1,
            request.options,
            request.queue,
        );
        let event = request.answer(&what)?;
        let result = rd::rd_kafka_event_IncrementalAlterConfigs_result(event);
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
