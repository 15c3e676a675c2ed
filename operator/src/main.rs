//! mcp-kafka-operator: the operator binary.

use clap::{Parser, Subcommand};

/// Deploys fenced, RBAC-scoped MCP servers for Apache Kafka.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the CustomResourceDefinitions as YAML (apply with `kubectl apply --server-side -f -`).
    Crds {
        /// Write one file per CRD into this directory instead of printing.
        #[arg(long)]
        write_to: Option<std::path::PathBuf>,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Crds { write_to: None } => {
            let docs = mcp_kafka_operator::crd_documents();
            let all: Vec<String> = docs.into_iter().map(|(_, yaml)| yaml).collect();
            print!("{}", all.join("---\n"));
        }
        Command::Crds { write_to: Some(dir) } => {
            for (file, yaml) in mcp_kafka_operator::crd_documents() {
                std::fs::write(dir.join(file), yaml)?;
            }
        }
    }
    Ok(())
}
