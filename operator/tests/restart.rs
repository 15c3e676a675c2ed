//! Restarting the operator: no duplicates, and reconciling unchanged servers
//! writes nothing, counted in the apiserver's audit log (every write request
//! the apiserver served, whoever made it).

mod support;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::Api;
use kube::api::ListParams;
use mcp_kafka_operator::config::OperatorConfig;
use mcpk_e2e::{Ground, eventually};
use serde_json::Value;
use support::{
    Operator, apply_server, delete_namespace, server_manifest, servers, two_clients, wait_condition,
};

const SERVERS: usize = 3;

/// Audit events of writes into `ns` (or naming it, for the cluster-scoped
/// bindings) by anyone but Kubernetes' own controllers.
fn writes_for(ns: &str) -> impl Fn(&Value) -> bool + '_ {
    move |e: &Value| {
        let object = &e["objectRef"];
        let in_ns =
            object["namespace"] == ns || object["name"].as_str().is_some_and(|n| n.contains(ns));
        let by_kubernetes = e["user"]["username"]
            .as_str()
            .is_some_and(|u| u.starts_with("system:"));
        in_ns && !by_kubernetes
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_operator_finds_everything_in_place_and_writes_nothing() {
    let ground = Ground::get();
    let client = ground.kube_admin().await;
    let first = Operator::start(OperatorConfig::default());
    let ns = ground.namespace("restart", Some("dev"));
    let api = servers(&client, &ns);
    for i in 0..SERVERS {
        let name = format!("server-{i}");
        apply_server(
            &client,
            &ns,
            &server_manifest(
                &name,
                "dev",
                &["list_topics", "describe_topic"],
                two_clients(),
                1,
            ),
        )
        .await;
    }
    for i in 0..SERVERS {
        wait_condition(
            &api,
            &format!("server-{i}"),
            "Reconciled",
            "True",
            Some("Applied"),
        )
        .await;
    }
    // The first operator settles: a 3 s window without writes into the
    // namespace (it never settling would be churn, and fails here).
    eventually("the first operator to stop writing", || async {
        let mark = ground.audit_mark();
        tokio::time::sleep(std::time::Duration::from_secs(3)).await;
        ground
            .audit_writes_since(mark, writes_for(&ns))
            .is_empty()
            .then_some(())
    })
    .await;
    // Servers being deleted elsewhere (other tests' namespaces) finish first,
    // so that the count below is exactly the servers the new operator sees.
    let everywhere = Api::<mcp_kafka_operator::crd::McpKafkaServer>::all(client.clone());
    eventually("servers being deleted to be gone", || async {
        let list = everywhere.list(&ListParams::default()).await.ok()?;
        list.items
            .iter()
            .all(|s| s.metadata.deletion_timestamp.is_none())
            .then_some(())
    })
    .await;
    first.stop();

    let mark = ground.audit_mark();
    let second = Operator::start(OperatorConfig::default());
    // Wait until the new operator has reconciled every server in the cluster
    // at least once (other tests' servers included).
    let total = everywhere
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .len() as f64;
    eventually(
        "the restarted operator to reconcile every server",
        || async {
            (second.counter("mcp_kafka_operator_reconciles_total", "outcome=\"ok\"") >= total)
                .then_some(())
        },
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;

    let writes = ground.audit_writes_since(mark, writes_for(&ns));
    let summary: Vec<String> = writes
        .iter()
        .map(|e| {
            format!(
                "{} {}/{} {}",
                e["verb"],
                e["objectRef"]["resource"],
                e["objectRef"]["name"],
                e["objectRef"]["subresource"]
            )
        })
        .collect();
    assert!(
        writes.is_empty(),
        "a reconcile of unchanged servers wrote {} time(s):\n{}",
        writes.len(),
        summary.join("\n")
    );

    // No duplicates: one Deployment per server and one RoleBinding per client.
    let deployments = Api::<Deployment>::namespaced(client.clone(), &ns)
        .list(&ListParams::default())
        .await
        .unwrap();
    assert_eq!(deployments.items.len(), SERVERS);
    let bindings = Api::<RoleBinding>::namespaced(client.clone(), &ns)
        .list(&ListParams::default())
        .await
        .unwrap();
    assert_eq!(bindings.items.len(), SERVERS * 2);

    delete_namespace(&client, &ns).await;
    second.stop();
}
