"""The ``kgrag query --json`` contract as a JSON Schema, and a small validator.

The validator covers the subset of JSON Schema the contract uses (type with
null unions, required, properties, additionalProperties as a schema, items, enum,
minimum/maximum); it is written here to keep the query path free of another dependency.
"""

from __future__ import annotations

from typing import Any

from kgrag.errors import InputError

NUM = {"type": "number"}
PROB = {"type": "number", "minimum": 0.0, "maximum": 1.0}
PATH = {"type": "object", "required": ["nodes", "strength"],
        "properties": {"nodes": {"type": "array", "items": {"type": "string"}}, "strength": PROB}}
#: a real intervention: {"do": {"lung_opacity": 0}, "probability": P(diagnosis | do(lung_opacity = 0), V_I)}
DO = {"type": "object", "required": ["do", "probability"],
      "properties": {"do": {"type": "object", "additionalProperties": {"type": "integer", "enum": [0, 1]}}, "probability": PROB}}
QUERY_OUTPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["query", "answer", "image_findings", "diagnoses", "evidence", "config"],
    "properties": {
        "query": {"type": "object"},
        "answer": {"type": ["object", "null"], "properties": {
            "text": {"type": "string"}, "yes_no": {"type": ["string", "null"], "enum": ["yes", "no", None]},
            "probability": {"type": ["number", "null"], "minimum": 0.0, "maximum": 1.0}}},
        "concepts": {"type": "object", "additionalProperties": PROB},
        "image_findings": {"type": "array", "items": {"type": "object", "required": ["concept", "probability"],
                                                      "properties": {"concept": {"type": "string"}, "probability": PROB}}},
        "diagnoses": {"type": "array", "items": {"type": "object", "required": ["concept", "probability", "paths", "counterfactual"],
                      "properties": {"concept": {"type": "string"}, "probability": PROB, "paths": {"type": "array", "items": PATH},
                                     "counterfactual": {"type": "array", "items": DO}}}},
        "evidence": {"type": "array", "items": {"type": "object",
                     "required": ["id", "rank", "score", "similarity", "causal_loglik", "sentences"],
                     "properties": {"id": {"type": "string"}, "rank": {"type": "integer", "minimum": 1}, "score": NUM,
                                    "similarity": {"type": "object", "required": ["image_text", "image_image", "text_text", "fused"],
                                                   "properties": {k: {"type": ["number", "null"]} for k in ("image_text", "image_image", "text_text", "fused")}},
                                    "causal_loglik": {"type": ["number", "null"]},
                                    "sentences": {"type": "array", "items": {"type": "string"}}}}},
        "config": {"type": "object", "required": ["alpha", "k", "graph_version", "index_version"],
                   "properties": {"alpha": PROB, "k": {"type": "integer", "minimum": 1},
                                  "graph_version": {"type": ["string", "null"]}, "index_version": {"type": "string"}}},
    },
}
_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}


def _is(v: Any, t: str) -> bool:
    if t == "number":
        return isinstance(v, int | float) and not isinstance(v, bool)
    if t == "integer":
        return isinstance(v, int) and not isinstance(v, bool)
    return isinstance(v, _TYPES[t])


def validate(obj: Any, schema: dict[str, Any], path: str = "$") -> None:
    types = schema.get("type")
    if types is not None:
        ts = types if isinstance(types, list) else [types]
        if not any(_is(obj, t) for t in ts):
            raise InputError(f"{path}: expected {'/'.join(ts)}, got {type(obj).__name__}", fix="see the query output contract")
    if "enum" in schema and obj not in schema["enum"]:
        raise InputError(f"{path}: {obj!r} is not one of {schema['enum']}", fix="see the query output contract")
    if isinstance(obj, int | float) and not isinstance(obj, bool):
        if "minimum" in schema and obj < schema["minimum"] - 1e-12:
            raise InputError(f"{path}: {obj} < {schema['minimum']}", fix="see the query output contract")
        if "maximum" in schema and obj > schema["maximum"] + 1e-12:
            raise InputError(f"{path}: {obj} > {schema['maximum']}", fix="see the query output contract")
    if isinstance(obj, dict):
        for k in schema.get("required", []):
            if k not in obj:
                raise InputError(f"{path}: missing '{k}'", fix="see the query output contract")
        for k, sub in schema.get("properties", {}).items():
            if k in obj:
                validate(obj[k], sub, f"{path}.{k}")
    if isinstance(obj, dict) and isinstance(schema.get("additionalProperties"), dict):
        for k, v in obj.items():
            if k not in schema.get("properties", {}):
                validate(v, schema["additionalProperties"], f"{path}.{k}")
    if isinstance(obj, list) and "items" in schema:
        for i, v in enumerate(obj):
            validate(v, schema["items"], f"{path}[{i}]")


def validate_query_output(obj: Any) -> None:
    validate(obj, QUERY_OUTPUT_SCHEMA)
