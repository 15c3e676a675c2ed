//! The tool surface: each tool is an argument type (its input schema), an
//! output type (its output schema) and an async function. One table below
//! ties them to names, descriptions and MCP annotations; `dispatch` is the
//! single entry point that the MCP handler calls after authorization.

pub(crate) mod acls;
mod consume;
mod groups;
mod metrics;
mod mutate;
mod names;
mod observe;
pub mod schemas;
pub mod validate;

pub use consume::{Payload, numbers_are_exact};

use std::sync::Arc;

use rmcp::model::{JsonObject, Tool, ToolAnnotations};
use schemars::JsonSchema;
use schemars::transform::RecursiveTransform;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::config::Limits;
use crate::error::{ToolError, ToolResult};
use crate::kafka::Kafka;
use crate::scope::Scope;
use crate::tool_name::ToolName;

/// What a tool runs with.
#[derive(Clone)]
pub struct ToolContext {
    pub kafka: Arc<Kafka>,
    pub limits: Limits,
    /// The caller's topics and groups; `None`: every one. What a call names
    /// was checked before it ran (`check_scope`); listings filter by it.
    pub scope: Option<Arc<Scope>>,
    /// Where `cluster_metrics` reads from (`None`: no source configured).
    pub prometheus: Option<Arc<crate::prometheus::Prometheus>>,
    /// Where schema-aware payloads' schemas are (`None`: none configured).
    pub schema_registry: Option<Arc<crate::schema::SchemaRegistry>>,
}

impl ToolContext {
    /// Whether listings are cut down to a scope (their answers say so).
    fn scoped(&self) -> bool {
        self.scope.is_some()
    }

    /// A predicate for topic names in the caller's scope, to move into the
    /// blocking Kafka call that lists them.
    fn topics_in_scope(&self) -> impl Fn(&str) -> bool + Send + 'static {
        let scope = self.scope.clone();
        move |name| scope.as_ref().is_none_or(|s| s.topics.admits(name))
    }

    /// The same for consumer groups.
    fn groups_in_scope(&self) -> impl Fn(&str) -> bool + Send + 'static {
        let scope = self.scope.clone();
        move |name| scope.as_ref().is_none_or(|s| s.groups.admits(name))
    }
}

/// The MCP hints of a tool, from what it does to Kafka.
#[derive(Clone, Copy)]
enum Effect {
    /// Reads only.
    Read,
    /// Adds or changes; repeating the same call changes nothing more.
    Idempotent,
    /// Adds data or changes; a repeat adds again.
    Additive,
    /// Removes or rewinds something that cannot be restored.
    Destructive,
}

fn annotations(effect: Effect) -> ToolAnnotations {
    let (read_only, destructive, idempotent) = match effect {
        Effect::Read => (true, false, true),
        Effect::Idempotent => (false, false, true),
        Effect::Additive => (false, false, false),
        Effect::Destructive => (false, true, false),
    };
    // Kafka is a system outside this server: every tool is open-world.
    ToolAnnotations::new()
        .read_only(read_only)
        .destructive(destructive)
        .idempotent(idempotent)
        .open_world(true)
}

/// The JSON Schema (2020-12) of `T`, as every tool's input and output
/// schema is made (the compat tools' too): in the standard vocabulary only
/// (see `standard_formats`).
pub(crate) fn schema<T: JsonSchema>() -> Arc<JsonObject> {
    let settings = schemars::generate::SchemaSettings::draft2020_12()
        .with_transform(RecursiveTransform(standard_formats));
    let schema = schemars::SchemaGenerator::new(settings).into_root_schema_for::<T>();
    match serde_json::to_value(schema) {
        Ok(Value::Object(map)) => Arc::new(map),
        _ => unreachable!("a JSON schema is an object"),
    }
}

/// schemars names Rust's number types in `format` (`uint32`, `int64`,
/// `double`...), formats JSON Schema does not define: strict validators (ajv,
/// under the TypeScript SDK and the MCP Inspector) warn on or refuse every
/// such schema. The format goes; the bounds it stood for stay as `minimum`
/// and `maximum` (a narrower range the type declares is kept).
fn standard_formats(schema: &mut schemars::Schema) {
    let Some(object) = schema.as_object_mut() else {
        return;
    };
    let (minimum, maximum): (Option<Value>, Option<Value>) =
        match object.get("format").and_then(Value::as_str) {
            Some("uint8") => (Some(0.into()), Some(u8::MAX.into())),
            Some("uint16") => (Some(0.into()), Some(u16::MAX.into())),
            Some("uint32") => (Some(0.into()), Some(u32::MAX.into())),
            Some("uint64") => (Some(0.into()), Some(u64::MAX.into())),
            Some("uint") => (Some(0.into()), Some(usize::MAX.into())),
            // Beyond what a JSON number in serde_json holds exactly.
            Some("uint128") => (Some(0.into()), None),
            Some("int8") => (Some(i8::MIN.into()), Some(i8::MAX.into())),
            Some("int16") => (Some(i16::MIN.into()), Some(i16::MAX.into())),
            Some("int32") => (Some(i32::MIN.into()), Some(i32::MAX.into())),
            Some("int64") => (Some(i64::MIN.into()), Some(i64::MAX.into())),
            Some("int") => (Some(isize::MIN.into()), Some(isize::MAX.into())),
            Some("int128" | "float" | "double") => (None, None),
            _ => return,
        };
    object.remove("format");
    for (bound, value) in [("minimum", minimum), ("maximum", maximum)] {
        if let Some(value) = value {
            object.entry(bound).or_insert(value);
        }
    }
}

/// Decodes a tool's arguments strictly (no arguments is `{}`): unknown
/// fields and wrong types are `INVALID_ARGUMENT` naming where. Shared by the
/// native tools and their mcp-confluent spellings (`compat`).
pub(crate) fn decode<A: DeserializeOwned>(
    tool: impl std::fmt::Display,
    args: Value,
) -> ToolResult<A> {
    let args = if args.is_null() {
        Value::Object(Default::default())
    } else {
        args
    };
    serde_path_to_error::deserialize(args).map_err(|e| {
        let path = e.path().to_string();
        let at = if path == "." {
            String::new()
        } else {
            format!(" at `{path}`")
        };
        ToolError::invalid(format!(
            "invalid arguments for {tool}{at}: {}",
            e.into_inner()
        ))
    })
}

fn encode<O: Serialize>(out: O) -> ToolResult<Value> {
    serde_json::to_value(out)
        .map_err(|e| ToolError::new(crate::error::ErrorCode::Internal, e.to_string()))
}

/// Mutations take a `plan_id` (to apply a plan) and their dry runs return a
/// `plan` (see `crate::plan`): the server handles both, the tools never see them.
fn with_plan_fields(
    tool: ToolName,
    input: Arc<JsonObject>,
    output: Arc<JsonObject>,
) -> (Arc<JsonObject>, Arc<JsonObject>) {
    if !tool.is_mutation() {
        return (input, output);
    }
    let add = |schema: Arc<JsonObject>, name: &str, property: Value| {
        let mut schema = Arc::unwrap_or_clone(schema);
        if let Some(Value::Object(properties)) = schema.get_mut("properties") {
            properties.insert(name.to_string(), property);
        }
        Arc::new(schema)
    };
    let plan_id = serde_json::json!({
        "type": ["string", "null"],
        "description": "Apply the plan a dry run returned (plan.id), with the same arguments. Required where mutations are two-phase (staging, prod).",
    });
    let mut plan = Arc::unwrap_or_clone(schema::<crate::plan::PlanTicket>());
    plan.remove("$schema");
    plan.insert(
        "description".into(),
        "Made by a dry run: apply it by calling again with plan_id and the same arguments.".into(),
    );
    (
        add(input, crate::plan::PLAN_ID_ARG, plan_id),
        add(output, crate::plan::PLAN_FIELD, Value::Object(plan)),
    )
}

macro_rules! tool_table {
    ($($tool:ident => $module:ident::$func:ident($args:ty) -> $out:ty, $effect:ident, $desc:expr;)*) => {
        /// The MCP description of a tool.
        pub fn describe(tool: ToolName) -> Tool {
            match tool {
                $(ToolName::$tool => {
                    let (input, output) = with_plan_fields(tool, schema::<$args>(), schema::<$out>());
                    Tool::new_with_raw(tool.as_str(), Some($desc.into()), input)
                        .with_raw_output_schema(output)
                        .with_annotations(annotations(Effect::$effect))
                })*
            }
        }

        /// Decodes raw JSON arguments as `tool` would, without running it
        /// (for fuzzing the decoding of every tool's arguments).
        pub fn decode_arguments(tool: ToolName, args: Value) -> ToolResult<()> {
            match tool {
                $(ToolName::$tool => decode::<$args>(tool, args).map(|_| ()),)*
            }
        }

        /// Refuses a call whose arguments name a topic or consumer group
        /// outside `scope`, before anything asks Kafka. Arguments that do
        /// not decode are left to the tool, which says what is wrong.
        pub fn check_scope(tool: ToolName, scope: &Scope, args: &Value) -> ToolResult<()> {
            match tool {
                $(ToolName::$tool => match decode::<$args>(tool, args.clone()) {
                    Ok(args) => names::check(scope, &names::Names::named(&args)),
                    Err(_) => Ok(()),
                },)*
            }
        }

        /// Runs a tool with raw JSON arguments; the result is the tool's
        /// structured output.
        pub async fn dispatch(tool: ToolName, ctx: &ToolContext, args: Value) -> ToolResult<Value> {
            match tool {
                $(ToolName::$tool => encode($module::$func(ctx, decode::<$args>(tool, args)?).await?),)*
            }
        }
    };
}

tool_table! {
    ClusterStatus => observe::cluster_status(observe::ClusterStatusArgs) -> observe::ClusterStatus, Read,
        "Overview of the Kafka cluster: cluster ID, brokers, topic and partition counts, and partitions that are under-replicated or have no leader.";
    ListBrokers => observe::list_brokers(observe::ListBrokersArgs) -> observe::BrokerList, Read,
        "List the brokers of the cluster with their IDs, hosts and ports.";
    ListTopics => observe::list_topics(observe::ListTopicsArgs) -> observe::TopicList, Read,
        "List topics with partition counts. Filter by a name substring; internal topics (starting with '_' or '__') are hidden unless include_internal is true. Paginated: pass next_cursor back as cursor.";
    DescribeTopic => observe::describe_topic(observe::TopicArgs) -> observe::TopicDescription, Read,
        "Describe one topic: per partition the leader, replicas, in-sync replicas, earliest and latest offsets; plus the topic's non-default configs.";
    DescribeConfigs => observe::describe_configs(observe::DescribeConfigsArgs) -> observe::ConfigDescription, Read,
        "Show the configuration of a topic or a broker. Only non-default values unless include_defaults is true. Sensitive values are never shown.";
    ListGroups => groups::list_groups(groups::ListGroupsArgs) -> groups::GroupList, Read,
        "List consumer groups with their state and protocol type. Filter by a name substring.";
    DescribeGroup => groups::describe_group(groups::GroupArgs) -> groups::GroupDescription, Read,
        "Describe a consumer group: state, protocol, members with client IDs, hosts and assigned partitions.";
    GetConsumerLag => groups::get_consumer_lag(groups::LagArgs) -> groups::Lag, Read,
        "A consumer group's lag: per partition the committed offset, latest offset and lag, and the total. Optionally for one topic only.";
    FetchOffsets => observe::fetch_offsets(observe::FetchOffsetsArgs) -> observe::TopicOffsets, Read,
        "Earliest and latest offsets of a topic's partitions, and optionally the first offset at or after a timestamp.";
    ConsumeMessages => consume::consume_messages(consume::ConsumeArgs) -> consume::Messages, Read,
        "Peek at messages without joining a group or committing: from earliest, from the latest N (from = latest), from an offset or from a timestamp, on one partition or all. Capped by max_messages, max_bytes and timeout_ms. Values are shown as JSON or UTF-8 text when valid, else base64; where the server has a schema registry, keys and values in Confluent's wire format (Avro, Protobuf, JSON Schema) are decoded to JSON with their writer's schema (key_schema/value_schema say which), and notes say why one was not.";
    DescribeAcls => acls::describe_acls(acls::DescribeAclsArgs) -> acls::AclDescription, Read,
        "Kafka's ACLs that apply to a topic or group (resource_type and name: literal, prefixed and wildcard ones), or with principal: self those of this server's own Kafka principal, i.e. what it may do. Says authorizer: false when the cluster enforces no ACLs.";
    ClusterMetrics => metrics::cluster_metrics(metrics::ClusterMetricsArgs) -> metrics::ClusterMetrics, Read,
        "Broker metrics from Prometheus over a window (default 5m, 30s..24h): per cluster and per broker bytes in/out and messages in per second, produce and fetch request rates and p99 latency, failed requests, under-replicated and offline partitions, active controllers, ISR shrinks/expands, idle ratios; per topic (the busiest by bytes in, or one named topic) bytes in/out and messages in. Each figure has its unit and PromQL; no data is null with a reason, never 0.";
    CreateTopic => mutate::create_topic(mutate::CreateTopicArgs) -> mutate::CreateTopicResult, Idempotent,
        "Create a topic with a partition count, replication factor and configs. dry_run: true asks Kafka to validate without creating.";
    DeleteTopic => mutate::delete_topic(mutate::DeleteTopicArgs) -> mutate::DeleteTopicResult, Destructive,
        "Delete a topic and all its messages. dry_run: true shows what would be deleted (partitions, message counts).";
    CreatePartitions => mutate::create_partitions(mutate::CreatePartitionsArgs) -> mutate::CreatePartitionsResult, Idempotent,
        "Raise a topic's partition count to a new total (Kafka cannot lower it). dry_run: true asks Kafka to validate.";
    UpdateTopicConfig => mutate::update_topic_config(mutate::UpdateTopicConfigArgs) -> mutate::UpdateTopicConfigResult, Idempotent,
        "Set or remove (reset to default) individual topic configs, leaving others as they are. Returns the before/after diff. dry_run: true asks Kafka to validate.";
    PublishMessage => mutate::publish_message(mutate::PublishArgs) -> mutate::PublishResult, Additive,
        "Produce one message (key, value, headers, optional partition) with acks=all; returns its partition and offset. With value_schema (and key_schema) the value (key) is JSON text encoded with a subject's registered schema (default <topic>-value, latest version), validated first: a misfit is INVALID_ARGUMENT naming the field and nothing is written. dry_run: true checks topic, partition, encoding and size.";
    DeleteGroup => groups::delete_group(groups::DeleteGroupArgs) -> groups::DeleteGroupResult, Destructive,
        "Delete a consumer group and its committed offsets. Kafka refuses while the group has members. dry_run: true shows the group's state and offsets.";
    ResetGroupOffsets => groups::reset_group_offsets(groups::ResetOffsetsArgs) -> groups::ResetOffsetsResult, Destructive,
        "Move a consumer group's committed offsets on a topic to earliest, latest, a timestamp or an explicit offset. Refused while the group has members. dry_run: true shows current and target offsets.";
    ListSubjects => schemas::list_subjects(schemas::ListSubjectsArgs) -> schemas::SubjectList, Read,
        "List the Schema Registry's subjects (optionally by prefix, or with soft-deleted ones). A subject <topic>-key or <topic>-value belongs to its topic's scope.";
    GetSchema => schemas::get_schema(schemas::GetSchemaArgs) -> schemas::SchemaDescription, Read,
        "Read a registered schema: by subject and version (default latest), with the subject's versions; or by schema id, with the subject versions that hold it. Returns its type (AVRO, PROTOBUF, JSON), text and references.";
    CheckCompatibility => schemas::check_compatibility(schemas::CheckCompatibilityArgs) -> schemas::Compatibility, Read,
        "Check whether a proposed schema (text, type, references) is compatible with a subject under its compatibility level, against its latest version or a named one, with the registry's reasons. The schema is compiled here first.";
    RegisterSchema => schemas::register_schema(schemas::RegisterSchemaArgs) -> schemas::RegisterSchemaResult, Idempotent,
        "Register a schema under a subject (a new version, or the existing one if the subject holds it already). Refused with CONFLICT if incompatible under the subject's compatibility level. dry_run: true compiles it, checks compatibility and whether it is registered, and registers nothing.";
    DeleteSubject => schemas::delete_subject(schemas::DeleteSubjectArgs) -> schemas::DeleteSubjectResult, Destructive,
        "Delete a subject's versions (soft; permanent: true also deletes them for good, after which records written with them may no longer decode). dry_run: true lists the versions that would go.";
}

/// Descriptions of the given tools, in the table's order.
pub fn describe_all(tools: &[ToolName]) -> Vec<Tool> {
    ToolName::ALL
        .iter()
        .copied()
        .filter(|t| tools.contains(t))
        .map(describe)
        .collect()
}

/// The compat tools (mcp-confluent's names) that run as the given native
/// tools, in their table's order. Each carries its native tool's
/// annotations, since it does what that tool does; an alias has the native
/// tool's schemas too. The others answer in mcp-confluent's shape, which no
/// output schema describes.
pub fn describe_compat(tools: &[ToolName]) -> Vec<Tool> {
    crate::compat::CompatTool::ALL
        .iter()
        .copied()
        .filter(|c| tools.contains(&c.native()))
        .map(|c| {
            let mut tool = describe(c.native());
            tool.name = c.as_str().into();
            tool.description = Some(c.description().into());
            if let Some(input) = c.input_schema() {
                tool.input_schema = Arc::new(input);
                tool.output_schema = None;
            }
            tool
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The `format` values JSON Schema 2020-12 defines (validation, section 7.3).
    const STANDARD_FORMATS: [&str; 19] = [
        "date-time",
        "date",
        "time",
        "duration",
        "email",
        "idn-email",
        "hostname",
        "idn-hostname",
        "ipv4",
        "ipv6",
        "uri",
        "uri-reference",
        "iri",
        "iri-reference",
        "uuid",
        "uri-template",
        "json-pointer",
        "relative-json-pointer",
        "regex",
    ];

    /// Every `format` in `value`, with the JSON path where it is.
    fn formats(value: &Value, at: &str, found: &mut Vec<(String, String)>) {
        match value {
            Value::Object(map) => {
                for (key, child) in map {
                    match (key.as_str(), child) {
                        ("format", Value::String(format)) => {
                            found.push((at.into(), format.clone()))
                        }
                        _ => formats(child, &format!("{at}/{key}"), found),
                    }
                }
            }
            Value::Array(items) => {
                for (i, child) in items.iter().enumerate() {
                    formats(child, &format!("{at}/{i}"), found);
                }
            }
            _ => {}
        }
    }

    /// Arguments for every tool naming team B's topic and group where the
    /// tool takes one; what `check_scope` must refuse for team A.
    fn naming_team_b(tool: ToolName) -> Value {
        let (topic, group) = ("team-b.orders", "team-b-billing");
        match tool {
            ToolName::ClusterStatus | ToolName::ListBrokers => json!({}),
            ToolName::ListTopics => json!({ "name_contains": "team-b" }),
            ToolName::ListGroups => json!({ "name_contains": "team-b" }),
            ToolName::DescribeTopic | ToolName::DeleteTopic => json!({ "topic": topic }),
            ToolName::DescribeConfigs => json!({ "resource_type": "topic", "name": topic }),
            ToolName::FetchOffsets | ToolName::ConsumeMessages => json!({ "topic": topic }),
            ToolName::ClusterMetrics => json!({ "topic": topic }),
            ToolName::DescribeGroup | ToolName::DeleteGroup => json!({ "group_id": group }),
            ToolName::GetConsumerLag => json!({ "group_id": "team-a-billing", "topic": topic }),
            ToolName::CreateTopic => json!({ "topic": topic, "partitions": 1 }),
            ToolName::CreatePartitions => json!({ "topic": topic, "total": 3 }),
            ToolName::UpdateTopicConfig => json!({ "topic": topic, "set": {} }),
            ToolName::PublishMessage => json!({ "topic": topic, "value": "x" }),
            ToolName::ResetGroupOffsets => {
                json!({ "group_id": "team-a-billing", "topic": topic, "to": "earliest" })
            }
            ToolName::DescribeAcls => json!({ "resource_type": "topic", "name": topic }),
            ToolName::ListSubjects => json!({ "prefix": "team-b" }),
            ToolName::GetSchema => json!({ "subject": "team-b.orders-value" }),
            ToolName::CheckCompatibility | ToolName::RegisterSchema => {
                json!({ "subject": "team-b.orders-value", "schema": "\"string\"" })
            }
            ToolName::DeleteSubject => json!({ "subject": "team-b.orders-key" }),
        }
    }

    fn team_a() -> Scope {
        use crate::scope::{NamePattern, NameScope};
        Scope {
            topics: NameScope {
                allow: vec![NamePattern::prefix("team-a.")],
                deny: Vec::new(),
            },
            groups: NameScope {
                allow: vec![NamePattern::prefix("team-a-")],
                deny: Vec::new(),
            },
        }
    }

    #[test]
    fn every_tool_naming_a_topic_or_group_out_of_scope_is_refused() {
        let listings = [
            ToolName::ClusterStatus,
            ToolName::ListBrokers,
            ToolName::ListTopics,
            ToolName::ListGroups,
            ToolName::ListSubjects,
        ];
        for tool in ToolName::ALL.iter().copied() {
            let args = naming_team_b(tool);
            decode_arguments(tool, args.clone()).unwrap_or_else(|e| panic!("{tool}: {e:?}"));
            let checked = check_scope(tool, &team_a(), &args);
            if listings.contains(&tool) {
                assert_eq!(checked, Ok(()), "{tool} names nothing");
                continue;
            }
            let err = checked.expect_err(tool.as_str());
            assert_eq!(
                err.code,
                crate::error::ErrorCode::PermissionDenied,
                "{tool}"
            );
            assert!(err.message.contains("team-b"), "{tool}: {}", err.message);
            assert!(
                err.message.contains("matches no allowed pattern"),
                "{tool}: {}",
                err.message
            );
            // The same call within team A's names passes.
            let own = serde_json::to_string(&args)
                .unwrap()
                .replace("team-b", "team-a");
            let own: Value = serde_json::from_str(&own).unwrap();
            assert_eq!(check_scope(tool, &team_a(), &own), Ok(()), "{tool}: {own}");
        }
        // A broker's configs are no tenant's.
        let broker = json!({ "resource_type": "broker", "name": "1" });
        assert_eq!(
            check_scope(ToolName::DescribeConfigs, &team_a(), &broker),
            Ok(())
        );
        // Undecodable arguments are the tool's to report (INVALID_ARGUMENT).
        let bad = json!({ "topic": 7 });
        assert_eq!(
            check_scope(ToolName::DescribeTopic, &team_a(), &bad),
            Ok(())
        );
        // An empty scope holds nothing.
        let own = json!({ "topic": "team-a.orders" });
        let err = check_scope(ToolName::DescribeTopic, &Scope::default(), &own).unwrap_err();
        assert_eq!(err.code, crate::error::ErrorCode::PermissionDenied);
    }

    #[test]
    fn every_schema_uses_only_standard_formats() {
        let mut odd = Vec::new();
        let mut seen = 0;
        for tool in describe_all(ToolName::ALL)
            .into_iter()
            .chain(describe_compat(ToolName::ALL))
        {
            let input = Value::Object((*tool.input_schema).clone());
            let output = tool.output_schema.map(|s| Value::Object((*s).clone()));
            let mut found = Vec::new();
            formats(&input, &format!("{}/input", tool.name), &mut found);
            if let Some(output) = &output {
                formats(output, &format!("{}/output", tool.name), &mut found);
            }
            seen += found.len();
            odd.extend(
                found
                    .into_iter()
                    .filter(|(_, f)| !STANDARD_FORMATS.contains(&f.as_str())),
            );
        }
        assert!(
            odd.is_empty(),
            "formats strict validators reject: {odd:#?} (of {seen})"
        );
    }
}
