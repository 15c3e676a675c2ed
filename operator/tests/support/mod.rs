//! The operator, run in-process against the test ground, and helpers the
//! integration tests share.

#![allow(dead_code)]

use std::sync::Arc;

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::events::Reporter;
use kube::{Api, Client};
use mcp_kafka_operator::config::OperatorConfig;
use mcp_kafka_operator::crd::McpKafkaServer;
use mcp_kafka_operator::metrics::Metrics;
use mcp_kafka_operator::status;
use mcpk_e2e::{Ground, eventually, unique_name};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// A controller running in a thread of its own (its own runtime), so that
/// it outlives a single test and dies with the test process.
pub struct Operator {
    pub metrics: Arc<Metrics>,
    stop: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Operator {
    pub fn start(config: OperatorConfig) -> Operator {
        // The operator's warnings in the test output (shown when a test fails).
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "warn".into()),
            )
            .with_test_writer()
            .try_init();
        let ground = Ground::get();
        ground.install_crds();
        let metrics = Arc::new(Metrics::new());
        let stop = CancellationToken::new();
        let (m, s) = (metrics.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().expect("a tokio runtime");
            rt.block_on(async move {
                let client = ground.kube_admin().await;
                let reporter = Reporter {
                    controller: "mcp-kafka-operator".into(),
                    instance: Some("integration-test".into()),
                };
                mcp_kafka_operator::controller::run(client, config, m, reporter, 8, async move {
                    s.cancelled().await
                })
                .await;
            });
        });
        Operator {
            metrics,
            stop,
            thread: Some(thread),
        }
    }

    /// One operator for all tests of a test binary.
    pub fn shared() -> &'static Operator {
        static SHARED: std::sync::OnceLock<Operator> = std::sync::OnceLock::new();
        SHARED.get_or_init(|| Operator::start(OperatorConfig::default()))
    }

    /// Stops the controller and waits until it has.
    pub fn stop(mut self) {
        self.stop.cancel();
        if let Some(t) = self.thread.take() {
            t.join().expect("the operator thread ends cleanly");
        }
    }

    /// A counter from the operator's /metrics text, summed over its labels.
    pub fn counter(&self, name: &str, label_filter: &str) -> f64 {
        self.metrics
            .encode()
            .lines()
            .filter(|l| l.starts_with(name) && l.contains(label_filter))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

/// An McpKafkaServer for the ground's broker.
pub fn server_manifest(
    name: &str,
    environment: &str,
    tools: &[&str],
    clients: serde_json::Value,
    replicas: i32,
) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "mcpkafka.dev/v1alpha1", "kind": "McpKafkaServer",
        "metadata": {"name": name},
        "spec": {
            "environment": environment,
            "kafka": {"bootstrapServers": [Ground::get().kafka_bootstrap_servers]},
            "tools": tools,
            "clients": clients,
            "replicas": replicas,
        }
    })
}

/// The two kinds of client: an existing ServiceAccount, and an issued token.
pub fn two_clients() -> serde_json::Value {
    serde_json::json!([
        {"name": "agent", "serviceAccountName": "agent", "tools": ["list_topics"]},
        {"name": "laptop", "issueToken": {"expirationSeconds": 3600}, "tools": ["describe_topic"]}
    ])
}

/// Creates or updates a server (server-side apply, as a user would).
pub async fn apply_server(client: &kube::Client, ns: &str, manifest: &serde_json::Value) {
    let name = manifest["metadata"]["name"]
        .as_str()
        .expect("a named manifest");
    servers(client, ns)
        .patch(
            name,
            &kube::api::PatchParams::apply("integration-test").force(),
            &kube::api::Patch::Apply(manifest),
        )
        .await
        .unwrap_or_else(|e| panic!("applying {name}: {e}"));
}

pub fn servers(client: &kube::Client, ns: &str) -> Api<McpKafkaServer> {
    Api::namespaced(client.clone(), ns)
}

/// Waits until the server's condition `type_` has `status_` (and, if given, `reason`).
pub async fn wait_condition(
    api: &Api<McpKafkaServer>,
    name: &str,
    type_: &str,
    status_: &str,
    reason: Option<&str>,
) -> McpKafkaServer {
    let what = format!("{name}: {type_}={status_} {reason:?}");
    eventually(&what, || async {
        let s = api.get(name).await.ok()?;
        let st = s.status.as_ref()?;
        let c = status::find(st, type_)?;
        let generation_seen = st.observed_generation == s.metadata.generation;
        (generation_seen && c.status == status_ && reason.is_none_or(|r| c.reason == r))
            .then_some(s.clone())
    })
    .await
}

/// Deletes a test namespace while the operator runs (its finalizer needs it).
pub async fn delete_namespace(client: &kube::Client, ns: &str) {
    let _ = Api::<Namespace>::all(client.clone())
        .delete(ns, &Default::default())
        .await;
}

/// The operator binary as a process, killed when the test ends however it ends.
pub struct OperatorProcess {
    pub child: std::process::Child,
    pub log: std::path::PathBuf,
}

impl OperatorProcess {
    /// `mcp-kafka-operator run ARGS` with `kubeconfig`, logging to a file in the ground's log dir.
    pub fn start(name: &str, kubeconfig: &std::path::Path, args: &[&str]) -> OperatorProcess {
        let ground = Ground::get();
        let log = ground.log_dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).expect("creating the operator log");
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_mcp-kafka-operator"))
            .arg("run")
            .args(args)
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::from(
                file.try_clone().expect("log file"),
            ))
            .stderr(std::process::Stdio::from(file))
            .spawn()
            .expect("starting the operator");
        OperatorProcess { child, log }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, as Kubernetes stops a pod, and wait for the exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.child.wait().expect("waiting for the operator")
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The rules of one of the chart's RBAC rule files.
pub fn rules(file: &str) -> Vec<PolicyRule> {
    let path = mcpk_e2e::crds_dir()
        .parent()
        .unwrap()
        .join("charts/mcp-kafka-operator/files")
        .join(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

/// A ServiceAccount `operator` in `ns` bound to exactly the chart's rules
/// (its ClusterRole, and its Lease Role in `ns`); returns a token for it.
pub async fn operator_identity(client: &Client, ns: &str) -> String {
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
pub fn kubeconfig_with_token(ground: &Ground, token: &str) -> std::path::PathBuf {
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

/// Applies the namespace's `default` McpToolPolicy with `spec`.
pub async fn apply_policy(client: &Client, ns: &str, spec: Value) {
    let api: Api<mcp_kafka_operator::crd::McpToolPolicy> = Api::namespaced(client.clone(), ns);
    let object = json!({"apiVersion": "mcpkafka.dev/v1alpha1", "kind": "McpToolPolicy", "metadata": {"name": "default"}, "spec": spec});
    api.patch(
        "default",
        &PatchParams::apply("integration-test").force(),
        &Patch::Apply(&object),
    )
    .await
    .expect("applying the policy");
}

/// Whether the namespaced object exists now.
pub async fn exists<K>(client: &Client, ns: &str, name: &str) -> bool
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    Api::<K>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .expect("a read")
        .is_some()
}

/// The verbs a Role grants.
pub async fn role_verbs(client: &Client, ns: &str, name: &str) -> Vec<String> {
    let role = Api::<Role>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .expect("the Role");
    role.rules
        .unwrap_or_default()
        .into_iter()
        .flat_map(|r| r.verbs)
        .collect()
}
