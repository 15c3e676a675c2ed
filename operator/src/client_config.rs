//! `mcp-kafka-operator token`: mint a token for one client of a server and
//! print what an MCP client needs (URL and header) as JSON, in the shapes
//! the common clients take: a plain URL + headers (the MCP Python SDK), an
//! `mcpServers` entry (Streamable HTTP clients), and an `mcp-remote` command
//! (stdio-only clients).

use kube::{Api, Client, ResourceExt};
use serde_json::json;

use crate::build::names;
use crate::crd::McpKafkaServer;
use crate::token;

#[derive(Debug, clap::Args)]
pub struct TokenArgs {
    /// The McpKafkaServer.
    pub server: String,
    /// The client (a name under spec.clients).
    #[arg(long)]
    pub client: String,
    /// Namespace of the server; default: the kubeconfig's namespace.
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
    /// Token lifetime in seconds (the apiserver may shorten it).
    #[arg(long, default_value_t = 3600, value_parser = clap::value_parser!(i64).range(600..=86400))]
    pub duration: i64,
    /// The MCP URL to print instead of the in-cluster endpoint (e.g. through
    /// `kubectl port-forward`).
    #[arg(long)]
    pub url: Option<String>,
}

pub async fn print_token(args: TokenArgs) -> anyhow::Result<()> {
    let client = Client::try_default().await?;
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_string());
    let servers: Api<McpKafkaServer> = Api::namespaced(client.clone(), &namespace);
    let server = servers
        .get_opt(&args.server)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no McpKafkaServer {namespace}/{}", args.server))?;
    let Some(spec) = server.spec.clients.iter().find(|c| c.name == args.client) else {
        let known: Vec<&str> = server
            .spec
            .clients
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        anyhow::bail!(
            "server {namespace}/{} has no client {:?} (clients: {})",
            args.server,
            args.client,
            known.join(", ")
        );
    };
    let service_account = match &spec.service_account_name {
        Some(sa) => sa.clone(),
        None => names::client(&server.name_any(), &spec.name),
    };
    let audience = names::audience(&namespace, &args.server);
    let sa_api = Api::namespaced(client.clone(), &namespace);
    let minted = token::mint(&sa_api, &service_account, "", &audience, args.duration)
        .await
        .map_err(|e| {
            anyhow::anyhow!("TokenRequest for ServiceAccount {namespace}/{service_account}: {e}")
        })?;
    let url = args
        .url
        .clone()
        .or_else(|| server.status.as_ref().and_then(|s| s.endpoint.clone()))
        .unwrap_or_else(|| names::endpoint(&namespace, &args.server, "cluster.local"));
    let header = format!("Bearer {}", minted.token);
    let config = json!({
        "server": args.server,
        "namespace": namespace,
        "client": args.client,
        "serviceAccount": service_account,
        "audience": audience,
        "expiresAt": minted.expires_at.to_string(),
        "url": url,
        "headers": { "Authorization": header },
        "mcpServers": { args.server.clone(): { "type": "http", "url": url, "headers": { "Authorization": header } } },
        "mcpRemote": { "command": "npx", "args": ["-y", "mcp-remote", url, "--header", format!("Authorization: {header}")] },
    });
    println!("{}", serde_json::to_string_pretty(&config)?);
    Ok(())
}
