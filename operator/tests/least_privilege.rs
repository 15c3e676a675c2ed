//! The operator binary, run as a process with only the rules of its
//! ClusterRole (charts/mcp-kafka-operator/files/*-rules.yaml) through a
//! ServiceAccount token, does its whole job: leader election, every child
//! object (including the sidecar's auth-delegator binding and the clients'
//! custom-verb Roles, which RBAC lets it grant only because it holds them),
//! tokens, status, Events, following a policy change (its scope too), pruning a removed
//! client, removing everything behind a broken fence, and cleanup. A
//! missing rule fails this test.

mod support;

use std::process::Command;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, Role, RoleBinding};
use kube::Api;
use mcp_kafka_sidecar::config::SidecarConfig;
use mcp_kafka_sidecar::scope::Scope;
use mcp_kafka_sidecar::tool_name::ToolName;
use mcpk_e2e::{Ground, eventually};
use serde_json::json;
use support::{
    OperatorProcess, apply_policy, apply_server, delete_namespace, exists, kubeconfig_with_token,
    operator_identity, role_verbs, server_manifest, servers, two_clients, wait_condition,
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

    let crbs: Api<ClusterRoleBinding> = Api::all(admin.clone());
    let crb = format!("mcpkafka:{ns}:orders:auth-delegator");

    // A policy change: the exposed tools, the scope, the sidecar's config
    // and the clients' Roles follow (describe_topic is no longer allowed).
    let ceiling: Scope =
        serde_json::from_value(json!({"topics": {"allow": [{"name": "orders"}]}})).unwrap();
    apply_policy(
        &admin,
        &ns,
        json!({"allow": ["list_topics"], "scope": ceiling}),
    )
    .await;
    eventually("the policy's tools and scope in status", || async {
        let s = api.get("orders").await.ok()?.status?;
        (s.effective_tools == [ToolName::ListTopics]
            && s.effective_scope.as_ref() == Some(&ceiling))
        .then_some(())
    })
    .await;
    eventually("the Roles to follow the policy", || async {
        let agent = role_verbs(&admin, &ns, "orders-mcp-client-agent").await;
        let laptop = role_verbs(&admin, &ns, "orders-mcp-client-laptop").await;
        (agent == ["list_topics"] && laptop.is_empty()).then_some(())
    })
    .await;
    let cm = Api::<ConfigMap>::namespaced(admin.clone(), &ns)
        .get("orders-mcp-config")
        .await
        .unwrap();
    let config = SidecarConfig::parse(&cm.data.unwrap()["config.yaml"]).unwrap();
    assert_eq!(config.tools, [ToolName::ListTopics]);
    assert_eq!(config.scope, Some(ceiling));

    // Prune: the laptop client removed, replicas back to 1: its Role,
    // RoleBinding, ServiceAccount and token Secret go, and the PDB.
    let one_client =
        json!([{"name": "agent", "serviceAccountName": "agent", "tools": ["list_topics"]}]);
    apply_server(
        &admin,
        &ns,
        &server_manifest(
            "orders",
            "dev",
            &["list_topics", "describe_topic"],
            one_client,
            1,
        ),
    )
    .await;
    eventually("the removed client's objects to be deleted", || async {
        let gone = !exists::<Role>(&admin, &ns, "orders-mcp-client-laptop").await
            && !exists::<RoleBinding>(&admin, &ns, "orders-mcp-client-laptop").await
            && !exists::<ServiceAccount>(&admin, &ns, "orders-mcp-client-laptop").await
            && !exists::<Secret>(&admin, &ns, "orders-mcp-client-laptop-token").await
            && !exists::<PodDisruptionBudget>(&admin, &ns, "orders-mcp").await;
        gone.then_some(())
    })
    .await;
    assert!(exists::<Role>(&admin, &ns, "orders-mcp-client-agent").await);

    // The fence: the namespace relabelled to another environment, and
    // everything the server had is removed, the cluster-scoped binding too.
    let relabel = |environment: &str| {
        let out = ground.kubectl(
            &[
                "label",
                "namespace",
                &ns,
                &format!("mcpkafka.dev/environment={environment}"),
                "--overwrite",
            ],
            None,
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    relabel("prod");
    wait_condition(
        &api,
        "orders",
        "Reconciled",
        "False",
        Some("EnvironmentMismatch"),
    )
    .await;
    eventually("everything behind the fence to be removed", || async {
        let gone = !exists::<Deployment>(&admin, &ns, "orders-mcp").await
            && !exists::<Service>(&admin, &ns, "orders-mcp").await
            && !exists::<ConfigMap>(&admin, &ns, "orders-mcp-config").await
            && !exists::<NetworkPolicy>(&admin, &ns, "orders-mcp").await
            && !exists::<ServiceAccount>(&admin, &ns, "orders-mcp").await
            && !exists::<Role>(&admin, &ns, "orders-mcp-client-agent").await
            && !exists::<RoleBinding>(&admin, &ns, "orders-mcp-client-agent").await
            && crbs.get_opt(&crb).await.ok()?.is_none();
        gone.then_some(())
    })
    .await;

    // And back: deployed again.
    relabel("dev");
    wait_condition(&api, "orders", "Reconciled", "True", Some("Applied")).await;
    assert!(exists::<Deployment>(&admin, &ns, "orders-mcp").await);
    assert!(crbs.get_opt(&crb).await.unwrap().is_some());

    // Deleting needs the finalizer's cleanup of the cluster-scoped binding.
    api.delete("orders", &Default::default()).await.unwrap();
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
