//! The operator binary, run as a process with only the rules of its
//! ClusterRole (charts/mcp-kafka-operator/files/*-rules.yaml) through a
//! ServiceAccount token, does its whole job: leader election, every child
//! object (including the sidecar's auth-delegator binding and the clients'
//! custom-verb Roles, which RBAC lets it grant only because it holds them),
//! tokens, status, Events and cleanup. A missing rule fails this test.

mod support;

use std::process::Command;

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use mcpk_e2e::{Ground, eventually, unique_name};
use support::{
    OperatorProcess, apply_server, delete_namespace, server_manifest, servers, two_clients,
};

fn rules(file: &str) -> Vec<PolicyRule> {
    let path = mcpk_e2e::crds_dir()
        .parent()
        .unwrap()
        .join("charts/mcp-kafka-operator/files")
        .join(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

async fn operator_identity(client: &Client, ns: &str) -> String {
    let subject = Subject {
        kind: "ServiceAccount".into(),
        name: "operator".into(),
        namespace: Some(ns.into()),
        api_group: None,
    };
    let meta = |name: &str| ObjectMeta {
        name: Some(name.into()),
        ..Default::default()
    };
    let pp = PostParams::default();
    Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .create(
            &pp,
            &ServiceAccount {
                metadata: meta("operator"),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let cluster_role = format!("mcp-kafka-operator-{ns}");
    Api::<ClusterRole>::all(client.clone())
        .create(
            &pp,
            &ClusterRole {
                metadata: meta(&cluster_role),
                rules: Some(rules("operator-clusterrole-rules.yaml")),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let role_ref = |kind: &str, name: &str| RoleRef {
        api_group: Some("rbac.authorization.k8s.io".into()),
        kind: kind.into(),
        name: name.into(),
    };
    Api::<ClusterRoleBinding>::all(client.clone())
        .create(
            &pp,
            &ClusterRoleBinding {
                metadata: meta(&cluster_role),
                role_ref: role_ref("ClusterRole", &cluster_role),
                subjects: Some(vec![subject.clone()]),
            },
        )
        .await
        .unwrap();
    Api::<Role>::namespaced(client.clone(), ns)
        .create(
            &pp,
            &Role {
                metadata: meta("mcp-kafka-operator-lease"),
                rules: Some(rules("operator-lease-rules.yaml")),
            },
        )
        .await
        .unwrap();
    Api::<RoleBinding>::namespaced(client.clone(), ns)
        .create(
            &pp,
            &RoleBinding {
                metadata: meta("mcp-kafka-operator-lease"),
                role_ref: role_ref("Role", "mcp-kafka-operator-lease"),
                subjects: Some(vec![subject]),
            },
        )
        .await
        .unwrap();
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            expiration_seconds: Some(3600),
            ..Default::default()
        }),
        ..Default::default()
    };
    let answer = Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .create_token_request("operator", &pp, &request)
        .await
        .unwrap();
    answer
        .status
        .and_then(|s| s.token)
        .expect("a token for the operator")
}

/// The admin kubeconfig with its credentials replaced by `token`.
fn kubeconfig_with_token(ground: &Ground, token: &str) -> std::path::PathBuf {
    let mut kc = kube::config::Kubeconfig::read_from(&ground.kubeconfig).unwrap();
    for auth in &mut kc.auth_infos {
        auth.auth_info = Some(kube::config::AuthInfo {
            token: Some(token.to_string().into()),
            ..Default::default()
        });
    }
    let path = ground
        .log_dir
        .join(format!("{}.kubeconfig", unique_name("operator-sa")));
    let yaml = serde_yaml::to_string(&kc).unwrap();
    // serde skips the token when serializing (it is secret); put it back explicitly.
    let yaml = yaml.replace("user: {}", &format!("user:\n    token: {token}"));
    std::fs::write(&path, yaml).unwrap();
    path
}

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
