//! Build on plain values: a server from YAML in, objects out.

use super::*;
use crate::config::MutationRule;
use ToolName::*;
use k8s_openapi::jiff::Timestamp;
use mcp_kafka_sidecar::config::{SchemaRegistryConfig, SidecarConfig};

const SERVER: &str = r#"
apiVersion: mcpkafka.dev/v1alpha1
kind: McpKafkaServer
metadata: {name: orders, namespace: team-a, uid: 11111111-2222-3333-4444-555555555555, generation: 2}
spec:
  environment: staging
  kafka:
    bootstrapServers: ["kafka-0.kafka:9093"]
    tls: {caSecretRef: {name: kafka-ca, key: ca.pem}, clientCertSecretRef: {name: orders-tls}}
    sasl: {mechanism: SCRAM-SHA-512, secretRef: {name: orders-scram}}
  tools: [list_topics, describe_topic, create_topic]
  clients:
    - {name: support, serviceAccountName: support-agent, tools: [list_topics, create_topic]}
    - {name: laptop, issueToken: {expirationSeconds: 3600}, tools: [describe_topic]}
  replicas: 2
  audit: {kafkaTopic: _mcp_audit}
"#;

fn server(yaml: &str) -> McpKafkaServer {
    serde_yaml::from_str(yaml).unwrap()
}

fn fenced() -> Fenced {
    Fenced {
        mutations: MutationRule::TwoPhase,
        expected_cluster_id: Some("CLUSTER1".into()),
    }
}

fn build(server: &McpKafkaServer, tools: &[ToolName]) -> Desired {
    let config = OperatorConfig::default();
    desired(&Inputs {
        server,
        config: &config,
        fenced: &fenced(),
        tools,
        break_glass: None,
        scope: &crate::scope::ScopeDecision::default(),
    })
}

/// The one object of a kind the build makes exactly once.
fn one<K>(objects: Vec<K>) -> K {
    assert_eq!(objects.len(), 1, "exactly one object of the kind");
    objects.into_iter().next().unwrap()
}

fn all_metadata(d: &Desired) -> Vec<ObjectMeta> {
    let mut m: Vec<ObjectMeta> = Vec::new();
    m.extend(d.service_accounts.iter().map(|o| o.metadata.clone()));
    m.extend(d.roles.iter().map(|o| o.metadata.clone()));
    m.extend(d.role_bindings.iter().map(|o| o.metadata.clone()));
    m.extend(d.config_maps.iter().map(|o| o.metadata.clone()));
    m.extend(d.services.iter().map(|o| o.metadata.clone()));
    m.extend(d.network_policies.iter().map(|o| o.metadata.clone()));
    m.extend(d.pod_disruption_budgets.iter().map(|o| o.metadata.clone()));
    m.extend(d.deployments.iter().map(|o| o.metadata.clone()));
    m
}

#[test]
fn every_namespaced_object_is_owned_and_labelled() {
    let s = server(SERVER);
    let d = build(&s, &[ListTopics, DescribeTopic, CreateTopic]);
    let metas = all_metadata(&d);
    assert_eq!(
        metas.len(),
        2 + 2 + 2 + 5,
        "SAs (sidecar + laptop), 2 Roles, 2 RoleBindings, CM, Svc, NP, PDB, Deploy"
    );
    for meta in metas {
        let owner = &meta.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str(), owner.controller),
            ("McpKafkaServer", "orders", Some(true))
        );
        assert_eq!(meta.namespace.as_deref(), Some("team-a"));
        let labels = meta.labels.unwrap();
        assert_eq!(labels[SERVER_LABEL], "orders");
        assert_eq!(labels[MANAGED_BY.0], MANAGED_BY.1);
    }
    let crb = one(d.cluster_role_bindings);
    assert!(
        crb.metadata.owner_references.is_none(),
        "cluster-scoped: removed by the finalizer"
    );
    assert_eq!(
        crb.metadata.labels.as_ref().unwrap()[SERVER_NAMESPACE_LABEL],
        "team-a"
    );
    assert_eq!(crb.role_ref.name, "system:auth-delegator");
    assert_eq!(crb.subjects.unwrap()[0].name, "orders-mcp");
}

#[test]
fn client_roles_grant_exactly_their_exposed_tools_on_this_server() {
    let s = server(SERVER);
    // The policy removed create_topic: the support client keeps list_topics only.
    let d = build(&s, &[ListTopics, DescribeTopic]);
    let support = d
        .roles
        .iter()
        .find(|r| r.metadata.name.as_deref() == Some("orders-mcp-client-support"))
        .unwrap();
    let rule = &support.rules.as_ref().unwrap()[0];
    assert_eq!(
        rule.api_groups.as_deref(),
        Some(&["mcpkafka.dev".to_string()][..])
    );
    assert_eq!(
        rule.resources.as_deref(),
        Some(&["mcpkafkaservers/tools".to_string()][..])
    );
    assert_eq!(
        rule.resource_names.as_deref(),
        Some(&["orders".to_string()][..])
    );
    assert_eq!(rule.verbs, vec!["list_topics"]);

    let bindings: Vec<(String, String)> = d
        .role_bindings
        .iter()
        .map(|b| {
            (
                b.role_ref.name.clone(),
                b.subjects.as_ref().unwrap()[0].name.clone(),
            )
        })
        .collect();
    assert_eq!(
        bindings,
        vec![
            ("orders-mcp-client-support".into(), "support-agent".into()),
            (
                "orders-mcp-client-laptop".into(),
                "orders-mcp-client-laptop".into()
            ),
        ]
    );

    // A client whose tools are all removed keeps a Role that grants nothing.
    let d = build(&s, &[ListTopics]);
    let laptop = d
        .roles
        .iter()
        .find(|r| r.metadata.name.as_deref() == Some("orders-mcp-client-laptop"))
        .unwrap();
    assert_eq!(laptop.rules.as_deref(), Some(&[][..]));
}

#[test]
fn the_config_is_the_sidecars_own_type_with_files_not_secrets() {
    let s = server(SERVER);
    let d = build(&s, &[ListTopics, DescribeTopic]);
    let text = &one(d.config_maps).data.unwrap()["config.yaml"];
    let config = SidecarConfig::parse(text).expect("the sidecar accepts what the operator renders");
    assert_eq!(config.tools, vec![ListTopics, DescribeTopic]);
    assert_eq!(config.server.environment, "staging");
    assert_eq!(
        config.kafka.expected_cluster_id.as_deref(),
        Some("CLUSTER1")
    );
    let tls = config.kafka.tls.unwrap();
    assert_eq!(
        tls.ca_file.unwrap().to_str(),
        Some("/etc/mcp-kafka/kafka-ca/ca.crt")
    );
    assert_eq!(
        tls.key_file.unwrap().to_str(),
        Some("/etc/mcp-kafka/kafka-client-cert/tls.key")
    );
    assert_eq!(
        config.kafka.sasl.unwrap().password_file.to_str(),
        Some("/etc/mcp-kafka/kafka-sasl/password")
    );
    assert!(
        config
            .listen
            .allowed_hosts
            .contains(&"orders-mcp.team-a.svc.cluster.local".to_string())
    );
    assert_eq!(config.audit.kafka_topic.as_deref(), Some("_mcp_audit"));
}

#[test]
fn tool_names_go_into_the_config_only_when_the_server_asks_for_compat_names() {
    use mcp_kafka_sidecar::config::ToolNameSet::{Confluent, Native};
    let config_of = |s: &McpKafkaServer| {
        let d = build(s, &[ListTopics, CreateTopic]);
        one(d.config_maps).data.unwrap()["config.yaml"].clone()
    };
    let plain = server(SERVER);
    assert_eq!(plain.spec.tool_names, vec![Native], "the default");
    let text = config_of(&plain);
    assert!(
        !text.contains("toolNames"),
        "unchanged for existing servers: {text}"
    );
    assert_eq!(
        SidecarConfig::parse(&text).unwrap().tool_names,
        vec![Native]
    );

    let both = server(&SERVER.replace(
        "  replicas: 2",
        "  toolNames: [native, confluent]\n  replicas: 2",
    ));
    assert_eq!(both.spec.tool_names, vec![Native, Confluent]);
    let text = config_of(&both);
    let config = SidecarConfig::parse(&text).unwrap();
    assert_eq!(config.tool_names, vec![Native, Confluent]);
    assert_eq!(
        config.tools,
        vec![ListTopics, CreateTopic],
        "the same native tools"
    );
    assert_ne!(
        hash_text(&text),
        hash_text(&config_of(&plain)),
        "turning compat names on rolls the sidecar"
    );
}

#[test]
fn the_deployment_is_hardened_and_rolls_on_config_change() {
    let s = server(SERVER);
    let d = build(&s, &[ListTopics]);
    let deploy = one(d.deployments);
    let spec = deploy.spec.unwrap();
    assert_eq!(spec.replicas, Some(2));
    let template = spec.template;
    let pod = template.spec.unwrap();
    let psc = pod.security_context.unwrap();
    assert_eq!(
        (psc.run_as_non_root, psc.run_as_user),
        (Some(true), Some(65532))
    );
    assert_eq!(psc.seccomp_profile.unwrap().type_, "RuntimeDefault");
    let c = &pod.containers[0];
    let sc = c.security_context.as_ref().unwrap();
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(
        sc.capabilities.as_ref().unwrap().drop.as_deref(),
        Some(&["ALL".to_string()][..])
    );
    let env = c.env.as_ref().unwrap();
    assert!(
        env.iter()
            .any(|e| e.name == "MALLOC_ARENA_MAX" && e.value.as_deref() == Some("2")),
        "{env:?}"
    );
    assert_eq!(
        c.liveness_probe
            .as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap()
            .path
            .as_deref(),
        Some("/healthz")
    );
    assert_eq!(
        c.readiness_probe
            .as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap()
            .path
            .as_deref(),
        Some("/readyz")
    );
    assert_eq!(pod.service_account_name.as_deref(), Some("orders-mcp"));
    let mounts: Vec<&str> = c
        .volume_mounts
        .as_ref()
        .unwrap()
        .iter()
        .map(|m| m.mount_path.as_str())
        .collect();
    assert_eq!(
        mounts,
        [
            "/etc/mcp-kafka/config",
            "/etc/mcp-kafka/kafka-ca",
            "/etc/mcp-kafka/kafka-client-cert",
            "/etc/mcp-kafka/kafka-sasl"
        ]
    );

    let hash = |d: &Desired| {
        d.deployments[0]
            .spec
            .as_ref()
            .unwrap()
            .template
            .metadata
            .as_ref()
            .unwrap()
            .annotations
            .as_ref()
            .unwrap()[CONFIG_HASH_ANNOTATION]
            .clone()
    };
    let same = build(&s, &[ListTopics]);
    assert_eq!(
        hash(&same),
        hash(&build(&s, &[ListTopics])),
        "rendering is stable"
    );
    assert_ne!(
        hash(&same),
        hash(&build(&s, &[ListTopics, DescribeTopic])),
        "a tool change rolls out"
    );
}

#[test]
fn service_network_policy_and_pdb() {
    let s = server(SERVER);
    let d = build(&s, &[ListTopics]);
    let service = one(d.services).spec.unwrap();
    assert_eq!(
        service.session_affinity.as_deref(),
        Some("ClientIP"),
        "sessions and plans live in one replica"
    );
    let port = &service.ports.unwrap()[0];
    assert_eq!((port.name.as_deref(), port.port), (Some("mcp"), 8090));
    let np = one(d.network_policies).spec.unwrap();
    let ingress = np.ingress.unwrap();
    assert_eq!(ingress.len(), 2, "one rule for /mcp, one for /metrics");
    // /mcp: the server's environment only, on the MCP port only.
    let mcp = &ingress[0];
    let from = mcp.from.clone().unwrap();
    assert_eq!(from.len(), 1);
    let ns_labels = from[0]
        .namespace_selector
        .as_ref()
        .unwrap()
        .match_labels
        .clone()
        .unwrap();
    assert_eq!(ns_labels.len(), 1);
    assert_eq!(ns_labels[crate::fence::ENVIRONMENT_LABEL], "staging");
    assert!(from[0].pod_selector.is_none() && from[0].ip_block.is_none());
    let ports = |rule: &k8s_openapi::api::networking::v1::NetworkPolicyIngressRule| {
        serde_json::to_value(rule.ports.as_ref().unwrap()).unwrap()
    };
    assert_eq!(
        ports(mcp),
        serde_json::json!([{"port": 8090, "protocol": "TCP"}])
    );
    // /metrics: any namespace by default, on the metrics port only.
    let metrics = &ingress[1];
    assert_eq!(
        serde_json::to_value(metrics.from.as_ref().unwrap()).unwrap(),
        serde_json::json!([{"namespaceSelector": {}}])
    );
    assert_eq!(
        ports(metrics),
        serde_json::json!([{"port": 9090, "protocol": "TCP"}])
    );
    assert_eq!(d.pod_disruption_budgets.len(), 1);

    let single = server(&SERVER.replace("replicas: 2", "replicas: 1"));
    assert!(
        build(&single, &[ListTopics])
            .pod_disruption_budgets
            .is_empty()
    );
}

#[test]
fn desired_hashes_are_stable_and_follow_content() {
    let s = server(SERVER);
    let mut a = one(build(&s, &[ListTopics]).services);
    let mut b = one(build(&s, &[ListTopics]).services);
    assert_eq!(stamp_desired_hash(&mut a), stamp_desired_hash(&mut b));
    // Stamping again (the stamp itself is excluded) gives the same hash.
    let first = a.annotations()[DESIRED_HASH_ANNOTATION].clone();
    assert_eq!(stamp_desired_hash(&mut a), first);
    let mut c = one(build(
        &server(&SERVER.replace("orders", "payments")),
        &[ListTopics],
    )
    .services);
    assert_ne!(stamp_desired_hash(&mut c), first);
}

#[test]
fn token_secrets_carry_token_endpoint_and_times() {
    let s = server(SERVER);
    let config = OperatorConfig::default();
    let tools = [ListTopics];
    let inputs = Inputs {
        server: &s,
        config: &config,
        fenced: &fenced(),
        tools: &tools,
        break_glass: None,
        scope: &crate::scope::ScopeDecision::default(),
    };
    let token = IssuedToken {
        token: "eyJ.test".into(),
        issued_at: "2026-01-01T00:00:00Z".parse::<Timestamp>().unwrap(),
        expires_at: "2026-01-01T01:00:00Z".parse::<Timestamp>().unwrap(),
        lifetime_seconds: 3600,
        service_account_uid: "uid".into(),
    };
    let secret = token_secret(&inputs, "laptop", &token);
    assert_eq!(
        secret.metadata.name.as_deref(),
        Some("orders-mcp-client-laptop-token")
    );
    let data = secret.data.unwrap();
    assert_eq!(data["token"].0, b"eyJ.test");
    assert_eq!(
        data["endpoint"].0,
        b"http://orders-mcp.team-a.svc.cluster.local:8090/mcp"
    );
    assert_eq!(
        secret.metadata.annotations.unwrap()[rbac::EXPIRES_AT_ANNOTATION],
        "2026-01-01T01:00:00Z"
    );
}

#[test]
fn served_tools_read_back_what_the_config_map_gives_the_sidecar() {
    let s = server(SERVER);
    let config = OperatorConfig::default();
    let until: Timestamp = "2026-01-01T01:00:00Z".parse().unwrap();
    let window = crate::crd::BreakGlass {
        until: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(until),
        reason: "INC-1".into(),
        allow: vec![CreateTopic],
    };
    let d = desired(&Inputs {
        server: &s,
        config: &config,
        fenced: &fenced(),
        tools: &[ListTopics, CreateTopic],
        break_glass: Some(&window),
        scope: &crate::scope::ScopeDecision::default(),
    });
    let cm = one(d.config_maps);
    let before: Timestamp = "2026-01-01T00:30:00Z".parse().unwrap();
    assert_eq!(
        served_tools(&cm, before),
        Some(vec![ListTopics, CreateTopic])
    );
    // The sidecar closes the window by itself at its end.
    assert_eq!(served_tools(&cm, until), Some(vec![ListTopics]));
    assert_eq!(
        served_tools(&k8s_openapi::api::core::v1::ConfigMap::default(), before),
        None
    );
}

#[test]
fn metrics_peers_come_from_the_operator_config_and_none_means_no_rule() {
    let s = server(SERVER);
    let np = |config: &OperatorConfig| {
        one(desired(&Inputs {
            server: &s,
            config,
            fenced: &fenced(),
            tools: &[ListTopics],
            break_glass: None,
            scope: &crate::scope::ScopeDecision::default(),
        })
        .network_policies)
        .spec
        .unwrap()
        .ingress
        .unwrap()
    };
    let mut config = OperatorConfig::parse(
        "sidecar: {metricsFrom: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: monitoring}}, podSelector: {matchLabels: {app: prometheus}}}]}",
    )
    .unwrap();
    let rules = np(&config);
    assert_eq!(
        serde_json::to_value(&rules[1]).unwrap(),
        serde_json::json!({
            "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
                      "podSelector": {"matchLabels": {"app": "prometheus"}}}],
            "ports": [{"port": 9090, "protocol": "TCP"}]
        })
    );
    // An ingress rule with no peers would admit every source: no peers, no rule.
    config.sidecar.metrics_from.clear();
    let rules = np(&config);
    assert_eq!(rules.len(), 1);
    assert_eq!(
        rules[0].ports.as_ref().unwrap()[0].port,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(MCP_PORT))
    );
}

#[test]
fn the_sidecar_serves_metrics_on_a_named_port_of_its_own_and_probes_stay_on_mcp() {
    let s = server(SERVER);
    let d = build(&s, &[ListTopics]);
    let text = &d.config_maps[0].data.as_ref().unwrap()["config.yaml"];
    let config = SidecarConfig::parse(text).unwrap();
    assert_eq!(config.listen.address.port(), 8090);
    assert_eq!(
        config.listen.metrics_address,
        Some("0.0.0.0:9090".parse().unwrap())
    );
    let pod = one(d.deployments).spec.unwrap().template.spec.unwrap();
    let c = &pod.containers[0];
    let ports: Vec<(Option<&str>, i32)> = c
        .ports
        .as_ref()
        .unwrap()
        .iter()
        .map(|p| (p.name.as_deref(), p.container_port))
        .collect();
    assert_eq!(
        ports,
        [(Some("mcp"), 8090), (Some("metrics"), METRICS_PORT)]
    );
    assert_eq!(METRICS_PORT, 9090);
    for probe in [&c.liveness_probe, &c.readiness_probe] {
        let get = probe.as_ref().unwrap().http_get.as_ref().unwrap();
        assert_eq!(
            get.port,
            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String("mcp".into())
        );
    }
}

#[test]
fn scopes_go_into_the_config_only_when_something_is_scoped() {
    use crate::policy::Policy;
    use crate::scope::ScopeDecision;
    let config = OperatorConfig::default();
    let config_of = |s: &McpKafkaServer, scope: &ScopeDecision| {
        let d = desired(&Inputs {
            server: s,
            config: &config,
            fenced: &fenced(),
            tools: &[ListTopics],
            break_glass: None,
            scope,
        });
        one(d.config_maps).data.unwrap()["config.yaml"].clone()
    };
    let plain = server(SERVER);
    let policy = Policy::operator_default(&Default::default());
    let unscoped = crate::scope::decide(&policy, "team-a", "orders", &plain.spec, None);
    assert_eq!(unscoped, ScopeDecision::default());
    let text = config_of(&plain, &unscoped);
    assert!(
        !text.contains("scope") && !text.contains("clientScopes"),
        "unchanged for servers without scopes: {text}"
    );
    assert_eq!(SidecarConfig::parse(&text).unwrap().scope, None);

    // A client with a scope of its own: the server's callers see every
    // name, the client's (by its ServiceAccount's username) its own.
    let scoped = server(&SERVER.replace(
        "{name: laptop, issueToken: {expirationSeconds: 3600}, tools: [describe_topic]}",
        "{name: laptop, issueToken: {expirationSeconds: 3600}, tools: [describe_topic], scope: {topics: {allow: [{name: team-a., patternType: prefix}]}}}",
    ));
    let decision = crate::scope::decide(&policy, "team-a", "orders", &scoped.spec, None);
    let text = config_of(&scoped, &decision);
    let parsed = SidecarConfig::parse(&text).expect("the sidecar accepts the scopes");
    assert_eq!(
        parsed.scope,
        Some(mcp_kafka_sidecar::scope::Scope::everything())
    );
    assert_eq!(parsed.client_scopes.len(), 1);
    assert_eq!(
        parsed.client_scopes[0].username,
        "system:serviceaccount:team-a:orders-mcp-client-laptop"
    );
    let laptop = parsed
        .scope_for(Some(
            "system:serviceaccount:team-a:orders-mcp-client-laptop",
        ))
        .unwrap();
    assert!(laptop.topics.admits("team-a.orders") && !laptop.topics.admits("team-b.orders"));
    assert!(!laptop.groups.admits("any-group"), "groups left out: none");
    // The support client (no scope of its own) gets the server's.
    assert_eq!(
        parsed.scope_for(Some("system:serviceaccount:team-a:support-agent")),
        parsed.scope.as_ref()
    );
    assert_ne!(hash_text(&text), hash_text(&config_of(&plain, &unscoped)));

    // The username is the RoleBinding's subject, named in one place.
    let d = build(&scoped, &[ListTopics]);
    let subject = &d
        .role_bindings
        .iter()
        .find(|b| b.metadata.name.as_deref() == Some("orders-mcp-client-laptop"))
        .unwrap()
        .subjects
        .as_ref()
        .unwrap()[0];
    assert_eq!(
        names::service_account_username(subject.namespace.as_deref().unwrap(), &subject.name),
        parsed.client_scopes[0].username
    );
}

#[test]
fn a_prometheus_source_is_rendered_with_its_secrets_as_mounted_files() {
    let with = SERVER.replace(
        "  replicas: 2\n",
        "  replicas: 2\n  metrics:\n    prometheus: {url: 'https://prometheus.monitoring.svc:9090', bearerTokenSecretRef: {name: prom-reader, key: token}, caSecretRef: {name: prom-ca, key: ca.pem}, timeoutMs: 3000, selector: 'job=\"kafka\"'}\n",
    );
    let s = server(&with);
    let d = build(&s, &[ListTopics, ClusterMetrics]);
    let text = &one(d.config_maps).data.unwrap()["config.yaml"];
    let config = SidecarConfig::parse(text).expect("the sidecar accepts what the operator renders");
    assert!(config.enables(ClusterMetrics));
    let p = config.metrics.unwrap().prometheus.unwrap();
    assert_eq!(p.url, "https://prometheus.monitoring.svc:9090");
    assert_eq!(
        p.bearer_token_file.unwrap().to_str(),
        Some("/etc/mcp-kafka/prometheus-token/token")
    );
    assert_eq!(
        p.ca_file.unwrap().to_str(),
        Some("/etc/mcp-kafka/prometheus-ca/ca.crt")
    );
    assert_eq!(
        (p.timeout_ms, p.selector.as_deref()),
        (3000, Some("job=\"kafka\""))
    );
    let pod = d.deployments[0]
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .clone()
        .unwrap();
    let secrets: Vec<(String, String, String)> = pod
        .volumes
        .unwrap()
        .into_iter()
        .filter_map(|v| {
            let s = v.secret?;
            let item = s.items?.into_iter().next()?;
            Some((s.secret_name?, item.key, item.path))
        })
        .collect();
    assert!(
        secrets.contains(&("prom-reader".into(), "token".into(), "token".into())),
        "{secrets:?}"
    );
    assert!(
        secrets.contains(&("prom-ca".into(), "ca.pem".into(), "ca.crt".into())),
        "{secrets:?}"
    );
    let mounts: Vec<String> = pod.containers[0]
        .volume_mounts
        .clone()
        .unwrap()
        .into_iter()
        .map(|m| m.mount_path)
        .collect();
    assert!(
        mounts.contains(&"/etc/mcp-kafka/prometheus-token".to_string()),
        "{mounts:?}"
    );

    // Without spec.metrics, no source is rendered.
    let d = build(&server(SERVER), &[ListTopics]);
    let text = &one(d.config_maps).data.unwrap()["config.yaml"];
    assert!(SidecarConfig::parse(text).unwrap().metrics.is_none());
}

#[test]
fn a_job_path_is_rendered_and_its_absence_changes_no_config_text() {
    let without = build(&server(SERVER), &[ListTopics]);
    let text = one(without.config_maps).data.unwrap()["config.yaml"].clone();
    assert!(!text.contains("jobs"), "{text}");
    let with = SERVER.replace(
        "  replicas: 2\n",
        "  replicas: 2\n  jobs: {requestTopic: o.jobs, replyTopics: [o.replies, o.replies2], deadLetterTopic: o.dead, journalTopic: o.journal, maxInFlight: 4}\n",
    );
    let s = server(&with);
    let inputs_config = OperatorConfig::default();
    let inputs = Inputs {
        server: &s,
        config: &inputs_config,
        fenced: &fenced(),
        tools: &[ListTopics],
        break_glass: None,
        scope: &crate::scope::ScopeDecision::default(),
    };
    let d = desired(&inputs);
    let text = &one(d.config_maps).data.unwrap()["config.yaml"];
    let config = SidecarConfig::parse(text).expect("the sidecar accepts what the operator renders");
    let jobs = config.jobs.clone().unwrap();
    assert_eq!(jobs.reply_topics, ["o.replies", "o.replies2"]);
    assert_eq!((jobs.max_in_flight, jobs.dedup_window_seconds), (4, 600));
    let status = jobs_status(&config).unwrap();
    assert_eq!(status.group, "mcp-kafka-sidecar.team-a.orders.jobs");
    assert_eq!(status.request_topic, "o.jobs");
    assert_eq!(jobs_status(&sidecar_config(&inputs)), Some(status));
}

/// A pod volume as (volume name, Secret or ConfigMap name, [(key, path)]).
type VolumeSource = (String, String, Vec<(String, String)>);

/// The pod's volumes that come from a Secret or ConfigMap.
fn volume_sources(d: &Desired) -> Vec<VolumeSource> {
    let pod = d.deployments[0]
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .clone()
        .unwrap();
    pod.volumes
        .unwrap()
        .into_iter()
        .filter_map(|v| {
            let (object, items) = match (v.secret, v.config_map) {
                (Some(s), _) => (s.secret_name?, s.items?),
                (None, Some(c)) => (c.name, c.items?),
                _ => return None,
            };
            let items = items.into_iter().map(|i| (i.key, i.path)).collect();
            Some((v.name, object, items))
        })
        .collect()
}

#[test]
fn a_schema_registry_is_rendered_with_its_secrets_as_mounted_files() {
    let pairs = |p: &[(&str, &str)]| -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let with = SERVER.replace(
        "  replicas: 2\n",
        "  replicas: 2\n  schemaRegistry: {url: 'https://registry.kafka.svc:8081/apis/ccompat/v7', basicAuthSecretRef: {name: registry-user}, caConfigMapRef: {name: trust, key: bundle.pem}, timeoutMs: 2500}\n",
    );
    let d = build(&server(&with), &[ListTopics, GetSchema, RegisterSchema]);
    let text = &one(d.config_maps.clone()).data.unwrap()["config.yaml"];
    let config = SidecarConfig::parse(text).expect("the sidecar accepts what the operator renders");
    assert!(config.enables(GetSchema) && config.enables(RegisterSchema));
    let r = config.schema_registry.unwrap();
    assert_eq!(r.url, "https://registry.kafka.svc:8081/apis/ccompat/v7");
    let basic = r.basic_auth.unwrap();
    assert_eq!(
        (
            basic.username_file.to_str(),
            basic.password_file.to_str(),
            r.ca_file.as_deref().and_then(|p| p.to_str()),
            r.bearer_token_file,
            r.timeout_ms
        ),
        (
            Some("/etc/mcp-kafka/schema-registry-basic-auth/username"),
            Some("/etc/mcp-kafka/schema-registry-basic-auth/password"),
            Some("/etc/mcp-kafka/schema-registry-ca/ca.crt"),
            None,
            2500
        )
    );
    let sources = volume_sources(&d);
    assert!(
        sources.contains(&(
            "schema-registry-basic-auth".into(),
            "registry-user".into(),
            pairs(&[("username", "username"), ("password", "password")])
        )),
        "{sources:?}"
    );
    assert!(
        sources.contains(&(
            "schema-registry-ca".into(),
            "trust".into(),
            pairs(&[("bundle.pem", "ca.crt")])
        )),
        "{sources:?}"
    );

    // A bearer token and a CA from a Secret instead.
    let with = SERVER.replace(
        "  replicas: 2\n",
        "  replicas: 2\n  schemaRegistry: {url: 'https://registry.kafka.svc:8081', bearerTokenSecretRef: {name: registry-token, key: jwt}, caSecretRef: {name: registry-ca, key: ca.pem}}\n",
    );
    let d = build(&server(&with), &[ListTopics, GetSchema]);
    let text = &one(d.config_maps.clone()).data.unwrap()["config.yaml"];
    let r = SidecarConfig::parse(text).unwrap().schema_registry.unwrap();
    assert_eq!(
        (
            r.bearer_token_file.as_deref().and_then(|p| p.to_str()),
            r.basic_auth,
            r.timeout_ms
        ),
        (
            Some("/etc/mcp-kafka/schema-registry-token/token"),
            None,
            SchemaRegistryConfig::default_timeout_ms()
        )
    );
    let sources = volume_sources(&d);
    for expected in [
        ("schema-registry-token", "registry-token", ("jwt", "token")),
        ("schema-registry-ca", "registry-ca", ("ca.pem", "ca.crt")),
    ] {
        let (volume, object, (key, path)) = expected;
        assert!(
            sources.contains(&(volume.into(), object.into(), pairs(&[(key, path)]))),
            "{expected:?} in {sources:?}"
        );
    }

    // Without spec.schemaRegistry, nothing is rendered or mounted.
    let d = build(&server(SERVER), &[ListTopics]);
    let text = &one(d.config_maps.clone()).data.unwrap()["config.yaml"];
    assert!(
        SidecarConfig::parse(text)
            .unwrap()
            .schema_registry
            .is_none()
    );
    assert!(
        !volume_sources(&d)
            .iter()
            .any(|(name, ..)| name.starts_with("schema-registry")),
    );
}

/// SERVER with sign-in: `oidc` is the YAML of spec.auth.oidc, and two more
/// clients, of the provider's users and of its groups.
fn signed_in(oidc: &str) -> McpKafkaServer {
    server(&SERVER.replace(
        "  replicas: 2\n",
        &format!(
            "  replicas: 2\n  auth: {{oidc: {oidc}}}\n  clients:\n    - {{name: support, serviceAccountName: support-agent, tools: [list_topics, create_topic]}}\n    - {{name: people, users: [alice, bob], tools: [list_topics]}}\n    - {{name: operators, groups: [kafka-operators], users: [carol], tools: [list_topics, create_topic]}}\n"
        ),
    ).replace(
        // The first clients list gives way to the one above.
        "  clients:\n    - {name: support, serviceAccountName: support-agent, tools: [list_topics, create_topic]}\n    - {name: laptop, issueToken: {expirationSeconds: 3600}, tools: [describe_topic]}\n",
        "",
    ))
}

fn build_with(server: &McpKafkaServer, config: &OperatorConfig) -> Desired {
    desired(&Inputs {
        server,
        config,
        fenced: &fenced(),
        tools: &[ListTopics, CreateTopic],
        break_glass: None,
        scope: &crate::scope::ScopeDecision::default(),
    })
}

fn sidecar_of(d: &Desired) -> SidecarConfig {
    let text = &d.config_maps[0].data.as_ref().unwrap()["config.yaml"];
    SidecarConfig::parse(text).expect("the sidecar accepts what the operator renders")
}

fn subjects_of(d: &Desired, binding: &str) -> Vec<serde_json::Value> {
    let b = d
        .role_bindings
        .iter()
        .find(|b| b.metadata.name.as_deref() == Some(binding))
        .unwrap_or_else(|| panic!("RoleBinding {binding}"));
    b.subjects
        .iter()
        .flatten()
        .map(|s| serde_json::to_value(s).unwrap())
        .collect()
}

#[test]
fn a_servers_own_identity_provider_is_rendered_with_its_ca_mounted_and_its_host_allowed() {
    let s = signed_in(
        "{issuer: 'https://sso.example.com/realms/acme', caConfigMapRef: {name: trust, key: bundle.pem}, resource: 'https://Orders-MCP.example.com:8443/mcp', audiences: [orders-mcp], claims: {username: {claim: preferred_username, prefix: 'acme:'}, groups: {claim: roles}}, scopes: [kafka-mcp]}",
    );
    let d = build_with(&s, &OperatorConfig::default());
    let config = sidecar_of(&d);
    let oidc = config.auth.oidc.clone().expect("auth.oidc");
    assert_eq!(oidc.issuer, "https://sso.example.com/realms/acme");
    assert_eq!(oidc.resource, "https://Orders-MCP.example.com:8443/mcp");
    assert_eq!(oidc.audiences, ["orders-mcp"]);
    assert_eq!(
        (
            oidc.username_claim.as_str(),
            oidc.username_prefix.as_str(),
            oidc.groups_claim.as_str(),
            oidc.groups_prefix.as_str()
        ),
        ("preferred_username", "acme:", "roles", "oidc:"),
        "a prefix left out is the default one"
    );
    assert_eq!(oidc.scopes, ["kafka-mcp"]);
    assert_eq!(
        oidc.ca_file.as_deref().and_then(|p| p.to_str()),
        Some("/etc/mcp-kafka/oidc-ca/ca.crt")
    );
    assert_eq!(
        oidc.metadata_url(),
        "https://Orders-MCP.example.com:8443/.well-known/oauth-protected-resource/mcp"
    );
    // The public host (any port: a proxy may forward it with or without),
    // after the Service's names, which stay.
    assert_eq!(
        config.listen.allowed_hosts,
        [
            "orders-mcp",
            "orders-mcp.team-a",
            "orders-mcp.team-a.svc",
            "orders-mcp.team-a.svc.cluster.local",
            "orders-mcp.example.com"
        ]
    );
    assert!(
        volume_sources(&d).contains(&(
            "oidc-ca".into(),
            "trust".into(),
            vec![("bundle.pem".into(), "ca.crt".into())]
        )),
        "{:?}",
        volume_sources(&d)
    );
    let mounts: Vec<String> = d.deployments[0]
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| m.mount_path.clone())
        .collect();
    assert!(
        mounts.contains(&"/etc/mcp-kafka/oidc-ca".to_string()),
        "{mounts:?}"
    );

    // Users and groups become User and Group subjects with the prefixes;
    // ServiceAccount clients stay as they were.
    let rbac = |kind: &str, name: &str| serde_json::json!({"kind": kind, "name": name, "apiGroup": "rbac.authorization.k8s.io"});
    assert_eq!(
        subjects_of(&d, "orders-mcp-client-people"),
        [rbac("User", "acme:alice"), rbac("User", "acme:bob")]
    );
    assert_eq!(
        subjects_of(&d, "orders-mcp-client-operators"),
        [
            rbac("User", "acme:carol"),
            rbac("Group", "oidc:kafka-operators")
        ]
    );
    assert_eq!(
        subjects_of(&d, "orders-mcp-client-support"),
        [
            serde_json::json!({"kind": "ServiceAccount", "name": "support-agent", "namespace": "team-a"})
        ]
    );
    let operators = d
        .roles
        .iter()
        .find(|r| r.metadata.name.as_deref() == Some("orders-mcp-client-operators"))
        .unwrap();
    assert_eq!(
        operators.rules.as_ref().unwrap()[0].verbs,
        ["list_topics", "create_topic"]
    );
    // No ServiceAccount is made for a client of people.
    assert_eq!(d.service_accounts.len(), 1, "the sidecar's only");

    // A CA from a Secret, read-only for the pod's group like every Secret;
    // a server without a CA trusts the system's roots and mounts nothing.
    let s = signed_in(
        "{issuer: 'https://sso.example.com', caSecretRef: {name: sso-ca, key: ca.pem}, resource: 'https://orders-mcp.example.com/mcp'}",
    );
    let d = build_with(&s, &OperatorConfig::default());
    assert!(volume_sources(&d).contains(&(
        "oidc-ca".into(),
        "sso-ca".into(),
        vec![("ca.pem".into(), "ca.crt".into())]
    )));
    let pod = d.deployments[0]
        .spec
        .clone()
        .unwrap()
        .template
        .spec
        .unwrap();
    let volume = pod
        .volumes
        .unwrap()
        .into_iter()
        .find(|v| v.name == "oidc-ca")
        .unwrap();
    assert_eq!(volume.secret.unwrap().default_mode, Some(0o440));
    let s = signed_in(
        "{issuer: 'https://sso.example.com', resource: 'https://orders-mcp.example.com/mcp'}",
    );
    let d = build_with(&s, &OperatorConfig::default());
    let oidc = sidecar_of(&d).auth.oidc.unwrap();
    assert_eq!(oidc.ca_file, None);
    assert_eq!(
        (
            oidc.username_claim.as_str(),
            oidc.username_prefix.as_str(),
            oidc.groups_claim.as_str()
        ),
        ("sub", "oidc:", "groups")
    );
    assert!(
        !volume_sources(&d)
            .iter()
            .any(|(name, ..)| name == "oidc-ca")
    );
    assert_eq!(
        subjects_of(&d, "orders-mcp-client-people")[0]["name"],
        "oidc:alice"
    );
}

#[test]
fn a_server_naming_no_issuer_gets_the_operators_identity_provider_as_it_is() {
    let org = OperatorConfig::parse(
        "auth: {oidc: {issuer: 'https://sso.corp.example/realms/corp', caBundle: \"-----BEGIN CERTIFICATE-----\\nMIIB\\n-----END CERTIFICATE-----\\n\", claims: {username: {claim: email, prefix: 'corp:'}, groups: {claim: groups, prefix: 'corp:'}}, scopes: [openid, kafka]}}",
    )
    .unwrap();
    let s = signed_in("{resource: 'https://orders-mcp.team-a.example.com/mcp'}");
    let d = build_with(&s, &org);
    let config = sidecar_of(&d);
    let oidc = config.auth.oidc.unwrap();
    assert_eq!(oidc.issuer, "https://sso.corp.example/realms/corp");
    assert_eq!(
        (oidc.username_claim.as_str(), oidc.username_prefix.as_str()),
        ("email", "corp:")
    );
    assert_eq!(oidc.scopes, ["openid", "kafka"]);
    // The inline CA rides in the server's own ConfigMap, already mounted.
    assert_eq!(
        oidc.ca_file.as_deref().and_then(|p| p.to_str()),
        Some("/etc/mcp-kafka/config/oidc-ca.crt")
    );
    let data = d.config_maps[0].data.clone().unwrap();
    assert!(data["oidc-ca.crt"].starts_with("-----BEGIN CERTIFICATE-----"));
    assert!(
        !volume_sources(&d)
            .iter()
            .any(|(name, ..)| name == "oidc-ca")
    );
    assert_eq!(
        subjects_of(&d, "orders-mcp-client-operators")[1]["name"],
        "corp:kafka-operators"
    );
    // A new CA rolls the sidecar out, as a config change does.
    let hash = |d: &Desired| {
        d.deployments[0]
            .spec
            .as_ref()
            .unwrap()
            .template
            .metadata
            .as_ref()
            .unwrap()
            .annotations
            .as_ref()
            .unwrap()[CONFIG_HASH_ANNOTATION]
            .clone()
    };
    let mut rotated = org.clone();
    rotated.auth.oidc.as_mut().unwrap().ca_bundle =
        Some("-----BEGIN CERTIFICATE-----\nMIIC\n-----END CERTIFICATE-----\n".into());
    assert_ne!(hash(&d), hash(&build_with(&s, &rotated)));

    // The same provider with its CA in a ConfigMap of each server's namespace.
    let mut trust = org.clone();
    let p = trust.auth.oidc.as_mut().unwrap();
    p.ca_bundle = None;
    p.ca_config_map_ref = Some(crate::crd::ConfigMapKeyRef {
        name: "corp-trust".into(),
        key: "ca.crt".into(),
    });
    let d = build_with(&s, &trust);
    assert!(volume_sources(&d).contains(&(
        "oidc-ca".into(),
        "corp-trust".into(),
        vec![("ca.crt".into(), "ca.crt".into())]
    )));
    assert!(
        !d.config_maps[0]
            .data
            .as_ref()
            .unwrap()
            .contains_key("oidc-ca.crt")
    );

    // No default, and the server names no issuer: no sign-in is wired (the
    // reconcile says why in status), the people clients' bindings name no
    // one, and Kubernetes tokens keep working as before.
    let d = build_with(&s, &OperatorConfig::default());
    assert_eq!(
        crate::build::oidc::resolve(&s.spec, &OperatorConfig::default()),
        Err(crate::build::oidc::SignInProblem::NoIssuer)
    );
    let config = sidecar_of(&d);
    assert_eq!(config.auth.oidc, None);
    assert!(
        !config
            .listen
            .allowed_hosts
            .iter()
            .any(|h| h.ends_with("example.com"))
    );
    assert!(subjects_of(&d, "orders-mcp-client-people").is_empty());
    assert_eq!(subjects_of(&d, "orders-mcp-client-support").len(), 1);
}

#[test]
fn servers_without_sign_in_render_exactly_as_before_even_with_an_organization_provider() {
    let org = OperatorConfig::parse(
        "auth: {oidc: {issuer: 'https://sso.corp.example', caBundle: \"-----BEGIN CERTIFICATE-----\\nMIIB\\n-----END CERTIFICATE-----\\n\"}}",
    )
    .unwrap();
    let s = server(SERVER);
    let plain = build_with(&s, &OperatorConfig::default());
    let with_org = build_with(&s, &org);
    assert_eq!(
        serde_json::to_value(&plain.config_maps).unwrap(),
        serde_json::to_value(&with_org.config_maps).unwrap()
    );
    assert_eq!(
        serde_json::to_value(&plain.deployments).unwrap(),
        serde_json::to_value(&with_org.deployments).unwrap()
    );
    let text = &plain.config_maps[0].data.as_ref().unwrap()["config.yaml"];
    assert!(!text.contains("oidc"), "{text}");
}

#[test]
fn the_network_policy_leaves_egress_to_the_identity_provider_open() {
    // The sidecar fetches the provider's discovery document and keys
    // itself; the NetworkPolicy fences ingress only, so nothing is added.
    let s = signed_in(
        "{issuer: 'https://sso.example.com', resource: 'https://orders-mcp.example.com/mcp'}",
    );
    let np = one(build_with(&s, &OperatorConfig::default()).network_policies)
        .spec
        .unwrap();
    assert_eq!(
        np.policy_types.as_deref(),
        Some(&["Ingress".to_string()][..])
    );
    assert!(np.egress.is_none());
}

#[test]
fn the_public_host_is_what_the_host_header_carries() {
    use crate::build::oidc::public_host;
    for (resource, host) in [
        ("https://MCP.example.com/mcp", Some("mcp.example.com")),
        ("https://mcp.example.com:8443/mcp", Some("mcp.example.com")),
        ("https://mcp.example.com", Some("mcp.example.com")),
        ("http://127.0.0.1:8090/mcp", Some("127.0.0.1")),
        ("http://[::1]:8090/mcp", Some("[::1]")),
        ("https:///mcp", None),
        ("mcp.example.com", None),
    ] {
        assert_eq!(public_host(resource).as_deref(), host, "{resource}");
    }
}

#[test]
fn status_reports_the_sign_in_the_config_wires() {
    let s = signed_in(
        "{issuer: 'https://sso.example.com/realms/acme', resource: 'https://orders-mcp.example.com/mcp'}",
    );
    let d = build_with(&s, &OperatorConfig::default());
    let auth = crate::build::served_auth(&d.config_maps[0]).expect("sign-in is wired");
    assert_eq!(
        auth,
        crate::crd::AuthStatus {
            issuer: "https://sso.example.com/realms/acme".into(),
            resource: "https://orders-mcp.example.com/mcp".into(),
            metadata_url: "https://orders-mcp.example.com/.well-known/oauth-protected-resource/mcp"
                .into(),
        }
    );
    let d = build_with(&server(SERVER), &OperatorConfig::default());
    assert_eq!(crate::build::served_auth(&d.config_maps[0]), None);
}
