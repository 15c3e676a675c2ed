//! The operator binary, run as a process with only the rules of its
//! ClusterRole (charts/mcp-kafka-operator/files/*-rules.yaml) through a
//! ServiceAccount token, does its whole job: leader election, every child
//! object (including the sidecar's auth-delegator binding and the clients'
//! custom-verb Roles, which RBAC lets it grant only because it holds them),
//! tokens, status, Events and cleanup. A missing rule fails this test.

mod support;

use std::process::Command;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kube::Api;
use mcpk_e2e::{Ground, eventually};
use support::{
    OperatorProcess, apply_server, delete_namespace, kubeconfig_with_token, operator_identity,
    server_manifest, servers, two_clients,
};

#[tokio::test(flavor = "multi_thread")]
async fn the_operator_needs_nothing_beyond_its_cluster_role() {
    let ground = Ground::get();
    ground.install_crds();
    let admin = ground.kube_admin().await;
    let operator_ns = ground.namespace("mcpk-operator", None);
    let token = operator_identity(&admin, &operator_ns).await;
    let kubeconfig = kubeconfig_with_token(ground, &token);

    let operator = OperatorProcess::start(
        &operator_ns,
        &kubeconfig,
        &[
            "--metrics-address",
            "127.0.0.1:0",
            "--lease-namespace",
            &operator_ns,
        ],
    );

    // It takes the Lease with its own identity.
    let leases: Api<Lease> = Api::namespaced(admin.clone(), &operator_ns);
    eventually("the operator to hold the leader Lease", || async {
        let lease = leases.get_opt("mcp-kafka-operator").await.ok()??;
        lease.spec?.holder_identity.filter(|h| !h.is_empty())
    })
    .await;

    let ns = ground.namespace("least-privilege", Some("dev"));
    let api = servers(&admin, &ns);
    apply_server(
        &admin,
        &ns,
        &server_manifest(
            "orders",
            "dev",
            &["list_topics", "describe_topic"],
            two_clients(),
            2,
        ),
    )
    .await;
    let log_tail = || operator.log_text();
    // Applied, or the first refusal: fail fast with the apiserver's message.
    let server = eventually("the server to be reconciled or refused", || async {
        let s = api.get("orders").await.ok()?;
        let c = mcp_kafka_operator::status::find(s.status.as_ref()?, "Reconciled")?.clone();
        matches!(c.reason.as_str(), "Applied" | "ApplyFailed").then_some((s, c))
    })
    .await;
    assert_eq!(
        server.1.reason,
        "Applied",
        "{}\n{}",
        server.1.message,
        log_tail()
    );
    assert_eq!(server.0.status.unwrap().token_secrets.len(), 1);
    assert!(
        !log_tail().contains("forbidden"),
        "the operator was refused something:\n{}",
        log_tail()
    );

    // Its operations endpoint (the address is in its first log line).
    let address = log_tail()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find_map(|l| l["fields"]["address"].as_str().map(str::to_string))
        .expect("the operator logs its metrics address");
    let get = |path: &str| {
        let out = Command::new("curl")
            .args(["-fsS", &format!("http://{address}{path}")])
            .output()
            .expect("running curl");
        assert!(
            out.status.success(),
            "GET {path}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(get("/healthz"), "ok\n");
    assert_eq!(get("/readyz"), "ok\n");
    let metrics = get("/metrics");
    for expected in [
        "mcp_kafka_operator_reconciles_total{outcome=\"ok\"}",
        "mcp_kafka_operator_leader 1",
        "mcp_kafka_operator_api_writes_total{kind=\"Deployment\",verb=\"apply\"}",
    ] {
        assert!(metrics.contains(expected), "{expected} not in:\n{metrics}");
    }

    // Deleting needs the finalizer's cleanup of the cluster-scoped binding.
    api.delete("orders", &Default::default()).await.unwrap();
    let crbs: Api<ClusterRoleBinding> = Api::all(admin.clone());
    let crb = format!("mcpkafka:{ns}:orders:auth-delegator");
    eventually("the server and its binding to be gone", || async {
        (api.get_opt("orders").await.ok()?.is_none() && crbs.get_opt(&crb).await.ok()?.is_none())
            .then_some(())
    })
    .await;
    assert!(
        !log_tail().contains("forbidden"),
        "the operator was refused something:\n{}",
        log_tail()
    );
    delete_namespace(&admin, &ns).await;
}
