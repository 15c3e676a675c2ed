//! Keys and values as a peek reads them, arbitrary, through the wire-format
//! split and each format's decoder (an Avro schema with unions, arrays,
//! maps, decimals and a recursive type; a Protobuf schema with nested
//! messages; JSON): an error or a value, never a panic, a hang or an
//! allocation the input's size cannot justify. What decodes and
//! re-encodes decodes to the same value again.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use mcp_kafka_sidecar::schema::avro::AvroCodec;
use mcp_kafka_sidecar::schema::json::JsonCodec;
use mcp_kafka_sidecar::schema::protobuf::ProtoCodec;
use mcp_kafka_sidecar::schema::wire;

const AVRO: &str = r#"{"type":"record","name":"Node","fields":[
  {"name":"id","type":"long"},{"name":"n","type":["null","int","string"]},
  {"name":"price","type":{"type":"bytes","logicalType":"decimal","precision":38,"scale":4}},
  {"name":"tags","type":{"type":"map","values":{"type":"array","items":"double"}}},
  {"name":"kind","type":{"type":"enum","name":"Kind","symbols":["A","B"]}},
  {"name":"f","type":{"type":"fixed","name":"F4","size":4}},
  {"name":"next","type":["null","Node"]}]}"#;
const PROTO: &str = r#"syntax = "proto3";
message Outer { int64 id = 1; repeated Inner inner = 2; map<string, bytes> m = 3;
  message Inner { sint32 a = 1; string s = 2; Outer back = 3; } }
message Other { double d = 1; }"#;

struct Codecs {
    avro: AvroCodec,
    proto: ProtoCodec,
    json: JsonCodec,
}

fn codecs() -> &'static Codecs {
    static CODECS: OnceLock<Codecs> = OnceLock::new();
    CODECS.get_or_init(|| Codecs {
        avro: AvroCodec::parse(AVRO, &[]).expect("avro"),
        proto: ProtoCodec::parse(PROTO, &[]).expect("proto"),
        json: JsonCodec::parse(r#"{"type":"object"}"#, &[]).expect("json"),
    })
}

fuzz_target!(|data: &[u8]| {
    let c = codecs();
    let payload = match wire::split(data) {
        Some((_, rest)) => rest,
        None => data,
    };
    // A decimal read may exceed the schema's precision (readers do not
    // check it; the encoder refuses it), so only what encodes is compared.
    if let Ok(value) = c.avro.decode(payload)
        && let Ok(again) = c.avro.encode(&value)
    {
        assert_eq!(c.avro.decode(&again).expect("re-decodes"), value);
    }
    if let Ok((value, name)) = c.proto.decode(payload) {
        let short = name.rsplit('.').next().map(str::to_string);
        let _ = c.proto.encode(&value, short.as_deref());
    }
    let _ = c.json.decode(payload);
    let _ = wire::split_message_indexes(payload);
});
