//! The Kubernetes half of the test ground is real: admission runs CEL rules,
//! TokenRequest/TokenReview check audiences, SubjectAccessReview honours
//! custom verbs in Roles, and the garbage collector follows owner references.

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenReview};
use k8s_openapi::api::authorization::v1::SubjectAccessReview;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use kube::api::{Api, DeleteParams, PostParams};
use mcpk_e2e::{Ground, eventually, unique_name};
use serde_json::json;

async fn create_namespace(client: &kube::Client, prefix: &str) -> String {
    let name = unique_name(prefix);
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    name
}

async fn create_service_account(client: &kube::Client, ns: &str, name: &str) {
    let sa: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &sa)
        .await
        .unwrap();
}

async fn mint_token(client: &kube::Client, ns: &str, sa: &str, audience: &str) -> String {
    let request: TokenRequest = serde_json::from_value(
        json!({"spec": {"audiences": [audience], "expirationSeconds": 600}}),
    )
    .unwrap();
    let minted = Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .create_token_request(sa, &PostParams::default(), &request)
        .await
        .expect("TokenRequest");
    minted
        .status
        .and_then(|s| s.token)
        .expect("TokenRequest returned a token")
}

async fn review_token(client: &kube::Client, token: &str, audience: &str) -> TokenReview {
    let review: TokenReview =
        serde_json::from_value(json!({"spec": {"token": token, "audiences": [audience]}})).unwrap();
    Api::<TokenReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .expect("TokenReview")
}

#[tokio::test]
async fn crd_cel_rule_rejects_an_invalid_object_at_admission() {
    let ground = Ground::get();
    let plural = unique_name("widgets").replace('-', "");
    let group = "ground.mcpkafka.dev";
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{plural}.{group}")},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": plural, "singular": format!("{plural}x"), "kind": format!("W{plural}")},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": {
                    "type": "object",
                    "properties": {"replicas": {"type": "integer"}, "maxReplicas": {"type": "integer"}},
                    "x-kubernetes-validations": [{"rule": "self.replicas <= self.maxReplicas",
                                                  "message": "replicas must not exceed maxReplicas"}]
                }}}}
            }]
        }
    });
    let out = ground.kubectl(&["apply", "-f", "-"], Some(&crd.to_string()));
    assert!(
        out.status.success(),
        "applying the CRD: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let crd_name = format!("crd/{plural}.{group}");
    let out = ground.kubectl(
        &[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            &crd_name,
        ],
        None,
    );
    assert!(
        out.status.success(),
        "CRD not established: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let object = |replicas: i64| {
        json!({"apiVersion": format!("{group}/v1"), "kind": format!("W{plural}"),
               "metadata": {"name": format!("r{replicas}"), "namespace": "default"},
               "spec": {"replicas": replicas, "maxReplicas": 3}})
        .to_string()
    };
    let valid = ground.kubectl(&["apply", "-f", "-"], Some(&object(2)));
    assert!(
        valid.status.success(),
        "a valid object was refused: {}",
        String::from_utf8_lossy(&valid.stderr)
    );
    let invalid = ground.kubectl(&["apply", "-f", "-"], Some(&object(5)));
    let stderr = String::from_utf8_lossy(&invalid.stderr);
    assert!(
        !invalid.status.success(),
        "an object breaking the CEL rule was admitted"
    );
    assert!(
        stderr.contains("replicas must not exceed maxReplicas"),
        "unexpected rejection: {stderr}"
    );
    // The rejected object was not stored.
    let get = ground.kubectl(&["get", &plural, "r5", "-n", "default"], None);
    assert!(!get.status.success(), "the rejected object exists");

    let out = ground.kubectl(&["delete", &crd_name, "--wait=false"], None);
    assert!(out.status.success());
}

#[tokio::test]
async fn token_request_tokens_pass_token_review_only_for_their_audience() {
    let client = Ground::get().kube_admin().await;
    let ns = create_namespace(&client, "ground-tokens").await;
    create_service_account(&client, &ns, "agent").await;
    let audience = format!("mcpkafka.dev/{ns}/orders");
    let token = mint_token(&client, &ns, "agent", &audience).await;

    let accepted = review_token(&client, &token, &audience)
        .await
        .status
        .expect("status");
    assert_eq!(accepted.authenticated, Some(true), "{accepted:?}");
    let user = accepted.user.expect("user info");
    assert_eq!(
        user.username.as_deref(),
        Some(format!("system:serviceaccount:{ns}:agent").as_str())
    );
    assert!(
        user.groups
            .unwrap_or_default()
            .contains(&format!("system:serviceaccounts:{ns}"))
    );
    assert_eq!(accepted.audiences, Some(vec![audience.clone()]));

    let refused = review_token(&client, &token, &format!("mcpkafka.dev/{ns}/payments"))
        .await
        .status
        .expect("status");
    assert_ne!(
        refused.authenticated,
        Some(true),
        "a token was accepted for another audience: {refused:?}"
    );

    let garbage = review_token(&client, "not-a-token", &audience)
        .await
        .status
        .expect("status");
    assert_ne!(garbage.authenticated, Some(true));

    Api::<Namespace>::all(client)
        .delete(&ns, &DeleteParams::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn subject_access_review_honours_a_custom_verb_in_a_role() {
    let ground = Ground::get();
    let client = ground.kube_admin().await;
    let ns = create_namespace(&client, "ground-rbac").await;
    let rbac = json!({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": {"name": "orders-list-topics", "namespace": ns},
         "rules": [{"apiGroups": ["mcpkafka.dev"], "resources": ["mcpkafkaservers/tools"],
                    "resourceNames": ["orders"], "verbs": ["list_topics"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": "agent-list-topics", "namespace": ns},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "orders-list-topics"},
         "subjects": [{"kind": "ServiceAccount", "name": "agent", "namespace": ns}]}
    ]});
    let out = ground.kubectl(&["apply", "-f", "-"], Some(&rbac.to_string()));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let allowed = |user: String, server: &'static str, verb: &'static str| {
        let client = client.clone();
        let ns = ns.clone();
        async move {
            let review: SubjectAccessReview = serde_json::from_value(json!({"spec": {
                "user": user,
                "groups": ["system:serviceaccounts", format!("system:serviceaccounts:{ns}"), "system:authenticated"],
                "resourceAttributes": {"group": "mcpkafka.dev", "resource": "mcpkafkaservers", "subresource": "tools",
                                        "namespace": ns, "name": server, "verb": verb}}}))
            .unwrap();
            let answer = Api::<SubjectAccessReview>::all(client)
                .create(&PostParams::default(), &review)
                .await;
            answer
                .expect("SubjectAccessReview")
                .status
                .expect("status")
                .allowed
        }
    };
    let agent = format!("system:serviceaccount:{ns}:agent");
    let other = format!("system:serviceaccount:{ns}:other");
    assert!(
        allowed(agent.clone(), "orders", "list_topics").await,
        "the bound verb was denied"
    );
    assert!(
        !allowed(agent.clone(), "orders", "create_topic").await,
        "an unbound verb was allowed"
    );
    assert!(
        !allowed(agent.clone(), "payments", "list_topics").await,
        "another server's tool was allowed"
    );
    assert!(
        !allowed(other, "orders", "list_topics").await,
        "an unbound subject was allowed"
    );

    Api::<Namespace>::all(client)
        .delete(&ns, &DeleteParams::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn garbage_collector_deletes_an_owned_config_map_with_its_owner() {
    let client = Ground::get().kube_admin().await;
    let ns = create_namespace(&client, "ground-gc").await;
    let cms = Api::<ConfigMap>::namespaced(client.clone(), &ns);
    let owner: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "owner"}})).unwrap();
    let owner = cms.create(&PostParams::default(), &owner).await.unwrap();
    let owned: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "owned", "ownerReferences": [{
        "apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid.unwrap()}]}}))
    .unwrap();
    cms.create(&PostParams::default(), &owned).await.unwrap();
    let bystander: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "bystander"}})).unwrap();
    cms.create(&PostParams::default(), &bystander)
        .await
        .unwrap();

    cms.delete("owner", &DeleteParams::background())
        .await
        .unwrap();
    eventually(
        "the garbage collector to delete the owned ConfigMap",
        || {
            let cms = cms.clone();
            async move { cms.get_opt("owned").await.unwrap().is_none().then_some(()) }
        },
    )
    .await;
    assert!(
        cms.get_opt("bystander").await.unwrap().is_some(),
        "an unowned ConfigMap was deleted"
    );

    Api::<Namespace>::all(client)
        .delete(&ns, &DeleteParams::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn controller_manager_provisions_service_accounts_in_new_namespaces() {
    let client = Ground::get().kube_admin().await;
    let ns = create_namespace(&client, "ground-sa").await;
    // The serviceaccount and root-ca publisher controllers act on every new namespace.
    eventually("the default ServiceAccount", || {
        let sas = Api::<ServiceAccount>::namespaced(client.clone(), &ns);
        async move { sas.get_opt("default").await.unwrap() }
    })
    .await;
    eventually("the kube-root-ca.crt ConfigMap", || {
        let cms = Api::<ConfigMap>::namespaced(client.clone(), &ns);
        async move { cms.get_opt("kube-root-ca.crt").await.unwrap() }
    })
    .await;
    Api::<Namespace>::all(client)
        .delete(&ns, &DeleteParams::default())
        .await
        .unwrap();
}
