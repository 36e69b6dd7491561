"""JSON Schema of every spec kind, generated from the pydantic models and their descriptions."""

from __future__ import annotations

from typing import Any

from specs.base import Metadata
from specs.kinds import API_VERSION, KINDS


def json_schema() -> dict[str, Any]:
    """One schema for a spec document: the envelope, with `spec` chosen by `kind`."""
    variants = []
    defs: dict[str, Any] = {}
    meta = Metadata.model_json_schema(ref_template="#/$defs/{model}")
    defs.update(meta.pop("$defs", {}))
    defs["Metadata"] = meta
    for kind, model in sorted(KINDS.items()):
        schema = model.model_json_schema(ref_template="#/$defs/{model}")
        defs.update(schema.pop("$defs", {}))
        defs[f"{kind}Spec"] = schema
        variants.append({
            "if": {"properties": {"kind": {"const": kind}}},
            "then": {"properties": {"spec": {"$ref": f"#/$defs/{kind}Spec"}}},
        })
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "recon spec",
        "type": "object",
        "additionalProperties": False,
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": API_VERSION},
            "kind": {"enum": sorted(KINDS)},
            "metadata": {"$ref": "#/$defs/Metadata"},
            "spec": {"type": "object"},
        },
        "allOf": variants,
        "$defs": defs,
    }
