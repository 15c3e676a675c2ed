//! The operator's pure steps on arbitrary input: a server and a policy from
//! arbitrary YAML (what admission would let through or not), scopes
//! included, go through the fence check, the tool and scope decisions and
//! the build of every child object. Nothing may panic, and the rendered
//! config holds scopes the sidecar accepts (an unusable pattern fails
//! closed in the operator instead of reaching it).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_kafka_operator::build::{Inputs, desired};
use mcp_kafka_operator::config::OperatorConfig;
use mcp_kafka_operator::crd::{McpKafkaServer, McpToolPolicySpec};
use mcp_kafka_operator::{fence, policy, scope};
use mcp_kafka_sidecar::config::SidecarConfig;

fuzz_target!(|text: &str| {
    // Two documents: the server, then the namespace's policy spec.
    let mut docs = text.splitn(2, "\n---\n");
    let Ok(mut server) = serde_yaml::from_str::<McpKafkaServer>(docs.next().unwrap_or_default())
    else {
        return;
    };
    let policy_spec = docs
        .next()
        .and_then(|d| serde_yaml::from_str::<McpToolPolicySpec>(d).ok())
        .unwrap_or_default();
    // The apiserver always sets these on stored objects.
    server.metadata.name.get_or_insert_with(|| "server".into());
    server
        .metadata
        .namespace
        .get_or_insert_with(|| "team".into());
    server
        .metadata
        .uid
        .get_or_insert_with(|| "00000000-0000-0000-0000-000000000001".into());
    let config = OperatorConfig::default();
    let now = k8s_openapi::jiff::Timestamp::now();
    let environment = server.spec.environment.clone();
    let Ok(fenced) = fence::check(
        &environment,
        "team",
        Some(&environment),
        server.spec.kafka.expected_cluster_id.as_deref(),
        &config,
    ) else {
        return;
    };
    let policy = policy::Policy::from_namespace("team", &policy_spec);
    let decision = policy::decide(&server.spec.tools, &policy, fenced.mutations, now);
    let window = policy.open_window(now);
    let name = server.metadata.name.clone().unwrap_or_default();
    let sign_in = mcp_kafka_operator::build::oidc::resolve(&server.spec, &config);
    let user_prefix = sign_in
        .as_ref()
        .ok()
        .and_then(|s| s.as_ref())
        .map(|s| s.config.username_prefix.as_str());
    let scopes = scope::decide(&policy, "team", &name, &server.spec, user_prefix);
    let built = desired(&Inputs {
        server: &server,
        config: &config,
        fenced: &fenced,
        tools: &decision.effective,
        break_glass: window,
        scope: &scopes,
    });
    for config_map in built.config_maps {
        let rendered = &config_map.data.unwrap_or_default()["config.yaml"];
        // What admission lets through always renders a config the sidecar accepts;
        // arbitrary specs may not (e.g. bootstrap servers admission would refuse).
        if let Ok(parsed) = serde_yaml::from_str::<SidecarConfig>(rendered) {
            if let Some(s) = &parsed.scope {
                assert_eq!(s.problem("scope"), None, "an unusable scope rendered");
            }
            for c in &parsed.client_scopes {
                assert_eq!(
                    c.scope.problem("clientScopes"),
                    None,
                    "an unusable client scope rendered"
                );
            }
        }
        let _ = SidecarConfig::parse(rendered);
    }
});
