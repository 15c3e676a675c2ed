//! mcp-kafka-operator: the operator binary.

use anyhow::Context;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mcp_kafka_operator::config::OperatorConfig;
use mcp_kafka_operator::crd::ToolSelector;

/// Deploys fenced, RBAC-scoped MCP servers for Apache Kafka.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the controller (in-cluster config, or KUBECONFIG outside a cluster).
    Run(mcp_kafka_operator::run::RunArgs),
    /// Print the CustomResourceDefinitions as YAML (apply with `kubectl apply --server-side -f -`).
    Crds {
        /// Write one file per CRD into this directory instead of printing.
        #[arg(long)]
        write_to: Option<PathBuf>,
    },
    /// Mint a token for a client of a server (TokenRequest, the server's
    /// audience) and print a ready MCP client configuration as JSON.
    Token(mcp_kafka_operator::client_config::TokenArgs),
    /// Check an operator config file and print it with defaults filled in.
    CheckConfig { file: PathBuf },
    /// Print the tools that selectors stand for (tool names or the groups
    /// observe, mutate, all; comma-separated) as the JSON list `spec.tools`
    /// takes, in the tools' own order, without repeats.
    Tools {
        #[arg(value_delimiter = ',', default_value = "all")]
        selectors: Vec<String>,
    },
}

/// Errors end the process with one line on stderr and a non-zero status:
/// `main` returning the error would print its Debug form instead (several
/// lines, and a backtrace when RUST_BACKTRACE is set, as it often is in
/// images and shells).
fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}`: the error and its causes, on one line.
            eprintln!("mcp-kafka-operator: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Crds { write_to: None } => {
            let docs = mcp_kafka_operator::crd_documents();
            let all: Vec<String> = docs.into_iter().map(|(_, yaml)| yaml).collect();
            print!("{}", all.join("---\n"));
        }
        Command::Crds {
            write_to: Some(dir),
        } => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            for (file, yaml) in mcp_kafka_operator::crd_documents() {
                let path = dir.join(file);
                std::fs::write(&path, yaml)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
        }
        Command::CheckConfig { file } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let config = OperatorConfig::parse(&text)?;
            print!("{}", serde_yaml::to_string(&config)?);
        }
        Command::Tools { selectors } => {
            let mut tools = std::collections::BTreeSet::new();
            for name in selectors {
                let selector: ToolSelector =
                    serde_json::from_value(name.clone().into()).map_err(|_| {
                        anyhow::anyhow!(
                            "{name:?} is neither a tool name nor one of observe, mutate, all"
                        )
                    })?;
                tools.extend(selector.tools());
            }
            let names: Vec<&str> = tools.into_iter().map(|t| t.as_str()).collect();
            println!("{}", serde_json::to_string(&names)?);
        }
        Command::Run(args) => runtime()?.block_on(mcp_kafka_operator::run::run(args))?,
        Command::Token(args) => {
            runtime()?.block_on(mcp_kafka_operator::client_config::print_token(args))?
        }
    }
    Ok(())
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}
