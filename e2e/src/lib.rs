//! The local test ground, as tests see it.
//!
//! `e2e/stack up` starts a real kube-apiserver, kube-controller-manager, etcd
//! and Kafka broker and writes `e2e/.stack/env`. [`Ground::get`] reads that
//! file (or the one `MCPK_STACK_ENV` names). A missing or unreachable ground is a test
//! failure with a message saying what to run, never a silent skip.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Where the local test ground's parts are.
#[derive(Debug, Clone)]
pub struct Ground {
    pub kubeconfig: PathBuf,
    pub kubectl: PathBuf,
    pub kafka_bootstrap_servers: String,
    pub kafka_cluster_id: String,
    /// The apiserver's audit log (write requests only), for counting API writes.
    pub apiserver_audit_log: PathBuf,
    pub log_dir: PathBuf,
    /// Everything the env file exports, for tests that need more of the
    /// ground than the fields above (see [`Ground::var`]).
    vars: HashMap<String, String>,
    /// The state directory of the stack (for `e2e/stack` subcommands).
    pub stack_dir: Option<PathBuf>,
    /// The Prometheus that scrapes the broker's JMX exporter (a stack
    /// started before it existed has none).
    pub prometheus_url: Option<String>,
    /// The broker's JMX exporter (`.../metrics`).
    pub kafka_exporter_url: Option<String>,
}

impl Ground {
    /// The ground started by `e2e/stack up`. Panics with instructions when it
    /// is not up: a test that needs it must fail, not pass vacuously.
    pub fn get() -> &'static Ground {
        static GROUND: OnceLock<Ground> = OnceLock::new();
        GROUND.get_or_init(|| match Self::load() {
            Ok(g) => g,
            Err(e) => panic!("the test ground is not available: {e}\nstart it with `e2e/stack up` (see README.md)"),
        })
    }

    fn load() -> Result<Ground, String> {
        // Only the stack's env file counts, never the process environment: a
        // developer's own KUBECONFIG must not point these tests at a real cluster.
        let env_file = std::env::var_os("MCPK_STACK_ENV")
            .map(PathBuf::from)
            .unwrap_or_else(default_env_file);
        if !env_file.exists() {
            return Err(format!("{} does not exist", env_file.display()));
        }
        let vars = parse_env_file(&env_file)?;
        let var = |key: &str| -> Result<String, String> {
            vars.get(key)
                .filter(|v| !v.is_empty())
                .cloned()
                .ok_or_else(|| format!("{key} is missing from {}", env_file.display()))
        };
        let g = Ground {
            kubeconfig: var("KUBECONFIG")?.into(),
            kubectl: var("MCPK_KUBECTL")?.into(),
            kafka_bootstrap_servers: var("KAFKA_BOOTSTRAP_SERVERS")?,
            kafka_cluster_id: var("KAFKA_CLUSTER_ID")?,
            apiserver_audit_log: var("MCPK_APISERVER_AUDIT_LOG")?.into(),
            log_dir: var("MCPK_LOG_DIR")?.into(),
            vars: vars.clone(),
            stack_dir: var("MCPK_STACK_DIR").ok().map(PathBuf::from),
            prometheus_url: var("PROMETHEUS_URL").ok(),
            kafka_exporter_url: var("MCPK_KAFKA_EXPORTER_URL").ok(),
        };
        for (what, path) in [("kubeconfig", &g.kubeconfig), ("kubectl", &g.kubectl)] {
            if !path.exists() {
                return Err(format!("{what} {} does not exist", path.display()));
            }
        }
        Ok(g)
    }

    /// A variable of the env file, or a failure that says the ground is
    /// older than the test (restart it) rather than a silent skip.
    /// Whether the ground has a node (kubelet, scheduler, and the
    /// deployment and replicaset controllers): started without
    /// `MCPK_NODE=0`.
    pub fn has_node(&self) -> bool {
        self.vars.contains_key("MCPK_NODE_NAME")
    }

    pub fn var(&self, key: &str) -> &str {
        match self.vars.get(key).filter(|v| !v.is_empty()) {
            Some(v) => v,
            None => panic!(
                "{key} is missing from the test ground's env file: the ground predates it; restart it with `e2e/stack down && e2e/stack up`"
            ),
        }
    }

    /// A client for the local apiserver with the admin identity. Panics (the
    /// test fails) when the apiserver does not answer.
    pub async fn kube_admin(&self) -> kube::Client {
        let kubeconfig = kube::config::Kubeconfig::read_from(&self.kubeconfig)
            .unwrap_or_else(|e| panic!("reading {}: {e}", self.kubeconfig.display()));
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .unwrap_or_else(|e| panic!("loading {}: {e}", self.kubeconfig.display()));
        let client = kube::Client::try_from(config).expect("building the kube client");
        if let Err(e) = client.apiserver_version().await {
            panic!(
                "kube-apiserver did not answer: {e}\nlogs: {}/kube-apiserver.log; check `e2e/stack status`",
                self.log_dir.display()
            );
        }
        client
    }

    /// Runs the stack's kubectl against the local apiserver.
    pub fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> Output {
        use std::io::Write;
        let mut cmd = Command::new(&self.kubectl);
        cmd.arg("--kubeconfig").arg(&self.kubeconfig).args(args);
        cmd.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("running {}: {e}", self.kubectl.display()));
        let mut pipe = child.stdin.take().expect("kubectl stdin");
        if let Some(input) = stdin {
            pipe.write_all(input.as_bytes())
                .expect("writing kubectl stdin");
        }
        drop(pipe);
        child.wait_with_output().expect("waiting for kubectl")
    }

    /// Common librdkafka settings for the local broker. Panics (the test
    /// fails) when the broker does not accept connections, rather than
    /// letting librdkafka retry until some later timeout.
    pub fn kafka_config(&self) -> rdkafka::ClientConfig {
        static CHECKED: OnceLock<()> = OnceLock::new();
        CHECKED.get_or_init(|| {
            let addr = self.kafka_bootstrap_servers.split(',').next().unwrap_or_default();
            let reachable = std::net::ToSocketAddrs::to_socket_addrs(addr)
                .ok()
                .and_then(|mut a| a.next())
                .is_some_and(|a| std::net::TcpStream::connect_timeout(&a, Duration::from_secs(5)).is_ok());
            assert!(
                reachable,
                "Kafka at {addr} does not accept connections\nlogs: {}/kafka.log; check `e2e/stack status`",
                self.log_dir.display()
            );
        });
        let mut c = rdkafka::ClientConfig::new();
        c.set("bootstrap.servers", &self.kafka_bootstrap_servers);
        c
    }
}

/// Kubernetes helpers that tests of the operator share.
impl Ground {
    /// Installs the checked-in CRDs (server-side, as the README says) and
    /// waits until the apiserver serves them.
    pub fn install_crds(&self) {
        let dir = crds_dir();
        let dir = dir.to_str().expect("a UTF-8 path");
        let out = self.kubectl(
            &[
                "apply",
                "--server-side",
                "--field-manager=e2e-tests",
                "--force-conflicts",
                "-f",
                dir,
            ],
            None,
        );
        assert!(
            out.status.success(),
            "installing crds/: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = self.kubectl(
            &[
                "wait",
                "--for=condition=Established",
                "--timeout=60s",
                "crd/mcpkafkaservers.mcpkafka.dev",
                "crd/mcptoolpolicies.mcpkafka.dev",
            ],
            None,
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Creates a namespace with a unique name and, if given, the
    /// `mcpkafka.dev/environment` label.
    pub fn namespace(&self, prefix: &str, environment: Option<&str>) -> String {
        let ns = unique_name(prefix);
        let out = self.kubectl(&["create", "namespace", &ns], None);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        if let Some(env) = environment {
            let label = format!("mcpkafka.dev/environment={env}");
            let out = self.kubectl(&["label", "namespace", &ns, &label], None);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        ns
    }

    /// Where the audit log ends now; pass it to [`Ground::audit_writes_since`].
    pub fn audit_mark(&self) -> u64 {
        std::fs::metadata(&self.apiserver_audit_log)
            .map(|m| m.len())
            .unwrap_or(0)
    }

    /// Write requests (the audit log holds only those) logged after `mark`,
    /// as JSON audit events, that `keep` selects.
    pub fn audit_writes_since(
        &self,
        mark: u64,
        keep: impl Fn(&serde_json::Value) -> bool,
    ) -> Vec<serde_json::Value> {
        use std::io::{Read, Seek, SeekFrom};
        let mut file = std::fs::File::open(&self.apiserver_audit_log)
            .unwrap_or_else(|e| panic!("opening {}: {e}", self.apiserver_audit_log.display()));
        file.seek(SeekFrom::Start(mark))
            .expect("seeking the audit log");
        let mut text = String::new();
        file.read_to_string(&mut text)
            .expect("reading the audit log");
        text.lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .filter(|e| keep(e))
            .collect()
    }
}

impl Ground {
    /// How many partitions the broker reports for `topic` (0 when it has none).
    pub fn partition_count(&self, topic: &str) -> usize {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let consumer: BaseConsumer = self.kafka_config().create().expect("consumer");
        let md = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(30))
            .expect("metadata");
        md.topics()
            .iter()
            .find(|t| t.name() == topic)
            .map_or(0, |t| t.partitions().len())
    }

    /// A consumer in `group`, subscribed to `topic` from the earliest offset,
    /// committing only when the test says so.
    pub fn group_consumer(&self, group: &str, topic: &str) -> rdkafka::consumer::BaseConsumer {
        use rdkafka::consumer::Consumer;
        let consumer: rdkafka::consumer::BaseConsumer = self
            .kafka_config()
            .set("group.id", group)
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .create()
            .expect("consumer");
        consumer.subscribe(&[topic]).expect("subscribe");
        consumer
    }

    /// Whether the broker lists `topic` (a lookup that cannot create it).
    pub fn topic_exists(&self, topic: &str) -> bool {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let consumer: BaseConsumer = self.kafka_config().create().expect("consumer");
        let md = consumer
            .fetch_metadata(None, Duration::from_secs(30))
            .expect("metadata");
        md.topics().iter().any(|t| t.name() == topic)
    }
}

/// `e2e/.stack/env` of the checkout being tested. Found from the runtime
/// `CARGO_MANIFEST_DIR` (set by `cargo test` for the crate under test), not
/// the compile-time one: a target dir shared between clones keeps one build
/// of this crate, whose baked-in path may be another clone's.
fn default_env_file() -> PathBuf {
    let start = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    start
        .ancestors()
        .map(|dir| dir.join("e2e/.stack/env"))
        .find(|candidate| candidate.exists())
        .unwrap_or_else(|| start.join("e2e/.stack/env"))
}

/// The checkout's `crds/` directory, found the same way.
pub fn crds_dir() -> PathBuf {
    let start = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    start
        .ancestors()
        .map(|dir| dir.join("crds"))
        .find(|d| d.is_dir())
        .unwrap_or_else(|| start.join("crds"))
}

fn parse_env_file(path: &Path) -> Result<HashMap<String, String>, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    Ok(text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect())
}

/// A name unique to this test run, so that tests can run again against the
/// same long-lived ground without colliding with what earlier runs left.
pub fn unique_name(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos();
    format!(
        "{prefix}-{:x}",
        (nanos % 0xffff_ffff) as u64 ^ std::process::id() as u64
    )
}

/// Polls `check` until it returns `Some`, for effects that Kubernetes or
/// Kafka apply asynchronously. The deadline is generous: it only stops a test
/// that would otherwise hang; it is not a performance assertion.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("gave up waiting for {what} after 120s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
