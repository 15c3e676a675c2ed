//! mcp-kafka-sidecar: the MCP server binary.

fn main() {
    eprintln!("mcp-kafka-sidecar {}: the server is not implemented yet", env!("CARGO_PKG_VERSION"));
    std::process::exit(2);
}
