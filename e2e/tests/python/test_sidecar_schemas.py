"""Schema-aware payloads against the test ground's real broker and real
Schema Registry (Apicurio, Confluent API), through the official MCP Python
SDK, with Kafka's reference Python client (confluent-kafka and its Schema
Registry serializers) writing and reading the records the sidecar reads and
writes: Avro, JSON Schema and Protobuf decode to exactly what was produced,
keys and values; old records decode with their own (older) schema; values
the sidecar encodes read back equal; a misfit is refused and nothing is
written; records that cannot be decoded fall back with a note; the registry
tools, two-phase register_schema under BACKWARD included.

Every test uses topics and subjects of its own: the broker and the registry
are shared."""

import json
import os
import pathlib
import socket
import struct
import subprocess
import uuid

import anyio
import jsonschema
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from conftest import E2E_DIR, tool_error

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.json_schema import JSONDeserializer, JSONSerializer
from confluent_kafka.schema_registry.protobuf import ProtobufSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

SCHEMA_TOOLS = ["list_subjects", "get_schema", "check_compatibility", "register_schema", "delete_subject"]

ORDER_V1 = {
    "type": "record", "name": "Order", "namespace": "shop.test",
    "fields": [
        {"name": "id", "type": "long"},
        {"name": "customer", "type": "string"},
        {"name": "note", "type": ["null", "string"], "default": None},
        {"name": "price", "type": {"type": "bytes", "logicalType": "decimal", "precision": 12, "scale": 2}},
        {"name": "status", "type": {"type": "enum", "name": "Status", "symbols": ["NEW", "PAID"]}},
        {"name": "lines", "type": {"type": "array", "items": {"type": "record", "name": "Line", "fields": [
            {"name": "sku", "type": "string"}, {"name": "qty", "type": "int"}]}}},
        {"name": "tags", "type": {"type": "map", "values": "double"}},
    ],
}
ORDER_V2 = {**ORDER_V1, "fields": ORDER_V1["fields"] + [{"name": "channel", "type": "string", "default": "web"}]}
KEY_SCHEMA = {"type": "record", "name": "OrderKey", "namespace": "shop.test", "fields": [{"name": "id", "type": "long"}]}

JSON_SCHEMA = {
    "$schema": "http://json-schema.org/draft-07/schema#", "title": "Payment", "type": "object",
    "properties": {"id": {"type": "integer"}, "amount": {"type": "number"}, "ok": {"type": "boolean"},
                   "items": {"type": "array", "items": {"type": "string"}}},
    "required": ["id", "amount"], "additionalProperties": False,
}

PROTO = """syntax = "proto3";
package shop.test;
message Shipment {
  int64 id = 1;
  string carrier = 2;
  repeated Parcel parcels = 3;
  message Parcel { uint32 grams = 1; string label = 2; }
}
message Return { int64 shipment_id = 1; string reason = 2; }
"""


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def unique(name: str) -> str:
    return f"schema-test-{name}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def registry_url(stack_env) -> str:
    url = stack_env.get("MCPK_SCHEMA_REGISTRY_URL")
    if not url:
        pytest.fail("the test ground has no schema registry (MCPK_SCHEMA_REGISTRY_URL): restart it with `e2e/stack up`", pytrace=False)
    return url


@pytest.fixture
def registry(registry_url) -> SchemaRegistryClient:
    return SchemaRegistryClient({"url": registry_url})


@pytest.fixture
def kafka(stack_env):
    """(bootstrap, make_topic): topics are deleted at the end."""
    bootstrap = stack_env["KAFKA_BOOTSTRAP_SERVERS"]
    admin = AdminClient({"bootstrap.servers": bootstrap})
    made = []

    def make_topic(name: str) -> str:
        for f in admin.create_topics([NewTopic(name, 1, 1)]).values():
            f.result(30)
        made.append(name)
        return name

    yield bootstrap, make_topic
    if made:
        for f in admin.delete_topics(made).values():
            try:
                f.result(30)
            except Exception:
                pass


@pytest.fixture
def schema_server(stack_env, start_sidecar, tmp_path, registry_url):
    """schema_server(**more): a dev sidecar with the ground's registry."""

    def start(registry: bool = True, **more):
        port = _port()
        body = {
            "server": {"name": "schemas-sdk", "environment": "dev"},
            "listen": {"address": f"127.0.0.1:{port}"},
            "kafka": {"bootstrapServers": [stack_env["KAFKA_BOOTSTRAP_SERVERS"]]},
            "tools": ["consume_messages", "publish_message", "list_topics", *SCHEMA_TOOLS],
            "auth": {"mode": "none"},
            **more,
        }
        if registry:
            body["schemaRegistry"] = {"url": registry_url, "timeoutMs": 2000}
        config = tmp_path / f"sidecar-{port}.json"
        config.write_text(json.dumps(body))
        sidecar = start_sidecar("--config", str(config), port=port)
        sidecar.wait_ready()
        return sidecar

    return start


def with_session(url: str, body):
    async def run():
        async with streamable_http_client(f"{url}/mcp") as (read, write, *_):
            async with ClientSession(read, write) as session:
                await session.initialize()
                return await body(session)

    return anyio.run(run)


def call(url: str, tool: str, args: dict):
    async def body(session):
        return await session.call_tool(tool, args)

    return with_session(url, body)


def peek_result(url: str, topic: str, **more) -> dict:
    result = call(url, "consume_messages", {"topic": topic, "from": "earliest", "max_messages": 50, **more})
    assert not result.is_error, result
    return result.structured_content


def peek(url: str, topic: str, **more) -> list[dict]:
    return peek_result(url, topic, **more)["messages"]


def produce(bootstrap: str, topic: str, records: list[tuple[bytes | None, bytes]]) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    for key, value in records:
        p.produce(topic, key=key, value=value)
    assert p.flush(30) == 0


def end_offset(bootstrap: str, topic: str) -> int:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("watermarks")})
    try:
        return c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)[1]
    finally:
        c.close()


def read_back(bootstrap: str, topic: str, count: int) -> list:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("reader"), "auto.offset.reset": "earliest",
                  "enable.auto.commit": False})
    c.assign([TopicPartition(topic, 0, 0)])
    got = []
    try:
        while len(got) < count:
            m = c.poll(10)
            assert m is not None, f"only {len(got)} of {count} records came back"
            assert m.error() is None, m.error()
            got.append(m)
    finally:
        c.close()
    return got


def frame(schema_id: int, payload: bytes) -> bytes:
    return b"\x00" + struct.pack(">I", schema_id) + payload


def avro_value(order: dict) -> dict:
    """What the sidecar shows for a produced Avro order: the decimal as its
    exact digits (the Python client takes and gives a Decimal)."""
    shown = dict(order)
    shown["price"] = str(order["price"])
    return shown


def test_reference_records_decode_exactly_keys_and_values(schema_server, kafka, registry):
    from decimal import Decimal

    from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory

    bootstrap, make_topic = kafka
    avro_topic, json_topic, proto_topic = make_topic(unique("avro")), make_topic(unique("json")), make_topic(unique("proto"))

    orders = [
        {"id": 9007199254740993, "customer": "Ada", "note": None, "price": Decimal("1234567890.12"), "status": "PAID",
         "lines": [{"sku": "a-1", "qty": 2}, {"sku": "b-2", "qty": -1}], "tags": {"w": 0.1, "h": 1e-7}},
        {"id": -1, "customer": "Grace ✓", "note": "fragile", "price": Decimal("-0.05"), "status": "NEW",
         "lines": [], "tags": {}},
    ]
    key_ser = AvroSerializer(registry, json.dumps(KEY_SCHEMA))
    value_ser = AvroSerializer(registry, json.dumps(ORDER_V1))
    produce(bootstrap, avro_topic, [
        (key_ser({"id": o["id"]}, SerializationContext(avro_topic, MessageField.KEY)),
         value_ser(o, SerializationContext(avro_topic, MessageField.VALUE))) for o in orders])

    payments = [{"id": 18014398509481985, "amount": 12.5, "ok": True, "items": ["x", "y"]}, {"id": 2, "amount": 0.1}]
    json_ser = JSONSerializer(json.dumps(JSON_SCHEMA), registry)
    produce(bootstrap, json_topic, [(b"plain-key", json_ser(p, SerializationContext(json_topic, MessageField.VALUE)))
                                    for p in payments])

    # Protobuf framed against a schema registered as .proto text.
    proto_id = registry.register_schema(f"{proto_topic}-value", Schema(PROTO, "PROTOBUF"))
    fd = descriptor_pb2.FileDescriptorProto(name="shop_test_shipment.proto", package="shop.test", syntax="proto3")
    shipment = fd.message_type.add(name="Shipment")
    shipment.field.add(name="id", number=1, type=descriptor_pb2.FieldDescriptorProto.TYPE_INT64, label=1)
    shipment.field.add(name="carrier", number=2, type=descriptor_pb2.FieldDescriptorProto.TYPE_STRING, label=1)
    shipment.field.add(name="parcels", number=3, type=descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE, label=3,
                       type_name=".shop.test.Shipment.Parcel")
    parcel = shipment.nested_type.add(name="Parcel")
    parcel.field.add(name="grams", number=1, type=descriptor_pb2.FieldDescriptorProto.TYPE_UINT32, label=1)
    parcel.field.add(name="label", number=2, type=descriptor_pb2.FieldDescriptorProto.TYPE_STRING, label=1)
    ret = fd.message_type.add(name="Return")
    ret.field.add(name="shipment_id", number=1, type=descriptor_pb2.FieldDescriptorProto.TYPE_INT64, label=1)
    ret.field.add(name="reason", number=2, type=descriptor_pb2.FieldDescriptorProto.TYPE_STRING, label=1)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fd)
    Shipment = message_factory.GetMessageClass(pool.FindMessageTypeByName("shop.test.Shipment"))
    Return = message_factory.GetMessageClass(pool.FindMessageTypeByName("shop.test.Return"))
    sent_shipment = Shipment(id=-9007199254740993, carrier="posten",
                             parcels=[Shipment.Parcel(grams=1200, label="a"), Shipment.Parcel(grams=0)])
    sent_return = Return(shipment_id=7, reason="late")
    parcel_alone = Shipment.Parcel(grams=5, label="loose")
    # Keys through the reference ProtobufSerializer, which registers its
    # schema itself: the registry then hands it back as a base64
    # FileDescriptorProto, not .proto text.
    key_fd = descriptor_pb2.FileDescriptorProto(name="shop_test_key.proto", package="shop.test", syntax="proto3")
    key_fd.message_type.add(name="ShipmentKey").field.add(
        name="shipment_id", number=1, type=descriptor_pb2.FieldDescriptorProto.TYPE_INT64, label=1)
    pool.Add(key_fd)
    ShipmentKey = message_factory.GetMessageClass(pool.FindMessageTypeByName("shop.test.ShipmentKey"))
    proto_key_ser = ProtobufSerializer(ShipmentKey, registry, {"use.deprecated.format": False})
    keys = [ShipmentKey(shipment_id=-9007199254740993), ShipmentKey(shipment_id=7), ShipmentKey()]
    framed_keys = [proto_key_ser(k, SerializationContext(proto_topic, MessageField.KEY)) for k in keys]
    assert not registry.get_latest_version(f"{proto_topic}-key").schema.schema_str.lstrip().startswith("syntax"), \
        "the key schema was meant to come back as a descriptor"
    produce(bootstrap, proto_topic, [
        (framed_keys[0], frame(proto_id, b"\x00" + sent_shipment.SerializeToString())),  # indexes [0]
        (framed_keys[1], frame(proto_id, b"\x02\x02" + sent_return.SerializeToString())),  # [1]
        (framed_keys[2], frame(proto_id, b"\x04\x00\x00" + parcel_alone.SerializeToString())),  # [0, 0]
    ])

    sidecar = schema_server()
    answers = [peek_result(sidecar.url, t) for t in (avro_topic, json_topic, proto_topic)]
    avro = answers[0]["messages"]
    assert [m["value"]["json"] for m in avro] == [avro_value(o) for o in orders], avro
    assert [m["key"]["json"] for m in avro] == [{"id": o["id"]} for o in orders]
    vs, ks = avro[0]["value_schema"], avro[0]["key_schema"]
    assert vs["format"] == "avro" and vs["subject"] == f"{avro_topic}-value" and vs["version"] == 1, vs
    assert ks["subject"] == f"{avro_topic}-key", ks
    assert vs["schema_id"] == registry.get_latest_version(f"{avro_topic}-value").schema_id
    assert "notes" not in avro[0], avro[0]

    js = answers[1]["messages"]
    assert [m["value"]["json"] for m in js] == payments, js
    assert js[0]["value_schema"]["format"] == "json"
    # A plain key keeps today's display, with a note saying why it was not decoded.
    assert js[0]["key"] == {"text": "plain-key"}
    assert any(n.startswith("key: not in the schema registry's wire format") for n in js[0]["notes"]), js[0]

    pb = answers[2]["messages"]
    expected = [json_format.MessageToDict(m) for m in (sent_shipment, sent_return, parcel_alone)]
    assert [m["value"]["json"] for m in pb] == expected, pb
    assert [m["value_schema"]["message"] for m in pb] == ["shop.test.Shipment", "shop.test.Return", "shop.test.Shipment.Parcel"]
    assert all(m["value_schema"]["schema_id"] == proto_id and m["value_schema"]["format"] == "protobuf" for m in pb)
    assert [m["key"]["json"] for m in pb] == [json_format.MessageToDict(k) for k in keys], pb
    assert all(m["key_schema"]["message"] == "shop.test.ShipmentKey" and m["key_schema"]["subject"] == f"{proto_topic}-key"
               for m in pb), pb

    # The answer fits the tool's output schema.
    async def tools(session):
        return {t.name: t for t in (await session.list_tools()).tools}

    listed = with_session(sidecar.url, tools)
    for answer in answers:
        jsonschema.Draft202012Validator(listed["consume_messages"].output_schema).validate(answer)


def test_old_records_decode_with_their_own_version(schema_server, kafka, registry):
    bootstrap, make_topic = kafka
    topic = make_topic(unique("evolve"))
    subject = f"{topic}-value"
    registry.set_compatibility(subject_name=subject, level="BACKWARD")
    v1 = AvroSerializer(registry, json.dumps(ORDER_V1))
    old = {"id": 1, "customer": "a", "note": None, "price": __import__("decimal").Decimal("1.00"), "status": "NEW",
           "lines": [], "tags": {}}
    produce(bootstrap, topic, [(None, v1(old, SerializationContext(topic, MessageField.VALUE)))])
    sidecar = schema_server()
    # The sidecar has seen v1 before v2 exists, and after.
    assert peek(sidecar.url, topic)[0]["value"]["json"] == avro_value(old)
    v2 = AvroSerializer(registry, json.dumps(ORDER_V2))
    new = {**old, "id": 2, "channel": "shop"}
    produce(bootstrap, topic, [(None, v2(new, SerializationContext(topic, MessageField.VALUE)))])
    first, second = peek(sidecar.url, topic)
    assert first["value"]["json"] == avro_value(old) and "channel" not in first["value"]["json"]
    assert first["value_schema"]["version"] == 1
    assert second["value"]["json"] == avro_value(new)
    assert second["value_schema"]["version"] == 2
    assert first["value_schema"]["schema_id"] != second["value_schema"]["schema_id"]


def test_values_the_sidecar_encodes_read_back_equal_and_misfits_write_nothing(schema_server, kafka, registry):
    bootstrap, make_topic = kafka
    topic = make_topic(unique("publish"))
    registry.register_schema(f"{topic}-value", Schema(json.dumps(ORDER_V1), "AVRO"))
    registry.register_schema(f"{topic}-key", Schema(json.dumps(KEY_SCHEMA), "AVRO"))
    json_topic = make_topic(unique("publish-json"))
    registry.register_schema(f"{json_topic}-value", Schema(json.dumps(JSON_SCHEMA), "JSON"))
    sidecar = schema_server()
    order = {"id": 9007199254740993, "customer": "Ada", "price": "19.90", "status": "PAID",
             "lines": [{"sku": "a", "qty": 3}], "tags": {"w": 2.5}}

    dry = call(sidecar.url, "publish_message", {"topic": topic, "key": json.dumps({"id": 5}), "key_schema": {},
                                                "value": json.dumps(order), "value_schema": {}, "dry_run": True})
    assert not dry.is_error, dry
    plan = dry.structured_content
    assert plan["value_schema"]["subject"] == f"{topic}-value" and plan["value_schema"]["version"] == 1, plan
    assert plan["bytes"] > 5 and end_offset(bootstrap, topic) == 0, "a dry run writes nothing"

    sent = call(sidecar.url, "publish_message", {"topic": topic, "key": json.dumps({"id": 5}), "key_schema": {},
                                                 "value": json.dumps(order), "value_schema": {}})
    assert not sent.is_error, sent
    assert sent.structured_content["value_schema"]["schema_id"] == plan["value_schema"]["schema_id"]
    payment = {"id": 3, "amount": 9.75, "items": ["z"]}
    sent_json = call(sidecar.url, "publish_message", {"topic": json_topic, "value": json.dumps(payment), "value_schema": {}})
    assert not sent_json.is_error, sent_json

    [m] = read_back(bootstrap, topic, 1)
    value = AvroDeserializer(registry)(m.value(), SerializationContext(topic, MessageField.VALUE))
    key = AvroDeserializer(registry)(m.key(), SerializationContext(topic, MessageField.KEY))
    assert key == {"id": 5}
    assert {**value, "price": str(value["price"])} == {**order, "note": None}, value
    [j] = read_back(bootstrap, json_topic, 1)
    assert JSONDeserializer(json.dumps(JSON_SCHEMA), schema_registry_client=registry)(
        j.value(), SerializationContext(json_topic, MessageField.VALUE)) == payment

    before = end_offset(bootstrap, topic)
    for bad, field in [({**order, "status": "LOST"}, "$.status"), ({**order, "lines": [{"sku": "a", "qty": "3"}]}, "$.lines[0].qty"),
                       ({**order, "colour": "red"}, "$.colour")]:
        refused = call(sidecar.url, "publish_message", {"topic": topic, "value": json.dumps(bad), "value_schema": {}})
        error = tool_error(refused)
        assert error["code"] == "INVALID_ARGUMENT" and field in error["message"], error
    before_json = end_offset(bootstrap, json_topic)
    refused = call(sidecar.url, "publish_message", {"topic": json_topic, "value": json.dumps({"id": "x", "amount": 1}), "value_schema": {}})
    assert tool_error(refused)["code"] == "INVALID_ARGUMENT" and "/id" in tool_error(refused)["message"]
    assert end_offset(bootstrap, topic) == before == 1, "nothing was written"
    assert end_offset(bootstrap, json_topic) == before_json == 1, "nothing was written"


def test_fallbacks_show_bytes_with_a_note(schema_server, kafka, registry):
    bootstrap, make_topic = kafka
    topic = make_topic(unique("fallback"))
    cached = AvroSerializer(registry, json.dumps(KEY_SCHEMA), conf={"auto.register.schemas": True})
    produce(bootstrap, topic, [
        (None, b"just bytes"),
        (None, frame(2_000_000_001, b"\x02")),
        (None, cached({"id": 1}, SerializationContext(topic, MessageField.VALUE))),
    ])
    sidecar = schema_server()
    plain, unknown, decoded = peek(sidecar.url, topic)
    assert plain["value"] == {"text": "just bytes"} and "value_schema" not in plain
    assert plain["notes"] == ["value: not in the schema registry's wire format (magic byte 0 and a schema id)"], plain
    # Today's display of those bytes (a control byte first: base64).
    assert "value_schema" not in unknown and unknown["value"] == {"base64": "AHc1lAEC"}, unknown
    assert any("schema id 2000000001 is not in the registry" in n for n in unknown["notes"]), unknown
    assert decoded["value"]["json"] == {"id": 1} and "notes" not in decoded, decoded


def test_registry_tools_and_two_phase_registration(schema_server, kafka, registry):
    topic = unique("tools")
    subject = f"{topic}-value"
    registry.register_schema(subject, Schema(json.dumps(ORDER_V1), "AVRO"))
    registry.set_compatibility(subject_name=subject, level="BACKWARD")
    sidecar = schema_server(mutations="twoPhase")
    # A new required field without a default: BACKWARD refuses it.
    incompatible = {**ORDER_V1, "fields": ORDER_V1["fields"] + [{"name": "channel", "type": "string"}]}

    latest = None

    async def body(session):
        tools = {t.name: t for t in (await session.list_tools()).tools}
        listed = await session.call_tool("list_subjects", {"prefix": topic})
        by_subject = await session.call_tool("get_schema", {"subject": subject})
        by_id = await session.call_tool("get_schema", {"id": by_subject.structured_content["id"]})
        check_bad = await session.call_tool("check_compatibility", {"subject": subject, "schema": json.dumps(incompatible)})
        check_good = await session.call_tool("check_compatibility", {"subject": subject, "schema": json.dumps(ORDER_V2)})
        refused = await session.call_tool("register_schema", {"subject": subject, "schema": json.dumps(incompatible), "dry_run": True})
        direct = await session.call_tool("register_schema", {"subject": subject, "schema": json.dumps(ORDER_V2)})
        planned = await session.call_tool("register_schema", {"subject": subject, "schema": json.dumps(ORDER_V2), "dry_run": True})
        applied = await session.call_tool("register_schema", {"subject": subject, "schema": json.dumps(ORDER_V2),
                                                              "plan_id": planned.structured_content["plan"]["id"]})
        nonlocal latest
        latest = registry.get_latest_version(subject)
        invalid = await session.call_tool("register_schema", {"subject": subject, "schema": "{\"type\": \"recrd\"}", "dry_run": True})
        delete_plan = await session.call_tool("delete_subject", {"subject": subject, "dry_run": True})
        deleted = await session.call_tool("delete_subject", {"subject": subject, "plan_id": delete_plan.structured_content["plan"]["id"]})
        after = await session.call_tool("list_subjects", {"prefix": topic})
        return tools, listed, by_subject, by_id, check_bad, check_good, refused, direct, planned, applied, invalid, delete_plan, deleted, after

    (tools, listed, by_subject, by_id, check_bad, check_good, refused, direct, planned, applied, invalid, delete_plan, deleted,
     after) = with_session(sidecar.url, body)
    for name in SCHEMA_TOOLS:
        assert name in tools, name
    hints = {n: (tools[n].annotations.read_only_hint, tools[n].annotations.destructive_hint) for n in SCHEMA_TOOLS}
    assert hints == {"list_subjects": (True, False), "get_schema": (True, False), "check_compatibility": (True, False),
                     "register_schema": (False, False), "delete_subject": (False, True)}, hints
    for result, tool in [(listed, "list_subjects"), (by_subject, "get_schema"), (check_good, "check_compatibility")]:
        jsonschema.Draft202012Validator(tools[tool].output_schema).validate(result.structured_content)

    assert listed.structured_content["subjects"] == [subject], listed
    described = by_subject.structured_content
    assert described["schema_type"] == "AVRO" and described["versions"] == [1]
    assert json.loads(described["schema"])["name"] == "Order"
    # The registry gives an identical schema one id under every subject
    # (other tests register this one too): this subject is among them.
    assert {"subject": subject, "version": 1} in by_id.structured_content["registered_as"], by_id

    assert check_bad.structured_content["is_compatible"] is False, check_bad
    assert check_bad.structured_content["level"] == "BACKWARD"
    assert check_good.structured_content["is_compatible"] is True, check_good

    error = tool_error(refused)
    assert error["code"] == "CONFLICT" and "not compatible" in error["message"] and "BACKWARD" in error["message"], error
    assert tool_error(direct)["code"] == "PERMISSION_DENIED", "two-phase: no apply without a plan"
    assert not planned.is_error and planned.structured_content["registered"] is None
    assert not applied.is_error, applied
    registered = applied.structured_content["registered"]
    assert registered["version"] == 2 and (registered["id"], registered["version"]) == (latest.schema_id, latest.version), (registered, latest)
    assert tool_error(invalid)["code"] == "INVALID_ARGUMENT"

    assert delete_plan.structured_content["versions"] == [1, 2] and delete_plan.structured_content["deleted"] is False
    assert not deleted.is_error and deleted.structured_content["deleted"] is True, deleted
    assert after.structured_content["subjects"] == [], after


def test_the_byte_cap_counts_the_decoded_size(schema_server, kafka, registry):
    """Five Avro records of 9 framed bytes each whose decoded JSON is over
    100 bytes: a cap with room for all five as bytes, and for two decoded,
    stops the decoded peek by max_bytes and not the raw one."""
    bootstrap, make_topic = kafka
    topic = make_topic(unique("cap"))
    names = [f"a_long_descriptive_field_name_{i}" for i in range(4)]
    wide = {"type": "record", "name": "Wide", "fields": [{"name": n, "type": "int"} for n in names]}
    record = {n: i for i, n in enumerate(names)}
    ser = AvroSerializer(registry, json.dumps(wide))
    framed = [ser(record, SerializationContext(topic, MessageField.VALUE)) for _ in range(5)]
    produce(bootstrap, topic, [(None, f) for f in framed])
    decoded_size = len(json.dumps(record, separators=(",", ":")))
    assert all(len(f) == 9 for f in framed) and decoded_size > 100
    cap = 2 * decoded_size + 10
    raw = peek_result(schema_server(registry=False).url, topic, max_bytes=cap)
    assert len(raw["messages"]) == 5 and raw["stopped_by"] != "max_bytes", raw
    decoded = peek_result(schema_server().url, topic, max_bytes=cap)
    assert decoded["stopped_by"] == "max_bytes" and len(decoded["messages"]) == 2, decoded
    assert all(m["value"]["json"] == record for m in decoded["messages"])


def test_without_a_registry_nothing_changes(schema_server, kafka):
    bootstrap, make_topic = kafka
    topic = make_topic(unique("plain"))
    produce(bootstrap, topic, [(b"k", frame(1, b"\x02"))])
    sidecar = schema_server(registry=False)

    async def body(session):
        return {t.name for t in (await session.list_tools()).tools}

    tools = with_session(sidecar.url, body)
    assert not set(SCHEMA_TOOLS) & tools, tools
    [m] = peek(sidecar.url, topic)
    assert set(m) == {"partition", "offset", "timestamp_ms", "key", "value", "headers"}, m
    assert tool_error(call(sidecar.url, "list_subjects", {}))["code"] == "NOT_FOUND"
    refused = call(sidecar.url, "publish_message", {"topic": topic, "value": "{}", "value_schema": {}})
    assert tool_error(refused)["code"] == "INVALID_ARGUMENT"


def test_a_planned_publish_against_latest_is_refused_once_a_newer_version_exists(schema_server, kafka, registry):
    """The dry run names the schema id it encoded with, and so does the
    plan's fingerprint: a value planned against v1 is not written as v1
    once v2 is the latest."""
    bootstrap, make_topic = kafka
    topic = make_topic(unique("plan-latest"))
    subject = f"{topic}-value"
    registry.register_schema(subject, Schema(json.dumps(ORDER_V1), "AVRO"))
    sidecar = schema_server(mutations="twoPhase")
    order = {"id": 1, "customer": "c", "price": "1.00", "status": "NEW", "lines": [], "tags": {}}
    args = {"topic": topic, "value": json.dumps(order), "value_schema": {}}
    planned = call(sidecar.url, "publish_message", {**args, "dry_run": True})
    assert not planned.is_error, planned
    assert planned.structured_content["value_schema"]["version"] == 1
    registry.register_schema(subject, Schema(json.dumps(ORDER_V2), "AVRO"))
    stale = call(sidecar.url, "publish_message", {**args, "plan_id": planned.structured_content["plan"]["id"]})
    assert tool_error(stale)["code"] == "CONFLICT", stale
    assert end_offset(bootstrap, topic) == 0, "nothing was written"
    # Planned again, it is written with v2 (the channel default filled in).
    again = call(sidecar.url, "publish_message", {**args, "dry_run": True})
    applied = call(sidecar.url, "publish_message", {**args, "plan_id": again.structured_content["plan"]["id"]})
    assert not applied.is_error, applied
    assert applied.structured_content["value_schema"]["version"] == 2
    [m] = read_back(bootstrap, topic, 1)
    value = AvroDeserializer(registry)(m.value(), SerializationContext(topic, MessageField.VALUE))
    assert value["channel"] == "web" and value["id"] == 1, value


def test_a_scoped_server_sees_only_its_topics_subjects(schema_server, kafka, registry):
    """A subject is its topic's under the TopicNameStrategy: a server
    scoped to some topics lists, reads and writes only their subjects, and
    a schema id shared with a subject outside is shown with its own."""
    bootstrap, make_topic = kafka
    team = unique("scoped") + "."
    inside, outside = make_topic(f"{team}orders"), make_topic(unique("outside"))
    # One schema under both subjects: the registry gives it one id.
    registry.register_schema(f"{outside}-value", Schema(json.dumps(ORDER_V1), "AVRO"))
    in_id = registry.register_schema(f"{inside}-value", Schema(json.dumps(ORDER_V1), "AVRO"))
    assert registry.get_latest_version(f"{outside}-value").schema_id == in_id
    ser = AvroSerializer(registry, json.dumps(ORDER_V1), conf={"auto.register.schemas": False, "use.latest.version": True})
    order = {"id": 4, "customer": "s", "note": None, "price": __import__("decimal").Decimal("4.00"), "status": "NEW",
             "lines": [], "tags": {}}
    produce(bootstrap, inside, [(None, ser(order, SerializationContext(inside, MessageField.VALUE)))])
    scope = {"topics": {"allow": [{"name": team, "patternType": "prefix"}]}, "groups": {"allow": []}}
    sidecar = schema_server(scope=scope)

    async def body(session):
        return (
            await session.call_tool("list_subjects", {"prefix": "schema-test-"}),
            await session.call_tool("get_schema", {"subject": f"{outside}-value"}),
            await session.call_tool("get_schema", {"id": in_id}),
            await session.call_tool("check_compatibility", {"subject": f"{outside}-value", "schema": json.dumps(ORDER_V2)}),
            await session.call_tool("register_schema", {"subject": f"{outside}-value", "schema": json.dumps(ORDER_V2), "dry_run": True}),
            await session.call_tool("register_schema", {"subject": "shop.test.Order", "schema": json.dumps(ORDER_V2), "dry_run": True}),
            await session.call_tool("publish_message", {"topic": inside, "value": "{}", "value_schema": {"subject": f"{outside}-value"}}),
            await session.call_tool("consume_messages", {"topic": inside, "from": "earliest"}),
        )

    listed, other, by_id, check_other, register_other, register_record_named, publish_other, peeked = with_session(sidecar.url, body)
    subjects = listed.structured_content["subjects"]
    assert f"{inside}-value" in subjects and listed.structured_content["scoped"] is True, listed
    assert all(s.startswith(team) for s in subjects), subjects
    for refused in (other, check_other, register_other, register_record_named, publish_other):
        assert tool_error(refused)["code"] == "PERMISSION_DENIED", refused
    assert by_id.structured_content["registered_as"] == [{"subject": f"{inside}-value", "version": 1}], by_id
    [m] = peeked.structured_content["messages"]
    assert m["value"]["json"] == avro_value(order)
    assert m["value_schema"]["subject"] == f"{inside}-value", m


def test_registry_stopped_mid_peek_falls_back_and_cached_ids_still_decode(schema_server, kafka, registry):
    """Stops the ground's registry (in memory: it comes back empty), so it
    runs last in this file."""
    bootstrap, make_topic = kafka
    topic = make_topic(unique("registry-down"))
    seen = AvroSerializer(registry, json.dumps(KEY_SCHEMA))
    produce(bootstrap, topic, [(None, seen({"id": 1}, SerializationContext(topic, MessageField.VALUE)))])
    sidecar = schema_server()
    assert peek(sidecar.url, topic)[0]["value"]["json"] == {"id": 1}

    # A record whose schema this sidecar has not fetched yet, then the
    # registry stops: the peek still answers, the cached id still decodes,
    # the new one falls back with the reason.
    fresh = AvroSerializer(registry, json.dumps(ORDER_V1))
    produce(bootstrap, topic, [(None, fresh({"id": 2, "customer": "b", "note": None, "price": __import__("decimal").Decimal("2.00"),
                                             "status": "NEW", "lines": [], "tags": {}},
                                            SerializationContext(f"{topic}-later", MessageField.VALUE)))])
    # The script of the ground whose state this is (it owns the registry's process).
    state_dir = pathlib.Path(os.environ.get("MCPK_STATE_DIR", E2E_DIR / ".stack"))
    env = {**os.environ, "MCPK_STATE_DIR": str(state_dir)}
    stack = [str(state_dir.parent / "stack"), "schema-registry"]
    subprocess.run([*stack, "stop"], env=env, check=True, capture_output=True, timeout=120)
    try:
        messages = peek(sidecar.url, topic, timeout_ms=8000)
    finally:
        subprocess.run([*stack, "start"], env=env, check=True, capture_output=True, timeout=180)
    assert len(messages) == 2, messages
    assert messages[0]["value"]["json"] == {"id": 1}, "ids are immutable: a cached schema keeps decoding"
    down = messages[1]
    assert "value_schema" not in down and "base64" in down["value"], down
    assert any(n.startswith("value: schema id ") and "could not be fetched" in n and "did not answer" in n
               for n in down["notes"]), down
