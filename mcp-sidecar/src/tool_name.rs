//! The closed set of tool names. Shared with the operator (CRD validation,
//! RBAC verbs), so it lives outside the `server` feature.

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What a tool can do to Kafka: decides defaults, fences and annotations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ToolGroup {
    /// Reads only.
    Observe,
    /// Changes topics, configs, offsets, groups or data.
    Mutate,
}

macro_rules! tool_names {
    ($($variant:ident => $name:literal, $group:ident;)*) => {
        /// A tool of the sidecar. The snake_case name is the MCP tool name and
        /// the Kubernetes RBAC verb on `mcpkafkaservers/tools`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum ToolName { $($variant,)* }

        impl ToolName {
            /// Every tool, observe tools first.
            pub const ALL: &'static [ToolName] = &[$(ToolName::$variant,)*];

            pub const fn as_str(self) -> &'static str {
                match self { $(ToolName::$variant => $name,)* }
            }

            pub const fn group(self) -> ToolGroup {
                match self { $(ToolName::$variant => ToolGroup::$group,)* }
            }
        }
    };
}

tool_names! {
    ClusterStatus => "cluster_status", Observe;
    ListBrokers => "list_brokers", Observe;
    ListTopics => "list_topics", Observe;
    DescribeTopic => "describe_topic", Observe;
    DescribeConfigs => "describe_configs", Observe;
    ListGroups => "list_groups", Observe;
    DescribeGroup => "describe_group", Observe;
    GetConsumerLag => "get_consumer_lag", Observe;
    FetchOffsets => "fetch_offsets", Observe;
    ConsumeMessages => "consume_messages", Observe;
    DescribeAcls => "describe_acls", Observe;
    ClusterMetrics => "cluster_metrics", Observe;
    ListSubjects => "list_subjects", Observe;
    GetSchema => "get_schema", Observe;
    CheckCompatibility => "check_compatibility", Observe;
    CreateTopic => "create_topic", Mutate;
    DeleteTopic => "delete_topic", Mutate;
    CreatePartitions => "create_partitions", Mutate;
    UpdateTopicConfig => "update_topic_config", Mutate;
    PublishMessage => "publish_message", Mutate;
    DeleteGroup => "delete_group", Mutate;
    ResetGroupOffsets => "reset_group_offsets", Mutate;
    RegisterSchema => "register_schema", Mutate;
    DeleteSubject => "delete_subject", Mutate;
}

impl ToolName {
    pub fn is_mutation(self) -> bool {
        self.group() == ToolGroup::Mutate
    }

    /// Whether the tool works on a Schema Registry (it exists only where
    /// `schemaRegistry` is configured).
    pub fn needs_schema_registry(self) -> bool {
        matches!(
            self,
            Self::ListSubjects
                | Self::GetSchema
                | Self::CheckCompatibility
                | Self::RegisterSchema
                | Self::DeleteSubject
        )
    }

    /// Every tool of one group.
    pub fn in_group(group: ToolGroup) -> impl Iterator<Item = ToolName> {
        Self::ALL
            .iter()
            .copied()
            .filter(move |t| t.group() == group)
    }
}

impl fmt::Display for ToolName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The name is not one of [`ToolName::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown tool {0:?}; known tools: {known}", known = ToolName::ALL.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(", "))]
pub struct UnknownTool(pub String);

impl FromStr for ToolName {
    type Err = UnknownTool;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .iter()
            .copied()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| UnknownTool(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_serde_and_from_str() {
        for tool in ToolName::ALL {
            let json = serde_json::to_string(tool).unwrap();
            assert_eq!(json, format!("\"{}\"", tool.as_str()));
            assert_eq!(serde_json::from_str::<ToolName>(&json).unwrap(), *tool);
            assert_eq!(tool.as_str().parse::<ToolName>().unwrap(), *tool);
        }
    }

    #[test]
    fn groups_split_the_set() {
        assert_eq!(ToolName::in_group(ToolGroup::Observe).count(), 15);
        assert_eq!(ToolName::in_group(ToolGroup::Mutate).count(), 9);
        assert!(ToolName::ResetGroupOffsets.is_mutation());
        assert!(!ToolName::ConsumeMessages.is_mutation());
    }

    #[test]
    fn an_unknown_name_lists_the_known_ones() {
        let err = "drop_cluster".parse::<ToolName>().unwrap_err().to_string();
        assert!(
            err.contains("drop_cluster") && err.contains("list_topics"),
            "{err}"
        );
    }
}
