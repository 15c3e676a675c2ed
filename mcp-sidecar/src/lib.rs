//! The MCP server for one Apache Kafka cluster.
//!
//! Without the default `server` feature this crate is only [`config`], the
//! sidecar's configuration type, so that the operator renders exactly what
//! the sidecar parses without pulling in Kafka or MCP.

pub mod config;
