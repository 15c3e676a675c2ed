//! Protobuf payloads: the schema is `.proto` text (or, as some registries
//! hand a schema a client registered so, a base64 FileDescriptorProto),
//! compiled with its references (imports) and Google's well-known types;
//! a payload names its message type by message indexes (see `wire`).
//!
//! JSON is Protobuf's canonical JSON mapping, as Confluent's tools print it
//! (JsonFormat): lowerCamelCase names, 64-bit integers as strings (exact
//! in every JSON reader), enums by name, bytes base64, default values left
//! out. Encoding accepts that mapping and the `.proto` field names.

use std::collections::HashMap;

use base64::Engine;
use prost::Message;
use prost_reflect::{
    DescriptorPool, DeserializeOptions, DynamicMessage, FileDescriptor, MessageDescriptor,
    SerializeOptions,
};
use protox::file::{ChainFileResolver, File, FileResolver, GoogleFileResolver};
use serde_json::Value;

use super::wire;

/// The name the registered schema itself is compiled under (a registry
/// does not name it; its references carry their own names).
const MAIN_FILE: &str = "registered-schema.proto";

/// A compiled `.proto` file.
#[derive(Debug)]
pub struct ProtoCodec {
    file: FileDescriptor,
}

/// Files by name: the schema, and its references.
struct Files(HashMap<String, String>);

impl FileResolver for Files {
    fn open_file(&self, name: &str) -> Result<File, protox::Error> {
        let text = self
            .0
            .get(name)
            .ok_or_else(|| protox::Error::file_not_found(name))?;
        file_of(name, text)
    }
}

/// `.proto` text, or else a base64 FileDescriptorProto.
fn file_of(name: &str, text: &str) -> Result<File, protox::Error> {
    match File::from_source(name, text) {
        Ok(file) => Ok(file),
        Err(parse_error) => {
            let Some(bytes) = base64::engine::general_purpose::STANDARD
                .decode(text.trim())
                .ok()
            else {
                return Err(parse_error);
            };
            let mut descriptor =
                prost_reflect::prost_types::FileDescriptorProto::decode(bytes.as_slice())
                    .map_err(|_| parse_error)?;
            descriptor.name = Some(name.to_string());
            Ok(File::from_file_descriptor_proto(descriptor))
        }
    }
}

impl ProtoCodec {
    /// `references`: (import name, schema text).
    pub fn parse(text: &str, references: &[(String, String)]) -> Result<Self, String> {
        let mut files: HashMap<String, String> = references.iter().cloned().collect();
        files.insert(MAIN_FILE.to_string(), text.to_string());
        let mut resolver = ChainFileResolver::new();
        resolver.add(Files(files));
        resolver.add(GoogleFileResolver::new());
        let mut compiler = protox::Compiler::with_file_resolver(resolver);
        compiler.include_imports(true);
        compiler.open_file(MAIN_FILE).map_err(|e| e.to_string())?;
        let pool: DescriptorPool = compiler.descriptor_pool();
        let file = pool
            .get_file_by_name(MAIN_FILE)
            .ok_or("the compiled schema has no file")?;
        if file.messages().len() == 0 {
            return Err("the schema defines no message".into());
        }
        Ok(Self { file })
    }

    /// The message type at `indexes` (top-level position, then nested).
    pub fn message_at(&self, indexes: &[i32]) -> Result<MessageDescriptor, String> {
        let mut it = indexes.iter();
        let first = *it.next().ok_or("no message index")?;
        let mut message = self
            .file
            .messages()
            .nth(first as usize)
            .ok_or_else(|| format!("the schema has no message at index {first}"))?;
        for &i in it {
            let child = message.child_messages().nth(i as usize);
            message = child.ok_or_else(|| {
                format!("{} has no nested message at index {i}", message.full_name())
            })?;
        }
        Ok(message)
    }

    /// The message type named `name` (full, or without the package), or the
    /// file's first one; with its message indexes.
    pub fn message_named(
        &self,
        name: Option<&str>,
    ) -> Result<(MessageDescriptor, Vec<i32>), String> {
        let mut found = Vec::new();
        let mut stack: Vec<(MessageDescriptor, Vec<i32>)> = self
            .file
            .messages()
            .enumerate()
            .map(|(i, m)| (m, vec![i as i32]))
            .collect();
        stack.reverse();
        while let Some((m, path)) = stack.pop() {
            let matches = match name {
                None => true,
                Some(n) => {
                    m.full_name() == n
                        || m.full_name()
                            .strip_prefix(&format!("{}.", self.file.package_name()))
                            == Some(n)
                }
            };
            if matches {
                found.push((m.clone(), path.clone()));
                if name.is_none() {
                    break;
                }
            }
            let mut children: Vec<_> = m
                .child_messages()
                .enumerate()
                .filter(|(_, c)| !c.is_map_entry())
                .map(|(i, c)| {
                    let mut p = path.clone();
                    p.push(i as i32);
                    (c, p)
                })
                .collect();
            children.reverse();
            stack.extend(children);
        }
        found.into_iter().next().ok_or_else(|| {
            let names: Vec<String> = self
                .file
                .messages()
                .map(|m| m.full_name().to_string())
                .collect();
            format!(
                "the schema has no message {:?} (its messages: {})",
                name.unwrap_or_default(),
                names.join(", ")
            )
        })
    }

    /// A framed payload's rest (message indexes, then the message) as JSON,
    /// with the message type's full name.
    pub fn decode(&self, payload: &[u8]) -> Result<(Value, String), String> {
        let (indexes, bytes) = wire::split_message_indexes(payload)?;
        let message = self.message_at(&indexes)?;
        let decoded = DynamicMessage::decode(message.clone(), bytes)
            .map_err(|e| format!("not a {} message: {e}", message.full_name()))?;
        let value = decoded
            .serialize_with_options(serde_json::value::Serializer, &SerializeOptions::new())
            .map_err(|e| e.to_string())?;
        Ok((value, message.full_name().to_string()))
    }

    /// A JSON value as message indexes and the message, for the message
    /// type `name` (default: the file's first); a misfit names its field.
    pub fn encode(&self, value: &Value, name: Option<&str>) -> Result<(Vec<u8>, String), String> {
        let (message, indexes) = self.message_named(name)?;
        let decoded = DynamicMessage::deserialize_with_options(
            message.clone(),
            value,
            &DeserializeOptions::new().deny_unknown_fields(true),
        )
        .map_err(|e| format!("{}: {e}", message.full_name()))?;
        let mut out = wire::message_indexes(&indexes);
        decoded.encode(&mut out).map_err(|e| e.to_string())?;
        Ok((out, message.full_name().to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ORDER: &str = r#"
syntax = "proto3";
package shop;
import "google/protobuf/timestamp.proto";
import "money.proto";
message Order {
  int64 id = 1;
  string note = 2;
  repeated Line lines = 3;
  google.protobuf.Timestamp at = 4;
  Money total = 5;
  message Line { string sku = 1; uint32 qty = 2; }
}
message Refund { int64 order_id = 1; }
"#;
    const MONEY: &str = r#"syntax = "proto3"; package shop; message Money { string currency = 1; int64 units = 2; }"#;

    fn codec() -> ProtoCodec {
        ProtoCodec::parse(ORDER, &[("money.proto".into(), MONEY.into())]).unwrap()
    }

    #[test]
    fn messages_round_trip_with_their_indexes() {
        let codec = codec();
        let order = json!({"id": "9007199254740993", "lines": [{"sku": "a", "qty": 2}],
                           "at": "2026-12-01T10:00:00Z", "total": {"currency": "EUR", "units": "12"}});
        let (bytes, name) = codec.encode(&order, None).unwrap();
        assert_eq!(name, "shop.Order");
        assert_eq!(bytes[0], 0, "[0] is one byte 0");
        assert_eq!(
            codec.decode(&bytes).unwrap(),
            (order, "shop.Order".to_string())
        );
        let (bytes, name) = codec
            .encode(&json!({"orderId": "5"}), Some("Refund"))
            .unwrap();
        assert_eq!((&bytes[..2], name.as_str()), (&[2u8, 2][..], "shop.Refund"));
        assert_eq!(codec.decode(&bytes).unwrap().0, json!({"orderId": "5"}));
        let (bytes, _) = codec
            .encode(&json!({"sku": "x"}), Some("shop.Order.Line"))
            .unwrap();
        assert_eq!(&bytes[..3], &[4, 0, 0]);
        assert_eq!(codec.decode(&bytes).unwrap().1, "shop.Order.Line");
    }

    #[test]
    fn misfits_and_garbage_are_errors() {
        let codec = codec();
        let e = codec.encode(&json!({"id": "x"}), None).unwrap_err();
        assert!(e.contains("shop.Order"), "{e}");
        let e = codec.encode(&json!({"colour": 1}), None).unwrap_err();
        assert!(e.contains("colour"), "{e}");
        assert!(
            codec
                .encode(&json!({}), Some("Nope"))
                .unwrap_err()
                .contains("shop.Order")
        );
        assert!(codec.decode(&[6, 2]).is_err(), "no message at index 3");
        assert!(codec.decode(&[0, 0xff]).is_err(), "not a message");
        assert!(ProtoCodec::parse("message {", &[]).is_err());
        assert!(
            ProtoCodec::parse(ORDER, &[])
                .unwrap_err()
                .contains("money.proto")
        );
    }

    #[test]
    fn a_base64_descriptor_is_accepted_too() {
        let text = ProtoCodec::parse(MONEY, &[]).unwrap();
        let proto = text.file.file_descriptor_proto().encode_to_vec();
        let b64 = base64::engine::general_purpose::STANDARD.encode(proto);
        let from_descriptor = ProtoCodec::parse(&b64, &[]).unwrap();
        let value = json!({"currency": "NOK", "units": "-3"});
        let (bytes, _) = text.encode(&value, None).unwrap();
        assert_eq!(from_descriptor.decode(&bytes).unwrap().0, value);
    }
}
