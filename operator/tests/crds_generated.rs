//! `crds/` (and the chart's copy in `charts/mcp-kafka-operator/crds/`, which
//! Helm installs from there) are generated from the Rust types and must never
//! drift from them.

#[test]
fn checked_in_crds_match_the_types() {
    let crds = mcpk_e2e::crds_dir();
    let chart_crds = crds
        .parent()
        .expect("crds/ is in the checkout")
        .join("charts/mcp-kafka-operator/crds");
    for dir in [&crds, &chart_crds] {
        for (file, generated) in mcp_kafka_operator::crd_documents() {
            let path = dir.join(file);
            let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(
                checked_in == generated,
                "{} differs from the types; regenerate both copies with:\n  cargo run -p mcp-kafka-operator -- crds --write-to crds\n  cargo run -p mcp-kafka-operator -- crds --write-to charts/mcp-kafka-operator/crds",
                path.display()
            );
        }
    }
}

/// The chart's values schema lists the tool selectors by name (Helm cannot
/// ask the binary); it must list exactly the ones the operator knows.
#[test]
fn the_chart_values_schema_knows_every_tool() {
    let path = mcpk_e2e::crds_dir()
        .parent()
        .expect("crds/ is in the checkout")
        .join("charts/mcp-kafka-operator/values.schema.json");
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("the values schema"))
            .expect("JSON");
    let policy = &schema["properties"]["config"]["properties"]["defaultPolicy"]["properties"];
    let mut expected: Vec<&str> = vec!["observe", "mutate", "all"];
    expected.extend(
        mcp_kafka_sidecar::tool_name::ToolName::ALL
            .iter()
            .map(|t| t.as_str()),
    );
    for list in ["allow", "deny"] {
        let listed: Vec<&str> = policy[list]["items"]["enum"]
            .as_array()
            .expect("an enum")
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        assert_eq!(
            listed,
            expected,
            "{} lists other tools than the operator knows ({list})",
            path.display()
        );
    }
}

/// The operator may grant a client only the tool verbs its own ClusterRole
/// holds (RBAC refuses to grant more): the chart's rules must name every
/// tool, in the order the operator knows them.
#[test]
fn the_charts_cluster_role_holds_every_tool_verb() {
    let path = mcpk_e2e::crds_dir()
        .parent()
        .expect("crds/ is in the checkout")
        .join("charts/mcp-kafka-operator/files/operator-clusterrole-rules.yaml");
    let rules: Vec<serde_yaml::Value> =
        serde_yaml::from_str(&std::fs::read_to_string(&path).expect("the rules")).expect("YAML");
    let tools = rules
        .iter()
        .find(|r| r["resources"][0].as_str() == Some("mcpkafkaservers/tools"))
        .expect("a rule for mcpkafkaservers/tools");
    let verbs: Vec<&str> = tools["verbs"]
        .as_sequence()
        .expect("verbs")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    let expected: Vec<&str> = mcp_kafka_sidecar::tool_name::ToolName::ALL
        .iter()
        .map(|t| t.as_str())
        .collect();
    assert_eq!(verbs, expected, "{}", path.display());
}
