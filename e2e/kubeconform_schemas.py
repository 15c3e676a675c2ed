"""Writes kubeconform's strict JSON schemas for every kind the test ground's
apiserver serves (its OpenAPI v2 document, CRDs included), because the usual
schema repositories are not reachable from here. What openapi2jsonschema
does, for one apiserver:

  python e2e/kubeconform_schemas.py OPENAPI_V2_JSON OUT_DIR
  kubeconform -strict -schema-location 'OUT_DIR/{{ .Group }}-{{ .ResourceKind }}-{{ .ResourceAPIVersion }}{{ .StrictSuffix }}.json'

Each schema is standalone ($refs inlined; a recursive reference becomes an
open schema) and strict: objects that list their properties allow no others,
unless the API marks them as preserving unknown fields.
"""

import json
import pathlib
import sys

# Formats whose values YAML may write as numbers.
NUMERIC_STRINGS = {"int-or-string": ["string", "integer"], "quantity": ["string", "number", "integer"]}


def standalone(schema, definitions, seen=()):
    """`schema` with its $refs inlined and made strict (walked by structure,
    so that a property named like a keyword is not taken for one)."""
    if not isinstance(schema, dict):
        return schema
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        if name in seen:
            return {}
        return standalone(definitions[name], definitions, (*seen, name))
    out = dict(schema)
    if isinstance(out.get("properties"), dict):
        out["properties"] = {k: standalone(v, definitions, seen) for k, v in out["properties"].items()}
    if isinstance(out.get("additionalProperties"), dict):
        out["additionalProperties"] = standalone(out["additionalProperties"], definitions, seen)
    if isinstance(out.get("items"), dict):
        out["items"] = standalone(out["items"], definitions, seen)
    for combinator in ("allOf", "anyOf", "oneOf"):
        if isinstance(out.get(combinator), list):
            out[combinator] = [standalone(s, definitions, seen) for s in out[combinator]]
    if out.get("format") in NUMERIC_STRINGS and out.get("type") == "string":
        out["type"] = NUMERIC_STRINGS[out.pop("format")]
    if out.get("x-kubernetes-int-or-string"):
        out["type"] = ["string", "integer"]
    if "properties" in out and "additionalProperties" not in out and not out.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    return out


def main(openapi_path, out_dir):
    document = json.loads(pathlib.Path(openapi_path).read_text())
    definitions = document["definitions"]
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = 0
    for name, schema in definitions.items():
        for gvk in schema.get("x-kubernetes-group-version-kind", []):
            group = gvk["group"] or gvk["version"]  # kubeconform's {{ .Group }} of "v1" is "v1"
            path = out / f"{group}-{gvk['kind'].lower()}-{gvk['version']}-strict.json"
            path.write_text(json.dumps({"$schema": "http://json-schema.org/draft-07/schema#", **standalone(schema, definitions, (name,))}))
            written += 1
    print(f"{written} schemas in {out}")


if __name__ == "__main__":
    main(*sys.argv[1:])
