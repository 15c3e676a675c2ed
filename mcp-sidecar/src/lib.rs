//! The MCP server for one Apache Kafka cluster.
//!
//! Without the default `server` feature this crate is only [`config`] and
//! [`tool_name`], the sidecar's configuration types, so that the operator
//! renders exactly what the sidecar parses (and [`scope`], whose
//! narrowing the operator computes) without pulling in Kafka or MCP.

pub mod config;
pub mod scope;
pub mod tool_name;

#[cfg(feature = "server")]
pub mod audit;
#[cfg(feature = "server")]
pub mod auth;
#[cfg(feature = "server")]
pub mod compat;
#[cfg(feature = "server")]
pub mod error;
#[cfg(feature = "server")]
pub mod http;
#[cfg(feature = "server")]
pub mod incremental_alter;
#[cfg(feature = "server")]
pub mod jobs;
#[cfg(feature = "server")]
pub mod kafka;
#[cfg(feature = "server")]
pub mod metrics;
#[cfg(feature = "server")]
pub mod outbound;
#[cfg(feature = "server")]
pub mod plan;
#[cfg(feature = "server")]
pub mod prometheus;
#[cfg(feature = "server")]
pub mod rate;
#[cfg(feature = "server")]
pub mod reload;
#[cfg(feature = "server")]
pub mod schema;
#[cfg(feature = "server")]
pub mod server;
#[cfg(feature = "server")]
pub mod tools;
