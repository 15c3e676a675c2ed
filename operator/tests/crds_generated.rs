//! `crds/` (and the chart's copy in `charts/mcp-kafka-operator/crds/`, which
//! Helm installs from there) are generated from the Rust types and must never
//! drift from them.

#[test]
fn checked_in_crds_match_the_types() {
    let crds = mcpk_e2e::crds_dir();
    let chart_crds = crds.parent().expect("crds/ is in the checkout").join("charts/mcp-kafka-operator/crds");
    for dir in [&crds, &chart_crds] {
        for (file, generated) in mcp_kafka_operator::crd_documents() {
            let path = dir.join(file);
            let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(
                checked_in == generated,
                "{} differs from the types; regenerate both copies with:\n  cargo run -p mcp-kafka-operator -- crds --write-to crds\n  cargo run -p mcp-kafka-operator -- crds --write-to charts/mcp-kafka-operator/crds",
                path.display()
            );
        }
    }
}
