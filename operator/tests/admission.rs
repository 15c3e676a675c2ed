//! The generated CRDs on the real apiserver: `kubectl apply` of invalid
//! specs is rejected at admission with a message that says what is wrong,
//! valid ones are accepted, and kubectl shows the printer columns.

use mcpk_e2e::{Ground, unique_name};
use serde_json::{Value, json};

fn valid_server(ns: &str, name: &str) -> Value {
    json!({
        "apiVersion": "mcpkafka.dev/v1alpha1", "kind": "McpKafkaServer",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "environment": "dev",
            "kafka": {"bootstrapServers": ["kafka-0.kafka:9092"], "sasl": {"mechanism": "SCRAM-SHA-512", "secretRef": {"name": "kafka-user"}}},
            "tools": ["list_topics", "describe_topic", "create_topic"],
            "clients": [
                {"name": "support-agent", "serviceAccountName": "support-agent", "tools": ["list_topics"]},
                {"name": "laptop", "issueToken": {"expirationSeconds": 3600}, "tools": ["list_topics", "describe_topic"]}
            ],
            "replicas": 2
        }
    })
}

/// Applies `object`; Ok(()) when admitted, Err(stderr) when refused.
fn apply(ground: &Ground, object: &Value) -> Result<(), String> {
    let out = ground.kubectl(&["apply", "-f", "-"], Some(&object.to_string()));
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// What is wrong with how `object` was refused: admitted, or refused with
/// a message that lacks `expected`; None when refused as expected.
fn refusal_problem(ground: &Ground, what: &str, object: &Value, expected: &str) -> Option<String> {
    match apply(ground, object) {
        Ok(()) => Some(format!("{what}: admitted")),
        Err(stderr) if !stderr.contains(expected) => {
            Some(format!("{what}: message lacks {expected:?}: {stderr}"))
        }
        Err(_) => None,
    }
}

/// Sets `value` at a JSON pointer below `spec`, creating objects on the way.
fn with(mut object: Value, pointer: &str, value: Value) -> Value {
    let mut target = &mut object["spec"];
    let parts: Vec<&str> = pointer.trim_start_matches('/').split('/').collect();
    for part in &parts[..parts.len() - 1] {
        target = match part.parse::<usize>() {
            Ok(i) => &mut target[i],
            Err(_) => &mut target[*part],
        };
    }
    let last = parts[parts.len() - 1];
    match last.parse::<usize>() {
        Ok(i) => target[i] = value,
        Err(_) => target[last] = value,
    }
    object
}

fn without(mut object: Value, field: &str) -> Value {
    object["spec"].as_object_mut().unwrap().remove(field);
    object
}

#[test]
fn invalid_servers_are_rejected_at_admission_with_clear_messages() {
    let ground = Ground::get();
    ground.install_crds();
    let ns = ground.namespace("admission", None);
    let base = valid_server(&ns, "orders");
    apply(ground, &base).expect("the valid server is admitted");
    let mut compat = with(base.clone(), "/toolNames", json!(["native", "confluent"]));
    compat["metadata"]["name"] = json!("orders-compat");
    apply(ground, &compat).expect("a server with both name sets is admitted");
    let out = ground.kubectl(
        &[
            "get",
            "mks",
            "orders",
            "-n",
            &ns,
            "-o",
            "jsonpath={.spec.toolNames}",
        ],
        None,
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        r#"["native"]"#,
        "the apiserver fills in the default: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "unknown tool",
            with(base.clone(), "/tools/0", json!("drop_cluster")),
            "Unsupported value: \"drop_cluster\"",
        ),
        (
            "empty bootstrap list",
            with(base.clone(), "/kafka/bootstrapServers", json!([])),
            "should have at least 1 items",
        ),
        (
            "bootstrap without port",
            with(base.clone(), "/kafka/bootstrapServers", json!(["kafka-0"])),
            "each bootstrap server must be HOST:PORT",
        ),
        (
            "bad environment",
            with(base.clone(), "/environment", json!("Prod!")),
            "spec.environment",
        ),
        (
            "missing environment",
            without(base.clone(), "environment"),
            "spec.environment: Required value",
        ),
        (
            "repeated tool",
            with(
                base.clone(),
                "/tools",
                json!(["list_topics", "list_topics"]),
            ),
            "tools must not repeat",
        ),
        (
            "unknown tool name set",
            with(
                base.clone(),
                "/toolNames",
                json!(["native", "mcp-confluent"]),
            ),
            "Unsupported value: \"mcp-confluent\"",
        ),
        (
            "repeated tool name set",
            with(
                base.clone(),
                "/toolNames",
                json!(["confluent", "confluent"]),
            ),
            "toolNames must not repeat",
        ),
        (
            "no tool name set",
            with(base.clone(), "/toolNames", json!([])),
            "spec.toolNames in body should have at least 1 items",
        ),
        (
            "duplicate client names",
            with(base.clone(), "/clients/1/name", json!("support-agent")),
            "client names must be unique",
        ),
        (
            "client with both identities",
            with(
                base.clone(),
                "/clients/0/issueToken",
                json!({"expirationSeconds": 3600}),
            ),
            "a client is exactly one of: serviceAccountName, issueToken, or users and groups",
        ),
        (
            "client with neither identity",
            {
                let mut o = base.clone();
                o["spec"]["clients"][0]
                    .as_object_mut()
                    .unwrap()
                    .remove("serviceAccountName");
                o
            },
            "a client is exactly one of: serviceAccountName, issueToken, or users and groups",
        ),
        (
            "client tool not in spec.tools",
            with(base.clone(), "/clients/0/tools", json!(["delete_topic"])),
            "must also be listed in spec.tools",
        ),
        (
            "token lifetime too short",
            with(
                base.clone(),
                "/clients/1/issueToken/expirationSeconds",
                json!(60),
            ),
            "should be greater than or equal to 600",
        ),
        (
            "token lifetime one second short of ten minutes",
            with(
                base.clone(),
                "/clients/1/issueToken/expirationSeconds",
                json!(599),
            ),
            "spec.clients[1].issueToken.expirationSeconds: Invalid value: 599: spec.clients[1].issueToken.expirationSeconds in body should be greater than or equal to 600",
        ),
        (
            "token lifetime one second over a day",
            with(
                base.clone(),
                "/clients/1/issueToken/expirationSeconds",
                json!(86401),
            ),
            "spec.clients[1].issueToken.expirationSeconds: Invalid value: 86401: spec.clients[1].issueToken.expirationSeconds in body should be less than or equal to 86400",
        ),
        (
            "zero replicas",
            with(base.clone(), "/replicas", json!(0)),
            "should be greater than or equal to 1",
        ),
        (
            "unknown SASL mechanism",
            with(base.clone(), "/kafka/sasl/mechanism", json!("GSSAPI")),
            "Unsupported value: \"GSSAPI\"",
        ),
        (
            "bad audit topic",
            with(base.clone(), "/audit", json!({"kafkaTopic": "a/b"})),
            "spec.audit.kafkaTopic",
        ),
        (
            "wrong type",
            with(base.clone(), "/replicas", json!("two")),
            "spec.replicas",
        ),
    ];
    let mut failures = Vec::new();
    for (what, object, expected) in &cases {
        let mut object = object.clone();
        object["metadata"]["name"] = json!(unique_name("bad"));
        failures.extend(refusal_problem(ground, what, &object, expected));
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases wrong:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );

    // Token lifetimes from ten minutes to a day, both ends included.
    for seconds in [600, 86400] {
        let mut object = with(
            base.clone(),
            "/clients/1/issueToken/expirationSeconds",
            json!(seconds),
        );
        object["metadata"]["name"] = json!(unique_name("lifetime"));
        apply(ground, &object)
            .unwrap_or_else(|e| panic!("a token lifetime of {seconds} s is refused: {e}"));
    }

    // The name becomes the Service's name: a DNS label, short enough for suffixes.
    for bad_name in ["x".repeat(41), "9orders".to_string()] {
        let mut object = base.clone();
        object["metadata"]["name"] = json!(bad_name);
        let err = apply(ground, &object).expect_err("a bad server name is admitted");
        assert!(
            err.contains("the name must be a DNS label starting with a letter"),
            "{bad_name}: {err}"
        );
    }

    // The printer columns and short name.
    let out = ground.kubectl(&["get", "mks", "-n", &ns], None);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let header = table.lines().next().unwrap_or_default();
    for column in ["NAME", "ENVIRONMENT", "READY", "TOOLS", "AGE"] {
        assert!(header.contains(column), "no {column} column: {header}");
    }
    assert!(table.contains("orders") && table.contains("dev"), "{table}");
    ground.kubectl(&["delete", "namespace", &ns, "--wait=false"], None);
}

#[test]
fn policies_accept_names_and_groups_and_only_the_name_default() {
    let ground = Ground::get();
    ground.install_crds();
    let ns = ground.namespace("admission", None);
    let policy = |name: &str, spec: Value| json!({"apiVersion": "mcpkafka.dev/v1alpha1", "kind": "McpToolPolicy", "metadata": {"name": name, "namespace": ns}, "spec": spec});
    apply(ground, &policy("default", json!({
        "allow": ["observe", "create_partitions"], "deny": ["consume_messages"],
        "breakGlass": {"until": "2026-11-21T18:00:00Z", "reason": "INC-1234 add partitions", "allow": ["create_partitions"]}
    })))
    .expect("a valid policy is admitted");
    // Every tool by name, and every group: a policy may spell it all out.
    let every: Vec<String> = mcp_kafka_sidecar::tool_name::ToolName::ALL
        .iter()
        .map(|t| t.to_string())
        .chain(["observe", "mutate", "all"].map(String::from))
        .collect();
    apply(
        ground,
        &policy("default", json!({"allow": every, "deny": every})),
    )
    .expect("a policy naming every tool and group is admitted");

    let refused = |name: &str, spec: Value, expected: &str| {
        let err = apply(ground, &policy(name, spec)).expect_err("admitted");
        assert!(err.contains(expected), "expected {expected:?} in: {err}");
    };
    refused(
        "team-a",
        json!({"allow": ["observe"]}),
        "must be named 'default'",
    );
    refused(
        "default",
        json!({"allow": ["everything"]}),
        "Unsupported value: \"everything\"",
    );
    refused(
        "default",
        json!({"breakGlass": {"until": "soon", "reason": "x", "allow": ["create_topic"]}}),
        "spec.breakGlass.until",
    );
    refused(
        "default",
        json!({"breakGlass": {"until": "2026-11-21T18:00:00Z", "reason": "", "allow": ["create_topic"]}}),
        "spec.breakGlass.reason",
    );
    refused(
        "default",
        json!({"breakGlass": {"until": "2026-11-21T18:00:00Z", "reason": "x", "allow": []}}),
        "spec.breakGlass.allow",
    );
    ground.kubectl(&["delete", "namespace", &ns, "--wait=false"], None);
}

#[test]
fn kubectl_explain_shows_the_field_docs() {
    let ground = Ground::get();
    ground.install_crds();
    // The apiserver publishes a new CRD's OpenAPI a few seconds after it is
    // Established; explain fails until then.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let out = loop {
        let out = ground.kubectl(&["explain", "mcpkafkaserver.spec.environment"], None);
        if out.status.success() || std::time::Instant::now() > deadline {
            break out;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    };
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("mcpkafka.dev/environment"), "{text}");
}

/// Topic and group scopes on the three places they may be written (the
/// policy's ceiling, the server's, a client's): what Kafka's ACLs accept is
/// admitted, anything else is refused with a message that says what is wrong.
#[test]
fn scopes_with_malformed_patterns_are_refused_at_admission() {
    let ground = Ground::get();
    ground.install_crds();
    // Applying the CRDs succeeded, so their schemas are structural (the
    // apiserver refuses any other); it says so in a condition too.
    for crd in [
        "crd/mcpkafkaservers.mcpkafka.dev",
        "crd/mcptoolpolicies.mcpkafka.dev",
    ] {
        let out = ground.kubectl(
            &[
                "get",
                crd,
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"NonStructuralSchema\")].message}",
            ],
            None,
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), "", "{crd}");
    }
    let ns = ground.namespace("admission-scope", None);
    let prefix = |name: &str| json!({"name": name, "patternType": "prefix"});
    let good = json!({
        "topics": {"allow": [prefix("team-a."), {"name": "payments"}, {"name": "a".repeat(249)}], "deny": [prefix("team-a.internal")]},
        "groups": {"allow": [{"name": "*"}]},
    });
    let mut base = with(valid_server(&ns, "scoped"), "/scope", good.clone());
    base = with(
        base,
        "/clients/0/scope",
        json!({"topics": {"allow": [{"name": "team-a.orders", "patternType": "literal"}]}}),
    );
    apply(ground, &base).expect("a server with valid scopes is admitted");
    let policy = |spec: Value| json!({"apiVersion": "mcpkafka.dev/v1alpha1", "kind": "McpToolPolicy", "metadata": {"name": "default", "namespace": ns}, "spec": spec});
    apply(
        ground,
        &policy(json!({"allow": ["observe"], "scope": good})),
    )
    .expect("a policy with a valid ceiling is admitted");

    let pattern = |p: Value| json!({"topics": {"allow": [p]}});
    let sixty_five: Vec<Value> = (0..65).map(|i| json!({"name": format!("t{i}")})).collect();
    let bad_scopes: Vec<(&str, Value, &str)> = vec![
        (
            "an empty name",
            pattern(json!({"name": ""})),
            "topics.allow[0].name in body should be at least 1 chars long",
        ),
        (
            "a name over 249 characters",
            pattern(json!({"name": "a".repeat(250)})),
            "topics.allow[0].name: Too long: may not be more than 249",
        ),
        (
            "a space",
            pattern(json!({"name": "team a"})),
            "a name or prefix may hold only a-z, A-Z, 0-9, '.', '_' and '-'",
        ),
        (
            "a slash",
            pattern(prefix("team/a")),
            "a name or prefix may hold only a-z, A-Z, 0-9, '.', '_' and '-'",
        ),
        (
            "a wildcard inside a name",
            pattern(json!({"name": "a*"})),
            "`*` alone (patternType literal) is every name",
        ),
        (
            "`*` as a prefix",
            pattern(prefix("*")),
            "`*` (every name) is a literal pattern",
        ),
        (
            "an unknown patternType",
            pattern(json!({"name": "a", "patternType": "regex"})),
            "Unsupported value: \"regex\": supported values: \"literal\", \"prefix\"",
        ),
        (
            "too many patterns",
            json!({"groups": {"deny": sixty_five}}),
            "groups.deny: Too many: 65: must have at most 64 items",
        ),
        (
            "a misspelled field",
            pattern(json!({"name": "a", "type": "prefix"})),
            "unknown field",
        ),
    ];
    let mut failures = Vec::new();
    for (what, scope, expected) in &bad_scopes {
        // The same check in all three places, each at its own path.
        let places = [
            (
                "server",
                with(base.clone(), "/scope", scope.clone()),
                "spec.scope.",
            ),
            (
                "client",
                with(base.clone(), "/clients/1/scope", scope.clone()),
                "spec.clients[1].scope.",
            ),
            ("policy", policy(json!({"scope": scope})), "spec.scope."),
        ];
        for (place, mut object, path) in places {
            if place != "policy" {
                object["metadata"]["name"] = json!(unique_name("bad-scope"));
            }
            match apply(ground, &object) {
                Ok(()) => failures.push(format!("{what} in the {place}: admitted")),
                Err(e) if !e.contains(expected) || !e.contains(path) => failures.push(format!(
                    "{what} in the {place}: message lacks {expected:?} at {path}: {e}"
                )),
                Err(_) => {}
            }
        }
    }
    // The sidecar tells clients apart by ServiceAccount: one with a scope of
    // its own cannot share it.
    let shared = with(
        with(
            base.clone(),
            "/clients/1",
            json!({"name": "second", "serviceAccountName": "support-agent", "tools": ["list_topics"]}),
        ),
        "/clients/0/scope",
        json!({"topics": {"allow": [{"name": "a"}]}}),
    );
    match apply(ground, &shared) {
        Ok(()) => failures.push("a scoped client sharing its ServiceAccount: admitted".into()),
        Err(e) if !e.contains("a client with a scope of its own needs a ServiceAccount no other client of this server uses") => {
            failures.push(format!("a scoped client sharing its ServiceAccount: {e}"))
        }
        Err(_) => {}
    }
    // Without a scope, two clients may share one (as before scopes existed).
    let mut unscoped_shared = with(
        valid_server(&ns, "shared-sa"),
        "/clients/1",
        json!({"name": "second", "serviceAccountName": "support-agent", "tools": ["list_topics"]}),
    );
    unscoped_shared["metadata"]["name"] = json!("shared-sa");
    if let Err(e) = apply(ground, &unscoped_shared) {
        failures.push(format!(
            "two unscoped clients sharing a ServiceAccount: {e}"
        ));
    }
    assert!(
        failures.is_empty(),
        "{} wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // What kubectl explain shows a Strimzi user.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let out = loop {
        let out = ground.kubectl(&["explain", "mcptoolpolicy.spec.scope"], None);
        if out.status.success() || std::time::Instant::now() > deadline {
            break out;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    };
    // Words only: kubectl wraps the lines.
    let text = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        text.contains("Strimzi KafkaUser's ACLs") && text.contains("deny wins over allow"),
        "{text}"
    );
    ground.kubectl(&["delete", "namespace", &ns, "--wait=false"], None);
}

#[test]
fn job_topics_are_checked_at_admission() {
    let ground = Ground::get();
    ground.install_crds();
    let ns = ground.namespace("admission-jobs", None);
    let jobs = json!({"requestTopic": "orders.jobs", "replyTopics": ["orders.replies"],
                      "deadLetterTopic": "orders.dead", "journalTopic": "orders.journal", "maxInFlight": 8});
    let mut ok = with(valid_server(&ns, "orders"), "/jobs", jobs.clone());
    ok["metadata"]["name"] = json!(unique_name("jobs"));
    apply(ground, &ok).expect("a server with a job path is admitted");
    let cases = [
        (
            "/jobs/replyTopics",
            json!(["orders.jobs"]),
            "must all differ",
        ),
        (
            "/jobs/journalTopic",
            json!("orders.dead"),
            "must all differ",
        ),
        (
            "/jobs/replyTopics",
            json!(["a", "a"]),
            "replyTopics must not repeat",
        ),
        ("/jobs/replyTopics", json!([]), "replyTopics"),
        ("/jobs/requestTopic", json!("no spaces"), "requestTopic"),
        ("/jobs/maxInFlight", json!(0), "maxInFlight"),
        (
            "/jobs/dedupWindowSeconds",
            json!(100000),
            "dedupWindowSeconds",
        ),
    ];
    for (pointer, value, expected) in cases {
        let mut object = with(valid_server(&ns, "orders"), "/jobs", jobs.clone());
        object = with(object, pointer, value.clone());
        object["metadata"]["name"] = json!(unique_name("jobs"));
        let err = apply(ground, &object).expect_err(&format!("{pointer} = {value} is admitted"));
        assert!(err.contains(expected), "{pointer} = {value}: {err}");
    }
    ground.kubectl(&["delete", "namespace", &ns, "--wait=false"], None);
}

#[test]
fn schema_registry_settings_are_checked_at_admission() {
    let ground = Ground::get();
    ground.install_crds();
    let ns = ground.namespace("admission-registry", None);
    let base = valid_server(&ns, "orders");
    let registry = |value: Value| with(base.clone(), "/schemaRegistry", value);
    let admitted = [
        (
            "a plain http registry",
            json!({"url": "http://schema-registry.kafka.svc:8081"}),
        ),
        (
            "Apicurio's path, basic credentials, a CA from a ConfigMap, a timeout",
            json!({"url": "https://apicurio.kafka.svc:8443/apis/ccompat/v7", "basicAuthSecretRef": {"name": "registry-user"},
                   "caConfigMapRef": {"name": "trust", "key": "bundle.pem"}, "timeoutMs": 100}),
        ),
        (
            "a bearer token and a CA from a Secret",
            json!({"url": "https://registry.example:443", "bearerTokenSecretRef": {"name": "t", "key": "token"},
                   "caSecretRef": {"name": "ca", "key": "ca.crt"}, "timeoutMs": 30000}),
        ),
    ];
    let mut failures = Vec::new();
    for (what, value) in &admitted {
        let mut object = registry(value.clone());
        object["metadata"]["name"] = json!(unique_name("registry"));
        if let Err(e) = apply(ground, &object) {
            failures.push(format!("{what}: refused: {e}"));
        }
    }
    let refused = [
        (
            "no url",
            json!({"timeoutMs": 1000}),
            "spec.schemaRegistry.url: Required value",
        ),
        (
            "not http",
            json!({"url": "ftp://registry:21"}),
            "spec.schemaRegistry.url",
        ),
        (
            "credentials in the url",
            json!({"url": "https://user:pw@registry:8081"}),
            "spec.schemaRegistry.url",
        ),
        (
            "a query",
            json!({"url": "http://registry:8081/?x=1"}),
            "spec.schemaRegistry.url",
        ),
        (
            "a CA for http",
            json!({"url": "http://registry:8081", "caSecretRef": {"name": "ca", "key": "ca.crt"}}),
            "caSecretRef and caConfigMapRef are only for an https:// url",
        ),
        (
            "a ConfigMap CA for http",
            json!({"url": "http://registry:8081", "caConfigMapRef": {"name": "ca", "key": "ca.crt"}}),
            "caSecretRef and caConfigMapRef are only for an https:// url",
        ),
        (
            "two CAs",
            json!({"url": "https://registry:8081", "caSecretRef": {"name": "ca", "key": "ca.crt"},
                   "caConfigMapRef": {"name": "ca", "key": "ca.crt"}}),
            "name the CA in caSecretRef or caConfigMapRef, not both",
        ),
        (
            "basic and bearer",
            json!({"url": "https://registry:8081", "basicAuthSecretRef": {"name": "u"},
                   "bearerTokenSecretRef": {"name": "t", "key": "token"}}),
            "name basicAuthSecretRef or bearerTokenSecretRef, not both",
        ),
        (
            "a timeout below 100 ms",
            json!({"url": "http://registry:8081", "timeoutMs": 99}),
            "spec.schemaRegistry.timeoutMs in body should be greater than or equal to 100",
        ),
        (
            "a timeout above 30 s",
            json!({"url": "http://registry:8081", "timeoutMs": 30001}),
            "spec.schemaRegistry.timeoutMs in body should be less than or equal to 30000",
        ),
        (
            "a Secret key that is no key",
            json!({"url": "https://registry:8081", "bearerTokenSecretRef": {"name": "t", "key": "a/b"}}),
            "spec.schemaRegistry.bearerTokenSecretRef.key",
        ),
        (
            "a ConfigMap ref without its key",
            json!({"url": "https://registry:8081", "caConfigMapRef": {"name": "trust"}}),
            "spec.schemaRegistry.caConfigMapRef.key: Required value",
        ),
    ];
    for (what, value, expected) in &refused {
        let mut object = registry(value.clone());
        object["metadata"]["name"] = json!(unique_name("bad-registry"));
        failures.extend(refusal_problem(ground, what, &object, expected));
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases wrong:\n{}",
        failures.len(),
        admitted.len() + refused.len(),
        failures.join("\n")
    );
    ground.kubectl(&["delete", "namespace", &ns, "--wait=false"], None);
}

/// `spec.auth.oidc` and the clients of its users and groups: what the
/// apiserver admits and refuses, and on the public URL's scheme the
/// apiserver and the sidecar agree (a URL admitted here is one the sidecar
/// starts with).
#[test]
fn sign_in_settings_are_checked_at_admission() {
    let ground = Ground::get();
    ground.install_crds();
    let ns = ground.namespace("admission-oidc", None);
    let base = valid_server(&ns, "orders");
    let own = json!({"issuer": "https://sso.example.com/realms/acme", "resource": "https://orders-mcp.example.com/mcp"});
    let oidc = |value: Value| with(base.clone(), "/auth", json!({"oidc": value}));
    let oidc_clients = |value: Value, clients: Value| {
        let mut o = oidc(value);
        o["spec"]["clients"] = clients;
        o
    };
    let people = json!([
        {"name": "alice", "users": ["alice"], "tools": ["list_topics"], "scope": {"topics": {"allow": [{"name": "a."}]}}},
        {"name": "people", "users": ["bob", "carol@example.com"], "groups": ["Kafka Operators", "/team-a/admins"], "tools": ["list_topics", "create_topic"]},
        {"name": "support-agent", "serviceAccountName": "support-agent", "tools": ["list_topics"]}
    ]);
    let admitted: Vec<(&str, Value)> = vec![
        (
            "an own provider with everything set, and clients of people",
            oidc_clients(
                json!({"issuer": "https://sso.example.com/realms/acme", "caConfigMapRef": {"name": "trust", "key": "bundle.pem"},
                       "resource": "https://orders-mcp.example.com:8443/mcp", "audiences": ["orders-mcp", "urn:team-a:orders"],
                       "claims": {"username": {"claim": "preferred_username", "prefix": "acme:"}, "groups": {"claim": "roles", "prefix": ""}},
                       "scopes": ["openid", "kafka:read"]}),
                people.clone(),
            ),
        ),
        (
            "the operator's provider: resource only",
            oidc_clients(
                json!({"resource": "https://orders-mcp.example.com/mcp"}),
                people.clone(),
            ),
        ),
        (
            "a CA from a Secret",
            oidc(
                json!({"issuer": "https://sso.example.com", "caSecretRef": {"name": "sso-ca", "key": "ca.crt"}, "resource": "https://orders-mcp.example.com"}),
            ),
        ),
        (
            "a claim mapping without a prefix",
            oidc(
                json!({"issuer": "https://sso.example.com", "resource": "https://m.example.com/mcp", "claims": {"username": {"claim": "email"}}}),
            ),
        ),
    ];
    let refused: Vec<(&str, Value, &str)> = vec![
        (
            "an http issuer",
            oidc(
                json!({"issuer": "http://sso.example.com", "resource": "https://m.example.com/mcp"}),
            ),
            "spec.auth.oidc.issuer",
        ),
        (
            "no resource",
            oidc(json!({"issuer": "https://sso.example.com"})),
            "spec.auth.oidc.resource: Required value",
        ),
        (
            "a resource with a query",
            oidc(json!({"resource": "https://m.example.com/mcp?x=1"})),
            "spec.auth.oidc.resource",
        ),
        (
            "two CAs",
            oidc(
                json!({"issuer": "https://sso.example.com", "resource": "https://m.example.com/mcp",
                        "caSecretRef": {"name": "a", "key": "ca.crt"}, "caConfigMapRef": {"name": "b", "key": "ca.crt"}}),
            ),
            "name the CA in caSecretRef or caConfigMapRef, not both",
        ),
        (
            "a CA without its issuer",
            oidc(
                json!({"resource": "https://m.example.com/mcp", "caConfigMapRef": {"name": "b", "key": "ca.crt"}}),
            ),
            "caSecretRef, caConfigMapRef, claims and scopes describe an issuer",
        ),
        (
            "claims without their issuer",
            oidc(
                json!({"resource": "https://m.example.com/mcp", "claims": {"username": {"claim": "email"}}}),
            ),
            "caSecretRef, caConfigMapRef, claims and scopes describe an issuer",
        ),
        (
            "scopes without their issuer",
            oidc(json!({"resource": "https://m.example.com/mcp", "scopes": ["kafka"]})),
            "caSecretRef, caConfigMapRef, claims and scopes describe an issuer",
        ),
        (
            "a claim mapping without its claim",
            oidc(
                json!({"issuer": "https://sso.example.com", "resource": "https://m.example.com/mcp", "claims": {"groups": {"prefix": "x:"}}}),
            ),
            "spec.auth.oidc.claims.groups.claim: Required value",
        ),
        (
            "a prefix with a space",
            oidc(
                json!({"issuer": "https://sso.example.com", "resource": "https://m.example.com/mcp", "claims": {"username": {"claim": "sub", "prefix": "my idp:"}}}),
            ),
            "spec.auth.oidc.claims.username.prefix",
        ),
        (
            "a repeated audience",
            oidc(json!({"resource": "https://m.example.com/mcp", "audiences": ["a", "a"]})),
            "audiences must not repeat",
        ),
        (
            "a scope that is two",
            oidc(
                json!({"issuer": "https://sso.example.com", "resource": "https://m.example.com/mcp", "scopes": ["kafka read"]}),
            ),
            "spec.auth.oidc.scopes[0]",
        ),
        (
            "users and a ServiceAccount in one client",
            oidc_clients(
                own.clone(),
                json!([{"name": "x", "users": ["alice"], "serviceAccountName": "x", "tools": ["list_topics"]}]),
            ),
            "a client is exactly one of: serviceAccountName, issueToken, or users and groups",
        ),
        (
            "groups and an issued token in one client",
            oidc_clients(
                own.clone(),
                json!([{"name": "x", "groups": ["ops"], "issueToken": {}, "tools": ["list_topics"]}]),
            ),
            "a client is exactly one of: serviceAccountName, issueToken, or users and groups",
        ),
        (
            "an empty list of users",
            oidc_clients(
                own.clone(),
                json!([{"name": "x", "users": [], "tools": ["list_topics"]}]),
            ),
            "spec.clients[0].users in body should have at least 1 items",
        ),
        (
            "users without spec.auth.oidc",
            {
                let mut o = base.clone();
                o["spec"]["clients"] =
                    json!([{"name": "x", "users": ["alice"], "tools": ["list_topics"]}]);
                o
            },
            "clients with users or groups need spec.auth.oidc",
        ),
        (
            "a group client with a scope",
            oidc_clients(
                own.clone(),
                json!([{"name": "ops", "groups": ["ops"], "tools": ["list_topics"], "scope": {"topics": {"allow": [{"name": "a"}]}}}]),
            ),
            "a client with groups cannot have a scope of its own",
        ),
        (
            "a scoped client of two users",
            oidc_clients(
                own.clone(),
                json!([{"name": "two", "users": ["a", "b"], "tools": ["list_topics"], "scope": {"topics": {"allow": [{"name": "a"}]}}}]),
            ),
            "a client with a scope of its own names exactly one user",
        ),
        (
            "a scoped user another client names too",
            oidc_clients(
                own.clone(),
                json!([
                    {"name": "alice", "users": ["alice"], "tools": ["list_topics"], "scope": {"topics": {"allow": [{"name": "a"}]}}},
                    {"name": "people", "users": ["bob", "alice"], "tools": ["list_topics"]}
                ]),
            ),
            "a client with a scope of its own needs a user no other client of this server names",
        ),
    ];

    // The public URL: http only on a loopback host, as the sidecar checks it.
    let issuer = "https://sso.example.com";
    let resources = [
        ("https://orders-mcp.example.com/mcp", true),
        ("https://10.0.0.1:8443", true),
        ("http://localhost:8090/mcp", true),
        ("http://localhost", true),
        ("http://127.0.0.1:8090/mcp", true),
        ("http://127.255.0.9/mcp", true),
        ("http://[::1]:8090/mcp", true),
        ("http://orders-mcp.example.com/mcp", false),
        ("http://localhost.example.com/mcp", false),
        ("http://127.0.0.1.example.com/mcp", false),
        ("http://127.0.0.256/mcp", false),
        ("http://10.0.0.1/mcp", false),
    ];
    let mut failures = Vec::new();
    for (resource, loopback_or_https) in resources {
        let sidecar = mcp_kafka_sidecar::config::SidecarConfig::parse(&format!(
            "server: {{name: orders, namespace: team-a, environment: dev}}\nkafka: {{bootstrapServers: ['k:9092']}}\ntools: [list_topics]\nauth: {{oidc: {{issuer: '{issuer}', resource: '{resource}'}}}}\n"
        ));
        if sidecar.is_ok() != loopback_or_https {
            failures.push(format!("{resource}: the sidecar says {sidecar:?}"));
        }
        let mut object = oidc(json!({"issuer": issuer, "resource": resource}));
        object["metadata"]["name"] = json!(unique_name("resource"));
        match (apply(ground, &object), loopback_or_https) {
            (Ok(()), true) => {}
            (Err(e), true) => failures.push(format!("{resource}: refused: {e}")),
            (Ok(()), false) => failures.push(format!("{resource}: admitted")),
            (Err(e), false)
                if !e.contains("resource must be an https:// URL unless its host is loopback") =>
            {
                failures.push(format!("{resource}: message: {e}"))
            }
            (Err(_), false) => {}
        }
    }
    for (what, object) in &admitted {
        let mut object = object.clone();
        object["metadata"]["name"] = json!(unique_name("oidc"));
        if let Err(e) = apply(ground, &object) {
            failures.push(format!("{what}: refused: {e}"));
        }
    }
    for (what, object, expected) in &refused {
        let mut object = object.clone();
        object["metadata"]["name"] = json!(unique_name("bad-oidc"));
        failures.extend(refusal_problem(ground, what, &object, expected));
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases wrong:\n{}",
        failures.len(),
        resources.len() + admitted.len() + refused.len(),
        failures.join("\n")
    );
    ground.kubectl(&["delete", "namespace", &ns, "--wait=false"], None);
}
