//! Consumer-group tools.
//!
//! rust-rdkafka wraps librdkafka's classic group listing
//! (`rd_kafka_list_groups`: ListGroups + DescribeGroups) but not the newer
//! DescribeConsumerGroups / ListConsumerGroupOffsets admin calls. The real
//! paths used here instead: group state and members from the classic
//! listing (members' assignments decoded from the consumer protocol), and
//! committed offsets through OffsetFetch (`committed_offsets`) of a consumer
//! that carries the group's ID but never joins it. Resetting offsets commits
//! with such a consumer, which Kafka accepts only for a group with no
//! members: exactly the rule the tool promises.

use std::collections::{BTreeMap, HashMap};

use rdkafka::groups::GroupInfo;
use rdkafka::{Offset, TopicPartitionList};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::observe::{Freshness, offsets_for_timestamp, partitions_of, select_partitions};
use super::{ToolContext, validate};
use crate::error::{ToolError, ToolResult};
use crate::kafka::BlockingKafka;

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
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct GroupSummary {
    pub group_id: String,
    pub state: String,
    pub protocol_type: String,
}

pub async fn list_groups(ctx: &ToolContext, args: ListGroupsArgs) -> ToolResult<GroupList> {
    let cap = ctx.limits.max_list_items;
    ctx.kafka
        .blocking(move |k| {
            let list = k.group_list(None)?;
            let mut groups: Vec<GroupSummary> = list
                .groups()
                .iter()
                .filter(|g| {
                    args.name_contains
                        .as_deref()
                        .is_none_or(|s| g.name().contains(s))
                })
                .map(|g| GroupSummary {
                    group_id: g.name().to_string(),
                    state: g.state().to_string(),
                    protocol_type: g.protocol_type().to_string(),
                })
                .collect();
            groups.sort_by(|a, b| a.group_id.cmp(&b.group_id));
            let total = groups.len();
            groups.truncate(cap);
            Ok(GroupList {
                truncated: total > groups.len(),
                groups,
                total,
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
    /// Kafka's group state: Empty, Stable, PreparingRebalance, CompletingRebalance, Dead.
    pub state: String,
    pub protocol_type: String,
    /// The partition assignor in use (e.g. range, cooperative-sticky).
    pub protocol: String,
    pub members: Vec<GroupMember>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct GroupMember {
    pub member_id: String,
    pub client_id: String,
    pub host: String,
    /// topic -> partitions assigned to this member.
    pub assignment: BTreeMap<String, Vec<i32>>,
}

/// The classic description of one group; a group Kafka does not know comes
/// back in state `Dead` with no members, which is `NOT_FOUND` here.
fn group_info(k: &BlockingKafka, group: &str) -> ToolResult<GroupDescription> {
    let list = k.group_list(Some(group))?;
    let info: &GroupInfo = list
        .groups()
        .iter()
        .find(|g| g.name() == group)
        .ok_or_else(|| ToolError::not_found(format!("consumer group {group:?} does not exist")))?;
    if info.state() == "Dead" && info.members().is_empty() {
        return Err(ToolError::not_found(format!(
            "consumer group {group:?} does not exist"
        )));
    }
    Ok(GroupDescription {
        group_id: group.to_string(),
        state: info.state().to_string(),
        protocol_type: info.protocol_type().to_string(),
        protocol: info.protocol().to_string(),
        members: info
            .members()
            .iter()
            .map(|m| GroupMember {
                member_id: m.id().to_string(),
                client_id: m.client_id().to_string(),
                host: m.client_host().to_string(),
                assignment: m.assignment().map(decode_assignment).unwrap_or_default(),
            })
            .collect(),
    })
}

/// Decodes a consumer-protocol assignment (version, [topic, [partition]],
/// user data). Anything unparsable yields what was read so far: this is
/// display data, not a decision input.
fn decode_assignment(bytes: &[u8]) -> BTreeMap<String, Vec<i32>> {
    fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        if b.len() < n {
            return None;
        }
        let (head, tail) = b.split_at(n);
        *b = tail;
        Some(head)
    }
    fn i16_(b: &mut &[u8]) -> Option<i16> {
        take(b, 2).map(|s| i16::from_be_bytes([s[0], s[1]]))
    }
    fn i32_(b: &mut &[u8]) -> Option<i32> {
        take(b, 4).map(|s| i32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }
    let mut out = BTreeMap::new();
    let mut b = bytes;
    let _version = i16_(&mut b);
    let Some(topics) = i32_(&mut b) else {
        return out;
    };
    for _ in 0..topics.max(0) {
        let Some(len) = i16_(&mut b) else { break };
        let Some(name) = take(&mut b, len.max(0) as usize) else {
            break;
        };
        let Some(count) = i32_(&mut b) else { break };
        let mut partitions = Vec::new();
        for _ in 0..count.max(0) {
            match i32_(&mut b) {
                Some(p) => partitions.push(p),
                None => break,
            }
        }
        out.insert(String::from_utf8_lossy(name).into_owned(), partitions);
    }
    out
}

pub async fn describe_group(ctx: &ToolContext, args: GroupArgs) -> ToolResult<GroupDescription> {
    validate::group_id(&args.group_id)?;
    let cap = ctx.limits.max_list_items;
    ctx.kafka
        .blocking(move |k| {
            let mut d = group_info(k, &args.group_id)?;
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
            if rows.is_empty() && group_info(k, &args.group_id).is_err() {
                return Err(ToolError::not_found(format!(
                    "consumer group {:?} does not exist or has no committed offsets",
                    args.group_id
                )));
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
                Err(e) if e.code == crate::error::ErrorCode::NotFound => {}
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_a_consumer_protocol_assignment() {
        // version 3, 1 topic "orders" with partitions [0, 2], empty user data
        let mut b = vec![0, 3, 0, 0, 0, 1, 0, 6];
        b.extend_from_slice(b"orders");
        b.extend_from_slice(&[0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 2, 0xff, 0xff, 0xff, 0xff]);
        let a = decode_assignment(&b);
        assert_eq!(a.get("orders"), Some(&vec![0, 2]));
    }

    #[test]
    fn truncated_assignments_do_not_panic() {
        for n in 0..12 {
            let b = [0u8, 3, 0, 0, 0, 1, 0, 6, b'o', b'r', b'd', b'e'];
            let _ = decode_assignment(&b[..n]);
        }
        assert!(decode_assignment(&[0, 0, 0x7f, 0xff, 0xff, 0xff]).is_empty());
    }
}
