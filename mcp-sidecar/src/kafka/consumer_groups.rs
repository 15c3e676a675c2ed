//! Consumer groups of both group protocols, through librdkafka's Admin API.
//!
//! rust-rdkafka 0.39 wraps only librdkafka's classic group listing
//! (`rd_kafka_list_groups`: ListGroups, then the classic DescribeGroups),
//! which does not see a group of Kafka 4's consumer protocol (KIP-848,
//! `group.protocol=consumer`): such a group with members comes back `Dead`
//! and empty. `rd_kafka_ListConsumerGroups` lists groups of both protocols
//! with their type, and `rd_kafka_DescribeConsumerGroups` asks
//! ConsumerGroupDescribe first and falls back to DescribeGroups for a
//! classic group (librdkafka decides per group). Both are called here
//! through rdkafka-sys on a private queue. Blocking: run off the async runtime.

use std::collections::BTreeMap;
use std::ffi::{CStr, CString};
use std::os::raw::c_char;
use std::ptr;
use std::time::Duration;

use rdkafka::client::NativeClient;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka_sys as rd;
use schemars::JsonSchema;
use serde::Serialize;

use crate::error::{ErrorCode, ToolError, ToolResult};

/// A group's protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum GroupType {
    /// The classic protocol (JoinGroup/SyncGroup, client-side assignment).
    Classic,
    /// Kafka 4's consumer protocol (KIP-848: ConsumerGroupHeartbeat,
    /// assignment by the broker).
    Consumer,
    /// A broker that does not say (ListGroups before version 5).
    Unknown,
}

impl GroupType {
    fn of(t: rd::rd_kafka_consumer_group_type_t) -> Self {
        use rd::rd_kafka_consumer_group_type_t as T;
        match t {
            T::RD_KAFKA_CONSUMER_GROUP_TYPE_CLASSIC => Self::Classic,
            T::RD_KAFKA_CONSUMER_GROUP_TYPE_CONSUMER => Self::Consumer,
            _ => Self::Unknown,
        }
    }
}

/// One group of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    pub group_id: String,
    /// librdkafka's name of the group's state (see [`state_name`]).
    pub state: String,
    pub group_type: GroupType,
    /// A group without a protocol type: it only stores offsets (no
    /// consumer ever joined it).
    pub simple: bool,
}

/// One group as Kafka describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDetail {
    pub group_id: String,
    pub state: String,
    pub group_type: GroupType,
    pub simple: bool,
    /// The partition assignor: the classic protocol's name (range,
    /// cooperative-sticky...) or the broker's assignor (uniform, range).
    pub assignor: String,
    pub members: Vec<MemberDetail>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDetail {
    pub member_id: String,
    pub client_id: String,
    pub host: String,
    /// topic -> partitions assigned to the member now (for a consumer-protocol
    /// member: what it owns, not yet the target the broker is moving it to).
    pub assignment: BTreeMap<String, Vec<i32>>,
}

/// librdkafka's name of a group state. librdkafka 2.12 names only the
/// classic states (PreparingRebalance, CompletingRebalance, Stable, Empty,
/// Dead): a consumer-protocol group between assignments (Kafka's
/// Assigning, Reconciling, NotReady) is `Unknown`, its Stable, Empty and
/// Dead are named as for a classic group.
fn state_name(state: rd::rd_kafka_consumer_group_state_t) -> String {
    // SAFETY: librdkafka returns a static string (or null out of range).
    unsafe { text(rd::rd_kafka_consumer_group_state_name(state)) }
}

/// A C string librdkafka owns, copied; null is empty.
unsafe fn text(p: *const c_char) -> String {
    if p.is_null() {
        String::new()
    } else {
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }
}

/// `err`'s code as a tool error about `what`, with librdkafka's message
/// when it says more than the code (e.g. "not a consumer group (connect)").
unsafe fn tool_error(what: &str, err: *const rd::rd_kafka_error_t) -> ToolError {
    let code = RDKafkaErrorCode::from(unsafe { rd::rd_kafka_error_code(err) });
    let detail = unsafe { text(rd::rd_kafka_error_string(err)) };
    let mut e = ToolError::from_kafka_code(what, code);
    if !detail.is_empty() && detail != code.to_string() {
        e.message = format!("{}: {detail}", e.message);
    }
    e
}

/// One admin request on a private queue: the options, the queue and the
/// answer, each freed exactly once however the call ends.
struct Request {
    options: *mut rd::rd_kafka_AdminOptions_t,
    queue: *mut rd::rd_kafka_queue_t,
    event: *mut rd::rd_kafka_event_t,
    timeout_ms: i32,
}

impl Request {
    /// Options for `op` with `timeout` as the request timeout, and a queue;
    /// `rk` is a live client handle that outlives the request.
    fn new(rk: *mut rd::rd_kafka_t, op: rd::rd_kafka_admin_op_t, timeout: Duration) -> Self {
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

    fn ready(&self, what: &str) -> ToolResult<()> {
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
    fn answer(&mut self, what: &str) -> ToolResult<*mut rd::rd_kafka_event_t> {
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
                let mut e = ToolError::from_kafka_code(what, RDKafkaErrorCode::from(err));
                let detail = text(rd::rd_kafka_event_error_string(self.event));
                if !detail.is_empty() {
                    e.message = format!("{}: {detail}", e.message);
                }
                return Err(e);
            }
            Ok(self.event)
        }
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

/// Every consumer group of the cluster, of either protocol
/// (ListConsumerGroups: ListGroups to every broker). librdkafka lists only
/// groups of the consumer protocol type or none (offsets only): Kafka
/// Connect's worker groups, for one, are not consumer groups. A broker that
/// fails to answer fails the listing: a partial list would read as complete.
pub(super) fn list(client: &NativeClient, timeout: Duration) -> ToolResult<Vec<GroupListing>> {
    let what = "listing consumer groups";
    let rk = client.ptr();
    let mut request = Request::new(
        rk,
        rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_LISTCONSUMERGROUPS,
        timeout,
    );
    request.ready(what)?;
    // SAFETY: options and queue are live (checked above); the result and
    // everything read from it belong to the event, which outlives the reads.
    unsafe {
        rd::rd_kafka_ListConsumerGroups(rk, request.options, request.queue);
        let event = request.answer(what)?;
        let result = rd::rd_kafka_event_ListConsumerGroups_result(event);
        if result.is_null() {
            return Err(ToolError::new(
                ErrorCode::Internal,
                format!("{what}: unexpected answer type"),
            ));
        }
        let mut n = 0usize;
        let errors = rd::rd_kafka_ListConsumerGroups_result_errors(result, &mut n);
        if n > 0 && !errors.is_null() {
            return Err(tool_error(what, *errors));
        }
        let mut n = 0usize;
        let valid = rd::rd_kafka_ListConsumerGroups_result_valid(result, &mut n);
        if valid.is_null() {
            return Ok(Vec::new());
        }
        Ok((0..n)
            .map(|i| *valid.add(i))
            .filter(|g| !g.is_null())
            .map(|g| GroupListing {
                group_id: text(rd::rd_kafka_ConsumerGroupListing_group_id(g)),
                state: state_name(rd::rd_kafka_ConsumerGroupListing_state(g)),
                group_type: GroupType::of(rd::rd_kafka_ConsumerGroupListing_type(g)),
                simple: rd::rd_kafka_ConsumerGroupListing_is_simple_consumer_group(g) != 0,
            })
            .collect())
    }
}

/// `group` as its coordinator describes it (DescribeConsumerGroups). A
/// group Kafka does not know comes back classic, `Dead` and without
/// members (Kafka's answer to DescribeGroups), not as an error.
pub(super) fn describe(
    client: &NativeClient,
    group: &str,
    timeout: Duration,
) -> ToolResult<GroupDetail> {
    let what = format!("describing group {group:?}");
    let rk = client.ptr();
    let name = CString::new(group)
        .map_err(|_| ToolError::invalid("group_id must not contain NUL bytes"))?;
    let mut request = Request::new(
        rk,
        rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_DESCRIBECONSUMERGROUPS,
        timeout,
    );
    request.ready(&what)?;
    // SAFETY: options and queue are live (checked above); librdkafka copies
    // the group names; the descriptions and everything read from them
    // belong to the event, which outlives the reads.
    unsafe {
        let mut groups = [name.as_ptr()];
        rd::rd_kafka_DescribeConsumerGroups(
            rk,
            groups.as_mut_ptr(),
            groups.len(),
            request.options,
            request.queue,
        );
        let event = request.answer(&what)?;
        let result = rd::rd_kafka_event_DescribeConsumerGroups_result(event);
        if result.is_null() {
            return Err(ToolError::new(
                ErrorCode::Internal,
                format!("{what}: unexpected answer type"),
            ));
        }
        let mut n = 0usize;
        let described = rd::rd_kafka_DescribeConsumerGroups_result_groups(result, &mut n);
        let g = if described.is_null() || n == 0 {
            ptr::null()
        } else {
            *described
        };
        if g.is_null() {
            return Err(ToolError::new(
                ErrorCode::Internal,
                format!("{what}: the answer names no group"),
            ));
        }
        let err = rd::rd_kafka_ConsumerGroupDescription_error(g);
        if !err.is_null() {
            return Err(tool_error(&what, err));
        }
        let members = (0..rd::rd_kafka_ConsumerGroupDescription_member_count(g))
            .map(|i| rd::rd_kafka_ConsumerGroupDescription_member(g, i))
            .filter(|m| !m.is_null())
            .map(|m| MemberDetail {
                member_id: text(rd::rd_kafka_MemberDescription_consumer_id(m)),
                client_id: text(rd::rd_kafka_MemberDescription_client_id(m)),
                host: text(rd::rd_kafka_MemberDescription_host(m)),
                assignment: assignment(rd::rd_kafka_MemberDescription_assignment(m)),
            })
            .collect();
        Ok(GroupDetail {
            group_id: text(rd::rd_kafka_ConsumerGroupDescription_group_id(g)),
            state: state_name(rd::rd_kafka_ConsumerGroupDescription_state(g)),
            group_type: GroupType::of(rd::rd_kafka_ConsumerGroupDescription_type(g)),
            simple: rd::rd_kafka_ConsumerGroupDescription_is_simple_consumer_group(g) != 0,
            assignor: text(rd::rd_kafka_ConsumerGroupDescription_partition_assignor(g)),
            members,
        })
    }
}

/// A member's assignment as topic -> sorted partitions.
///
/// # Safety
/// `a` is null or a member assignment that outlives the call.
unsafe fn assignment(a: *const rd::rd_kafka_MemberAssignment_t) -> BTreeMap<String, Vec<i32>> {
    let mut out: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    if a.is_null() {
        return out;
    }
    // SAFETY: the list and its elements belong to the assignment; `cnt`
    // elements are initialized.
    unsafe {
        let list = rd::rd_kafka_MemberAssignment_partitions(a);
        if list.is_null() || (*list).elems.is_null() {
            return out;
        }
        let count = usize::try_from((*list).cnt).unwrap_or(0);
        for i in 0..count {
            let tp = &*(*list).elems.add(i);
            out.entry(text(tp.topic)).or_default().push(tp.partition);
        }
    }
    for partitions in out.values_mut() {
        partitions.sort_unstable();
    }
    out
}
