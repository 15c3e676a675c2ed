//! `describe_acls`: Kafka's ACLs on a topic or group (every ACL that
//! applies to it: literal, prefixed and wildcard), or those of this
//! server's own Kafka principal, capped at the list limit. A broker without
//! an authorizer enforces no ACL: the answer says so (`authorizer: false`)
//! rather than failing.

use rdkafka::admin::ResourceSpecifier;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::observe::resource_configs;
use super::{ToolContext, validate};
use crate::error::{ErrorCode, ToolError, ToolResult};
use crate::kafka::{AclAnswer, AclBinding, AclFilter, AclOperation, AclResource, AclResourceType};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AclResourceKind {
    Topic,
    Group,
}

/// Whose ACLs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
pub enum PrincipalFilter {
    /// This server's own Kafka principal (`User:<its SASL username>`).
    #[serde(rename = "self")]
    Own,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DescribeAclsArgs {
    /// `topic` or `group`, with `name`: the ACLs that apply to it.
    #[serde(default)]
    pub resource_type: Option<AclResourceKind>,
    /// The topic or group name (with `resource_type`).
    #[serde(default)]
    pub name: Option<String>,
    /// `self`: only the ACLs of this server's own Kafka principal, which
    /// say what it may do (with a resource: on that resource).
    #[serde(default)]
    pub principal: Option<PrincipalFilter>,
}

impl DescribeAclsArgs {
    /// The topic and the group the call names, if any (one at most).
    pub(crate) fn topic_or_group(&self) -> (Option<&str>, Option<&str>) {
        match (self.resource_type, self.name.as_deref()) {
            (Some(AclResourceKind::Topic), name) => (name, None),
            (Some(AclResourceKind::Group), name) => (None, name),
            (None, _) => (None, None),
        }
    }

    /// The resource asked about, checked.
    fn resource(&self) -> ToolResult<Option<AclResource>> {
        match (self.resource_type, &self.name) {
            (Some(_), None) => return Err(ToolError::invalid("resource_type needs name")),
            (None, Some(_)) => {
                return Err(ToolError::invalid(
                    "name needs resource_type (topic or group)",
                ));
            }
            _ => {}
        }
        match self.topic_or_group() {
            (Some(t), _) => {
                validate::topic_name(t)?;
                Ok(Some(AclResource::Topic(t.to_string())))
            }
            (_, Some(g)) => {
                validate::group_id(g)?;
                Ok(Some(AclResource::Group(g.to_string())))
            }
            (None, None) => Ok(None),
        }
    }
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct AclDescription {
    /// Whether the cluster has an authorizer. `false`: Kafka enforces no
    /// ACL there (it answers DescribeAcls with SECURITY_DISABLED, or its
    /// broker config names no authorizer), so every principal may do
    /// everything; `bindings` is then empty.
    pub authorizer: bool,
    /// Why `bindings` is empty, when it is.
    pub message: Option<String>,
    /// The principal the answer is filtered on (`principal: self`).
    pub principal: Option<String>,
    /// Sorted by resource type, name, pattern type, principal, host,
    /// operation and permission.
    pub bindings: Vec<AclBinding>,
    /// Bindings that match, across the cap.
    pub total: usize,
    /// Set when more bindings match than the list limit shows.
    pub truncated: bool,
    /// With `principal: self` on a scoped server: the bindings on topics
    /// and groups out of its scope are left out (and not counted).
    pub scoped: bool,
}

/// The broker config that names the authorizer (empty: none).
const AUTHORIZER_CONFIG: &str = "authorizer.class.name";

pub async fn describe_acls(
    ctx: &ToolContext,
    args: DescribeAclsArgs,
) -> ToolResult<AclDescription> {
    let resource = args.resource()?;
    let principal = match args.principal {
        Some(PrincipalFilter::Own) => Some(ctx.kafka.principal().map(str::to_string).ok_or_else(|| {
            ToolError::invalid(
                "principal: self needs SASL: this server's Kafka principal over TLS or plaintext is whatever the broker's principal mapping makes of it",
            )
        })?),
        None => None,
    };
    if resource.is_none() && principal.is_none() {
        return Err(ToolError::invalid(
            "name a topic or group (resource_type and name), or ask principal: self",
        ));
    }
    let filter = AclFilter {
        resource,
        principal: principal.clone(),
    };
    let answer = ctx
        .kafka
        .blocking(move |k| k.describe_acls(&filter))
        .await?;
    let (authorizer, message, mut bindings) = match answer {
        AclAnswer::Bindings(bindings) => (true, None, bindings),
        AclAnswer::NoAuthorizer => (
            false,
            Some(no_authorizer("Kafka answered SECURITY_DISABLED")),
            Vec::new(),
        ),
        AclAnswer::Empty {
            cluster_operations,
            broker,
        } => {
            // The broker without an authorizer, if that is why it is empty.
            let without = match read_empty(&cluster_operations) {
                Empty::Refused => {
                    return Err(ToolError::new(
                        ErrorCode::PermissionDenied,
                        format!(
                            "describing ACLs: Kafka does not let this server's principal{} describe the cluster, which DescribeAcls needs",
                            ctx.kafka
                                .principal()
                                .map(|p| format!(" {p}"))
                                .unwrap_or_default()
                        ),
                    ));
                }
                Empty::NoneMatch => None,
                Empty::AskBroker => {
                    let broker = broker.ok_or_else(|| {
                        ToolError::new(
                            ErrorCode::KafkaError,
                            "describing ACLs: Kafka named no broker to ask whether it has an authorizer",
                        )
                    })?;
                    (!has_authorizer(authorizer_class(ctx, broker).await?)).then_some(broker)
                }
            };
            match without {
                None => (true, Some("no ACL matches".to_string()), Vec::new()),
                Some(broker) => (
                    false,
                    Some(no_authorizer(&format!(
                        "broker {broker}'s {AUTHORIZER_CONFIG} is empty"
                    ))),
                    Vec::new(),
                ),
            }
        }
    };
    // A named topic or group was checked against the scope before this
    // ran, and every binding here applies to it. The principal's own
    // bindings on any resource show those of topics and groups in scope
    // only (by the name or prefix they are written on).
    let scoped = ctx.scoped() && args.topic_or_group() == (None, None);
    if scoped {
        let (topic_in_scope, group_in_scope) = (ctx.topics_in_scope(), ctx.groups_in_scope());
        bindings.retain(|b| match b.resource_type {
            AclResourceType::Topic => topic_in_scope(&b.name),
            AclResourceType::Group => group_in_scope(&b.name),
            _ => true,
        });
    }
    bindings.sort();
    let total = bindings.len();
    bindings.truncate(ctx.limits.max_list_items);
    Ok(AclDescription {
        authorizer,
        message,
        principal,
        truncated: total > bindings.len(),
        bindings,
        total,
        scoped,
    })
}

fn no_authorizer(evidence: &str) -> String {
    format!(
        "the cluster has no authorizer ({evidence}): it enforces no ACL, every principal may do everything"
    )
}

/// What an empty DescribeAcls answer means, from what this principal may
/// do on the cluster (see `AclAnswer::Empty`).
#[derive(Debug, PartialEq, Eq)]
enum Empty {
    /// No Describe on the cluster: Kafka refused the request (only an
    /// authorizer refuses anything).
    Refused,
    /// Describe, but not everything: an authorizer granted it, and no ACL
    /// matches.
    NoneMatch,
    /// Every operation: a super user, or no authorizer at all. The
    /// broker's config says which (and this principal may read it).
    AskBroker,
}

/// The cluster operations librdkafka names (KIP-430 reports no others it
/// can read): a principal with all of them is a super user, or there is no
/// authorizer.
const CLUSTER_OPERATIONS: [AclOperation; 7] = [
    AclOperation::Alter,
    AclOperation::AlterConfigs,
    AclOperation::ClusterAction,
    AclOperation::Create,
    AclOperation::Describe,
    AclOperation::DescribeConfigs,
    AclOperation::IdempotentWrite,
];

fn read_empty(cluster_operations: &[AclOperation]) -> Empty {
    if !cluster_operations.contains(&AclOperation::Describe) {
        Empty::Refused
    } else if CLUSTER_OPERATIONS
        .iter()
        .all(|op| cluster_operations.contains(op))
    {
        Empty::AskBroker
    } else {
        Empty::NoneMatch
    }
}

/// The broker's `authorizer.class.name`, which a broker lists (empty by
/// default) to a principal that may read its config. Not listed is an
/// error, not "none": the answer may have left it out.
async fn authorizer_class(ctx: &ToolContext, broker: i32) -> ToolResult<String> {
    let configs = resource_configs(&ctx.kafka, ResourceSpecifier::Broker(broker), true).await?;
    configs
        .into_iter()
        .find(|c| c.name == AUTHORIZER_CONFIG)
        .map(|c| c.value.unwrap_or_default())
        .ok_or_else(|| {
            ToolError::new(
                ErrorCode::KafkaError,
                format!(
                    "describing ACLs: broker {broker}'s config does not show {AUTHORIZER_CONFIG}, which says whether it has an authorizer"
                ),
            )
        })
}

/// Whether the broker's `authorizer.class.name` names an authorizer.
fn has_authorizer(class: String) -> bool {
    !class.trim().is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(json: serde_json::Value) -> DescribeAclsArgs {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn a_call_names_one_topic_or_one_group() {
        let topic = args(serde_json::json!({"resource_type": "topic", "name": "team-a.orders"}));
        assert_eq!(topic.topic_or_group(), (Some("team-a.orders"), None));
        let group = args(
            serde_json::json!({"resource_type": "group", "name": "team-a-app", "principal": "self"}),
        );
        assert_eq!(group.topic_or_group(), (None, Some("team-a-app")));
        assert_eq!(group.principal, Some(PrincipalFilter::Own));
        assert_eq!(
            args(serde_json::json!({"principal": "self"})).topic_or_group(),
            (None, None)
        );
    }

    #[test]
    fn a_resource_needs_both_its_type_and_its_name() {
        for bad in [
            serde_json::json!({"resource_type": "topic"}),
            serde_json::json!({"name": "orders"}),
            serde_json::json!({"resource_type": "topic", "name": "bad/name"}),
            serde_json::json!({"resource_type": "group", "name": ""}),
        ] {
            let e = args(bad.clone()).resource().unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidArgument, "{bad}: {e}");
        }
        assert!(
            serde_json::from_value::<DescribeAclsArgs>(serde_json::json!({"principal": "User:x"}))
                .is_err(),
            "only self: another principal's ACLs are not this server's to ask for"
        );
    }

    #[test]
    fn an_empty_answer_is_read_from_what_the_principal_may_do_on_the_cluster() {
        use AclOperation as O;
        assert_eq!(read_empty(&[]), Empty::Refused, "no Describe: refused");
        assert_eq!(read_empty(&[O::Alter, O::Create]), Empty::Refused);
        assert_eq!(
            read_empty(&[O::Describe]),
            Empty::NoneMatch,
            "a tenant's grant"
        );
        assert_eq!(
            read_empty(&[O::Describe, O::DescribeConfigs]),
            Empty::NoneMatch
        );
        assert_eq!(read_empty(&CLUSTER_OPERATIONS), Empty::AskBroker);
        let standard = "org.apache.kafka.metadata.authorizer.StandardAuthorizer";
        assert!(has_authorizer(standard.into()));
        assert!(!has_authorizer(String::new()));
    }
}
