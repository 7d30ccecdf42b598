"""JSON Schema for editors, generated from the pydantic models (never edited by hand).

The schema describes ``hub.yaml``. A connection entry there may give only what differs from its template,
so ``required`` lists are dropped inside connections (the loader validates the merged result strictly);
``additionalProperties: false`` is kept, so editors still flag unknown keys.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hub.config.models import TEMPLATE_ADAPTER, ProjectConfig

SCHEMA_ID = "https://erp-sync-hub.local/schemas/hub.schema.json"


def _drop_required(node: Any) -> Any:
    if isinstance(node, dict):
        # anyOf instead of oneOf: a partial entry may match several kinds until `kind` is written.
        return {
            ("anyOf" if k == "oneOf" else k): _drop_required(v) for k, v in node.items() if k != "required"
        }
    if isinstance(node, list):
        return [_drop_required(v) for v in node]
    return node


def project_schema() -> dict[str, Any]:
    """Schema of ``hub.yaml``."""
    schema = ProjectConfig.model_json_schema(mode="validation")
    defs = schema.get("$defs", {})
    schema["$defs"] = {name: _drop_required(body) for name, body in defs.items()}
    schema["properties"] = _drop_required(schema["properties"])
    # Entries must still name their template; every template model already has that field.
    for body in schema["$defs"].values():
        props = body.get("properties", {})
        if "kind" in props and "template" in props:
            body["required"] = ["template"]
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = SCHEMA_ID
    schema["title"] = "hub.yaml (erp-sync-hub project config)"
    return schema


def template_schema() -> dict[str, Any]:
    """Schema of one template file (strict: required fields stay required)."""
    schema = TEMPLATE_ADAPTER.json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "erp-sync-hub connector template"
    return schema


def write_schema(path: Path, schema: dict[str, Any] | None = None) -> Path:
    """Write the project schema (or ``schema``) to ``path`` as pretty JSON; returns the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(
        json.dumps(schema or project_schema(), ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
    )
    tmp.replace(path)
    return path
