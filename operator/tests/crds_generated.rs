//! `crds/` is generated from the Rust types and must never drift from them.

#[test]
fn checked_in_crds_match_the_types() {
    let dir = mcpk_e2e::crds_dir();
    for (file, generated) in mcp_kafka_operator::crd_documents() {
        let path = dir.join(file);
        let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            checked_in == generated,
            "{} differs from the types; regenerate with:\n  cargo run -p mcp-kafka-operator -- crds --write-to crds",
            path.display()
        );
    }
}
