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
use std::ffi::CString;
use std::ptr;
use std::time::Duration;

use rdkafka::client::NativeClient;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka_sys as rd;
use schemars::JsonSchema;
use serde::Serialize;

use super::admin_request::{Request, text};
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
