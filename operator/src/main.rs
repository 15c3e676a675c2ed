//! mcp-kafka-operator: the controller binary (see the README for status).

fn main() {
    eprintln!("mcp-kafka-operator {}: the controller is not implemented yet", env!("CARGO_PKG_VERSION"));
    std::process::exit(2);
}
