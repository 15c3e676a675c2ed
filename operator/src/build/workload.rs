//! The sidecar workload: its config (the sidecar's own config type,
//! rendered), the hardened Deployment, the Service, the NetworkPolicy that
//! admits `/mcp` only from namespaces of the same environment (and the
//! metrics port from the configured peers), and a PDB above one replica.

use std::collections::BTreeMap;
use std::path::PathBuf;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EnvVar,
    HTTPGetAction, KeyToPath, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, SeccompProfile,
    SecretVolumeSource, SecurityContext, Service, ServicePort, ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use mcp_kafka_sidecar::config::{
    AuditConfig, AuthConfig, AuthMode, BreakGlassWindow, JobsConfig, KafkaConfig, Limits,
    ListenConfig, MetricsConfig, PrometheusSource, SaslConfig, ServerIdentity, SidecarConfig,
    TlsFiles,
};
use mcp_kafka_sidecar::scope::{ClientScope, Scope};

use super::{
    CONFIG_HASH_ANNOTATION, Inputs, MCP_PORT, METRICS_PORT, labels, names, owned_meta,
    selector_labels,
};
use crate::fence::ENVIRONMENT_LABEL;

/// The key of the config in the ConfigMap, and the file the sidecar reads.
pub(super) const CONFIG_FILE: &str = "config.yaml";
/// glibc gives threads that allocate their own malloc arenas, and Kafka
/// calls run on a pool of blocking threads: with two arenas the sidecar's
/// RSS after a 64-session warm-up of `e2e/load` was 44 to 50 MiB in five
/// runs, against 54 MiB in one run without.
const SIDECAR_MALLOC_ARENAS: (&str, &str) = ("MALLOC_ARENA_MAX", "2");
pub(super) const CONFIG_DIR: &str = "/etc/mcp-kafka/config";
const CA_DIR: &str = "/etc/mcp-kafka/kafka-ca";
const CLIENT_CERT_DIR: &str = "/etc/mcp-kafka/kafka-client-cert";
const SASL_DIR: &str = "/etc/mcp-kafka/kafka-sasl";
const PROMETHEUS_TOKEN_DIR: &str = "/etc/mcp-kafka/prometheus-token";
const PROMETHEUS_CA_DIR: &str = "/etc/mcp-kafka/prometheus-ca";
/// The distroless `nonroot` user.
const NON_ROOT_ID: i64 = 65532;

/// The sidecar's config, with credentials as paths of mounted Secret files.
pub fn sidecar_config(inputs: &Inputs) -> SidecarConfig {
    let (server, namespace) = (inputs.name(), inputs.namespace());
    let spec = &inputs.server.spec;
    let service = names::sidecar(&server);
    let domain = &inputs.config.cluster_domain;
    let file = |dir: &str, name: &str| PathBuf::from(format!("{dir}/{name}"));
    // A server whose provider cannot be resolved gets no sign-in (status
    // says why): Kubernetes tokens keep working, no IdP token is accepted.
    let sign_in = super::oidc::resolve(spec, inputs.config).ok().flatten();
    // The Service's names, as a client inside the cluster sends them in
    // Host; and the public URL's host, as a proxy in front forwards it.
    let mut allowed_hosts = vec![
        service.clone(),
        format!("{service}.{namespace}"),
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.{domain}"),
    ];
    if let Some(host) = sign_in
        .as_ref()
        .and_then(|s| super::oidc::public_host(&s.config.resource))
        && !allowed_hosts.contains(&host)
    {
        allowed_hosts.push(host);
    }
    SidecarConfig {
        server: ServerIdentity {
            name: server.clone(),
            namespace: Some(namespace.clone()),
            environment: spec.environment.clone(),
        },
        listen: ListenConfig {
            address: std::net::SocketAddr::from(([0, 0, 0, 0], MCP_PORT as u16)),
            allowed_hosts,
            metrics_address: Some(std::net::SocketAddr::from((
                [0, 0, 0, 0],
                METRICS_PORT as u16,
            ))),
        },
        kafka: KafkaConfig {
            bootstrap_servers: spec.kafka.bootstrap_servers.clone(),
            expected_cluster_id: inputs.fenced.expected_cluster_id.clone(),
            tls: spec.kafka.tls.as_ref().map(|tls| TlsFiles {
                ca_file: tls.ca_secret_ref.as_ref().map(|_| file(CA_DIR, "ca.crt")),
                cert_file: tls
                    .client_cert_secret_ref
                    .as_ref()
                    .map(|_| file(CLIENT_CERT_DIR, "tls.crt")),
                key_file: tls
                    .client_cert_secret_ref
                    .as_ref()
                    .map(|_| file(CLIENT_CERT_DIR, "tls.key")),
            }),
            sasl: spec.kafka.sasl.as_ref().map(|sasl| SaslConfig {
                mechanism: sasl.mechanism,
                username_file: file(SASL_DIR, "username"),
                password_file: file(SASL_DIR, "password"),
            }),
            request_timeout_ms: 10_000,
            metadata_max_age_ms: KafkaConfig::default_metadata_max_age_ms(),
        },
        tools: inputs.tools.to_vec(),
        tool_names: spec.tool_names.clone(),
        limits: Limits::default(),
        auth: AuthConfig {
            mode: AuthMode::Kubernetes,
            oidc: sign_in.map(|s| s.config),
            ..Default::default()
        },
        // The sidecar enforces the environment's rule itself too, and closes
        // the window at its end even before the operator looks again.
        mutations: Some(inputs.fenced.mutations),
        break_glass: inputs.break_glass.map(|w| BreakGlassWindow {
            until: w.until.0,
            reason: w.reason.clone(),
            tools: w
                .allow
                .iter()
                .copied()
                .filter(|t| inputs.tools.contains(t))
                .collect(),
        }),
        plans: Default::default(),
        audit: AuditConfig {
            kafka_topic: spec.audit.as_ref().and_then(|a| a.kafka_topic.clone()),
        },
        jobs: spec.jobs.as_ref().map(|j| JobsConfig {
            request_topic: j.request_topic.clone(),
            reply_topics: j.reply_topics.clone(),
            dead_letter_topic: j.dead_letter_topic.clone(),
            journal_topic: j.journal_topic.clone(),
            group: j.group.clone(),
            // Admission keeps them within the sidecar's ranges.
            max_in_flight: j
                .max_in_flight
                .map_or(JobsConfig::default_max_in_flight(), |n| n.max(1) as u32),
            dedup_window_seconds: j
                .dedup_window_seconds
                .map_or(JobsConfig::default_dedup_window_seconds(), |s| {
                    s.max(1) as u64
                }),
        }),
        scope: inputs.scope.server.clone(),
        client_scopes: inputs.scope.clients.clone(),
        metrics: spec.metrics.as_ref().map(|m| {
            let p = &m.prometheus;
            MetricsConfig {
                prometheus: Some(PrometheusSource {
                    url: p.url.clone(),
                    bearer_token_file: p
                        .bearer_token_secret_ref
                        .as_ref()
                        .map(|_| file(PROMETHEUS_TOKEN_DIR, "token")),
                    ca_file: p
                        .ca_secret_ref
                        .as_ref()
                        .map(|_| file(PROMETHEUS_CA_DIR, "ca.crt")),
                    // Admission keeps it within 100..=30000.
                    timeout_ms: p
                        .timeout_ms
                        .and_then(|ms| u64::try_from(ms).ok())
                        .unwrap_or_else(PrometheusSource::default_timeout_ms),
                    selector: p.selector.clone(),
                    broker_label: PrometheusSource::default_broker_label(),
                }),
            }
        }),
        schema_registry: spec
            .schema_registry
            .as_ref()
            .map(super::schema_registry::config),
    }
}

/// The sidecar's config, and the operator default identity provider's CA
/// when it is given inline (a CA is public; it rides along, one file of the
/// mounted ConfigMap).
pub(super) fn config_map(inputs: &Inputs) -> ConfigMap {
    let mut data = BTreeMap::from([(CONFIG_FILE.to_string(), sidecar_config(inputs).to_yaml())]);
    if let Ok(Some(super::oidc::SignIn {
        ca: super::oidc::CaSource::Inline(pem),
        ..
    })) = super::oidc::resolve(&inputs.server.spec, inputs.config)
    {
        data.insert(super::oidc::INLINE_CA_KEY.to_string(), pem);
    }
    ConfigMap {
        metadata: owned_meta(inputs, names::config_map(&inputs.name()), "mcp-server"),
        data: Some(data),
        ..Default::default()
    }
}

/// The config a live ConfigMap of ours gives the sidecar that reads it;
/// None if it holds none the sidecar would accept.
fn served_config(config_map: &ConfigMap) -> Option<SidecarConfig> {
    let text = config_map.data.as_ref()?.get(CONFIG_FILE)?;
    SidecarConfig::parse(text).ok()
}

/// The scopes a live ConfigMap of ours gives the sidecar: the server's
/// (None: unscoped) and its clients' own. None if it holds no config the
/// sidecar would accept.
pub fn served_scope(config_map: &ConfigMap) -> Option<(Option<Scope>, Vec<ClientScope>)> {
    served_config(config_map).map(|c| (c.scope, c.client_scopes))
}

/// The job path a sidecar config wires, as status reports it.
pub fn jobs_status(config: &SidecarConfig) -> Option<crate::crd::JobsStatus> {
    config.jobs.as_ref().map(|j| crate::crd::JobsStatus {
        request_topic: j.request_topic.clone(),
        reply_topics: j.reply_topics.clone(),
        group: j.group_for(&config.server),
    })
}

/// The sign-in a sidecar config wires, as status reports it.
pub fn auth_status(config: &SidecarConfig) -> Option<crate::crd::AuthStatus> {
    config
        .auth
        .oidc
        .as_ref()
        .map(|oidc| crate::crd::AuthStatus {
            issuer: oidc.issuer.clone(),
            resource: oidc.resource.clone(),
            metadata_url: oidc.metadata_url(),
        })
}

/// The sign-in a live ConfigMap of ours wires (None: none, or no config the
/// sidecar would accept).
pub fn served_auth(config_map: &ConfigMap) -> Option<crate::crd::AuthStatus> {
    served_config(config_map).as_ref().and_then(auth_status)
}

/// The job path a live ConfigMap of ours wires (None: none, or no config
/// the sidecar would accept).
pub fn served_jobs(config_map: &ConfigMap) -> Option<crate::crd::JobsStatus> {
    served_config(config_map).as_ref().and_then(jobs_status)
}

/// The tools a live ConfigMap of ours gives the sidecar that reads it, at
/// `now`: what runs while the operator cannot apply (its break-glass tools
/// only until the window's end, which the sidecar enforces itself). None if
/// the ConfigMap holds no config the sidecar would accept.
pub fn served_tools(
    config_map: &ConfigMap,
    now: k8s_openapi::jiff::Timestamp,
) -> Option<Vec<mcp_kafka_sidecar::tool_name::ToolName>> {
    let config = served_config(config_map)?;
    let closed: Vec<_> = config
        .break_glass
        .filter(|w| w.until <= now)
        .map(|w| w.tools)
        .unwrap_or_default();
    Some(
        config
            .tools
            .into_iter()
            .filter(|t| !closed.contains(t))
            .collect(),
    )
}

/// Volumes and their mounts: the config, then each referenced Secret.
fn volumes(inputs: &Inputs) -> (Vec<Volume>, Vec<VolumeMount>) {
    let server = inputs.name();
    let kafka = &inputs.server.spec.kafka;
    // Readable by the pod's group (fsGroup) only.
    let secret = |name: &str, items: Option<Vec<KeyToPath>>| SecretVolumeSource {
        secret_name: Some(name.to_string()),
        items,
        default_mode: Some(0o440),
        optional: None,
    };
    let mut volumes = vec![Volume {
        name: "config".into(),
        config_map: Some(ConfigMapVolumeSource {
            name: names::config_map(&server),
            ..Default::default()
        }),
        ..Default::default()
    }];
    let mut mounts = vec![VolumeMount {
        name: "config".into(),
        mount_path: CONFIG_DIR.into(),
        read_only: Some(true),
        ..Default::default()
    }];
    let mut add = |name: &str, dir: &str, source: SecretVolumeSource| {
        volumes.push(Volume {
            name: name.into(),
            secret: Some(source),
            ..Default::default()
        });
        mounts.push(VolumeMount {
            name: name.into(),
            mount_path: dir.into(),
            read_only: Some(true),
            ..Default::default()
        });
    };
    if let Some(tls) = &kafka.tls {
        if let Some(ca) = &tls.ca_secret_ref {
            let item = KeyToPath {
                key: ca.key.clone(),
                path: "ca.crt".into(),
                mode: None,
            };
            add("kafka-ca", CA_DIR, secret(&ca.name, Some(vec![item])));
        }
        if let Some(cert) = &tls.client_cert_secret_ref {
            add(
                "kafka-client-cert",
                CLIENT_CERT_DIR,
                secret(&cert.name, None),
            );
        }
    }
    if let Some(sasl) = &kafka.sasl {
        add("kafka-sasl", SASL_DIR, secret(&sasl.secret_ref.name, None));
    }
    let prometheus = inputs.server.spec.metrics.as_ref().map(|m| &m.prometheus);
    let one_key = |key: &str, path: &str| {
        Some(vec![KeyToPath {
            key: key.into(),
            path: path.into(),
            mode: None,
        }])
    };
    if let Some(token) = prometheus.and_then(|p| p.bearer_token_secret_ref.as_ref()) {
        let items = one_key(&token.key, "token");
        add(
            "prometheus-token",
            PROMETHEUS_TOKEN_DIR,
            secret(&token.name, items),
        );
    }
    if let Some(ca) = prometheus.and_then(|p| p.ca_secret_ref.as_ref()) {
        let items = one_key(&ca.key, "ca.crt");
        add("prometheus-ca", PROMETHEUS_CA_DIR, secret(&ca.name, items));
    }
    if let Ok(Some(sign_in)) = super::oidc::resolve(&inputs.server.spec, inputs.config) {
        let (v, m): (Vec<_>, Vec<_>) = super::oidc::volumes(&sign_in).into_iter().unzip();
        volumes.extend(v);
        mounts.extend(m);
    }
    if let Some(registry) = &inputs.server.spec.schema_registry {
        let (v, m): (Vec<_>, Vec<_>) = super::schema_registry::volumes(registry)
            .into_iter()
            .unzip();
        volumes.extend(v);
        mounts.extend(m);
    }
    (volumes, mounts)
}

fn http_probe(path: &str, period: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("mcp".into()),
            ..Default::default()
        }),
        period_seconds: Some(period),
        ..Default::default()
    }
}

pub(super) fn deployment(inputs: &Inputs, config_hash: &str) -> Deployment {
    let server = inputs.name();
    let spec = &inputs.server.spec;
    let (volumes, volume_mounts) = volumes(inputs);
    let mut pod_labels = labels(&server, "mcp-server");
    pod_labels.remove(super::SERVER_LABEL);
    let container = Container {
        name: "sidecar".into(),
        image: Some(
            spec.image
                .clone()
                .unwrap_or_else(|| inputs.config.sidecar.image.clone()),
        ),
        args: Some(vec![
            "--config".into(),
            format!("{CONFIG_DIR}/{CONFIG_FILE}"),
        ]),
        env: Some(vec![EnvVar {
            name: SIDECAR_MALLOC_ARENAS.0.into(),
            value: Some(SIDECAR_MALLOC_ARENAS.1.into()),
            value_from: None,
        }]),
        ports: Some(vec![
            ContainerPort {
                name: Some("mcp".into()),
                container_port: MCP_PORT,
                protocol: Some("TCP".into()),
                ..Default::default()
            },
            ContainerPort {
                name: Some("metrics".into()),
                container_port: METRICS_PORT,
                protocol: Some("TCP".into()),
                ..Default::default()
            },
        ]),
        liveness_probe: Some(http_probe("/healthz", 10)),
        readiness_probe: Some(http_probe("/readyz", 5)),
        resources: Some(
            spec.resources
                .clone()
                .unwrap_or_else(|| inputs.config.sidecar.resources.clone()),
        ),
        security_context: Some(SecurityContext {
            // Set, not left to the default, so that apply puts it back
            // when someone sets it by hand (a field nobody sets stays theirs).
            privileged: Some(false),
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                add: None,
            }),
            ..Default::default()
        }),
        volume_mounts: Some(volume_mounts),
        ..Default::default()
    };
    Deployment {
        metadata: owned_meta(inputs, names::sidecar(&server), "mcp-server"),
        spec: Some(DeploymentSpec {
            replicas: Some(spec.replicas),
            selector: LabelSelector {
                match_labels: Some(selector_labels(&server)),
                match_expressions: None,
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: Some(BTreeMap::from([(
                        CONFIG_HASH_ANNOTATION.to_string(),
                        config_hash.to_string(),
                    )])),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(names::sidecar(&server)),
                    // The sidecar calls TokenReview and SubjectAccessReview with this token.
                    automount_service_account_token: Some(true),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(NON_ROOT_ID),
                        run_as_group: Some(NON_ROOT_ID),
                        fs_group: Some(NON_ROOT_ID),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".into(),
                            localhost_profile: None,
                        }),
                        ..Default::default()
                    }),
                    containers: vec![container],
                    volumes: Some(volumes),
                    node_selector: spec.node_selector.clone(),
                    tolerations: spec.tolerations.clone(),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        status: None,
    }
}

pub(super) fn service(inputs: &Inputs) -> Service {
    let server = inputs.name();
    Service {
        metadata: owned_meta(inputs, names::sidecar(&server), "mcp-server"),
        spec: Some(ServiceSpec {
            selector: Some(selector_labels(&server)),
            // An MCP session and the plans made in it live in one replica's
            // memory: keep each client on the replica it started with.
            session_affinity: Some("ClientIP".into()),
            ports: Some(vec![ServicePort {
                name: Some("mcp".into()),
                port: MCP_PORT,
                target_port: Some(IntOrString::String("mcp".into())),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        status: None,
    }
}

/// Only namespaces labelled with the same environment reach the sidecar's
/// MCP port; its metrics port, the peers of `sidecar.metricsFrom`.
pub(super) fn network_policy(inputs: &Inputs) -> NetworkPolicy {
    let server = inputs.name();
    let environment = &inputs.server.spec.environment;
    let port = |number| {
        Some(vec![NetworkPolicyPort {
            port: Some(IntOrString::Int(number)),
            protocol: Some("TCP".into()),
            end_port: None,
        }])
    };
    let mcp = NetworkPolicyIngressRule {
        from: Some(vec![NetworkPolicyPeer {
            namespace_selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([(
                    ENVIRONMENT_LABEL.to_string(),
                    environment.clone(),
                )])),
                match_expressions: None,
            }),
            ..Default::default()
        }]),
        ports: port(MCP_PORT),
    };
    let metrics_from = &inputs.config.sidecar.metrics_from;
    // A rule without peers admits every source: no peers, no rule.
    let metrics = (!metrics_from.is_empty()).then(|| NetworkPolicyIngressRule {
        from: Some(metrics_from.clone()),
        ports: port(METRICS_PORT),
    });
    NetworkPolicy {
        metadata: owned_meta(inputs, names::sidecar(&server), "mcp-server"),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(selector_labels(&server)),
                match_expressions: None,
            }),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(std::iter::once(mcp).chain(metrics).collect()),
            egress: None,
        }),
    }
}

pub(super) fn pod_disruption_budget(inputs: &Inputs) -> Option<PodDisruptionBudget> {
    let server = inputs.name();
    (inputs.server.spec.replicas > 1).then(|| PodDisruptionBudget {
        metadata: owned_meta(inputs, names::sidecar(&server), "mcp-server"),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(selector_labels(&server)),
                match_expressions: None,
            }),
            ..Default::default()
        }),
        status: None,
    })
}
