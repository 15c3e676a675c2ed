//! Schema-aware payloads: keys and values in Confluent's wire format
//! (`wire`), decoded to JSON and encoded from it with their schema from a
//! Schema Registry (`registry`), in Avro, Protobuf or JSON Schema.

pub mod avro;
pub mod json;
pub mod protobuf;
pub mod registry;
pub mod wire;

use std::collections::HashMap;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::Serialize;
use serde_json::Value;

use crate::error::{ErrorCode, ToolError, ToolResult};
pub use registry::{Placement, RegisteredSchema, SchemaRegistry};

/// A schema's format, as the registry's `schemaType` names it (absent: Avro).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    Avro,
    Protobuf,
    Json,
}

impl Format {
    pub fn from_registry(schema_type: Option<&str>) -> ToolResult<Self> {
        match schema_type.unwrap_or("AVRO") {
            "AVRO" => Ok(Self::Avro),
            "PROTOBUF" => Ok(Self::Protobuf),
            "JSON" => Ok(Self::Json),
            other => Err(ToolError::invalid(format!(
                "schema type {other:?} is none of AVRO, PROTOBUF, JSON"
            ))),
        }
    }

    /// The registry's name for it.
    pub fn registry_name(self) -> &'static str {
        match self {
            Self::Avro => "AVRO",
            Self::Protobuf => "PROTOBUF",
            Self::Json => "JSON",
        }
    }
}

/// A compiled schema of one format.
pub enum Codec {
    Avro(avro::AvroCodec),
    Protobuf(protobuf::ProtoCodec),
    Json(json::JsonCodec),
}

impl Codec {
    /// `references`: (reference name, schema text), every level.
    pub fn compile(
        format: Format,
        text: &str,
        references: &[(String, String)],
    ) -> Result<Self, String> {
        Ok(match format {
            Format::Avro => {
                let texts: Vec<String> = references.iter().map(|(_, t)| t.clone()).collect();
                Codec::Avro(avro::AvroCodec::parse(text, &texts)?)
            }
            Format::Protobuf => Codec::Protobuf(protobuf::ProtoCodec::parse(text, references)?),
            Format::Json => Codec::Json(json::JsonCodec::parse(text, references)?),
        })
    }

    /// What a cache entry weighs: about its schema's size.
    fn weight(&self) -> u32 {
        // The compiled forms are a few times their text; a flat weight per
        // entry is close enough for a cap on memory.
        64 * 1024
    }

    /// The payload after the wire header, as JSON; with the Protobuf
    /// message type it names.
    pub fn decode(&self, payload: &[u8]) -> Result<(Value, Option<String>), String> {
        match self {
            Codec::Avro(c) => c.decode(payload).map(|v| (v, None)),
            Codec::Protobuf(c) => c.decode(payload).map(|(v, m)| (v, Some(m))),
            Codec::Json(c) => c.decode(payload).map(|v| (v, None)),
        }
    }

    /// A JSON value as the payload after the wire header (`message`: the
    /// Protobuf message type, default the file's first).
    pub fn encode(
        &self,
        value: &Value,
        message: Option<&str>,
    ) -> Result<(Vec<u8>, Option<String>), String> {
        match self {
            Codec::Avro(c) => c.encode(value).map(|b| (b, None)),
            Codec::Protobuf(c) => c.encode(value, message).map(|(b, m)| (b, Some(m))),
            Codec::Json(c) => c.encode(value).map(|b| (b, None)),
        }
    }
}

/// How a key or value was decoded (or encoded): its schema.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct WireSchema {
    pub format: Format,
    pub schema_id: u32,
    /// Where the schema is registered, when the registry says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<i32>,
    /// The Protobuf message type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// What became of one key or value.
pub enum Decoded {
    /// Decoded with its writer's schema.
    Value(Value, WireSchema),
    /// Shown as bytes, with why.
    Fallback(String),
}

/// Decodes the keys and values of one peek. Each schema id is looked up
/// once per peek (the registry's cache keeps it across peeks); once the
/// registry failed to answer, the peek asks it no more, so that a registry
/// that is down costs one timeout, not one per message.
pub struct PeekDecoder<'a> {
    registry: &'a SchemaRegistry,
    topic: &'a str,
    /// Whether the caller may see a subject (its scope).
    visible: &'a (dyn Fn(&str) -> bool + Sync),
    seen: HashMap<u32, Result<Arc<RegisteredSchema>, ToolError>>,
    placed: HashMap<u32, Option<Arc<Vec<Placement>>>>,
    down: Option<String>,
}

/// The subject version to name for a schema id read from `own_subject`'s
/// place (`<topic>-key` or `<topic>-value`): that subject if it holds the
/// id, else the one visible subject that does. A registry gives an
/// identical schema one id under every subject, so "the first subject of
/// the id" may be another topic's; with several and none the topic's, no
/// subject is named rather than a wrong one.
pub fn placement_for<'p>(
    placements: &'p [Placement],
    own_subject: &str,
    visible: impl Fn(&str) -> bool,
) -> Option<&'p Placement> {
    if let Some(own) = placements.iter().find(|p| p.subject == own_subject) {
        return Some(own);
    }
    let mut others = placements.iter().filter(|p| visible(&p.subject));
    match (others.next(), others.next()) {
        (Some(only), None) => Some(only),
        _ => None,
    }
}

impl<'a> PeekDecoder<'a> {
    pub fn new(
        registry: &'a SchemaRegistry,
        topic: &'a str,
        visible: &'a (dyn Fn(&str) -> bool + Sync),
    ) -> Self {
        Self {
            registry,
            topic,
            visible,
            seen: HashMap::new(),
            placed: HashMap::new(),
            down: None,
        }
    }

    /// Remembers a registry that did not answer, so the peek asks no more.
    fn note_failure(&mut self, e: &ToolError) {
        if e.code == ErrorCode::SchemaRegistryUnavailable && self.down.is_none() {
            self.down = Some(e.message.clone());
        }
    }

    /// `part`: "key" or "value", for the subject the TopicNameStrategy names.
    pub async fn decode(&mut self, part: &str, bytes: &[u8]) -> Decoded {
        let Some((id, payload)) = wire::split(bytes) else {
            return Decoded::Fallback(
                "not in the schema registry's wire format (magic byte 0 and a schema id)".into(),
            );
        };
        let schema = match self.seen.get(&id) {
            Some(known) => known.clone(),
            None => {
                if let Some(why) = &self.down {
                    return Decoded::Fallback(format!(
                        "schema id {id} could not be fetched: {why}"
                    ));
                }
                let fetched = self.registry.schema_by_id(id).await;
                if let Err(e) = &fetched {
                    self.note_failure(e);
                }
                self.seen.insert(id, fetched.clone());
                fetched
            }
        };
        let schema = match schema {
            Ok(schema) => schema,
            Err(e) if e.code == ErrorCode::NotFound => {
                return Decoded::Fallback(format!(
                    "schema id {id} is not in the registry ({})",
                    e.message
                ));
            }
            Err(e) => {
                return Decoded::Fallback(format!(
                    "schema id {id} could not be fetched: {}",
                    e.message
                ));
            }
        };
        let (value, message) = match schema.codec.decode(payload) {
            Ok(decoded) => decoded,
            Err(why) => {
                return Decoded::Fallback(format!(
                    "does not decode with schema id {id} ({:?}): {why}",
                    schema.format
                ));
            }
        };
        // Where the id is registered only names it: without an answer the
        // value is still shown decoded.
        let placements = match self.placed.get(&id) {
            Some(known) => known.clone(),
            None if self.down.is_some() => None,
            None => {
                let fetched = self.registry.placements(id).await;
                if let Err(e) = &fetched {
                    self.note_failure(e);
                }
                let fetched = fetched.ok();
                self.placed.insert(id, fetched.clone());
                fetched
            }
        };
        let own_subject = format!("{}-{part}", self.topic);
        let placement = placements
            .as_deref()
            .and_then(|p| placement_for(p, &own_subject, self.visible));
        Decoded::Value(
            value,
            WireSchema {
                format: schema.format,
                schema_id: id,
                subject: placement.map(|p| p.subject.clone()),
                version: placement.map(|p| p.version),
                message,
            },
        )
    }
}

/// A JSON value framed with a subject's schema for `publish_message`: the
/// bytes to write and the schema they were written with.
pub async fn encode(
    registry: &SchemaRegistry,
    field: &str,
    subject: &str,
    version: Option<i32>,
    message: Option<&str>,
    value: &Value,
) -> ToolResult<(Vec<u8>, WireSchema)> {
    let (found, schema) = registry.compiled(subject, version).await?;
    let (payload, message) = schema.codec.encode(value, message).map_err(|why| {
        ToolError::invalid(format!(
            "{field} does not fit {subject} version {} (schema id {}): {why}",
            found.version, found.id
        ))
    })?;
    let mut framed = wire::header(found.id);
    framed.extend_from_slice(&payload);
    Ok((
        framed,
        WireSchema {
            format: schema.format,
            schema_id: found.id,
            subject: Some(found.subject),
            version: Some(found.version),
            message,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn placed(subject: &str, version: i32) -> Placement {
        Placement {
            subject: subject.into(),
            version,
        }
    }

    #[test]
    fn an_id_is_named_by_its_topics_subject_first() {
        // One schema registered under three subjects: the registry gives
        // it one id, listed in registration order.
        let all = [
            placed("older-value", 1),
            placed("orders-value", 3),
            placed("com.acme.Order", 2),
        ];
        let everyone = |_: &str| true;
        assert_eq!(placement_for(&all, "orders-value", everyone), Some(&all[1]));
        assert_eq!(
            placement_for(&all, "returns-value", everyone),
            None,
            "several, none the topic's: no guess"
        );
        let only_acme = |s: &str| s == "com.acme.Order";
        assert_eq!(
            placement_for(&all, "returns-value", only_acme),
            Some(&all[2]),
            "the one the caller may see"
        );
        assert_eq!(placement_for(&all, "returns-key", |_: &str| false), None);
        assert_eq!(placement_for(&[], "orders-value", everyone), None);
    }
}
