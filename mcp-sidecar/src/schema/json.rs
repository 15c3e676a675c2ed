//! JSON Schema payloads: the payload is JSON text, shown as it is (with the
//! sidecar's exact-numbers rule); encoding validates the value against the
//! schema (with its references) first, and a misfit names its place.

use std::collections::HashMap;

use serde_json::Value;

/// A compiled JSON Schema.
pub struct JsonCodec {
    validator: jsonschema::Validator,
}

/// Confluent's references: a `$ref` names another registered schema by
/// its reference name; nothing is fetched from elsewhere.
struct References(HashMap<String, Value>);

impl jsonschema::Retrieve for References {
    fn retrieve(
        &self,
        uri: &jsonschema::Uri<String>,
    ) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        let asked = uri.as_str();
        self.0
            .iter()
            .find(|(name, _)| asked == name.as_str() || asked.ends_with(&format!("/{name}")))
            .map(|(_, schema)| schema.clone())
            .ok_or_else(|| format!("{asked} is not one of the schema's references").into())
    }
}

impl JsonCodec {
    /// `references`: (reference name, schema text).
    pub fn parse(text: &str, references: &[(String, String)]) -> Result<Self, String> {
        let schema: Value =
            serde_json::from_str(text).map_err(|e| format!("the schema is not JSON: {e}"))?;
        let mut refs = HashMap::new();
        for (name, text) in references {
            let value: Value = serde_json::from_str(text)
                .map_err(|e| format!("reference {name} is not JSON: {e}"))?;
            refs.insert(name.clone(), value);
        }
        let validator = jsonschema::options()
            .with_retriever(References(refs))
            .build(&schema)
            .map_err(|e| e.to_string())?;
        Ok(Self { validator })
    }

    /// The payload as JSON, or why it is not: with its numbers exact, or
    /// not at all (shown as bytes, as any JSON payload would be).
    pub fn decode(&self, bytes: &[u8]) -> Result<Value, String> {
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| format!("the payload is not JSON: {e}"))?;
        if !crate::tools::numbers_are_exact(&value) {
            return Err(
                "a number in the payload is beyond what JSON numbers here hold exactly".into(),
            );
        }
        Ok(value)
    }

    /// The value's JSON text, if the schema admits it; else every misfit
    /// (the first few), each with its place (`$/items/0/id`).
    pub fn encode(&self, value: &Value) -> Result<Vec<u8>, String> {
        let misfits: Vec<String> = self
            .validator
            .iter_errors(value)
            .take(5)
            .map(|e| format!("${}: {e}", e.instance_path()))
            .collect();
        if !misfits.is_empty() {
            return Err(misfits.join("; "));
        }
        serde_json::to_vec(value).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_are_validated_and_misfits_named() {
        let codec = JsonCodec::parse(
            r#"{"type":"object","properties":{"id":{"type":"integer"},"tags":{"type":"array","items":{"type":"string"}}},"required":["id"],"additionalProperties":false}"#,
            &[],
        )
        .unwrap();
        assert_eq!(codec.encode(&json!({"id": 5})).unwrap(), br#"{"id":5}"#);
        let e = codec.encode(&json!({"id": "5"})).unwrap_err();
        assert!(e.starts_with("$/id:"), "{e}");
        let e = codec
            .encode(&json!({"id": 1, "tags": ["a", 3]}))
            .unwrap_err();
        assert!(e.starts_with("$/tags/1:"), "{e}");
        assert!(codec.encode(&json!({})).unwrap_err().contains("id"));
        assert_eq!(
            codec.decode(br#"{"id":18446744073709551615}"#).unwrap()["id"],
            json!(u64::MAX)
        );
        assert!(
            codec
                .decode(br#"{"id":123456789012345678901234567890}"#)
                .is_err()
        );
        assert!(codec.decode(b"\x00not json").is_err());
    }

    #[test]
    fn references_resolve_by_name() {
        let address =
            r#"{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}"#;
        let codec = JsonCodec::parse(
            r#"{"type":"object","properties":{"home":{"$ref":"address.json"}}}"#,
            &[("address.json".into(), address.into())],
        )
        .unwrap();
        assert!(codec.encode(&json!({"home": {"city": "Oslo"}})).is_ok());
        let e = codec.encode(&json!({"home": {}})).unwrap_err();
        assert!(e.starts_with("$/home:"), "{e}");
    }
}
