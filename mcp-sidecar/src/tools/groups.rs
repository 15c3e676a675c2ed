//! Consumer-group tools, for groups of both group protocols (the classic
//! one and Kafka 4's consumer protocol, KIP-848).
//!
//! Group state and members come from librdkafka's ListConsumerGroups and
//! DescribeConsumerGroups (called directly: rust-rdkafka does not wrap
//! them, see `kafka::consumer_groups`); committed offsets through
//! OffsetFetch (`committed_offsets`) of a consumer that carries the group's
//! ID but never joins it. Resetting offsets commits with such a consumer,
//! which Kafka accepts only for a group with no members (of either
//! protocol): exactly the rule the tool promises, checked before any change.

use std::collections::{BTreeMap, HashMap};

use rdkafka::{Offset, TopicPartitionList};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::observe::{Freshness, offsets_for_timestamp, partitions_of, select_partitions};
use super::{ToolContext, validate};
use crate::error::{ErrorCode, ToolError, ToolResult};
use crate::kafka::{BlockingKafka, GroupType};

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListGroupsArgs {
    /// Only groups whose ID contains this substring.
    #[serde(default)]
    pub name_contains: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct GroupList {
    pub groups: Vec<GroupSummary>,
    pub total: usize,
    pub truncated: bool,
    /// Only groups in this server's scope are listed (and counted).
    pub scoped: bool,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct GroupSummary {
    pub group_id: String,
    /// As in `describe_group`.
    pub state: String,
    /// `consumer`, or empty for a group that only stores offsets.
    pub protocol_type: String,
    /// The group protocol: `classic`, `consumer` (KIP-848), or `unknown`
    /// from a broker that does not say.
    #[serde(rename = "type")]
    pub group_type: GroupType,
}

/// The protocol type Kafka reports for a consumer group: the consumer
/// protocol's, or none for a group that only stores offsets.
fn protocol_type(simple: bool) -> String {
    if simple { "" } else { "consumer" }.to_string()
}

pub async fn list_groups(ctx: &ToolContext, args: ListGroupsArgs) -> ToolResult<GroupList> {
    let cap = ctx.limits.max_list_items;
    let (in_scope, scoped) = (ctx.groups_in_scope(), ctx.scoped());
    ctx.kafka
        .blocking(move |k| {
            let mut groups: Vec<GroupSummary> = k
                .consumer_groups()?
                .into_iter()
                .filter(|g| in_scope(&g.group_id))
                .filter(|g| {
                    args.name_contains
                        .as_deref()
                        .is_none_or(|s| g.group_id.contains(s))
                })
                .map(|g| GroupSummary {
                    protocol_type: protocol_type(g.simple),
                    group_id: g.group_id,
                    state: g.state,
                    group_type: g.group_type,
                })
                .collect();
            groups.sort_by(|a, b| a.group_id.cmp(&b.group_id));
            let total = groups.len();
            groups.truncate(cap);
            Ok(GroupList {
                truncated: total > groups.len(),
                groups,
                total,
                scoped,
            })
        })
        .await
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupArgs {
    pub group_id: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct GroupDescription {
    pub group_id: String,
    /// Kafka's group state: Empty, Stable, PreparingRebalance,
    /// CompletingRebalance (classic protocol), Dead; `Unknown` for a
    /// consumer-protocol group between assignments (Kafka's Assigning or
    /// Reconciling, which librdkafka does not name).
    pub state: String,
    /// `consumer`, or empty for a group that only stores offsets.
    pub protocol_type: String,
    /// The group protocol: `classic`, `consumer` (KIP-848), or `unknown`.
    #[serde(rename = "type")]
    pub group_type: GroupType,
    /// The partition assignor in use (e.g. range, cooperative-sticky; for
    /// the consumer protocol the broker's: uniform, range).
    pub protocol: String,
    pub members: Vec<GroupMember>,
    /// Members' assignments show only topics in this server's scope.
    pub scoped: bool,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct GroupMember {
    pub member_id: String,
    pub client_id: String,
    pub host: String,
    /// topic -> partitions assigned to this member (topics in scope only).
    pub assignment: BTreeMap<String, Vec<i32>>,
}

/// The description of one group, of either protocol; a group Kafka does
/// not know comes back in state `Dead` with no members, which is
/// `NOT_FOUND` here.
fn group_info(k: &BlockingKafka, group: &str) -> ToolResult<GroupDescription> {
    let g = k.describe_consumer_group(group)?;
    if g.state == "Dead" && g.members.is_empty() {
        return Err(ToolError::not_found(format!(
            "consumer group {group:?} does not exist"
        )));
    }
    Ok(GroupDescription {
        group_id: group.to_string(),
        state: g.state,
        protocol_type: protocol_type(g.simple),
        group_type: g.group_type,
        protocol: g.assignor,
        members: g
            .members
            .into_iter()
            .map(|m| GroupMember {
                member_id: m.member_id,
                client_id: m.client_id,
                host: m.host,
                assignment: m.assignment,
            })
            .collect(),
        scoped: false,
    })
}

pub async fn describe_group(ctx: &ToolContext, args: GroupArgs) -> ToolResult<GroupDescription> {
    validate::group_id(&args.group_id)?;
    let cap = ctx.limits.max_list_items;
    let (in_scope, scoped) = (ctx.topics_in_scope(), ctx.scoped());
    ctx.kafka
        .blocking(move |k| {
            let mut d = group_info(k, &args.group_id)?;
            // A group in scope may read topics out of it (another
            // tenant's): those stay unnamed.
            for member in &mut d.members {
                member.assignment.retain(|topic, _| in_scope(topic));
            }
            d.scoped = scoped;
            d.members.truncate(cap);
            Ok(d)
        })
        .await
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LagArgs {
    pub group_id: String,
    /// Only this topic (default: every topic the group has committed offsets for).
    #[serde(default)]
    pub topic: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Lag {
    pub group_id: String,
    pub partitions: Vec<PartitionLag>,
    /// Sum of the partitions' lag.
    pub total_lag: i64,
    pub truncated: bool,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    pub committed_offset: i64,
    pub latest_offset: i64,
    pub lag: i64,
}

/// Most partitions one committed-offsets lookup asks about when the caller
/// names no topic (OffsetFetch for every partition of the cluster).
const MAX_SCANNED_PARTITIONS: usize = 20_000;

/// Committed offsets of `group` for the given partitions (only those with one).
fn committed(
    k: &BlockingKafka,
    group: &str,
    partitions: &[(String, i32)],
) -> ToolResult<Vec<(String, i32, i64)>> {
    let mut tpl = TopicPartitionList::new();
    for (t, p) in partitions {
        tpl.add_partition(t, *p);
    }
    Ok(k.committed_offsets(group, tpl)?
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some((e.topic().to_string(), e.partition(), o)),
            _ => None,
        })
        .collect())
}

pub async fn get_consumer_lag(ctx: &ToolContext, args: LagArgs) -> ToolResult<Lag> {
    validate::group_id(&args.group_id)?;
    if let Some(t) = &args.topic {
        validate::topic_name(t)?;
    }
    let cap = ctx.limits.max_list_items;
    let in_scope = ctx.topics_in_scope();
    ctx.kafka
        .blocking(move |k| {
            let partitions: Vec<(String, i32)> = match &args.topic {
                Some(t) => partitions_of(k, t, Freshness::Cached)?
                    .into_iter()
                    .map(|p| (t.clone(), p))
                    .collect(),
                None => {
                    let md = k.cluster_metadata()?;
                    md.topics()
                        .iter()
                        .filter(|t| in_scope(t.name()))
                        .flat_map(|t| {
                            t.partitions()
                                .iter()
                                .map(move |p| (t.name().to_string(), p.id()))
                        })
                        .take(MAX_SCANNED_PARTITIONS)
                        .collect()
                }
            };
            let committed = committed(k, &args.group_id, &partitions)?;
            let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
            for (topic, partition, _) in &committed {
                by_topic.entry(topic).or_default().push(*partition);
            }
            let mut latest = HashMap::new();
            for (topic, partitions) in by_topic {
                for (partition, high) in k.offsets_at(topic, &partitions, Offset::End)? {
                    latest.insert((topic.to_string(), partition), high);
                }
            }
            let mut rows = Vec::new();
            for (topic, partition, at) in committed {
                let high = latest
                    .get(&(topic.clone(), partition))
                    .copied()
                    .unwrap_or(at);
                rows.push(PartitionLag {
                    topic,
                    partition,
                    committed_offset: at,
                    latest_offset: high,
                    lag: (high - at).max(0),
                });
            }
            if rows.is_empty() {
                match group_info(k, &args.group_id) {
                    Err(e) if e.code == ErrorCode::NotFound => {
                        return Err(ToolError::not_found(format!(
                            "consumer group {:?} does not exist or has no committed offsets",
                            args.group_id
                        )));
                    }
                    Err(e) => return Err(e),
                    Ok(_) => {}
                }
            }
            rows.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
            let total_lag = rows.iter().map(|r| r.lag).sum();
            let truncated = rows.len() > cap;
            rows.truncate(cap);
            Ok(Lag {
                group_id: args.group_id,
                partitions: rows,
                total_lag,
                truncated,
            })
        })
        .await
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteGroupArgs {
    pub group_id: String,
    /// Only show what would be deleted.
    #[serde(default)]
    pub dry_run: bool,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct DeleteGroupResult {
    pub group_id: String,
    pub dry_run: bool,
    pub deleted: bool,
    pub state: String,
}

pub async fn delete_group(
    ctx: &ToolContext,
    args: DeleteGroupArgs,
) -> ToolResult<DeleteGroupResult> {
    validate::group_id(&args.group_id)?;
    let group = args.group_id.clone();
    let info = ctx.kafka.blocking(move |k| group_info(k, &group)).await?;
    if !info.members.is_empty() {
        return Err(ToolError::conflict(format!(
            "group {:?} has {} active member(s); stop its consumers first",
            args.group_id,
            info.members.len()
        )));
    }
    if args.dry_run {
        return Ok(DeleteGroupResult {
            group_id: args.group_id,
            dry_run: true,
            deleted: false,
            state: info.state,
        });
    }
    let what = format!("delete group {:?}", args.group_id);
    ctx.kafka
        .admin(&what, |admin, options| {
            admin.delete_groups(&[&args.group_id], &options)
        })
        .await?;
    Ok(DeleteGroupResult {
        group_id: args.group_id,
        dry_run: false,
        deleted: true,
        state: info.state,
    })
}

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ResetTo {
    Earliest,
    Latest,
    /// The first offset at or after `timestamp_ms`.
    Timestamp,
    /// Exactly `offset` (clamped to the partition's earliest..latest).
    Offset,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetOffsetsArgs {
    pub group_id: String,
    pub topic: String,
    /// Only this partition (default: all of the topic's partitions).
    #[serde(default)]
    pub partition: Option<i32>,
    pub to: ResetTo,
    /// With `to: timestamp`: milliseconds since the Unix epoch.
    #[serde(default)]
    pub timestamp_ms: Option<i64>,
    /// With `to: offset`.
    #[serde(default)]
    pub offset: Option<i64>,
    /// Only show current and target offsets.
    #[serde(default)]
    pub dry_run: bool,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ResetOffsetsResult {
    pub group_id: String,
    pub topic: String,
    pub dry_run: bool,
    pub partitions: Vec<OffsetChange>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct OffsetChange {
    pub partition: i32,
    /// Absent when the group had no committed offset here.
    pub before: Option<i64>,
    pub after: i64,
}

pub async fn reset_group_offsets(
    ctx: &ToolContext,
    args: ResetOffsetsArgs,
) -> ToolResult<ResetOffsetsResult> {
    validate::group_id(&args.group_id)?;
    validate::topic_name(&args.topic)?;
    match (args.to, args.timestamp_ms, args.offset) {
        (ResetTo::Timestamp, None, _) => {
            return Err(ToolError::invalid("to: timestamp needs timestamp_ms"));
        }
        (ResetTo::Offset, _, None) => return Err(ToolError::invalid("to: offset needs offset")),
        (ResetTo::Offset, _, Some(o)) if o < 0 => {
            return Err(ToolError::invalid("offset must not be negative"));
        }
        _ => {}
    }
    ctx.kafka
        .blocking(move |k| {
            // A group Kafka has never seen is fine to seed; one with members is not.
            match group_info(k, &args.group_id) {
                Ok(info) if !info.members.is_empty() => {
                    return Err(ToolError::conflict(format!(
                        "group {:?} has {} active member(s) (state {}); offsets can only be reset while it is empty",
                        args.group_id,
                        info.members.len(),
                        info.state
                    )));
                }
                Ok(_) => {}
                Err(e) if e.code == ErrorCode::NotFound => {}
                Err(e) => return Err(e),
            }
            let partitions = select_partitions(k, &args.topic, args.partition, Freshness::Live)?;
            let at_time = match args.to {
                ResetTo::Timestamp => Some(offsets_for_timestamp(k, &args.topic, &partitions, args.timestamp_ms.unwrap_or(0))?),
                _ => None,
            };
            let keyed: Vec<(String, i32)> = partitions.iter().map(|p| (args.topic.clone(), *p)).collect();
            let before: BTreeMap<i32, i64> =
                committed(k, &args.group_id, &keyed)?.into_iter().map(|(_, p, o)| (p, o)).collect();
            let mut changes = Vec::new();
            let mut tpl = TopicPartitionList::new();
            for (p, (low, high)) in k.watermarks_of(&args.topic, &partitions)? {
                let target = match args.to {
                    ResetTo::Earliest => low,
                    ResetTo::Latest => high,
                    ResetTo::Offset => args.offset.unwrap_or(low).clamp(low, high),
                    ResetTo::Timestamp => at_time.as_ref().and_then(|m| m.get(&p)).copied().unwrap_or(high),
                };
                tpl.add_partition_offset(&args.topic, p, Offset::Offset(target))
                    .map_err(|e| ToolError::from_kafka("preparing the offset commit", &e))?;
                changes.push(OffsetChange { partition: p, before: before.get(&p).copied(), after: target });
            }
            if !args.dry_run {
                k.commit_offsets(&args.group_id, &tpl)?;
            }
            Ok(ResetOffsetsResult { group_id: args.group_id, topic: args.topic, dry_run: args.dry_run, partitions: changes })
        })
        .await
}
