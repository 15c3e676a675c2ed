//! Kafka's ACLs as Kafka describes them (DescribeAcls), through librdkafka
//! directly: rust-rdkafka 0.39 wraps no ACL call. Read-only, on a private
//! queue (`admin_request::Request`), as for the other admin calls it does
//! not wrap. Blocking: run off the async runtime.
//!
//! librdkafka 2.12 reads DescribeAcls's top-level error code and drops it:
//! a broker without an authorizer (SECURITY_DISABLED) and a principal
//! that may not describe the cluster (CLUSTER_AUTHORIZATION_FAILED) both
//! come back as an empty answer, the same as "no ACL matches". So an empty
//! answer comes with the principal's authorized operations on the cluster
//! (DescribeCluster, KIP-430), which tell the three apart (see
//! [`AclAnswer`]).

use std::os::raw::c_char;
use std::ptr;
use std::time::Duration;

use rdkafka::client::NativeClient;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka_sys as rd;
use schemars::JsonSchema;
use serde::Serialize;

use super::admin_request::{Request, cstring, text};
use crate::error::{ErrorCode, ToolError, ToolResult};

/// The kind of resource an ACL is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AclResourceType {
    Topic,
    Group,
    Cluster,
    TransactionalId,
    /// One librdkafka does not name (delegation tokens, users).
    Unknown,
}

impl AclResourceType {
    fn of(t: rd::rd_kafka_ResourceType_t) -> Self {
        use rd::rd_kafka_ResourceType_t as T;
        match t {
            T::RD_KAFKA_RESOURCE_TOPIC => Self::Topic,
            T::RD_KAFKA_RESOURCE_GROUP => Self::Group,
            // Kafka's resource type 4 is the cluster; librdkafka calls it BROKER.
            T::RD_KAFKA_RESOURCE_BROKER => Self::Cluster,
            T::RD_KAFKA_RESOURCE_TRANSACTIONAL_ID => Self::TransactionalId,
            _ => Self::Unknown,
        }
    }
}

/// How an ACL's resource name matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AclPatternType {
    /// The name itself (`*`: every name).
    Literal,
    /// Every name that starts with it.
    Prefixed,
    Unknown,
}

impl AclPatternType {
    fn of(t: rd::rd_kafka_ResourcePatternType_t) -> Self {
        use rd::rd_kafka_ResourcePatternType_t as T;
        match t {
            T::RD_KAFKA_RESOURCE_PATTERN_LITERAL => Self::Literal,
            T::RD_KAFKA_RESOURCE_PATTERN_PREFIXED => Self::Prefixed,
            _ => Self::Unknown,
        }
    }
}

/// What an ACL allows or denies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AclOperation {
    All,
    Read,
    Write,
    Create,
    Delete,
    Alter,
    Describe,
    ClusterAction,
    DescribeConfigs,
    AlterConfigs,
    IdempotentWrite,
    /// One librdkafka does not name (CreateTokens, DescribeTokens).
    Unknown,
}

impl AclOperation {
    fn of(op: rd::rd_kafka_AclOperation_t) -> Self {
        use rd::rd_kafka_AclOperation_t as O;
        match op {
            O::RD_KAFKA_ACL_OPERATION_ALL => Self::All,
            O::RD_KAFKA_ACL_OPERATION_READ => Self::Read,
            O::RD_KAFKA_ACL_OPERATION_WRITE => Self::Write,
            O::RD_KAFKA_ACL_OPERATION_CREATE => Self::Create,
            O::RD_KAFKA_ACL_OPERATION_DELETE => Self::Delete,
            O::RD_KAFKA_ACL_OPERATION_ALTER => Self::Alter,
            O::RD_KAFKA_ACL_OPERATION_DESCRIBE => Self::Describe,
            O::RD_KAFKA_ACL_OPERATION_CLUSTER_ACTION => Self::ClusterAction,
            O::RD_KAFKA_ACL_OPERATION_DESCRIBE_CONFIGS => Self::DescribeConfigs,
            O::RD_KAFKA_ACL_OPERATION_ALTER_CONFIGS => Self::AlterConfigs,
            O::RD_KAFKA_ACL_OPERATION_IDEMPOTENT_WRITE => Self::IdempotentWrite,
            _ => Self::Unknown,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AclPermission {
    Allow,
    Deny,
    Unknown,
}

impl AclPermission {
    fn of(p: rd::rd_kafka_AclPermissionType_t) -> Self {
        use rd::rd_kafka_AclPermissionType_t as P;
        match p {
            P::RD_KAFKA_ACL_PERMISSION_TYPE_ALLOW => Self::Allow,
            P::RD_KAFKA_ACL_PERMISSION_TYPE_DENY => Self::Deny,
            _ => Self::Unknown,
        }
    }
}

/// One ACL: `principal` from `host` is allowed or denied `operation` on
/// the resources `resource_type`/`name`/`pattern_type` describe.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, JsonSchema)]
pub struct AclBinding {
    pub resource_type: AclResourceType,
    /// The resource name or prefix (`kafka-cluster` for the cluster, `*`
    /// for every name).
    pub name: String,
    pub pattern_type: AclPatternType,
    /// `User:<name>` (or another principal type the broker uses).
    pub principal: String,
    /// The client host it applies to (`*`: any).
    pub host: String,
    pub operation: AclOperation,
    pub permission: AclPermission,
}

/// The resource an ACL question is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AclResource {
    Topic(String),
    Group(String),
}

/// Which ACLs to describe: those that apply to a resource (literal,
/// prefixed and wildcard ones: Kafka's MATCH), those of a principal, or
/// both at once. Neither is every ACL of the cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AclFilter {
    pub resource: Option<AclResource>,
    pub principal: Option<String>,
}

/// What Kafka answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AclAnswer {
    /// The ACLs that match, in Kafka's order.
    Bindings(Vec<AclBinding>),
    /// No ACL matches, or the broker has no authorizer, or this principal
    /// may not describe ACLs: librdkafka does not say which (see the
    /// module doc). `cluster_operations`: what this principal may do on
    /// the cluster (with an authorizer, DescribeAcls needs Describe;
    /// without one, every operation is allowed). `broker`: a broker whose
    /// config says whether there is an authorizer.
    Empty {
        cluster_operations: Vec<AclOperation>,
        broker: Option<i32>,
    },
    /// Kafka said SECURITY_DISABLED: the broker has no authorizer (a
    /// librdkafka that passes DescribeAcls's error on says so directly).
    NoAuthorizer,
}

/// The filter, freed however the call ends.
struct Filter(*mut rd::rd_kafka_AclBindingFilter_t);

impl Drop for Filter {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: ours, destroyed once here; the admin call copied it.
            unsafe { rd::rd_kafka_AclBinding_destroy(self.0) };
        }
    }
}

/// DescribeAcls with `filter`; an empty answer comes with whether this
/// principal may describe the cluster (DescribeCluster).
pub(super) fn describe(
    client: &NativeClient,
    filter: &AclFilter,
    timeout: Duration,
) -> ToolResult<AclAnswer> {
    let what = match &filter.resource {
        Some(AclResource::Topic(t)) => format!("describing the ACLs of topic {t:?}"),
        Some(AclResource::Group(g)) => format!("describing the ACLs of group {g:?}"),
        None => "describing ACLs".to_string(),
    };
    let (restype, name, pattern) = match &filter.resource {
        Some(AclResource::Topic(t)) => (
            rd::rd_kafka_ResourceType_t::RD_KAFKA_RESOURCE_TOPIC,
            Some(cstring(t, "name")?),
            rd::rd_kafka_ResourcePatternType_t::RD_KAFKA_RESOURCE_PATTERN_MATCH,
        ),
        Some(AclResource::Group(g)) => (
            rd::rd_kafka_ResourceType_t::RD_KAFKA_RESOURCE_GROUP,
            Some(cstring(g, "name")?),
            rd::rd_kafka_ResourcePatternType_t::RD_KAFKA_RESOURCE_PATTERN_MATCH,
        ),
        None => (
            rd::rd_kafka_ResourceType_t::RD_KAFKA_RESOURCE_ANY,
            None,
            rd::rd_kafka_ResourcePatternType_t::RD_KAFKA_RESOURCE_PATTERN_ANY,
        ),
    };
    let principal = filter
        .principal
        .as_deref()
        .map(|p| cstring(p, "principal"))
        .transpose()?;
    let rk = client.ptr();
    let mut request = Request::new(
        rk,
        rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_DESCRIBEACLS,
        timeout,
    );
    request.ready(&what)?;
    // SAFETY: options and queue are live (checked above); the filter is
    // ours (freed by `Filter`), its strings live until after the call,
    // which copies them; the bindings and the strings read from them
    // belong to the event, which `request` keeps until after the reads.
    let bindings = unsafe {
        let mut errstr = [0 as c_char; 512];
        let acl_filter = Filter(rd::rd_kafka_AclBindingFilter_new(
            restype,
            name.as_ref().map_or(ptr::null(), |n| n.as_ptr()),
            pattern,
            principal.as_ref().map_or(ptr::null(), |p| p.as_ptr()),
            ptr::null(),
            rd::rd_kafka_AclOperation_t::RD_KAFKA_ACL_OPERATION_ANY,
            rd::rd_kafka_AclPermissionType_t::RD_KAFKA_ACL_PERMISSION_TYPE_ANY,
            errstr.as_mut_ptr(),
            errstr.len(),
        ));
        if acl_filter.0.is_null() {
            let detail = text(errstr.as_ptr());
            return Err(ToolError::invalid(format!("{what}: {detail}")));
        }
        rd::rd_kafka_DescribeAcls(rk, acl_filter.0, request.options, request.queue);
        let event = match request.answer_or_refusal(&what)? {
            Ok(event) => event,
            Err(refusal) if refusal.code == RDKafkaErrorCode::SecurityDisabled => {
                return Ok(AclAnswer::NoAuthorizer);
            }
            Err(refusal) => return Err(refusal.into_tool_error(&what)),
        };
        let result = rd::rd_kafka_event_DescribeAcls_result(event);
        if result.is_null() {
            return Err(ToolError::new(
                ErrorCode::Internal,
                format!("{what}: unexpected answer type"),
            ));
        }
        let mut n = 0usize;
        let acls = rd::rd_kafka_DescribeAcls_result_acls(result, &mut n);
        if acls.is_null() {
            Vec::new()
        } else {
            (0..n)
                .map(|i| *acls.add(i))
                .filter(|a| !a.is_null())
                .map(|a| AclBinding {
                    resource_type: AclResourceType::of(rd::rd_kafka_AclBinding_restype(a)),
                    name: text(rd::rd_kafka_AclBinding_name(a)),
                    pattern_type: AclPatternType::of(
                        rd::rd_kafka_AclBinding_resource_pattern_type(a),
                    ),
                    principal: text(rd::rd_kafka_AclBinding_principal(a)),
                    host: text(rd::rd_kafka_AclBinding_host(a)),
                    operation: AclOperation::of(rd::rd_kafka_AclBinding_operation(a)),
                    permission: AclPermission::of(rd::rd_kafka_AclBinding_permission_type(a)),
                })
                .collect()
        }
    };
    if !bindings.is_empty() {
        return Ok(AclAnswer::Bindings(bindings));
    }
    let (cluster_operations, broker) = cluster_view(client, timeout)?;
    Ok(AclAnswer::Empty {
        cluster_operations,
        broker,
    })
}

/// What this principal may do on the cluster (DescribeCluster with
/// KIP-430's authorized operations: Kafka answers none to a principal
/// without Describe, every one when it has no authorizer), and one
/// broker's ID (the controller's, else the first).
fn cluster_view(
    client: &NativeClient,
    timeout: Duration,
) -> ToolResult<(Vec<AclOperation>, Option<i32>)> {
    let what = "asking what this server may do on the cluster";
    let rk = client.ptr();
    let mut request = Request::new(
        rk,
        rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_DESCRIBECLUSTER,
        timeout,
    );
    request.ready(what)?;
    // SAFETY: options and queue are live (checked above); the operations
    // belong to the event, which `request` keeps until after the reads.
    unsafe {
        let err = rd::rd_kafka_AdminOptions_set_include_authorized_operations(request.options, 1);
        if !err.is_null() {
            let detail = text(rd::rd_kafka_error_string(err));
            rd::rd_kafka_error_destroy(err);
            return Err(ToolError::new(
                ErrorCode::Internal,
                format!("{what}: {detail}"),
            ));
        }
        rd::rd_kafka_DescribeCluster(rk, request.options, request.queue);
        let event = request.answer(what)?;
        let result = rd::rd_kafka_event_DescribeCluster_result(event);
        if result.is_null() {
            return Err(ToolError::new(
                ErrorCode::Internal,
                format!("{what}: unexpected answer type"),
            ));
        }
        let mut n = 0usize;
        let ops = rd::rd_kafka_DescribeCluster_result_authorized_operations(result, &mut n);
        if ops.is_null() {
            return Err(ToolError::new(
                ErrorCode::KafkaError,
                format!("{what}: Kafka did not say (a broker before Kafka 2.8?)"),
            ));
        }
        let operations = (0..n).map(|i| AclOperation::of(*ops.add(i))).collect();
        let controller = rd::rd_kafka_DescribeCluster_result_controller(result);
        let broker = if controller.is_null() {
            let mut n = 0usize;
            let nodes = rd::rd_kafka_DescribeCluster_result_nodes(result, &mut n);
            (!nodes.is_null() && n > 0 && !(*nodes).is_null()).then(|| rd::rd_kafka_Node_id(*nodes))
        } else {
            Some(rd::rd_kafka_Node_id(controller))
        };
        Ok((operations, broker))
    }
}
