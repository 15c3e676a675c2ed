//! The controller on the real apiserver and controller-manager of the test
//! ground: what it makes, how it follows changes, what it puts back and what
//! it removes. The servers' sidecars do not run here: `Ready` is driven by
//! writing what a kubelet would (see `set_available`).

mod support;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, Role, RoleBinding};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use mcp_kafka_operator::crd::McpKafkaServer;
use mcp_kafka_sidecar::config::SidecarConfig;
use mcp_kafka_sidecar::tool_name::ToolName;
use mcpk_e2e::{Ground, eventually};
use serde_json::{Value, json};
use support::{
    Operator, apply_policy, apply_server, delete_namespace, exists, role_verbs, server_manifest,
    servers, wait_condition,
};

/// Makes `available` replicas of a server's Deployment available, as the
/// kubelet and the deployment controller would. On the ground without a
/// node nothing else writes the Deployment's status, so the test does. With
/// the node the real deployment and replicaset controllers run (and would
/// undo such a write), but this namespace asks for no Pods, so its Pods stay
/// Pending: the test writes their Ready condition as a kubelet would, and
/// the controllers derive the Deployment's availability from them.
async fn set_available(client: &Client, ns: &str, name: &str, available: i32) {
    if !Ground::get().has_node() {
        let status = json!({"status": {"replicas": 2, "availableReplicas": available, "readyReplicas": available, "observedGeneration": 1}});
        Api::<Deployment>::namespaced(client.clone(), ns)
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .expect("writing the Deployment's status");
        return;
    }
    let deployment = Api::<Deployment>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .expect("reading the Deployment");
    let selector = deployment
        .spec
        .and_then(|s| s.selector.match_labels)
        .expect("the Deployment selects its Pods by labels")
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let pods = Api::<Pod>::namespaced(client.clone(), ns);
    let listed = eventually("the Deployment's Pods to exist", || async {
        let list = pods
            .list(&ListParams::default().labels(&selector))
            .await
            .ok()?;
        let live: Vec<Pod> = list
            .items
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect();
        (live.len() >= available as usize).then_some(live)
    })
    .await;
    for (i, pod) in listed.iter().enumerate() {
        let ready = if (i as i32) < available {
            "True"
        } else {
            "False"
        };
        let status = json!({"status": {"phase": "Running", "conditions": [
            {"type": "Ready", "status": ready},
            {"type": "ContainersReady", "status": ready},
        ]}});
        pods.patch_status(
            &pod.name_any(),
            &PatchParams::default(),
            &Patch::Strategic(&status),
        )
        .await
        .expect("writing a Pod's Ready condition");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_becomes_owned_objects_that_follow_its_spec_and_policy() {
    let ground = Ground::get();
    Operator::shared();
    let client = ground.kube_admin().await;
    let ns = ground.namespace("reconcile", Some("dev"));
    let api = servers(&client, &ns);
    let clients = json!([
        {"name": "support", "serviceAccountName": "support-agent", "tools": ["list_topics", "create_topic"]},
        {"name": "laptop", "issueToken": {"expirationSeconds": 3600}, "tools": ["describe_topic"]},
    ]);
    apply_server(
        &client,
        &ns,
        &server_manifest(
            "orders",
            "dev",
            &["list_topics", "describe_topic", "create_topic"],
            clients,
            2,
        ),
    )
    .await;

    // Created: every object, owned by the server.
    let server = wait_condition(&api, "orders", "Reconciled", "True", Some("Applied")).await;
    let uid = server.uid().unwrap();
    let status = server.status.clone().unwrap();
    assert_eq!(
        status.effective_tools,
        vec![ToolName::ListTopics, ToolName::DescribeTopic],
        "default policy: read-only"
    );
    assert_eq!(status.denied_tools.len(), 1);
    assert!(
        status.denied_tools[0]
            .reason
            .contains("operator's default policy"),
        "{:?}",
        status.denied_tools
    );
    assert_eq!(
        status.endpoint.as_deref(),
        Some(format!("http://orders-mcp.{ns}.svc.cluster.local:8090/mcp").as_str())
    );
    assert_eq!(
        status.token_secrets.get("laptop").map(String::as_str),
        Some("orders-mcp-client-laptop-token")
    );

    let deployment = Api::<Deployment>::namespaced(client.clone(), &ns)
        .get("orders-mcp")
        .await
        .expect("the Deployment");
    let owner = &deployment.owner_references()[0];
    assert_eq!(
        (owner.uid.as_str(), owner.controller),
        (uid.as_str(), Some(true))
    );
    let owned_by_server =
        |refs: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference]| {
            refs.iter().any(|r| r.uid == uid)
        };
    let svc = Api::<Service>::namespaced(client.clone(), &ns)
        .get("orders-mcp")
        .await
        .unwrap();
    assert!(owned_by_server(svc.owner_references()));
    let cm = Api::<ConfigMap>::namespaced(client.clone(), &ns)
        .get("orders-mcp-config")
        .await
        .unwrap();
    assert!(owned_by_server(cm.owner_references()));
    let config = SidecarConfig::parse(&cm.data.unwrap()["config.yaml"])
        .expect("the sidecar accepts the rendered config");
    assert_eq!(
        config.tools,
        vec![ToolName::ListTopics, ToolName::DescribeTopic]
    );
    for (kind, present) in [
        (
            "ServiceAccount orders-mcp",
            exists::<ServiceAccount>(&client, &ns, "orders-mcp").await,
        ),
        (
            "ServiceAccount laptop",
            exists::<ServiceAccount>(&client, &ns, "orders-mcp-client-laptop").await,
        ),
        (
            "RoleBinding support",
            exists::<RoleBinding>(&client, &ns, "orders-mcp-client-support").await,
        ),
        (
            "Secret laptop token",
            exists::<Secret>(&client, &ns, "orders-mcp-client-laptop-token").await,
        ),
        (
            "NetworkPolicy",
            exists::<NetworkPolicy>(&client, &ns, "orders-mcp").await,
        ),
        (
            "PodDisruptionBudget",
            exists::<PodDisruptionBudget>(&client, &ns, "orders-mcp").await,
        ),
    ] {
        assert!(present, "{kind} missing");
    }
    assert_eq!(
        role_verbs(&client, &ns, "orders-mcp-client-support").await,
        ["list_topics"],
        "create_topic is not exposed"
    );
    assert_eq!(
        role_verbs(&client, &ns, "orders-mcp-client-laptop").await,
        ["describe_topic"]
    );
    let crbs: Api<ClusterRoleBinding> = Api::all(client.clone());
    let crb_name = format!("mcpkafka:{ns}:orders:auth-delegator");
    assert!(
        crbs.get_opt(&crb_name).await.unwrap().is_some(),
        "the sidecar's auth-delegator binding"
    );

    // Ready follows the Deployment both ways.
    wait_condition(
        &api,
        "orders",
        "Ready",
        "False",
        Some("DeploymentUnavailable"),
    )
    .await;
    set_available(&client, &ns, "orders-mcp", 2).await;
    wait_condition(&api, "orders", "Ready", "True", Some("Available")).await;
    set_available(&client, &ns, "orders-mcp", 0).await;
    wait_condition(
        &api,
        "orders",
        "Ready",
        "False",
        Some("DeploymentUnavailable"),
    )
    .await;

    // Drift is put back: a hand edit of the Deployment is undone.
    let deployments = Api::<Deployment>::namespaced(client.clone(), &ns);
    deployments
        .patch(
            "orders-mcp",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"replicas": 7}})),
        )
        .await
        .expect("editing the Deployment by hand");
    eventually("the hand edit to be undone", || async {
        let d = deployments.get("orders-mcp").await.ok()?;
        (d.spec?.replicas == Some(2)).then_some(())
    })
    .await;

    // A policy change: tools and Roles follow.
    apply_policy(
        &client,
        &ns,
        json!({"allow": ["all"], "deny": ["describe_topic"]}),
    )
    .await;
    eventually("create_topic exposed by the new policy", || async {
        let s = api.get("orders").await.ok()?;
        (s.status?.effective_tools == vec![ToolName::ListTopics, ToolName::CreateTopic])
            .then_some(())
    })
    .await;
    assert_eq!(
        role_verbs(&client, &ns, "orders-mcp-client-support").await,
        ["list_topics", "create_topic"]
    );
    assert!(
        role_verbs(&client, &ns, "orders-mcp-client-laptop")
            .await
            .is_empty(),
        "describe_topic is denied now"
    );

    // A removed client loses its Role, RoleBinding, ServiceAccount and Secret; replicas 1 drops the PDB.
    let one_client = json!([{"name": "support", "serviceAccountName": "support-agent", "tools": ["list_topics"]}]);
    apply_server(
        &client,
        &ns,
        &server_manifest(
            "orders",
            "dev",
            &["list_topics", "describe_topic", "create_topic"],
            one_client,
            1,
        ),
    )
    .await;
    wait_condition(&api, "orders", "Reconciled", "True", Some("Applied")).await;
    eventually("the laptop client's objects to be deleted", || async {
        let gone = !exists::<Role>(&client, &ns, "orders-mcp-client-laptop").await
            && !exists::<RoleBinding>(&client, &ns, "orders-mcp-client-laptop").await
            && !exists::<ServiceAccount>(&client, &ns, "orders-mcp-client-laptop").await
            && !exists::<Secret>(&client, &ns, "orders-mcp-client-laptop-token").await
            && !exists::<PodDisruptionBudget>(&client, &ns, "orders-mcp").await;
        gone.then_some(())
    })
    .await;

    // Delete the server: every object goes (owner references + the finalizer).
    api.delete("orders", &Default::default())
        .await
        .expect("deleting the server");
    eventually(
        "every object of the server to be garbage-collected",
        || async {
            let gone = api.get_opt("orders").await.ok()?.is_none()
                && !exists::<Deployment>(&client, &ns, "orders-mcp").await
                && !exists::<Service>(&client, &ns, "orders-mcp").await
                && !exists::<ConfigMap>(&client, &ns, "orders-mcp-config").await
                && !exists::<ServiceAccount>(&client, &ns, "orders-mcp").await
                && !exists::<Role>(&client, &ns, "orders-mcp-client-support").await
                && !exists::<NetworkPolicy>(&client, &ns, "orders-mcp").await
                && crbs.get_opt(&crb_name).await.ok()?.is_none();
            gone.then_some(())
        },
    )
    .await;
    delete_namespace(&client, &ns).await;
}

/// Server-side apply puts back the fields the operator sets but keeps other
/// managers' fields: a container, a volume and an env var added by hand
/// would stay in a pod that mounts the Kafka credentials. The operator
/// removes them, says so in a Warning Event, and then writes nothing more.
#[tokio::test(flavor = "multi_thread")]
async fn containers_env_and_volumes_added_by_hand_are_removed_from_the_pod_template() {
    let ground = Ground::get();
    Operator::shared();
    let client = ground.kube_admin().await;
    let ns = ground.namespace("template-drift", Some("dev"));
    let api = servers(&client, &ns);
    apply_server(
        &client,
        &ns,
        &server_manifest("orders", "dev", &["list_topics"], json!([]), 1),
    )
    .await;
    wait_condition(&api, "orders", "Reconciled", "True", Some("Applied")).await;
    let deployments = Api::<Deployment>::namespaced(client.clone(), &ns);
    let pod_spec = |d: &Deployment| d.spec.clone().unwrap().template.spec.unwrap();

    // A second container, a volume and an env var in the sidecar's own
    // container, applied by another field manager (one write, so that what
    // the operator sees and removes is all of it at once).
    let extra = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "orders-mcp"},
        "spec": {"template": {"spec": {
            "containers": [
                {"name": "sidecar", "env": [{"name": "EXTRA", "value": "1"}]},
                {"name": "debug", "image": "busybox", "volumeMounts": [{"name": "loot", "mountPath": "/loot"}]}
            ],
            "volumes": [{"name": "loot", "emptyDir": {}}]
        }}}
    });
    let edited = deployments
        .patch(
            "orders-mcp",
            &PatchParams::apply("hand-apply"),
            &Patch::Apply(&extra),
        )
        .await
        .expect("applying a container, an env var and a volume by hand");
    let edited = pod_spec(&edited);
    assert_eq!(edited.containers.len(), 2, "the hand edit took: {edited:?}");
    assert!(
        edited.containers[0]
            .env
            .iter()
            .flatten()
            .any(|e| e.name == "EXTRA"),
        "{edited:?}"
    );

    let restored = eventually("the hand-added entries to be removed", || async {
        let spec = pod_spec(&deployments.get("orders-mcp").await.ok()?);
        let env: Vec<String> = spec.containers[0]
            .env
            .iter()
            .flatten()
            .map(|e| e.name.clone())
            .collect();
        let volumes: Vec<String> = spec
            .volumes
            .iter()
            .flatten()
            .map(|v| v.name.clone())
            .collect();
        (spec.containers.len() == 1
            && !env.contains(&"EXTRA".into())
            && !volumes.contains(&"loot".into()))
        .then_some(spec)
    })
    .await;
    let sidecar = &restored.containers[0];
    assert_eq!(sidecar.name, "sidecar");
    assert!(
        sidecar
            .env
            .iter()
            .flatten()
            .any(|e| e.name == "MALLOC_ARENA_MAX"),
        "the operator's own env var stays: {:?}",
        sidecar.env
    );
    assert_eq!(
        restored
            .volumes
            .iter()
            .flatten()
            .map(|v| v.name.as_str())
            .collect::<Vec<_>>(),
        ["config"],
        "the operator's own volume stays"
    );

    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), &ns);
    let event = eventually("a Warning Event naming what was removed", || async {
        let list = events.list(&Default::default()).await.ok()?;
        list.items.into_iter().find(|e| {
            e.reason.as_deref() == Some("PodTemplateDrift")
                && e.type_.as_deref() == Some("Warning")
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("orders")
        })
    })
    .await;
    let note = event.note.unwrap_or_default();
    assert!(note.contains("Deployment orders-mcp"), "{note}");
    for removed in [
        "spec.containers[name=debug]",
        "spec.containers[name=sidecar].env[name=EXTRA]",
        "spec.volumes[name=loot]",
    ] {
        assert!(note.contains(removed), "{removed} not in: {note}");
    }

    // Restored, it stays so: no further write to the Deployment.
    let mark = ground.audit_mark();
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    let writes = ground.audit_writes_since(mark, |e| {
        e["objectRef"]["namespace"] == ns.as_str()
            && e["objectRef"]["resource"] == "deployments"
            && e["objectRef"]["subresource"].is_null()
    });
    assert!(
        writes.is_empty(),
        "the Deployment was written again: {writes:?}"
    );
    delete_namespace(&client, &ns).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_namespace_of_another_environment_gets_nothing_until_relabelled() {
    let ground = Ground::get();
    Operator::shared();
    let client = ground.kube_admin().await;
    let ns = ground.namespace("fence", Some("prod"));
    let api = servers(&client, &ns);
    apply_server(
        &client,
        &ns,
        &server_manifest("payments", "dev", &["list_topics"], json!([]), 1),
    )
    .await;

    let s = wait_condition(
        &api,
        "payments",
        "Ready",
        "False",
        Some("EnvironmentMismatch"),
    )
    .await;
    let fenced = support_condition(&s, "EnvironmentFenced");
    assert_eq!(
        (fenced.0.as_str(), fenced.1.as_str()),
        ("False", "EnvironmentMismatch")
    );
    assert!(
        fenced
            .2
            .contains(r#"labelled mcpkafka.dev/environment="prod""#),
        "{}",
        fenced.2
    );
    assert!(
        !exists::<Deployment>(&client, &ns, "payments-mcp").await,
        "nothing is deployed across a fence"
    );
    // A person sees it in `kubectl describe mks`: a Warning Event on the server.
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), &ns);
    eventually("a Warning Event about the fence", || async {
        let list = events.list(&Default::default()).await.ok()?;
        list.items.into_iter().find(|e| {
            e.reason.as_deref() == Some("EnvironmentMismatch")
                && e.type_.as_deref() == Some("Warning")
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("payments")
        })
    })
    .await;
    assert!(!exists::<ConfigMap>(&client, &ns, "payments-mcp-config").await);

    // The label is what counts: relabelling the namespace deploys it (namespace watch).
    let out = ground.kubectl(
        &[
            "label",
            "namespace",
            &ns,
            "mcpkafka.dev/environment=dev",
            "--overwrite",
        ],
        None,
    );
    assert!(out.status.success());
    wait_condition(&api, "payments", "Reconciled", "True", Some("Applied")).await;
    assert!(exists::<Deployment>(&client, &ns, "payments-mcp").await);

    // And back: what was deployed is removed.
    let out = ground.kubectl(
        &[
            "label",
            "namespace",
            &ns,
            "mcpkafka.dev/environment=prod",
            "--overwrite",
        ],
        None,
    );
    assert!(out.status.success());
    wait_condition(
        &api,
        "payments",
        "Reconciled",
        "False",
        Some("EnvironmentMismatch"),
    )
    .await;
    eventually("the Deployment to be removed behind the fence", || async {
        (!exists::<Deployment>(&client, &ns, "payments-mcp").await).then_some(())
    })
    .await;
    delete_namespace(&client, &ns).await;
}

fn support_condition(s: &McpKafkaServer, type_: &str) -> (String, String, String) {
    let c = mcp_kafka_operator::status::find(s.status.as_ref().unwrap(), type_).unwrap();
    (c.status.clone(), c.reason.clone(), c.message.clone())
}

#[tokio::test(flavor = "multi_thread")]
async fn prod_mutations_appear_only_inside_a_break_glass_window() {
    let ground = Ground::get();
    Operator::shared();
    let client = ground.kube_admin().await;
    let ns = ground.namespace("breakglass", Some("prod"));
    let api = servers(&client, &ns);
    apply_policy(&client, &ns, json!({"allow": ["all"]})).await;
    apply_server(
        &client,
        &ns,
        &server_manifest(
            "ledger",
            "prod",
            &["list_topics", "create_partitions"],
            json!([]),
            1,
        ),
    )
    .await;
    let s = wait_condition(&api, "ledger", "Reconciled", "True", None).await;
    assert_eq!(
        s.status.as_ref().unwrap().effective_tools,
        vec![ToolName::ListTopics],
        "no mutation in prod without a window"
    );

    // A window of a few seconds opens exactly the named tool, then closes by itself.
    let until =
        k8s_openapi::jiff::Timestamp::now() + k8s_openapi::jiff::SignedDuration::from_secs(8);
    apply_policy(&client, &ns, json!({"allow": ["all"], "breakGlass": {"until": until.to_string(), "reason": "INC-1", "allow": ["create_partitions"]}})).await;
    eventually("create_partitions inside the window", || async {
        let s = api.get("ledger").await.ok()?;
        (s.status?.effective_tools == vec![ToolName::ListTopics, ToolName::CreatePartitions])
            .then_some(())
    })
    .await;
    // The sidecar gets the window too, and enforces it itself.
    let cm = Api::<ConfigMap>::namespaced(client.clone(), &ns)
        .get("ledger-mcp-config")
        .await
        .unwrap();
    let config = SidecarConfig::parse(&cm.data.unwrap()["config.yaml"]).unwrap();
    assert_eq!(
        config.mutations,
        Some(mcp_kafka_sidecar::config::MutationRule::BreakGlass)
    );
    let window = config
        .break_glass
        .expect("the open window is in the sidecar's config");
    assert_eq!(
        (window.tools, window.until),
        (vec![ToolName::CreatePartitions], until)
    );
    eventually(
        "create_partitions gone after the window (requeue at its end)",
        || async {
            let s = api.get("ledger").await.ok()?;
            (s.status?.effective_tools == vec![ToolName::ListTopics]).then_some(())
        },
    )
    .await;
    assert!(k8s_openapi::jiff::Timestamp::now() >= until);
    delete_namespace(&client, &ns).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn issued_tokens_authorize_exactly_the_clients_tools() {
    let ground = Ground::get();
    Operator::shared();
    let client = ground.kube_admin().await;
    let ns = ground.namespace("tokens", Some("dev"));
    let api = servers(&client, &ns);
    apply_policy(&client, &ns, json!({"allow": ["all"]})).await;
    let clients = json!([{"name": "laptop", "issueToken": {"expirationSeconds": 3600}, "tools": ["list_topics", "create_topic"]}]);
    apply_server(
        &client,
        &ns,
        &server_manifest(
            "orders",
            "dev",
            &["list_topics", "describe_topic", "create_topic"],
            clients,
            1,
        ),
    )
    .await;
    wait_condition(&api, "orders", "Reconciled", "True", Some("Applied")).await;

    let secret = Api::<Secret>::namespaced(client.clone(), &ns)
        .get("orders-mcp-client-laptop-token")
        .await
        .unwrap();
    let from_secret = String::from_utf8(secret.data.unwrap()["token"].0.clone()).unwrap();

    // The `token` subcommand mints another one for the same client.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mcp-kafka-operator"))
        .args([
            "token",
            "orders",
            "--client",
            "laptop",
            "--namespace",
            &ns,
            "--duration",
            "600",
        ])
        .env("KUBECONFIG", &ground.kubeconfig)
        .output()
        .expect("running the token subcommand");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value = serde_json::from_slice(&out.stdout).expect("JSON client config");
    let header = printed["headers"]["Authorization"].as_str().unwrap();
    assert_eq!(
        printed["mcpServers"]["orders"]["headers"]["Authorization"],
        header
    );
    assert_eq!(
        printed["url"],
        format!("http://orders-mcp.{ns}.svc.cluster.local:8090/mcp")
    );
    let from_command = header.strip_prefix("Bearer ").unwrap().to_string();

    let audience = format!("mcpkafka.dev/{ns}/orders");
    for token in [from_secret, from_command] {
        let user = token_review(&client, &token, &audience)
            .await
            .expect("the token passes TokenReview for the server's audience");
        assert_eq!(
            user,
            format!("system:serviceaccount:{ns}:orders-mcp-client-laptop")
        );
        assert!(
            token_review(&client, &token, "some-other-service")
                .await
                .is_none(),
            "another audience is refused"
        );
        assert!(can(&client, &user, &ns, "orders", "list_topics").await);
        assert!(can(&client, &user, &ns, "orders", "create_topic").await);
        assert!(
            !can(&client, &user, &ns, "orders", "describe_topic").await,
            "not the client's tool"
        );
        assert!(
            !can(&client, &user, &ns, "orders", "delete_topic").await,
            "not requested at all"
        );
        assert!(
            !can(&client, &user, &ns, "other-server", "list_topics").await,
            "another server"
        );
    }

    // A client that is not there is a clear error.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mcp-kafka-operator"))
        .args(["token", "orders", "--client", "nobody", "--namespace", &ns])
        .env("KUBECONFIG", &ground.kubeconfig)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("has no client \"nobody\" (clients: laptop)"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    delete_namespace(&client, &ns).await;
}

/// A referenced TLS Secret deleted from a running server: the operator keeps
/// the Deployment (a pod without its Secret would not start anyway), and
/// status goes on describing what serves while saying what is wrong.
#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_secret_keeps_what_runs_described_and_marks_the_server_degraded() {
    let ground = Ground::get();
    Operator::shared();
    let client = ground.kube_admin().await;
    let ns = ground.namespace("secret-gone", Some("dev"));
    let api = servers(&client, &ns);
    let secrets = Api::<Secret>::namespaced(client.clone(), &ns);
    let ca = || Secret {
        metadata: kube::api::ObjectMeta {
            name: Some("kafka-ca".into()),
            ..Default::default()
        },
        string_data: Some([("ca.crt".to_string(), "not a real CA".to_string())].into()),
        ..Default::default()
    };
    secrets
        .create(&PostParams::default(), &ca())
        .await
        .expect("creating the CA Secret");
    let mut manifest = server_manifest(
        "orders",
        "dev",
        &["list_topics", "describe_topic"],
        support::two_clients(),
        1,
    );
    manifest["spec"]["kafka"]["tls"] =
        json!({"caSecretRef": {"name": "kafka-ca", "key": "ca.crt"}});
    apply_server(&client, &ns, &manifest).await;
    wait_condition(&api, "orders", "Reconciled", "True", Some("Applied")).await;
    set_available(&client, &ns, "orders-mcp", 1).await;
    let running = wait_condition(&api, "orders", "Ready", "True", Some("Available"))
        .await
        .status
        .unwrap();
    assert_eq!(
        running.effective_tools,
        vec![ToolName::ListTopics, ToolName::DescribeTopic]
    );

    // Those Secrets are not watched: touching the server makes the operator
    // look now rather than at its next resync.
    let touch = |n: u32| {
        let api = api.clone();
        async move {
            api.patch(
                "orders",
                &PatchParams::default(),
                &Patch::Merge(&json!({"metadata": {"annotations": {"test/touch": n.to_string()}}})),
            )
            .await
            .expect("touching the server");
        }
    };
    secrets
        .delete("kafka-ca", &Default::default())
        .await
        .expect("deleting the CA Secret");
    touch(1).await;
    let s = wait_condition(
        &api,
        "orders",
        "Reconciled",
        "False",
        Some("SecretNotFound"),
    )
    .await;
    let gone = s.status.clone().unwrap();
    assert_eq!(
        gone.effective_tools, running.effective_tools,
        "the tools of the Deployment still running: {gone:#?}"
    );
    assert_eq!(gone.effective_tool_count, running.effective_tool_count);
    assert_eq!(gone.endpoint, running.endpoint);
    assert!(gone.endpoint.is_some());
    assert_eq!(gone.token_secrets, running.token_secrets);
    assert!(gone.token_secrets.contains_key("laptop"));
    let degraded = support_condition(&s, "Degraded");
    assert_eq!(
        (degraded.0.as_str(), degraded.1.as_str()),
        ("True", "SecretNotFound"),
        "{degraded:?}"
    );
    assert!(degraded.2.contains("kafka-ca"), "{}", degraded.2);
    let ready = support_condition(&s, "Ready");
    assert_eq!(
        (ready.0.as_str(), ready.1.as_str()),
        ("True", "Available"),
        "Ready follows the Deployment that still runs: {ready:?}"
    );
    assert!(exists::<Deployment>(&client, &ns, "orders-mcp").await);
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), &ns);
    eventually("a Warning Event naming the missing Secret", || async {
        let list = events.list(&Default::default()).await.ok()?;
        list.items.into_iter().find(|e| {
            e.reason.as_deref() == Some("SecretNotFound")
                && e.type_.as_deref() == Some("Warning")
                && e.note.as_deref().is_some_and(|n| n.contains("kafka-ca"))
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("orders")
        })
    })
    .await;

    // The Secret back: reconciled again, nothing degraded.
    secrets
        .create(&PostParams::default(), &ca())
        .await
        .expect("recreating the CA Secret");
    touch(2).await;
    wait_condition(&api, "orders", "Degraded", "False", Some("AsExpected")).await;
    let back = wait_condition(&api, "orders", "Reconciled", "True", Some("Applied")).await;
    assert_eq!(
        back.status.unwrap().effective_tools,
        running.effective_tools
    );
    delete_namespace(&client, &ns).await;
}

/// The username TokenReview reports for `token` with `audience`, if authenticated.
async fn token_review(client: &Client, token: &str, audience: &str) -> Option<String> {
    let review = TokenReview {
        spec: TokenReviewSpec {
            token: token.into(),
            audiences: Some(vec![audience.into()]),
        },
        ..Default::default()
    };
    let answer = Api::<TokenReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .expect("TokenReview");
    let status = answer.status?;
    if status.authenticated == Some(true) {
        status.user?.username
    } else {
        None
    }
}

async fn can(client: &Client, user: &str, ns: &str, server: &str, tool: &str) -> bool {
    let groups = vec![
        "system:serviceaccounts".to_string(),
        format!("system:serviceaccounts:{ns}"),
        "system:authenticated".into(),
    ];
    can_as(client, user, groups, ns, server, tool).await
}

/// The SubjectAccessReview the sidecar asks for a caller with these groups.
async fn can_as(
    client: &Client,
    user: &str,
    groups: Vec<String>,
    ns: &str,
    server: &str,
    tool: &str,
) -> bool {
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(user.into()),
            groups: Some(groups),
            resource_attributes: Some(ResourceAttributes {
                group: Some("mcpkafka.dev".into()),
                resource: Some("mcpkafkaservers".into()),
                subresource: Some("tools".into()),
                name: Some(server.into()),
                namespace: Some(ns.into()),
                verb: Some(tool.into()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let answer = Api::<SubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .expect("SAR");
    answer.status.is_some_and(|s| s.allowed)
}

/// The namespace policy's ceiling narrows what a server asks for, and a
/// client's own scope narrows the server's: status says what each gets and
/// what was cut, the sidecar's config holds the same, and a change of the
/// ceiling follows through to both.
#[tokio::test(flavor = "multi_thread")]
async fn a_policy_ceiling_narrows_the_servers_scope_and_a_clients_narrows_it_again() {
    use mcp_kafka_sidecar::scope::{ClientScope, NamePattern, NameScope, Scope};
    let ground = Ground::get();
    Operator::shared();
    let client = ground.kube_admin().await;
    let ns = ground.namespace("scope", Some("dev"));
    let api = servers(&client, &ns);
    let prefix = |name: &str| json!({"name": name, "patternType": "prefix"});
    apply_policy(
        &client,
        &ns,
        json!({"allow": ["observe"], "scope": {
            "topics": {"allow": [prefix("team-a.")], "deny": [prefix("team-a.internal")]},
            "groups": {"allow": [prefix("team-a-")]},
        }}),
    )
    .await;
    let mut manifest = server_manifest(
        "orders",
        "dev",
        &["list_topics"],
        json!([
            {"name": "reporting", "serviceAccountName": "reporting", "tools": ["list_topics"],
             "scope": {"topics": {"allow": [prefix("team-a.reports"), prefix("other.")]}}},
            {"name": "plain", "serviceAccountName": "plain", "tools": ["list_topics"]},
        ]),
        1,
    );
    manifest["spec"]["scope"] = json!({
        "topics": {"allow": [prefix("team-"), {"name": "payments"}]},
        "groups": {"allow": [prefix("team-a-orders-")]},
    });
    apply_server(&client, &ns, &manifest).await;

    let policy = format!("the scope of McpToolPolicy {ns}/default");
    let internal = NamePattern::prefix("team-a.internal");
    let narrowed = Scope {
        topics: NameScope {
            allow: vec![NamePattern::prefix("team-a.")],
            deny: vec![internal.clone()],
        },
        groups: NameScope {
            allow: vec![NamePattern::prefix("team-a-orders-")],
            deny: vec![],
        },
    };
    // The policy may reach the operator's cache after the server: wait for its scope.
    let status = eventually("the policy's ceiling in status", || async {
        let s = api.get("orders").await.ok()?;
        let st = s.status?;
        (st.effective_scope.as_ref() == Some(&narrowed)).then_some(st)
    })
    .await;
    assert_eq!(
        status.scope_cuts,
        vec![
            format!(r#"topics prefix "team-": narrowed to prefix "team-a." by {policy}"#),
            format!(r#"topics prefix "team-": {policy} denies prefix "team-a.internal""#),
            format!(r#"topics literal "payments": outside {policy}"#),
            r#"client reporting: topics prefix "other.": outside the server's scope"#.to_string(),
        ]
    );
    let reporting = ClientScope {
        username: format!("system:serviceaccount:{ns}:reporting"),
        scope: Scope {
            topics: NameScope {
                allow: vec![NamePattern::prefix("team-a.reports")],
                deny: vec![internal.clone()],
            },
            groups: NameScope::default(),
        },
    };
    assert_eq!(status.client_scopes, vec![reporting.clone()]);
    let applied = mcp_kafka_operator::status::find(&status, "PolicyApplied").unwrap();
    assert_eq!(applied.reason, "ScopeNarrowed", "{}", applied.message);
    assert!(
        applied.message.contains("4 scope request(s) cut"),
        "{}",
        applied.message
    );

    // The sidecar's config holds the same scopes, keyed by the client's username.
    let config_of = || async {
        let cm = Api::<ConfigMap>::namespaced(client.clone(), &ns)
            .get("orders-mcp-config")
            .await
            .expect("the ConfigMap");
        SidecarConfig::parse(&cm.data.unwrap()["config.yaml"])
            .expect("the sidecar accepts the rendered config")
    };
    let config = config_of().await;
    assert_eq!(config.scope.as_ref(), Some(&narrowed));
    assert_eq!(config.client_scopes, vec![reporting]);
    assert_eq!(
        config.scope_for(Some(&format!("system:serviceaccount:{ns}:plain"))),
        Some(&narrowed),
        "a client without a scope of its own gets the server's"
    );

    // A person sees the cuts in `kubectl describe`.
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), &ns);
    eventually("a ScopeNarrowed Warning", || async {
        let list = events.list(&Default::default()).await.ok()?;
        list.items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("ScopeNarrowed"))
            .filter(|e| {
                e.type_.as_deref() == Some("Warning")
                    && e.note.as_deref().is_some_and(|n| n.contains("payments"))
            })
    })
    .await;

    // The ceiling widens: the server gets what it asked for, nothing is cut,
    // and the config follows.
    apply_policy(
        &client,
        &ns,
        json!({"allow": ["observe"], "scope": {
            "topics": {"allow": [prefix("team-"), {"name": "payments"}]},
            "groups": {"allow": [prefix("team-a-")]},
        }}),
    )
    .await;
    let asked = Scope {
        topics: NameScope {
            allow: vec![
                NamePattern::literal("payments"),
                NamePattern::prefix("team-"),
            ],
            deny: vec![],
        },
        groups: narrowed.groups.clone(),
    };
    let status = eventually("the wider ceiling in status", || async {
        let s = api.get("orders").await.ok()?;
        let st = s.status?;
        (st.effective_scope.as_ref() == Some(&asked)).then_some(st)
    })
    .await;
    assert_eq!(
        status.scope_cuts,
        vec![r#"client reporting: topics prefix "other.": outside the server's scope"#]
    );
    assert_eq!(config_of().await.scope.as_ref(), Some(&asked));

    // The server drops its scope and the policy its ceiling: unscoped again,
    // and the config has no scope at all.
    let mut unscoped = manifest.clone();
    unscoped["spec"].as_object_mut().unwrap().remove("scope");
    unscoped["spec"]["clients"] =
        json!([{"name": "plain", "serviceAccountName": "plain", "tools": ["list_topics"]}]);
    apply_server(&client, &ns, &unscoped).await;
    apply_policy(&client, &ns, json!({"allow": ["observe"]})).await;
    let status = eventually("no scope in status", || async {
        let s = api.get("orders").await.ok()?;
        let st = s.status?;
        (st.effective_scope.is_none() && st.client_scopes.is_empty()).then_some(st)
    })
    .await;
    assert!(status.scope_cuts.is_empty(), "{:?}", status.scope_cuts);
    let config = config_of().await;
    assert_eq!((config.scope, config.client_scopes), (None, vec![]));
    delete_namespace(&client, &ns).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_path_goes_into_the_config_and_status_says_it_is_wired() {
    let ground = Ground::get();
    Operator::shared();
    let client = ground.kube_admin().await;
    let ns = ground.namespace("reconcile-jobs", Some("dev"));
    let api = servers(&client, &ns);
    let mut manifest = server_manifest("orders", "dev", &["list_topics"], json!([]), 1);
    manifest["spec"]["jobs"] = json!({"requestTopic": "orders.jobs", "replyTopics": ["orders.replies"],
                                      "deadLetterTopic": "orders.dead", "journalTopic": "orders.journal",
                                      "maxInFlight": 4});
    apply_server(&client, &ns, &manifest).await;
    let server = wait_condition(&api, "orders", "Reconciled", "True", Some("Applied")).await;
    let jobs = server.status.unwrap().jobs.expect("status.jobs");
    assert_eq!(jobs.request_topic, "orders.jobs");
    assert_eq!(jobs.reply_topics, ["orders.replies"]);
    assert_eq!(jobs.group, format!("mcp-kafka-sidecar.{ns}.orders.jobs"));
    let cm = Api::<ConfigMap>::namespaced(client.clone(), &ns)
        .get("orders-mcp-config")
        .await
        .unwrap();
    let config = SidecarConfig::parse(&cm.data.unwrap()["config.yaml"])
        .expect("the sidecar accepts the rendered config");
    assert_eq!(config.jobs.map(|j| j.max_in_flight), Some(4));

    // Without spec.jobs the sidecar gets no job path, and status says so.
    manifest["spec"].as_object_mut().unwrap().remove("jobs");
    apply_server(&client, &ns, &manifest).await;
    eventually("status.jobs to go", || {
        let api = api.clone();
        async move {
            let s = api.get("orders").await.ok()?;
            s.status.filter(|st| st.jobs.is_none()).map(|_| ())
        }
    })
    .await;
    delete_namespace(&client, &ns).await;
}

/// A server with sign-in: the sidecar's config names the identity provider
/// and accepts the public host, status shows the Protected Resource
/// Metadata URL, and the provider's users and groups are RoleBinding
/// subjects that RBAC authorizes per tool for the names the sidecar asks
/// about (prefix + claim). Without a provider to use (no issuer, and the
/// operator sets no default) the server still serves, Degraded says why,
/// and status shows no sign-in.
#[tokio::test(flavor = "multi_thread")]
async fn sign_in_is_wired_into_the_config_and_status_and_its_people_into_rbac() {
    let ground = Ground::get();
    Operator::shared();
    let client = ground.kube_admin().await;
    let ns = ground.namespace("reconcile-oidc", Some("dev"));
    let api = servers(&client, &ns);
    let mut manifest = server_manifest(
        "orders",
        "dev",
        &["list_topics", "describe_topic"],
        json!([
            {"name": "alice", "users": ["alice"], "tools": ["list_topics"],
             "scope": {"topics": {"allow": [{"name": "team-a.", "patternType": "prefix"}]}}},
            {"name": "operators", "groups": ["kafka-operators"], "tools": ["list_topics", "describe_topic"]},
        ]),
        1,
    );
    manifest["spec"]["auth"] = json!({"oidc": {
        "issuer": "https://127.0.0.1:18443/realms/mcp",
        "resource": "https://orders-mcp.example.com/mcp",
        "claims": {"username": {"claim": "preferred_username", "prefix": "sso:"}},
    }});
    apply_server(&client, &ns, &manifest).await;
    let server = wait_condition(&api, "orders", "Reconciled", "True", Some("Applied")).await;
    let status = server.status.unwrap();
    let auth = status.auth.expect("status.auth");
    assert_eq!(
        (
            auth.issuer.as_str(),
            auth.resource.as_str(),
            auth.metadata_url.as_str()
        ),
        (
            "https://127.0.0.1:18443/realms/mcp",
            "https://orders-mcp.example.com/mcp",
            "https://orders-mcp.example.com/.well-known/oauth-protected-resource/mcp"
        )
    );
    assert_eq!(
        status
            .client_scopes
            .iter()
            .map(|c| c.username.as_str())
            .collect::<Vec<_>>(),
        ["sso:alice"],
        "the one-user client's scope is keyed by the name the sidecar gives her"
    );

    let cm = Api::<ConfigMap>::namespaced(client.clone(), &ns)
        .get("orders-mcp-config")
        .await
        .unwrap();
    let config = SidecarConfig::parse(&cm.data.unwrap()["config.yaml"])
        .expect("the sidecar accepts the rendered config");
    let oidc = config.auth.oidc.expect("auth.oidc");
    assert_eq!(
        (oidc.username_prefix.as_str(), oidc.groups_prefix.as_str()),
        ("sso:", "oidc:")
    );
    assert!(
        config
            .listen
            .allowed_hosts
            .contains(&"orders-mcp.example.com".to_string()),
        "{:?}",
        config.listen.allowed_hosts
    );

    let bindings = Api::<RoleBinding>::namespaced(client.clone(), &ns);
    let subjects = |b: RoleBinding| -> Vec<(String, String)> {
        b.subjects
            .unwrap_or_default()
            .into_iter()
            .map(|s| (s.kind, s.name))
            .collect()
    };
    assert_eq!(
        subjects(bindings.get("orders-mcp-client-alice").await.unwrap()),
        [("User".to_string(), "sso:alice".to_string())]
    );
    assert_eq!(
        subjects(bindings.get("orders-mcp-client-operators").await.unwrap()),
        [("Group".to_string(), "oidc:kafka-operators".to_string())]
    );
    // What the sidecar asks for a signed-in caller, answered by the real RBAC.
    let signed_in = |groups: &[&str]| {
        let mut g: Vec<String> = groups.iter().map(|s| s.to_string()).collect();
        g.push("system:authenticated".into());
        g
    };
    let cases = [
        ("sso:alice", signed_in(&[]), "list_topics", true),
        ("sso:alice", signed_in(&[]), "describe_topic", false),
        ("alice", signed_in(&[]), "list_topics", false),
        (
            "sso:dave",
            signed_in(&["oidc:kafka-operators"]),
            "describe_topic",
            true,
        ),
        (
            "sso:dave",
            signed_in(&["kafka-operators"]),
            "describe_topic",
            false,
        ),
        ("sso:erin", signed_in(&["oidc:other"]), "list_topics", false),
    ];
    for (user, groups, tool, expected) in cases {
        assert_eq!(
            can_as(&client, user, groups.clone(), &ns, "orders", tool).await,
            expected,
            "{user} {groups:?} {tool}"
        );
    }

    // The provider's name left out, and no default in the operator's config:
    // the server serves Kubernetes tokens only, says why, and shows no sign-in.
    manifest["spec"]["auth"] = json!({"oidc": {"resource": "https://orders-mcp.example.com/mcp"}});
    apply_server(&client, &ns, &manifest).await;
    let server = wait_condition(
        &api,
        "orders",
        "Degraded",
        "True",
        Some("NoIdentityProvider"),
    )
    .await;
    let status = server.status.unwrap();
    assert_eq!(status.auth, None);
    let degraded = mcp_kafka_operator::status::find(&status, "Degraded").unwrap();
    assert!(
        degraded.message.contains("no default identity provider"),
        "{}",
        degraded.message
    );
    assert!(
        subjects(bindings.get("orders-mcp-client-operators").await.unwrap()).is_empty(),
        "a binding of people names no one while no provider signs them in"
    );
    assert!(
        !can_as(
            &client,
            "oidc:dave",
            signed_in(&["oidc:kafka-operators"]),
            &ns,
            "orders",
            "list_topics"
        )
        .await
    );

    // Sign-in removed: the config and status lose it.
    manifest["spec"].as_object_mut().unwrap().remove("auth");
    manifest["spec"]["clients"] =
        json!([{"name": "agent", "serviceAccountName": "agent", "tools": ["list_topics"]}]);
    apply_server(&client, &ns, &manifest).await;
    let server = wait_condition(&api, "orders", "Reconciled", "True", Some("Applied")).await;
    let status = server.status.unwrap();
    assert_eq!(status.auth, None);
    assert_eq!(
        mcp_kafka_operator::status::find(&status, "Degraded").map(|c| c.reason.as_str()),
        Some("ReplicasUnavailable"),
        "no kubelet here: only the replicas are missing"
    );
    let cm = Api::<ConfigMap>::namespaced(client.clone(), &ns)
        .get("orders-mcp-config")
        .await
        .unwrap();
    let config = SidecarConfig::parse(&cm.data.unwrap()["config.yaml"]).unwrap();
    assert_eq!(config.auth.oidc, None);
    assert!(
        !config
            .listen
            .allowed_hosts
            .iter()
            .any(|h| h.ends_with("example.com"))
    );
    delete_namespace(&client, &ns).await;
}
