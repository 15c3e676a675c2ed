use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::*;

fn limits() -> Limits {
    Limits::default()
}

fn translate(tool: CompatTool, args: Value) -> Translation {
    match tool.translate(args.clone(), &limits()) {
        Ok(t) => t,
        Err(e) => panic!("{tool} {args}: {e}"),
    }
}

fn calls(t: &Translation) -> Vec<Value> {
    t.calls().cloned().collect()
}

/// The single native call of a translation.
fn call(tool: CompatTool, args: Value) -> Value {
    let t = translate(tool, args);
    let calls = calls(&t);
    assert_eq!(calls.len(), 1, "{calls:?}");
    calls.into_iter().next().unwrap()
}

/// Refused as INVALID_ARGUMENT, naming `path` when one is given.
fn refused(tool: CompatTool, args: Value, path: &str) -> String {
    let e = tool.translate(args.clone(), &limits()).unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidArgument, "{tool} {args}: {e}");
    if !path.is_empty() {
        assert!(
            e.message.contains(&format!("at `{path}`")),
            "{tool} {args}: expected the path {path}: {}",
            e.message
        );
    }
    e.message
}

/// Every native call decodes as its native tool's arguments (`plan_id` is
/// split off by the server before the tool sees them).
fn decodes_natively(t: &Translation) {
    for mut args in t.calls().cloned() {
        args.as_object_mut()
            .unwrap()
            .remove(crate::plan::PLAN_ID_ARG);
        if let Err(e) = crate::tools::decode_arguments(t.native(), args.clone()) {
            panic!("{} -> {}: {args}: {e}", t.tool(), t.native());
        }
    }
}

fn notes(answer: &CompatAnswer) -> Vec<String> {
    answer.structured["notes"]
        .as_array()
        .map(|n| n.iter().map(|n| n.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

fn shaped(t: &Translation, results: Vec<Value>) -> CompatAnswer {
    t.shape(results.into_iter().map(Ok).collect()).unwrap()
}

#[test]
fn names_round_trip_and_never_shadow_a_native_tool() {
    for tool in CompatTool::ALL {
        assert_eq!(tool.as_str().parse::<CompatTool>(), Ok(*tool));
        assert!(
            tool.as_str().parse::<ToolName>().is_err(),
            "{tool} is also a native tool name"
        );
        let kebab = tool.as_str().contains('-');
        assert_eq!(kebab, !tool.is_alias(), "{tool}");
    }
    assert!("list_topics".parse::<CompatTool>().is_err());
    assert_eq!(CompatTool::ALL.len(), 14);
}

#[test]
fn each_compat_tool_runs_as_one_native_tool() {
    use CompatTool as C;
    use ToolName as N;
    let expected = [
        (C::ListTopics, N::ListTopics),
        (C::CreateTopics, N::CreateTopic),
        (C::DeleteTopics, N::DeleteTopic),
        (C::ProduceMessage, N::PublishMessage),
        (C::ConsumeMessages, N::ConsumeMessages),
        (C::GetTopicConfig, N::DescribeConfigs),
        (C::AlterTopicConfig, N::UpdateTopicConfig),
        (C::ListConsumerGroups, N::ListGroups),
        (C::DescribeConsumerGroup, N::DescribeGroup),
        (C::GetConsumerGroupLag, N::GetConsumerLag),
        (C::GetPartitionOffsets, N::FetchOffsets),
        (C::GetTopicMetadata, N::DescribeTopic),
        (C::DescribeCluster, N::ClusterStatus),
        (C::ConsumerGroups, N::ListGroups),
    ];
    assert_eq!(expected.len(), CompatTool::ALL.len());
    for (compat, native) in expected {
        assert_eq!(compat.native(), native, "{compat}");
    }
}

#[test]
fn schemas_have_mcp_confluents_field_names_and_refuse_others() {
    let fields: &[(CompatTool, &[&str], &[&str])] = &[
        (
            CompatTool::ListTopics,
            &["cluster_id", "environment_id", "cursor"],
            &[],
        ),
        (
            CompatTool::CreateTopics,
            &[
                "topics",
                "cluster_id",
                "environment_id",
                "dry_run",
                "plan_id",
                "plan_ids",
            ],
            &["topics"],
        ),
        (
            CompatTool::DeleteTopics,
            &["topicNames", "cluster_id", "dry_run", "plan_ids"],
            &["topicNames"],
        ),
        (
            CompatTool::ProduceMessage,
            &[
                "topicName",
                "value",
                "key",
                "partition",
                "timestamp",
                "headers",
                "cluster_id",
                "dry_run",
                "plan_id",
            ],
            &["topicName", "value"],
        ),
        (
            CompatTool::ConsumeMessages,
            &[
                "topics",
                "maxMessages",
                "timeoutMs",
                "valueFormat",
                "keyFormat",
                "cluster_id",
            ],
            &["topics"],
        ),
        (
            CompatTool::GetTopicConfig,
            &["topicName", "clusterId", "environmentId"],
            &["topicName"],
        ),
        (
            CompatTool::AlterTopicConfig,
            &[
                "topicName",
                "topicConfigs",
                "validateOnly",
                "clusterId",
                "environmentId",
                "dry_run",
                "plan_id",
            ],
            &["topicName", "topicConfigs"],
        ),
        (
            CompatTool::ListConsumerGroups,
            &["matchStates", "matchType", "cluster_id"],
            &[],
        ),
        (
            CompatTool::DescribeConsumerGroup,
            &["groupId", "cluster_id", "environment_id"],
            &["groupId"],
        ),
        (
            CompatTool::GetConsumerGroupLag,
            &["groupId", "topics", "cluster_id"],
            &["groupId"],
        ),
        (
            CompatTool::GetPartitionOffsets,
            &["topicName", "partition", "cluster_id"],
            &["topicName"],
        ),
    ];
    for tool in CompatTool::ALL {
        let schema = tool.input_schema();
        assert_eq!(schema.is_none(), tool.is_alias(), "{tool}");
        let Some(schema) = schema else { continue };
        let (_, names, required) = fields
            .iter()
            .find(|(t, ..)| t == tool)
            .unwrap_or_else(|| panic!("no expected fields for {tool}"));
        assert_eq!(schema["type"], "object", "{tool}");
        assert_eq!(schema["additionalProperties"], false, "{tool}");
        let properties = schema["properties"].as_object().unwrap();
        for name in *names {
            assert!(properties.contains_key(*name), "{tool} lacks {name}");
        }
        let got: BTreeSet<&str> = schema
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().map(|v| v.as_str().unwrap()).collect())
            .unwrap_or_default();
        assert_eq!(got, required.iter().copied().collect(), "{tool}");
    }
    // Nested shapes are named as mcp-confluent names them.
    let create = Value::Object(CompatTool::CreateTopics.input_schema().unwrap()).to_string();
    for name in ["numPartitions", "replicationFactor"] {
        assert!(create.contains(name), "{name}");
    }
    let consume = Value::Object(CompatTool::ConsumeMessages.input_schema().unwrap()).to_string();
    for name in [
        "\"tail\"",
        "\"earliest\"",
        "\"latest\"",
        "disableSchemaRegistry",
    ] {
        assert!(consume.contains(name), "{name}");
    }
}

#[test]
fn list_topics_lists_internal_topics_too_and_pages() {
    let t = translate(CompatTool::ListTopics, Value::Null);
    assert_eq!(calls(&t), [json!({ "include_internal": true })]);
    decodes_natively(&t);
    let t = translate(
        CompatTool::ListTopics,
        json!({ "cursor": "orders", "cluster_id": "lkc-1" }),
    );
    assert_eq!(
        calls(&t),
        [json!({ "include_internal": true, "cursor": "orders" })]
    );
    let answer = shaped(
        &t,
        vec![json!({
            "topics": [{ "name": "a", "partitions": 1, "replication_factor": 1, "internal": false },
                       { "name": "__consumer_offsets", "partitions": 50, "replication_factor": 1, "internal": true }],
            "total": 3,
            "next_cursor": "a"
        })],
    );
    assert!(
        answer
            .text
            .starts_with("Kafka topics: a,__consumer_offsets\n"),
        "{}",
        answer.text
    );
    assert_eq!(
        answer.structured["topics"],
        json!(["a", "__consumer_offsets"])
    );
    assert_eq!(answer.structured["nextCursor"], "a");
    let notes = notes(&answer);
    assert!(
        notes.iter().any(|n| n.contains("cluster_id ignored")),
        "{notes:?}"
    );
    assert!(
        notes.iter().any(|n| n.contains("2 of 3 topics")),
        "{notes:?}"
    );
    refused(CompatTool::ListTopics, json!({ "topic": "a" }), "");
}

#[test]
fn create_topics_makes_one_call_per_topic() {
    let t = translate(
        CompatTool::CreateTopics,
        json!({ "topics": [
            { "topic": "a", "numPartitions": 3 },
            { "topic": "b", "numPartitions": 1, "replicationFactor": 3 },
        ]}),
    );
    assert_eq!(
        calls(&t),
        [
            json!({ "topic": "a", "partitions": 3 }),
            json!({ "topic": "b", "partitions": 1, "replication_factor": 3 }),
        ]
    );
    decodes_natively(&t);
    let answer = shaped(
        &t,
        vec![
            json!({ "topic": "a", "partitions": 3, "replication_factor": null, "configs": {}, "dry_run": false, "created": true }),
            json!({ "topic": "b", "partitions": 1, "replication_factor": 3, "configs": {}, "dry_run": false, "created": true }),
        ],
    );
    assert_eq!(answer.text, "Created Kafka topics: a,b");
    assert_eq!(answer.structured["created"], json!(["a", "b"]));
    assert_eq!(answer.structured["topics"][1]["replicationFactor"], 3);
}

#[test]
fn create_topics_passes_dry_runs_and_plans_per_topic() {
    let topics =
        json!([{ "topic": "a", "numPartitions": 1 }, { "topic": "b", "numPartitions": 2 }]);
    let dry = translate(
        CompatTool::CreateTopics,
        json!({ "topics": topics, "dry_run": true }),
    );
    assert!(calls(&dry).iter().all(|c| c["dry_run"] == true));
    decodes_natively(&dry);
    let plan = |id: &str| json!({ "id": id, "expires_at": "2030-01-01T00:00:00Z" });
    let answer = shaped(
        &dry,
        vec![
            json!({ "topic": "a", "partitions": 1, "replication_factor": null, "configs": {}, "dry_run": true, "created": false, "plan": plan("plan-a") }),
            json!({ "topic": "b", "partitions": 2, "replication_factor": null, "configs": {}, "dry_run": true, "created": false, "plan": plan("plan-b") }),
        ],
    );
    assert_eq!(answer.structured["plan_ids"], json!(["plan-a", "plan-b"]));
    assert_eq!(answer.structured["plans"][1]["topic"], "b");
    assert!(answer.text.contains("nothing created"), "{}", answer.text);
    assert!(answer.text.contains("plan-b"), "{}", answer.text);

    let apply = translate(
        CompatTool::CreateTopics,
        json!({ "topics": topics, "plan_ids": ["plan-a", "plan-b"] }),
    );
    let applied = calls(&apply);
    assert_eq!(applied[0]["plan_id"], "plan-a");
    assert_eq!(applied[1]["plan_id"], "plan-b");
    assert!(applied.iter().all(|c| c.get("dry_run").is_none()));
    // The plan binds the arguments less dry_run and plan_id: both phases agree.
    let strip = |mut v: Value| {
        let m = v.as_object_mut().unwrap();
        m.remove("dry_run");
        m.remove("plan_id");
        v
    };
    assert_eq!(
        calls(&dry).into_iter().map(strip).collect::<Vec<_>>(),
        applied.into_iter().map(strip).collect::<Vec<_>>()
    );
    let one = call(
        CompatTool::CreateTopics,
        json!({ "topics": [{ "topic": "a", "numPartitions": 1 }], "plan_id": "plan-a" }),
    );
    assert_eq!(one["plan_id"], "plan-a");
}

#[test]
fn create_topics_refuses_bad_input_naming_the_field() {
    let tool = CompatTool::CreateTopics;
    refused(tool, json!({ "topics": [] }), "topics");
    refused(tool, json!({}), "");
    let msg = refused(
        tool,
        json!({ "topics": [{ "topic": "a", "numPartitions": 1 }, { "topic": "b" }] }),
        "topics[1]",
    );
    assert!(msg.contains("missing field `numPartitions`"), "{msg}");
    refused(
        tool,
        json!({ "topics": [{ "topic": "a", "numPartitions": 0 }] }),
        "topics[0].numPartitions",
    );
    refused(
        tool,
        json!({ "topics": [{ "topic": "a", "numPartitions": 1, "replicationFactor": -1 }] }),
        "topics[0].replicationFactor",
    );
    refused(
        tool,
        json!({ "topics": [{ "topic": "a", "numPartitions": 4_000_000_000u64 }] }),
        "topics[0].numPartitions",
    );
    refused(
        tool,
        json!({ "topics": [{ "topic": "a", "numPartitions": 1 }, { "topic": "a", "numPartitions": 1 }] }),
        "topics[1].topic",
    );
    refused(
        tool,
        json!({ "topics": [{ "topic": "", "numPartitions": 1 }] }),
        "topics[0].topic",
    );
    // A typo is an error here (zod would drop the key and use the broker's default).
    refused(
        tool,
        json!({ "topics": [{ "topic": "a", "partitions": 3 }] }),
        "topics[0].partitions",
    );
    let two = json!([{ "topic": "a", "numPartitions": 1 }, { "topic": "b", "numPartitions": 1 }]);
    refused(tool, json!({ "topics": two, "plan_id": "p" }), "plan_id");
    refused(
        tool,
        json!({ "topics": two, "plan_ids": ["p"] }),
        "plan_ids",
    );
    refused(
        tool,
        json!({ "topics": two, "plan_id": "p", "plan_ids": ["p", "q"] }),
        "plan_ids",
    );
    let many: Vec<Value> = (0..=MAX_CALLS)
        .map(|i| json!({ "topic": format!("t{i}"), "numPartitions": 1 }))
        .collect();
    let e = tool
        .translate(json!({ "topics": many }), &limits())
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::LimitExceeded, "{e}");
}

#[test]
fn delete_topics_makes_one_call_per_topic() {
    let tool = CompatTool::DeleteTopics;
    let t = translate(tool, json!({ "topicNames": ["a", "b"], "dry_run": true }));
    assert_eq!(
        calls(&t),
        [
            json!({ "topic": "a", "dry_run": true }),
            json!({ "topic": "b", "dry_run": true })
        ]
    );
    decodes_natively(&t);
    let answer = shaped(
        &t,
        vec![
            json!({ "topic": "a", "partitions": 3, "retained_messages": 10, "dry_run": true, "deleted": false, "plan": { "id": "p1", "expires_at": "x" } }),
            json!({ "topic": "b", "partitions": 1, "retained_messages": 0, "dry_run": true, "deleted": false, "plan": { "id": "p2", "expires_at": "x" } }),
        ],
    );
    assert!(
        answer.text.contains("a (3 partitions, 10 messages)"),
        "{}",
        answer.text
    );
    assert_eq!(answer.structured["plan_ids"], json!(["p1", "p2"]));
    assert_eq!(answer.structured["deleted"], json!([]));

    let t = translate(tool, json!({ "topicNames": ["a"] }));
    let answer = shaped(
        &t,
        vec![
            json!({ "topic": "a", "partitions": 3, "retained_messages": 10, "dry_run": false, "deleted": true }),
        ],
    );
    assert_eq!(answer.text, "Deleted Kafka topics: a");
    assert_eq!(answer.structured["deleted"], json!(["a"]));

    refused(tool, json!({ "topicNames": [] }), "topicNames");
    refused(tool, json!({ "topicNames": ["a", ""] }), "topicNames[1]");
    refused(tool, json!({ "topicNames": ["a", "a"] }), "topicNames[1]");
    refused(tool, json!({ "topicNames": "a" }), "topicNames");
}

#[test]
fn get_topic_config_lists_every_config_in_rest_terms() {
    let tool = CompatTool::GetTopicConfig;
    let t = translate(tool, json!({ "topicName": "orders", "clusterId": "lkc-1" }));
    assert_eq!(
        calls(&t),
        [json!({ "resource_type": "topic", "name": "orders", "include_defaults": true })]
    );
    decodes_natively(&t);
    let answer = shaped(
        &t,
        vec![json!({ "configs": [
            { "name": "retention.ms", "value": "60000", "source": "dynamic_topic", "is_default": false, "read_only": false, "sensitive": false },
            { "name": "cleanup.policy", "value": "delete", "source": "default", "is_default": true, "read_only": false, "sensitive": false },
        ], "truncated": false })],
    );
    let data = &answer.structured["topicConfig"]["data"];
    assert_eq!(data[0]["name"], "retention.ms");
    assert_eq!(data[0]["source"], "DYNAMIC_TOPIC_CONFIG");
    assert_eq!(data[1]["source"], "DEFAULT_CONFIG");
    assert_eq!(data[1]["is_default"], true);
    assert!(
        answer
            .text
            .starts_with("Topic configuration for 'orders':\n")
    );
    let notes = notes(&answer);
    assert!(
        notes.iter().any(|n| n.contains("clusterId ignored")),
        "{notes:?}"
    );
    assert!(
        notes.iter().any(|n| n.contains("get_topic_metadata")),
        "{notes:?}"
    );
    refused(tool, json!({ "topicName": "" }), "topicName");
    refused(tool, json!({ "topic": "orders" }), "");
}

#[test]
fn alter_topic_config_splits_set_and_delete_and_validate_only_is_a_dry_run() {
    let tool = CompatTool::AlterTopicConfig;
    let args = json!({ "topicName": "orders", "topicConfigs": [
        { "name": "retention.ms", "value": "60000", "operation": "SET" },
        { "name": "cleanup.policy", "value": "", "operation": "DELETE" },
    ]});
    let t = translate(tool, args.clone());
    assert_eq!(
        calls(&t),
        [
            json!({ "topic": "orders", "set": { "retention.ms": "60000" }, "delete": ["cleanup.policy"] })
        ]
    );
    decodes_natively(&t);
    let mut validate = args.clone();
    validate["validateOnly"] = json!(true);
    assert_eq!(call(tool, validate)["dry_run"], true);
    let mut apply = args.clone();
    apply["plan_id"] = json!("plan-1");
    assert_eq!(call(tool, apply)["plan_id"], "plan-1");

    let answer = shaped(
        &t,
        vec![json!({ "topic": "orders", "changes": [
            { "name": "cleanup.policy", "before": "compact", "after": null },
            { "name": "retention.ms", "before": null, "after": "60000" },
        ], "dry_run": true, "visible": false, "plan": { "id": "plan-1", "expires_at": "x" } })],
    );
    assert_eq!(answer.structured["validateOnly"], true);
    assert_eq!(answer.structured["plan"]["id"], "plan-1");
    assert_eq!(answer.structured["changes"][0]["before"], "compact");
    assert!(
        answer.text.contains("plan_id \"plan-1\""),
        "{}",
        answer.text
    );

    refused(
        tool,
        json!({ "topicName": "orders", "topicConfigs": [] }),
        "topicConfigs",
    );
    refused(
        tool,
        json!({ "topicName": "orders", "topicConfigs": [{ "name": "a", "value": "1", "operation": "ADD" }] }),
        "topicConfigs[0].operation",
    );
    refused(
        tool,
        json!({ "topicName": "orders", "topicConfigs": [
            { "name": "a", "value": "1", "operation": "SET" },
            { "name": "a", "value": "", "operation": "DELETE" }] }),
        "topicConfigs[1].name",
    );
    refused(
        tool,
        json!({ "topicName": "orders", "topicConfigs": [{ "name": "a", "operation": "SET" }] }),
        "topicConfigs[0]",
    );
}

#[test]
fn get_partition_offsets_shows_watermarks_as_strings_and_counts() {
    let tool = CompatTool::GetPartitionOffsets;
    let t = translate(tool, json!({ "topicName": "orders", "partition": 1 }));
    assert_eq!(calls(&t), [json!({ "topic": "orders", "partition": 1 })]);
    decodes_natively(&t);
    let answer = shaped(
        &t,
        vec![json!({ "topic": "orders", "partitions": [
            { "partition": 1, "earliest": 5, "latest": 12, "at_timestamp": null }
        ], "truncated": false })],
    );
    assert_eq!(
        answer.structured,
        json!({ "topicName": "orders", "partitions": [
            { "partition": 1, "lowWatermark": "5", "highWatermark": "12", "messageCount": 7 }
        ]})
    );
    assert!(
        answer
            .text
            .starts_with("Partition offsets for \"orders\" (1 partition(s)):")
    );
    refused(
        tool,
        json!({ "topicName": "orders", "partition": -1 }),
        "partition",
    );
    refused(tool, json!({ "topicName": "" }), "topicName");
}

#[test]
fn produce_message_encodes_payloads_as_mcp_confluent_does() {
    let tool = CompatTool::ProduceMessage;
    let t = translate(
        tool,
        json!({ "topicName": "orders", "value": { "message": "plain" } }),
    );
    assert_eq!(calls(&t), [json!({ "topic": "orders", "value": "plain" })]);
    decodes_natively(&t);
    let native = call(
        tool,
        json!({
            "topicName": "orders",
            "value": { "message": { "id": 7 }, "useSchemaRegistry": false },
            "key": { "message": 42 },
            "partition": 2,
            "headers": { "trace": "abc", "one": ["x"], "none": [] },
            "dry_run": true,
        }),
    );
    assert_eq!(
        native,
        json!({
            "topic": "orders",
            "value": "{\"id\":7}",
            "key": "42",
            "partition": 2,
            "headers": { "one": "x", "trace": "abc" },
            "dry_run": true,
        })
    );
    assert_eq!(
        call(
            tool,
            json!({ "topicName": "t", "value": { "message": true } })
        )["value"],
        "true"
    );
    let applied = translate(
        tool,
        json!({ "topicName": "t", "value": { "message": "v" }, "plan_id": "p" }),
    );
    assert_eq!(calls(&applied)[0]["plan_id"], "p");
    decodes_natively(&applied);

    let answer = shaped(
        &t,
        vec![
            json!({ "topic": "orders", "partition": 0, "offset": 41, "bytes": 5, "dry_run": false }),
        ],
    );
    assert_eq!(
        answer.text,
        "Message produced successfully to [Topic: orders, Partition: 0, Offset: 41]"
    );
    assert_eq!(answer.structured["offset"], "41");
    let answer = shaped(
        &t,
        vec![
            json!({ "topic": "orders", "partition": null, "offset": null, "bytes": 5, "dry_run": true, "plan": { "id": "p", "expires_at": "x" } }),
        ],
    );
    assert!(answer.text.contains("nothing produced"), "{}", answer.text);
    assert_eq!(answer.structured["plan"]["id"], "p");
}

#[test]
fn produce_message_refuses_what_this_server_cannot_do_faithfully() {
    let tool = CompatTool::ProduceMessage;
    let msg = refused(
        tool,
        json!({ "topicName": "t", "value": { "message": "v", "useSchemaRegistry": true, "schemaType": "AVRO" } }),
        "value.useSchemaRegistry",
    );
    assert!(msg.contains("Schema Registry"), "{msg}");
    refused(
        tool,
        json!({ "topicName": "t", "value": { "message": "v" }, "key": { "message": "k", "useSchemaRegistry": true } }),
        "key.useSchemaRegistry",
    );
    refused(
        tool,
        json!({ "topicName": "t", "value": { "message": "v" }, "timestamp": "2026-05-14T17:00:00Z" }),
        "timestamp",
    );
    refused(
        tool,
        json!({ "topicName": "t", "value": { "message": "v" }, "headers": { "h": ["a", "b"] } }),
        "headers.h",
    );
    refused(
        tool,
        json!({ "topicName": "", "value": { "message": "v" } }),
        "topicName",
    );
    refused(
        tool,
        json!({ "topicName": "t", "value": { "message": null } }),
        "value.message",
    );
    refused(
        tool,
        json!({ "topicName": "t", "value": { "message": [1] } }),
        "value.message",
    );
    refused(tool, json!({ "topicName": "t", "value": "v" }), "value");
    refused(
        tool,
        json!({ "topicName": "t", "value": { "message": "v" }, "partition": -2 }),
        "partition",
    );
}

#[test]
fn consume_messages_starts_where_mcp_confluent_would() {
    let tool = CompatTool::ConsumeMessages;
    // Default start: earliest (mcp-confluent's), 10 messages.
    let t = translate(tool, json!({ "topics": [{ "name": "orders" }] }));
    assert_eq!(
        calls(&t),
        [json!({ "topic": "orders", "from": "earliest", "max_messages": 10 })]
    );
    decodes_natively(&t);
    let t = translate(
        tool,
        json!({
            "topics": [
                { "name": "a", "partition": 0, "start": { "offset": "42" } },
                { "name": "a", "partition": 1, "start": { "tail": 3 } },
                { "name": "b", "start": { "timestamp": "2026-05-14T13:00:00-04:00" } },
                { "name": "c", "start": { "timestamp": 1000 } },
                { "name": "d", "start": "latest" },
            ],
            "maxMessages": 5,
            "timeoutMs": 3000,
            "valueFormat": { "disableSchemaRegistry": true },
        }),
    );
    assert_eq!(
        calls(&t),
        [
            json!({ "topic": "a", "partition": 0, "from": "offset", "offset": 42, "max_messages": 5, "timeout_ms": 3000 }),
            json!({ "topic": "a", "partition": 1, "from": "latest", "max_messages": 3, "timeout_ms": 3000 }),
            json!({ "topic": "b", "from": "timestamp", "timestamp_ms": 1_778_778_000_000i64, "max_messages": 5, "timeout_ms": 3000 }),
            json!({ "topic": "c", "from": "timestamp", "timestamp_ms": 1000, "max_messages": 5, "timeout_ms": 3000 }),
            json!({ "topic": "d", "from": "latest", "max_messages": 5, "timeout_ms": 3000 }),
        ]
    );
    decodes_natively(&t);
    // "latest" does not wait for new messages here: every answer says so.
    let answer = shaped(
        &t,
        (0..5)
            .map(|_| json!({ "topic": "x", "messages": [], "stopped_by": "end" }))
            .collect(),
    );
    assert!(
        notes(&answer).iter().any(|n| n.contains("does not wait")),
        "{:?}",
        notes(&answer)
    );
}

#[test]
fn consume_messages_caps_what_mcp_confluent_leaves_unbounded() {
    let tool = CompatTool::ConsumeMessages;
    let cap = limits().max_consume_messages;
    let t = translate(
        tool,
        json!({ "topics": [{ "name": "a" }], "maxMessages": 100_000, "timeoutMs": 600_000 }),
    );
    let native = &calls(&t)[0];
    assert_eq!(native["max_messages"], cap);
    assert_eq!(native["timeout_ms"], limits().max_consume_timeout_ms);
    decodes_natively(&t);
    let answer = shaped(
        &t,
        vec![json!({ "topic": "a", "messages": [], "stopped_by": "end" })],
    );
    let notes = notes(&answer);
    assert!(
        notes.iter().any(|n| n.contains(&format!(
            "maxMessages 100000 was capped to this server's limit of {cap}"
        ))),
        "{notes:?}"
    );
    assert!(
        notes.iter().any(|n| n.starts_with("timeoutMs")),
        "{notes:?}"
    );
    assert!(
        answer.text.contains("\nNote: maxMessages 100000"),
        "{}",
        answer.text
    );
}

#[test]
fn consume_messages_refuses_ambiguous_starts() {
    let tool = CompatTool::ConsumeMessages;
    refused(tool, json!({ "topics": [] }), "topics");
    refused(
        tool,
        json!({ "topics": [{ "name": "" }] }),
        "topics[0].name",
    );
    refused(
        tool,
        json!({ "topics": [{ "name": "a", "start": { "offset": "5" } }] }),
        "topics[0].partition",
    );
    refused(
        tool,
        json!({ "topics": [{ "name": "a", "start": { "tail": 5 } }] }),
        "topics[0].partition",
    );
    for bad in ["-1", "abc", "", "1e3", "99999999999999999999"] {
        refused(
            tool,
            json!({ "topics": [{ "name": "a", "partition": 0, "start": { "offset": bad } }] }),
            "topics[0].start.offset",
        );
    }
    // Two arms at once, or a number where the offset is a string: no arm matches.
    refused(
        tool,
        json!({ "topics": [{ "name": "a", "partition": 0, "start": { "offset": "1", "timestamp": 5 } }] }),
        "topics[0].start",
    );
    refused(
        tool,
        json!({ "topics": [{ "name": "a", "partition": 0, "start": { "offset": 1 } }] }),
        "topics[0].start",
    );
    refused(
        tool,
        json!({ "topics": [{ "name": "a", "start": "newest" }] }),
        "topics[0].start",
    );
    refused(
        tool,
        json!({ "topics": [{ "name": "a", "start": { "timestamp": "yesterday" } }] }),
        "topics[0].start.timestamp",
    );
    refused(
        tool,
        json!({ "topics": [{ "name": "a", "start": { "timestamp": "2026-05-14T17:00:00" } }] }),
        "topics[0].start.timestamp",
    );
    refused(
        tool,
        json!({ "topics": [{ "name": "a", "start": { "timestamp": -5 } }] }),
        "topics[0].start.timestamp",
    );
    refused(
        tool,
        json!({ "topics": [{ "name": "a", "partition": 0, "start": { "tail": 0 } }] }),
        "topics[0].start.tail",
    );
    refused(
        tool,
        json!({ "topics": [{ "name": "a", "partition": 0 }, { "name": "a" }] }),
        "topics[1].partition",
    );
    refused(
        tool,
        json!({ "topics": [{ "name": "a" }, { "name": "a", "start": "latest" }] }),
        "topics[1]",
    );
    refused(
        tool,
        json!({ "topics": [{ "name": "a", "partition": 2 }, { "name": "a", "partition": 2 }] }),
        "topics[1]",
    );
    refused(
        tool,
        json!({ "topics": [{ "name": "a", "partition": -1 }] }),
        "topics[0].partition",
    );
    refused(
        tool,
        json!({ "topics": [{ "name": "a" }], "maxMessages": 0 }),
        "maxMessages",
    );
    refused(
        tool,
        json!({ "topics": [{ "name": "a" }], "timeoutMs": -1 }),
        "timeoutMs",
    );
    refused(
        tool,
        json!({ "topics": [{ "name": "a" }], "valueFormat": { "decode": true } }),
        "valueFormat.decode",
    );
}

#[test]
fn consumed_messages_are_shown_with_mcp_confluents_fields() {
    let t = translate(
        CompatTool::ConsumeMessages,
        json!({ "topics": [{ "name": "a" }, { "name": "b", "partition": 0 }], "maxMessages": 2 }),
    );
    let answer = shaped(
        &t,
        vec![
            json!({ "topic": "a", "stopped_by": "max_messages", "messages": [
                { "partition": 0, "offset": 7, "timestamp_ms": 1_747_242_000_123i64,
                  "key": { "text": "k" }, "value": { "json": { "id": 1 } },
                  "headers": { "h": { "base64": "//4=" }, "n": null } },
            ]}),
            json!({ "topic": "b", "stopped_by": "max_bytes", "messages": [
                { "partition": 0, "offset": 1, "timestamp_ms": null, "key": null,
                  "value": { "base64": "//4A" }, "headers": {} },
                { "partition": 0, "offset": 2, "timestamp_ms": null, "key": null,
                  "value": { "text": "x" }, "headers": {} },
            ]}),
        ],
    );
    let messages = answer.structured["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2, "maxMessages bounds the whole answer");
    assert_eq!(
        messages[0],
        json!({
            "key": "k",
            "value": "{\"id\":1}",
            "timestamp": "2025-05-14T17:00:00.123Z",
            "offset": "7",
            "headers": { "h": "//4=", "n": null },
            "headerEncodings": { "h": "base64" },
            "topic": "a",
            "partition": 0,
        })
    );
    assert_eq!(
        messages[1],
        json!({
            "key": null,
            "value": "//4A",
            "valueEncoding": "base64",
            "timestamp": "(no timestamp)",
            "offset": "1",
            "topic": "b",
            "partition": 0,
        })
    );
    assert_eq!(
        answer.structured["topics"],
        json!([
            { "name": "a", "stoppedBy": "max_messages" },
            { "name": "b", "partition": 0, "stoppedBy": "max_bytes" },
        ])
    );
    assert!(
        answer
            .text
            .starts_with("Consumed 2 messages from topics a, b.\nConsumed messages: [")
    );
    let notes = notes(&answer);
    assert!(notes.iter().any(|n| n.contains("byte cap")), "{notes:?}");
    assert!(
        notes.iter().any(|n| n.contains("1 more messages")),
        "{notes:?}"
    );
}

#[test]
fn group_listing_filters_by_state_and_shows_mcp_confluents_fields() {
    let tool = CompatTool::ListConsumerGroups;
    let t = translate(
        tool,
        json!({ "matchStates": ["Stable", "Empty"], "matchType": "Consumer" }),
    );
    assert_eq!(calls(&t), [json!({})]);
    decodes_natively(&t);
    let answer = shaped(
        &t,
        vec![json!({ "groups": [
            { "group_id": "billing", "state": "Stable", "protocol_type": "consumer" },
            { "group_id": "old", "state": "Dead", "protocol_type": "consumer" },
            { "group_id": "offsets-only", "state": "Empty", "protocol_type": "" },
        ], "total": 3, "truncated": false })],
    );
    assert_eq!(
        answer.structured["groups"],
        json!([
            { "groupId": "billing", "state": "Stable", "type": "Unknown", "protocolType": "consumer", "isSimpleConsumerGroup": false },
            { "groupId": "offsets-only", "state": "Empty", "type": "Unknown", "protocolType": "", "isSimpleConsumerGroup": true },
        ])
    );
    assert!(
        answer
            .text
            .starts_with("Found 2 consumer groups (filtered):\n")
    );
    assert!(
        notes(&answer)
            .iter()
            .any(|n| n.contains("matchType not applied"))
    );
    let empty = shaped(
        &translate(tool, json!({})),
        vec![json!({ "groups": [], "total": 0, "truncated": false })],
    );
    assert_eq!(empty.text, "Found 0 consumer groups.");
    refused(tool, json!({ "matchStates": [] }), "matchStates");
    refused(tool, json!({ "matchStates": ["stable"] }), "matchStates[0]");
    refused(tool, json!({ "matchType": "Simple" }), "matchType");
}

#[test]
fn describe_consumer_group_flattens_assignments() {
    let tool = CompatTool::DescribeConsumerGroup;
    let t = translate(tool, json!({ "groupId": "billing" }));
    assert_eq!(calls(&t), [json!({ "group_id": "billing" })]);
    decodes_natively(&t);
    let answer = shaped(
        &t,
        vec![json!({
            "group_id": "billing", "state": "Stable", "protocol_type": "consumer", "protocol": "range",
            "members": [{ "member_id": "m1", "client_id": "c1", "host": "/10.0.0.1",
                          "assignment": { "a": [0, 1], "b": [2] } }],
        })],
    );
    assert_eq!(
        answer.structured["members"],
        json!([{ "memberId": "m1", "clientId": "c1", "clientHost": "/10.0.0.1", "assignment": [
            { "topic": "a", "partition": 0 }, { "topic": "a", "partition": 1 }, { "topic": "b", "partition": 2 },
        ]}])
    );
    assert_eq!(answer.structured["partitionAssignor"], "range");
    assert_eq!(answer.structured["protocol"], "range");
    assert_eq!(
        answer.text.lines().next(),
        Some("Consumer group \"billing\" is Stable with 1 member(s).")
    );
    refused(tool, json!({ "groupId": "" }), "groupId");
    refused(tool, json!({}), "");
}

#[test]
fn consumer_group_lag_asks_once_per_topic_and_totals() {
    let tool = CompatTool::GetConsumerGroupLag;
    let all = translate(tool, json!({ "groupId": "billing" }));
    assert_eq!(calls(&all), [json!({ "group_id": "billing" })]);
    decodes_natively(&all);
    let t = translate(tool, json!({ "groupId": "billing", "topics": ["a", "b"] }));
    assert_eq!(
        calls(&t),
        [
            json!({ "group_id": "billing", "topic": "a" }),
            json!({ "group_id": "billing", "topic": "b" })
        ]
    );
    decodes_natively(&t);
    let answer = shaped(
        &t,
        vec![
            json!({ "group_id": "billing", "partitions": [
                { "topic": "a", "partition": 0, "committed_offset": 5, "latest_offset": 9, "lag": 4 },
            ], "total_lag": 4, "truncated": false }),
            json!({ "group_id": "billing", "partitions": [], "total_lag": 0, "truncated": false }),
        ],
    );
    assert_eq!(
        answer.structured["topics"],
        json!([
            { "topic": "a", "partitions": [{ "partition": 0, "committedOffset": "5", "highWatermark": "9", "lag": 4 }] },
            { "topic": "b", "partitions": [] },
        ])
    );
    assert_eq!(answer.structured["totalLag"], 4);
    assert_eq!(
        answer.text,
        "Consumer group \"billing\" has 4 message(s) of lag across 2 topic(s)."
    );
    refused(
        tool,
        json!({ "groupId": "billing", "topics": [] }),
        "topics",
    );
    refused(
        tool,
        json!({ "groupId": "billing", "topics": ["a", "a"] }),
        "topics[1]",
    );
    refused(tool, json!({ "groupId": "" }), "groupId");
}

#[test]
fn aliases_are_the_native_tools_under_another_name() {
    for (tool, args) in [
        (CompatTool::GetTopicMetadata, json!({ "topic": "orders" })),
        (CompatTool::DescribeCluster, json!({})),
        (
            CompatTool::ConsumerGroups,
            json!({ "name_contains": "bill" }),
        ),
    ] {
        let t = translate(tool, args.clone());
        assert_eq!(calls(&t), [args]);
        decodes_natively(&t);
        let native = json!({ "anything": [1, 2] });
        let answer = shaped(&t, vec![native.clone()]);
        assert_eq!(answer.structured, native);
        assert_eq!(answer.text, native.to_string());
    }
    // Null arguments are no arguments, as for native tools.
    assert_eq!(
        calls(&translate(CompatTool::DescribeCluster, Value::Null)),
        [json!({})]
    );
}

#[test]
fn a_failed_call_keeps_its_code_and_says_what_ran() {
    let t = translate(
        CompatTool::CreateTopics,
        json!({ "topics": [
            { "topic": "a", "numPartitions": 1 },
            { "topic": "b", "numPartitions": 1 },
            { "topic": "c", "numPartitions": 1 },
        ]}),
    );
    let created = json!({ "topic": "a", "partitions": 1, "replication_factor": null, "configs": {}, "dry_run": false, "created": true });
    let e = t
        .shape(vec![
            Ok(created),
            Err(ToolError::conflict(
                "create topic \"b\": topic already exists",
            )),
        ])
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::Conflict);
    assert_eq!(
        e.message,
        "create-topics: succeeded for a; failed for b: create topic \"b\": topic already exists; not run for c"
    );
    // One call: its error as it is.
    let one = translate(CompatTool::DescribeConsumerGroup, json!({ "groupId": "g" }));
    let missing = ToolError::not_found("consumer group \"g\" does not exist");
    assert_eq!(one.shape(vec![Err(missing.clone())]).unwrap_err(), missing);
    // Fewer results than calls without an error is the caller's bug.
    let e = t.shape(vec![]).unwrap_err();
    assert_eq!(e.code, ErrorCode::Internal);
    // A native result that lacks what shaping reads is this server's bug.
    let e = one.shape(vec![Ok(json!({ "group": "g" }))]).unwrap_err();
    assert_eq!(e.code, ErrorCode::Internal);
    assert!(e.message.contains("describe_group"), "{e}");
}

/// Every property name anywhere in a schema (top level and `$defs`).
fn property_names(schema: &Value, out: &mut BTreeSet<String>) {
    match schema {
        Value::Object(map) => {
            if let Some(Value::Object(props)) = map.get("properties") {
                out.extend(props.keys().cloned());
            }
            map.values().for_each(|v| property_names(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| property_names(v, out)),
        _ => {}
    }
}

#[test]
fn shaping_reads_only_fields_the_native_tools_answer_with() {
    let mirrors = topics::mirrors::schemas()
        .into_iter()
        .chain(messages::mirrors::schemas())
        .chain(groups::mirrors::schemas());
    for (tool, mirror) in mirrors {
        let native = crate::tools::describe(tool)
            .output_schema
            .unwrap_or_else(|| panic!("{tool} has no output schema"));
        let mut have = BTreeSet::new();
        property_names(&Value::Object((*native).clone()), &mut have);
        let mut read = BTreeSet::new();
        property_names(&serde_json::to_value(&mirror).unwrap(), &mut read);
        let missing: Vec<_> = read.difference(&have).collect();
        assert!(
            missing.is_empty(),
            "{tool} does not answer with {missing:?}"
        );
    }
}

#[test]
fn timestamps_are_shown_as_javascripts_iso_strings() {
    assert_eq!(iso_millis(0).as_deref(), Some("1970-01-01T00:00:00.000Z"));
    assert_eq!(
        iso_millis(1_778_778_000_005).as_deref(),
        Some("2026-05-14T17:00:00.005Z")
    );
}
