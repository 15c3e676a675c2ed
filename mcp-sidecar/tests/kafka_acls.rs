//! Kafka's ACLs as the second wall: the sidecar connected as a tenant of
//! the ground's broker (StandardAuthorizer; tenants `team-a` and `team-b`,
//! each with every operation on its own prefixed topics and groups; see
//! `kafka_tenants` in e2e/lib/components.sh). What a tenant may not touch
//! is PERMISSION_DENIED naming the resource, never KAFKA_ERROR or a
//! timeout; listings show only what Kafka lets it describe; it stays
//! ready; and describe_acls shows its ACLs, or says a broker has no
//! authorizer.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use mcp_kafka_sidecar::config::SidecarConfig;
use mcp_kafka_sidecar::error::{ErrorCode, ToolError};
use mcp_kafka_sidecar::kafka::Kafka;
use mcp_kafka_sidecar::metrics::Metrics;
use mcp_kafka_sidecar::server::{KafkaMcp, Runtime};
use mcp_kafka_sidecar::tool_name::ToolName;
use mcpk_e2e::{Ground, eventually, unique_name};
use serde_json::{Value, json};

/// A tenant of the ground's broker, as its env file names it.
#[derive(Clone, Copy)]
enum Tenant {
    A,
    B,
}

impl Tenant {
    fn var(self, what: &str) -> String {
        let letter = match self {
            Tenant::A => "A",
            Tenant::B => "B",
        };
        Ground::get()
            .var(&format!("MCPK_KAFKA_TENANT_{letter}_{what}"))
            .to_string()
    }

    fn topic(self, name: &str) -> String {
        unique_name(&format!("{}{name}", self.var("TOPIC_PREFIX")))
    }

    fn group(self, name: &str) -> String {
        unique_name(&format!("{}{name}", self.var("GROUP_PREFIX")))
    }

    fn principal(self) -> String {
        let user = std::fs::read_to_string(self.var("USERNAME_FILE")).expect("the username file");
        format!("User:{}", user.trim())
    }
}

fn all_tools() -> String {
    ToolName::ALL
        .iter()
        .map(|t| t.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A dev server with every tool, on `kafka` (a YAML flow mapping's fields).
fn server_on(kafka: &str) -> (KafkaMcp, Arc<Kafka>) {
    let text = format!(
        "server: {{name: acls-test, environment: dev}}\nlisten: {{address: '127.0.0.1:8090'}}\nauth: {{mode: none}}\nkafka: {{{kafka}, requestTimeoutMs: 5000}}\ntools: [{}]\nlimits: {{callsPerSecond: 1000000, callBurst: 1000000}}\n",
        all_tools()
    );
    let config = SidecarConfig::parse(&text).expect("test config");
    let runtime = Runtime::start(config, None).expect("kafka clients");
    let kafka = Arc::clone(&runtime.kafka);
    (KafkaMcp::new(runtime, Arc::new(Metrics::new())), kafka)
}

/// A server connected as `tenant` over SASL_SSL (SCRAM-SHA-512), fenced to
/// the ground's cluster so that its readiness includes the fence check.
fn tenant(tenant: Tenant) -> (KafkaMcp, Arc<Kafka>) {
    let g = Ground::get();
    server_on(&format!(
        "bootstrapServers: ['{}'], expectedClusterId: '{}', tls: {{caFile: '{}'}}, sasl: {{mechanism: SCRAM-SHA-512, usernameFile: '{}', passwordFile: '{}'}}",
        g.var("MCPK_KAFKA_SASL_SSL_BOOTSTRAP"),
        g.kafka_cluster_id,
        g.var("MCPK_KAFKA_CA_FILE"),
        tenant.var("USERNAME_FILE"),
        tenant.var("PASSWORD_FILE"),
    ))
}

/// A server on the plaintext listener, whose principal (ANONYMOUS) is a
/// super user: it sets up what the tenants then meet.
fn super_user() -> KafkaMcp {
    server_on(&format!(
        "bootstrapServers: ['{}']",
        Ground::get().kafka_bootstrap_servers
    ))
    .0
}

/// The ground's broker authorizes: the tests below mean nothing otherwise.
fn authorizing_ground() {
    assert_eq!(
        Ground::get().var("MCPK_KAFKA_AUTHORIZER"),
        "StandardAuthorizer"
    );
}

/// A call that must succeed. What Kafka calls retriable is tried again for
/// a few seconds: on a broker that has just started, a new group's
/// coordinator may still be loading (NotCoordinator), as seen in CI.
async fn ok(mcp: &KafkaMcp, tool: &str, args: Value) -> Value {
    let mut attempt = 0;
    loop {
        match mcp.call(tool, args.clone()).await {
            Ok(v) => return v,
            Err(e) if e.retriable && attempt < 20 => {
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
            Err(e) => panic!("{tool}({args}) failed: {e}"),
        }
    }
}

async fn refused(mcp: &KafkaMcp, tool: &str, args: Value) -> ToolError {
    match mcp.call(tool, args.clone()).await {
        Ok(v) => panic!("{tool}({args}) succeeded but should fail: {v}"),
        Err(e) => e,
    }
}

/// `tool(args)` is PERMISSION_DENIED, final, with a message naming `resource`.
async fn denied(mcp: &KafkaMcp, tool: &str, args: Value, resource: &str) {
    let e = refused(mcp, tool, args.clone()).await;
    assert_eq!(
        (e.code, e.retriable),
        (ErrorCode::PermissionDenied, false),
        "{tool}({args}): {e}"
    );
    assert!(
        e.message.contains(&format!("{resource:?}")),
        "{tool}({args}) does not name {resource:?}: {e}"
    );
}

/// Readiness as `/readyz` reads it: a recent metadata answer and the fence.
async fn ready(kafka: &Kafka) {
    eventually("the tenant's server ready", || async {
        (kafka.is_healthy() && kafka.fence().is_ok()).then_some(())
    })
    .await;
}

/// A topic made by the super user, with one message in it.
async fn topic_with_a_message(admin: &KafkaMcp, topic: &str) {
    ok(
        admin,
        "create_topic",
        json!({"topic": topic, "partitions": 1}),
    )
    .await;
    ok(
        admin,
        "publish_message",
        json!({"topic": topic, "key": "k", "value": "v"}),
    )
    .await;
}

#[tokio::test]
async fn a_tenant_works_on_its_own_topics_and_groups_and_stays_ready() {
    authorizing_ground();
    let (a, kafka) = tenant(Tenant::A);
    ready(&kafka).await;
    let topic = Tenant::A.topic("orders");
    let group = Tenant::A.group("billing");

    ok(&a, "create_topic", json!({"topic": topic, "partitions": 1})).await;
    let published = ok(
        &a,
        "publish_message",
        json!({"topic": topic, "key": "k1", "value": "first"}),
    )
    .await;
    assert_eq!(published["offset"], 0, "{published}");
    let described = ok(&a, "describe_topic", json!({"topic": topic})).await;
    assert_eq!(described["retained_messages"], 1, "{described}");
    let read = ok(
        &a,
        "consume_messages",
        json!({"topic": topic, "from": "earliest"}),
    )
    .await;
    assert_eq!(read["messages"][0]["value"]["text"], "first", "{read}");
    let offsets = ok(&a, "fetch_offsets", json!({"topic": topic})).await;
    assert_eq!(offsets["partitions"][0]["latest"], 1, "{offsets}");
    ok(
        &a,
        "update_topic_config",
        json!({"topic": topic, "set": {"retention.ms": "3600000"}}),
    )
    .await;
    ok(&a, "create_partitions", json!({"topic": topic, "total": 2})).await;

    // A group of its own: offsets committed, then seen and deleted.
    ok(
        &a,
        "reset_group_offsets",
        json!({"group_id": group, "topic": topic, "partition": 0, "to": "latest"}),
    )
    .await;
    let lag = ok(
        &a,
        "get_consumer_lag",
        json!({"group_id": group, "topic": topic}),
    )
    .await;
    assert_eq!(lag["partitions"][0]["committed_offset"], 1, "{lag}");
    let described = ok(&a, "describe_group", json!({"group_id": group})).await;
    assert_eq!(described["group_id"], group, "{described}");
    let groups = ok(&a, "list_groups", json!({"name_contains": group})).await;
    assert_eq!(groups["total"], 1, "{groups}");
    ok(&a, "delete_group", json!({"group_id": group})).await;
    ok(&a, "delete_topic", json!({"topic": topic})).await;

    let status = ok(&a, "cluster_status", json!({})).await;
    assert_eq!(status["cluster_id"], Ground::get().kafka_cluster_id);
    // Still ready after all of it (the probe runs every 2 s).
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        kafka.is_healthy() && kafka.fence().is_ok(),
        "the tenant's server stays ready"
    );
}

#[tokio::test]
async fn another_tenants_topics_and_groups_are_permission_denied_naming_them() {
    authorizing_ground();
    let admin = super_user();
    let (a, kafka) = tenant(Tenant::A);
    ready(&kafka).await;
    let theirs = Tenant::B.topic("payments");
    let their_group = Tenant::B.group("ledger");
    topic_with_a_message(&admin, &theirs).await;
    ok(
        &admin,
        "reset_group_offsets",
        json!({"group_id": their_group, "topic": theirs, "to": "earliest"}),
    )
    .await;
    let mine = Tenant::A.topic("orders");
    let my_group = Tenant::A.group("billing");
    ok(&a, "create_topic", json!({"topic": mine, "partitions": 1})).await;

    let t = theirs.as_str();
    for (tool, args) in [
        ("describe_topic", json!({"topic": t})),
        ("consume_messages", json!({"topic": t, "from": "earliest"})),
        ("publish_message", json!({"topic": t, "value": "x"})),
        ("fetch_offsets", json!({"topic": t})),
        (
            "describe_configs",
            json!({"resource_type": "topic", "name": t}),
        ),
        ("delete_topic", json!({"topic": t})),
        ("delete_topic", json!({"topic": t, "dry_run": true})),
        ("create_partitions", json!({"topic": t, "total": 2})),
        (
            "update_topic_config",
            json!({"topic": t, "set": {"retention.ms": "1000"}}),
        ),
        (
            "create_topic",
            json!({"topic": Tenant::B.topic("new"), "partitions": 1}),
        ),
        (
            "reset_group_offsets",
            json!({"group_id": my_group, "topic": t, "to": "earliest"}),
        ),
    ] {
        let resource = args["topic"].as_str().or(args["name"].as_str()).unwrap();
        denied(&a, tool, args.clone(), resource).await;
    }
    let g = their_group.as_str();
    for (tool, args) in [
        ("describe_group", json!({"group_id": g})),
        ("get_consumer_lag", json!({"group_id": g})),
        ("get_consumer_lag", json!({"group_id": g, "topic": mine})),
        (
            "reset_group_offsets",
            json!({"group_id": g, "topic": mine, "to": "earliest"}),
        ),
        ("delete_group", json!({"group_id": g})),
    ] {
        denied(&a, tool, args, g).await;
    }

    // Nothing of theirs changed, and the tenant is still ready.
    let described = ok(&admin, "describe_topic", json!({"topic": theirs})).await;
    assert_eq!(described["retained_messages"], 1, "{described}");
    assert_eq!(described["partitions"].as_array().map(Vec::len), Some(1));
    ok(&admin, "describe_group", json!({"group_id": their_group})).await;
    assert!(kafka.is_healthy() && kafka.fence().is_ok());
}

#[tokio::test]
async fn listings_show_only_what_kafka_lets_the_tenant_describe() {
    authorizing_ground();
    let admin = super_user();
    let (a, kafka_a) = tenant(Tenant::A);
    let (b, kafka_b) = tenant(Tenant::B);
    ready(&kafka_a).await;
    ready(&kafka_b).await;
    let a_topic = Tenant::A.topic("listed");
    let b_topic = Tenant::B.topic("listed");
    let (a_group, b_group) = (Tenant::A.group("listed"), Tenant::B.group("listed"));
    for (topic, group) in [(&a_topic, &a_group), (&b_topic, &b_group)] {
        topic_with_a_message(&admin, topic).await;
        ok(
            &admin,
            "reset_group_offsets",
            json!({"group_id": group, "topic": topic, "to": "earliest"}),
        )
        .await;
    }
    let names = |answer: &Value, list: &str, field: &str| -> Vec<String> {
        answer[list]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t[field].as_str().unwrap().to_string())
            .collect()
    };
    let everything = ok(&admin, "list_topics", json!({"name_contains": "listed"})).await;
    let all = names(&everything, "topics", "name");
    assert!(all.contains(&a_topic) && all.contains(&b_topic), "{all:?}");

    for (mcp, own, other) in [(&a, &a_topic, &b_topic), (&b, &b_topic, &a_topic)] {
        // Its cached metadata may predate the topics made just now.
        let listed = eventually("the tenant's own topic listed", || async {
            let listed = ok(mcp, "list_topics", json!({"name_contains": "listed"})).await;
            let listed = names(&listed, "topics", "name");
            listed.contains(own).then_some(listed)
        })
        .await;
        assert!(!listed.contains(other), "{other} listed: {listed:?}");
    }
    // Groups: team-b sees only its own. team-a may describe the cluster
    // (the ground grants it, for describe_acls), and Kafka lists every
    // group's name to a principal that may.
    let listed = ok(&b, "list_groups", json!({"name_contains": "listed"})).await;
    let listed = names(&listed, "groups", "group_id");
    assert!(
        listed.contains(&b_group) && !listed.contains(&a_group),
        "{listed:?}"
    );
    let listed = ok(&a, "list_groups", json!({"name_contains": "listed"})).await;
    let listed = names(&listed, "groups", "group_id");
    assert!(
        listed.contains(&a_group) && listed.contains(&b_group),
        "{listed:?}"
    );
}

#[tokio::test]
async fn the_stacks_own_principals_are_super_users() {
    authorizing_ground();
    let g = Ground::get();
    let admin = super_user();
    let topic = Tenant::B.topic("everyone-sees");
    topic_with_a_message(&admin, &topic).await;
    let mtls = server_on(&format!(
        "bootstrapServers: ['{}'], tls: {{caFile: '{}', certFile: '{}', keyFile: '{}'}}",
        g.var("MCPK_KAFKA_MTLS_BOOTSTRAP"),
        g.var("MCPK_KAFKA_CA_FILE"),
        g.var("MCPK_KAFKA_CLIENT_CERT_FILE"),
        g.var("MCPK_KAFKA_CLIENT_KEY_FILE"),
    ));
    let sasl = server_on(&format!(
        "bootstrapServers: ['{}'], tls: {{caFile: '{}'}}, sasl: {{mechanism: SCRAM-SHA-512, usernameFile: '{}', passwordFile: '{}'}}",
        g.var("MCPK_KAFKA_SASL_SSL_BOOTSTRAP"),
        g.var("MCPK_KAFKA_CA_FILE"),
        g.var("MCPK_KAFKA_SASL_USERNAME_FILE"),
        g.var("MCPK_KAFKA_SASL_PASSWORD_FILE"),
    ));
    // No ACL names them: only super users read a tenant's topic.
    for (name, (mcp, kafka)) in [("mTLS", mtls), ("SASL", sasl)] {
        ready(&kafka).await;
        let read = ok(
            &mcp,
            "consume_messages",
            json!({"topic": topic, "from": "earliest"}),
        )
        .await;
        assert_eq!(read["messages"][0]["value"]["text"], "v", "{name}: {read}");
    }
}

/// The bindings of a describe_acls answer as (type, name, pattern,
/// principal, operation, permission).
fn bindings(answer: &Value) -> Vec<(String, String, String, String, String, String)> {
    let field = |b: &Value, f: &str| b[f].as_str().unwrap_or_default().to_string();
    answer["bindings"]
        .as_array()
        .unwrap_or_else(|| panic!("no bindings: {answer}"))
        .iter()
        .map(|b| {
            (
                field(b, "resource_type"),
                field(b, "name"),
                field(b, "pattern_type"),
                field(b, "principal"),
                field(b, "operation"),
                field(b, "permission"),
            )
        })
        .collect()
}

fn binding(
    resource_type: &str,
    name: &str,
    pattern_type: &str,
    principal: &str,
    operation: &str,
) -> (String, String, String, String, String, String) {
    (
        resource_type.into(),
        name.into(),
        pattern_type.into(),
        principal.into(),
        operation.into(),
        "allow".into(),
    )
}

#[tokio::test]
async fn describe_acls_shows_the_prefixed_acls() {
    authorizing_ground();
    let (a, kafka) = tenant(Tenant::A);
    ready(&kafka).await;
    let principal = Tenant::A.principal();
    let (topics, groups) = (Tenant::A.var("TOPIC_PREFIX"), Tenant::A.var("GROUP_PREFIX"));

    // What team-a may do: exactly the ground's grants.
    let own = ok(&a, "describe_acls", json!({"principal": "self"})).await;
    assert_eq!(own["authorizer"], true, "{own}");
    assert_eq!(own["principal"], principal.as_str());
    assert_eq!(
        bindings(&own),
        vec![
            binding("topic", &topics, "prefixed", &principal, "all"),
            binding("group", &groups, "prefixed", &principal, "all"),
            binding(
                "cluster",
                "kafka-cluster",
                "literal",
                &principal,
                "describe"
            ),
        ],
        "{own}"
    );
    assert_eq!(
        (own["total"].as_u64(), &own["truncated"]),
        (Some(3), &json!(false))
    );

    // The ACLs that apply to one topic: the prefixed one that covers it.
    let topic = Tenant::A.topic("orders");
    let on_topic = ok(
        &a,
        "describe_acls",
        json!({"resource_type": "topic", "name": topic}),
    )
    .await;
    assert_eq!(
        bindings(&on_topic),
        vec![binding("topic", &topics, "prefixed", &principal, "all")],
        "{on_topic}"
    );
    // Of its own on another's group: none apply.
    let other_group = Tenant::B.group("ledger");
    let none = ok(
        &a,
        "describe_acls",
        json!({"resource_type": "group", "name": other_group, "principal": "self"}),
    )
    .await;
    assert_eq!(
        (&none["authorizer"], none["total"].as_u64()),
        (&json!(true), Some(0)),
        "{none}"
    );
    assert_eq!(none["message"], "no ACL matches", "{none}");

    // The super user sees team-b's, and the cap holds.
    let admin = super_user();
    let theirs = ok(
        &admin,
        "describe_acls",
        json!({"resource_type": "group", "name": other_group}),
    )
    .await;
    assert_eq!(
        bindings(&theirs),
        vec![binding(
            "group",
            &Tenant::B.var("GROUP_PREFIX"),
            "prefixed",
            &Tenant::B.principal(),
            "all"
        )],
        "{theirs}"
    );

    // team-b may not describe the cluster, which DescribeAcls needs.
    let (b, kafka_b) = tenant(Tenant::B);
    ready(&kafka_b).await;
    let e = refused(&b, "describe_acls", json!({"principal": "self"})).await;
    assert_eq!(
        (e.code, e.retriable),
        (ErrorCode::PermissionDenied, false),
        "{e}"
    );
    assert!(
        e.message.contains(&Tenant::B.principal()) && e.message.contains("cluster"),
        "{e}"
    );

    // Without SASL this server cannot say what its principal is.
    let e = refused(&admin, "describe_acls", json!({"principal": "self"})).await;
    assert_eq!(e.code, ErrorCode::InvalidArgument, "{e}");
    let e = refused(&admin, "describe_acls", json!({})).await;
    assert_eq!(e.code, ErrorCode::InvalidArgument, "{e}");
}

#[tokio::test]
async fn describe_acls_caps_its_answer_at_the_list_limit() {
    authorizing_ground();
    let (a, _) = server_on_limited(2);
    let own = ok(&a, "describe_acls", json!({"principal": "self"})).await;
    assert_eq!(
        (
            own["bindings"].as_array().map(Vec::len),
            own["total"].as_u64(),
            &own["truncated"]
        ),
        (Some(2), Some(3), &json!(true)),
        "{own}"
    );
}

/// team-a's server with `limits.maxListItems: max`.
fn server_on_limited(max: usize) -> (KafkaMcp, Arc<Kafka>) {
    let g = Ground::get();
    let text = format!(
        "server: {{name: acls-test, environment: dev}}\nlisten: {{address: '127.0.0.1:8090'}}\nauth: {{mode: none}}\nkafka: {{bootstrapServers: ['{}'], tls: {{caFile: '{}'}}, sasl: {{mechanism: SCRAM-SHA-512, usernameFile: '{}', passwordFile: '{}'}}, requestTimeoutMs: 5000}}\ntools: [describe_acls]\nlimits: {{maxListItems: {max}}}\n",
        g.var("MCPK_KAFKA_SASL_SSL_BOOTSTRAP"),
        g.var("MCPK_KAFKA_CA_FILE"),
        Tenant::A.var("USERNAME_FILE"),
        Tenant::A.var("PASSWORD_FILE"),
    );
    let runtime =
        Runtime::start(SidecarConfig::parse(&text).expect("config"), None).expect("clients");
    let kafka = Arc::clone(&runtime.kafka);
    (KafkaMcp::new(runtime, Arc::new(Metrics::new())), kafka)
}

/// An extra broker of the ground (no authorizer: only the stack's own
/// broker has one), stopped when dropped.
struct ExtraBroker {
    name: String,
    port: u16,
    cport: u16,
}

fn stack_script() -> PathBuf {
    let start = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo test"));
    start
        .ancestors()
        .map(|d| d.join("e2e/stack"))
        .find(|p| p.is_file())
        .expect("e2e/stack in the checkout")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl ExtraBroker {
    fn run(&self, action: &str) -> std::process::Output {
        Command::new(stack_script())
            .args(["kafka", action, &self.name])
            .arg(self.port.to_string())
            .arg(self.cport.to_string())
            .env("MCPK_STATE_DIR", Ground::get().var("MCPK_STACK_DIR"))
            .output()
            .expect("running e2e/stack")
    }

    fn start() -> ExtraBroker {
        let (port, cport) = (free_port(), free_port());
        let broker = ExtraBroker {
            name: format!("acls-{port}"),
            port,
            cport,
        };
        let out = broker.run("start");
        assert!(
            out.status.success(),
            "e2e/stack kafka start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        broker
    }
}

impl Drop for ExtraBroker {
    fn drop(&mut self) {
        let _ = self.run("stop");
    }
}

#[tokio::test]
async fn describe_acls_on_a_broker_without_an_authorizer_says_so() {
    let broker = ExtraBroker::start();
    let (mcp, kafka) = server_on(&format!("bootstrapServers: ['127.0.0.1:{}']", broker.port));
    ready(&kafka).await;
    for args in [
        json!({"resource_type": "topic", "name": "orders"}),
        json!({"resource_type": "group", "name": "billing"}),
    ] {
        let answer = ok(&mcp, "describe_acls", args).await;
        assert_eq!(answer["authorizer"], false, "{answer}");
        assert_eq!(answer["bindings"], json!([]), "{answer}");
        assert!(
            answer["message"]
                .as_str()
                .is_some_and(|m| m.contains("no authorizer")),
            "{answer}"
        );
    }
}
