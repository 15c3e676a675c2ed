//! Consumer-group tools: list-consumer-groups, describe-consumer-group,
//! get-consumer-group-lag.

use std::collections::BTreeSet;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Call, CompatTool, Shape, Translation, ignored_selectors, invalid_at, native_result};
use crate::error::ToolResult;
use crate::tool_name::ToolName;

/// Kafka's group states, spelled as mcp-confluent takes and shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
pub enum GroupState {
    Unknown,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
    Empty,
}

impl GroupState {
    const ALL: [GroupState; 6] = [
        Self::Unknown,
        Self::PreparingRebalance,
        Self::CompletingRebalance,
        Self::Stable,
        Self::Dead,
        Self::Empty,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "Unknown",
            Self::PreparingRebalance => "PreparingRebalance",
            Self::CompletingRebalance => "CompletingRebalance",
            Self::Stable => "Stable",
            Self::Dead => "Dead",
            Self::Empty => "Empty",
        }
    }

    /// The state Kafka reported, `Unknown` for a name outside the set.
    fn of(native: &str) -> Self {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str() == native)
            .unwrap_or(Self::Unknown)
    }
}

/// Group protocols (KIP-848 `Consumer` or the `Classic` one).
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
pub enum GroupType {
    Classic,
    Consumer,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ListConsumerGroupsArgs {
    /// Only groups in one of these states; default: all.
    #[serde(default)]
    #[schemars(length(min = 1))]
    pub match_states: Option<Vec<GroupState>>,
    /// Not applied here: this server cannot tell the group protocols apart.
    #[serde(default)]
    pub match_type: Option<GroupType>,
    /// Confluent Cloud cluster ID: ignored, this server serves one cluster.
    #[serde(default, rename = "cluster_id")]
    pub cluster_id: Option<String>,
    /// Confluent Cloud environment ID: ignored.
    #[serde(default, rename = "environment_id")]
    pub environment_id: Option<String>,
}

/// The state filter of a listing, applied to the native answer.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct GroupFilter {
    states: Option<Vec<GroupState>>,
}

pub(super) fn list_consumer_groups(args: ListConsumerGroupsArgs) -> ToolResult<Translation> {
    let tool = CompatTool::ListConsumerGroups;
    if args.match_states.as_ref().is_some_and(Vec::is_empty) {
        return Err(invalid_at(
            tool,
            "matchStates",
            "name at least one state, or leave it out",
        ));
    }
    let match_type = args.match_type.map(|_| {
        "matchType not applied: this server lists groups without their protocol type (Classic or Consumer), so all are listed".to_string()
    });
    let filter = GroupFilter {
        states: args.match_states,
    };
    Ok(Translation::new(
        tool,
        vec![Call::new("groups", json!({}))],
        Shape::ListConsumerGroups(filter),
    )
    .note(match_type)
    .note(ignored_selectors(&[
        ("cluster_id", &args.cluster_id),
        ("environment_id", &args.environment_id),
    ])))
}

#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(JsonSchema))]
struct NativeGroupList {
    groups: Vec<NativeGroupSummary>,
    truncated: bool,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(JsonSchema))]
struct NativeGroupSummary {
    group_id: String,
    state: String,
    protocol_type: String,
}

pub(super) fn shape_list_consumer_groups(
    filter: &GroupFilter,
    native: Value,
) -> ToolResult<(String, Value)> {
    let list: NativeGroupList = native_result(ToolName::ListGroups, native)?;
    let listed = list.groups.len();
    let groups: Vec<Value> = list
        .groups
        .into_iter()
        .map(|g| (GroupState::of(&g.state), g))
        .filter(|(state, _)| filter.states.as_ref().is_none_or(|s| s.contains(state)))
        .map(|(state, g)| {
            json!({
                "groupId": g.group_id,
                "state": state.as_str(),
                "type": "Unknown",
                "protocolType": g.protocol_type,
                // A group without a protocol only stores offsets (no members
                // ever joined it): librdkafka's "simple" consumer group.
                "isSimpleConsumerGroup": g.protocol_type.is_empty(),
            })
        })
        .collect();
    let mut notes = Vec::new();
    if list.truncated {
        notes.push(format!(
            "the cluster has more groups than this server's list cap: only the first {listed} were considered"
        ));
    }
    let payload = json!({ "groups": groups, "errors": [] });
    let count = groups.len();
    let noun = if count == 1 { "group" } else { "groups" };
    let suffix = if filter.states.is_some() {
        " (filtered)"
    } else {
        ""
    };
    let text = if count == 0 {
        format!("Found 0 consumer {noun}{suffix}.")
    } else {
        format!(
            "Found {count} consumer {noun}{suffix}:\n{}",
            serde_json::to_string_pretty(&payload).unwrap_or_default()
        )
    };
    let mut structured = payload;
    structured["notes"] = json!(notes);
    Ok((text, structured))
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DescribeConsumerGroupArgs {
    /// Consumer group ID to describe.
    #[schemars(length(min = 1))]
    pub group_id: String,
    /// Confluent Cloud cluster ID: ignored, this server serves one cluster.
    #[serde(default, rename = "cluster_id")]
    pub cluster_id: Option<String>,
    /// Confluent Cloud environment ID: ignored.
    #[serde(default, rename = "environment_id")]
    pub environment_id: Option<String>,
}

fn group_id(tool: CompatTool, group: &str) -> ToolResult<()> {
    if group.is_empty() {
        return Err(invalid_at(tool, "groupId", "must not be empty"));
    }
    Ok(())
}

pub(super) fn describe_consumer_group(args: DescribeConsumerGroupArgs) -> ToolResult<Translation> {
    let tool = CompatTool::DescribeConsumerGroup;
    group_id(tool, &args.group_id)?;
    let native = json!({ "group_id": args.group_id });
    Ok(Translation::new(
        tool,
        vec![Call::new(args.group_id, native)],
        Shape::DescribeConsumerGroup,
    )
    .note(ignored_selectors(&[
        ("cluster_id", &args.cluster_id),
        ("environment_id", &args.environment_id),
    ])))
}

#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(JsonSchema))]
struct NativeGroup {
    group_id: String,
    state: String,
    protocol_type: String,
    protocol: String,
    members: Vec<NativeMember>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(JsonSchema))]
struct NativeMember {
    member_id: String,
    client_id: String,
    host: String,
    assignment: std::collections::BTreeMap<String, Vec<i32>>,
}

pub(super) fn shape_describe_consumer_group(native: Value) -> ToolResult<(String, Value)> {
    let group: NativeGroup = native_result(ToolName::DescribeGroup, native)?;
    let state = GroupState::of(&group.state).as_str();
    let members: Vec<Value> = group
        .members
        .iter()
        .map(|m| {
            // mcp-confluent's flat list of {topic, partition} pairs.
            let assignment: Vec<Value> = m
                .assignment
                .iter()
                .flat_map(|(topic, partitions)| {
                    partitions
                        .iter()
                        .map(move |p| json!({ "topic": topic, "partition": p }))
                })
                .collect();
            json!({
                "memberId": m.member_id,
                "clientId": m.client_id,
                "clientHost": m.host,
                "assignment": assignment,
            })
        })
        .collect();
    let text = format!(
        "Consumer group \"{}\" is {state} with {} member(s).",
        group.group_id,
        members.len()
    );
    let structured = json!({
        "groupId": group.group_id,
        "state": state,
        "type": "Unknown",
        // mcp-confluent shows the partition assignor under both names.
        "protocol": group.protocol,
        "partitionAssignor": group.protocol,
        "isSimpleConsumerGroup": group.protocol_type.is_empty(),
        "members": members,
        "notes": ["coordinator is not part of this answer (this server does not look it up)"],
    });
    Ok((text, structured))
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GetConsumerGroupLagArgs {
    /// Consumer group ID to compute lag for.
    #[schemars(length(min = 1))]
    pub group_id: String,
    /// Only these topics; default: every topic the group has committed offsets on.
    #[serde(default)]
    #[schemars(length(min = 1))]
    pub topics: Option<Vec<String>>,
    /// Confluent Cloud cluster ID: ignored, this server serves one cluster.
    #[serde(default, rename = "cluster_id")]
    pub cluster_id: Option<String>,
    /// Confluent Cloud environment ID: ignored.
    #[serde(default, rename = "environment_id")]
    pub environment_id: Option<String>,
}

/// What shaping a lag answer needs of the call.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct LagShape {
    group_id: String,
    /// The topics asked for (each answered, even with no committed offsets).
    topics: Option<Vec<String>>,
}

pub(super) fn get_consumer_group_lag(args: GetConsumerGroupLagArgs) -> ToolResult<Translation> {
    let tool = CompatTool::GetConsumerGroupLag;
    group_id(tool, &args.group_id)?;
    // The native tool takes one topic or all: one call per topic named.
    let calls = match &args.topics {
        None => vec![Call::new(
            args.group_id.clone(),
            json!({ "group_id": args.group_id }),
        )],
        Some(topics) if topics.is_empty() => {
            return Err(invalid_at(
                tool,
                "topics",
                "name at least one topic, or leave it out",
            ));
        }
        Some(topics) => {
            let mut seen = BTreeSet::new();
            let mut calls = Vec::new();
            for (i, topic) in topics.iter().enumerate() {
                let at = format!("topics[{i}]");
                if topic.is_empty() {
                    return Err(invalid_at(tool, &at, "must not be empty"));
                }
                if !seen.insert(topic) {
                    return Err(invalid_at(tool, &at, format!("{topic:?} is named twice")));
                }
                let native = json!({ "group_id": args.group_id, "topic": topic });
                calls.push(Call::new(topic.clone(), native));
            }
            calls
        }
    };
    let shape = LagShape {
        group_id: args.group_id,
        topics: args.topics,
    };
    Ok(
        Translation::new(tool, calls, Shape::GetConsumerGroupLag(shape)).note(ignored_selectors(
            &[
                ("cluster_id", &args.cluster_id),
                ("environment_id", &args.environment_id),
            ],
        )),
    )
}

#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(JsonSchema))]
struct NativeLag {
    partitions: Vec<NativePartitionLag>,
    total_lag: i64,
    truncated: bool,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(JsonSchema))]
struct NativePartitionLag {
    topic: String,
    partition: i32,
    committed_offset: i64,
    latest_offset: i64,
    lag: i64,
}

pub(super) fn shape_get_consumer_group_lag(
    shape: &LagShape,
    done: Vec<Value>,
) -> ToolResult<(String, Value)> {
    // Topics in the order asked for (or as the native answer lists them),
    // each with its partitions' rows.
    let mut topics: Vec<(String, Vec<Value>)> = shape
        .topics
        .iter()
        .flatten()
        .map(|t| (t.clone(), Vec::new()))
        .collect();
    let mut total: i64 = 0;
    let mut truncated = false;
    for native in done {
        let lag: NativeLag = native_result(ToolName::GetConsumerLag, native)?;
        total = total.saturating_add(lag.total_lag);
        truncated |= lag.truncated;
        for row in lag.partitions {
            let i = match topics.iter().position(|(t, _)| *t == row.topic) {
                Some(i) => i,
                None => {
                    topics.push((row.topic.clone(), Vec::new()));
                    topics.len() - 1
                }
            };
            topics[i].1.push(json!({
                "partition": row.partition,
                "committedOffset": row.committed_offset.to_string(),
                "highWatermark": row.latest_offset.to_string(),
                "lag": row.lag,
            }));
        }
    }
    let topic_count = topics.len();
    let topics: Vec<Value> = topics
        .into_iter()
        .map(|(topic, partitions)| json!({ "topic": topic, "partitions": partitions }))
        .collect();
    let mut notes = Vec::new();
    if truncated {
        notes.push(
            "some partitions are left out (this server's list cap); totalLag counts them all"
                .to_string(),
        );
    }
    let text = format!(
        "Consumer group \"{}\" has {total} message(s) of lag across {topic_count} topic(s).",
        shape.group_id
    );
    let structured = json!({
        "groupId": shape.group_id,
        "topics": topics,
        "totalLag": total,
        "notes": notes,
    });
    Ok((text, structured))
}

#[cfg(test)]
pub(super) mod mirrors {
    use super::*;

    pub fn schemas() -> Vec<(ToolName, schemars::Schema)> {
        vec![
            (ToolName::ListGroups, schemars::schema_for!(NativeGroupList)),
            (ToolName::DescribeGroup, schemars::schema_for!(NativeGroup)),
            (ToolName::GetConsumerLag, schemars::schema_for!(NativeLag)),
        ]
    }
}
