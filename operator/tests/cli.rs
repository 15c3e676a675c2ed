//! The `tools` subcommand: what e2e/run uses to turn `--tools observe,...`
//! into the names `spec.tools` takes, from the one list of tools.

use std::process::Command;

fn tools(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_mcp-kafka-operator"))
        .arg("tools")
        .args(args)
        .output()
        .expect("run mcp-kafka-operator tools")
}

#[test]
fn groups_and_names_expand_in_the_tools_order_without_repeats() {
    let out = tools(&["create_topic,observe,list_topics"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let names: Vec<String> = serde_json::from_slice(&out.stdout).expect("a JSON list");
    let expected: Vec<&str> = mcp_kafka_sidecar::tool_name::ToolName::ALL
        .iter()
        .filter(|t| !t.is_mutation() || t.as_str() == "create_topic")
        .map(|t| t.as_str())
        .collect();
    assert_eq!(names, expected);

    let all: Vec<String> = serde_json::from_slice(&tools(&[]).stdout).unwrap();
    assert_eq!(all.len(), mcp_kafka_sidecar::tool_name::ToolName::ALL.len());
}

#[test]
fn an_unknown_selector_is_one_line_naming_it() {
    let out = tools(&["observe,drop_everything"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("\"drop_everything\""), "{stderr}");
}
