"""Shared test fixtures: tool specs built from the real OpenAPI documents, and small tool-spec helpers."""

from __future__ import annotations

import gzip
import json
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

from codemode import ToolSpec
from codemode.schema.names import sanitize_identifier


def spec(input_schema: Any = None, output_schema: Any = None, description: str = "", **kw: Any) -> ToolSpec:
    """A tool spec for rendering tests: only the schemas and the description matter."""
    if input_schema is None:
        input_schema = {"type": "object", "properties": {}}
    return ToolSpec(
        execute=lambda args, ctx: None,
        input_schema=input_schema,
        output_schema=output_schema,
        description=description,
        **kw,
    )


SPECS = Path(__file__).resolve().parent / "specs"  # gzip-compressed copies: see specs/SOURCE.md


@cache
def load_spec(name: str) -> dict[str, Any]:
    """A real OpenAPI document, parsed once per session (the same object every time)."""
    with gzip.open(SPECS / f"{name}.json.gz", "rt", encoding="utf-8") as handle:
        return dict(json.load(handle))


def _deref(doc: Mapping[str, Any], node: Any) -> Any:
    while isinstance(node, Mapping) and "$ref" in node:
        target: Any = doc
        for part in node["$ref"][2:].split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        node = target
    return node


@cache
def openapi_tools(name: str) -> dict[str, ToolSpec]:
    """One tool per operation, its schemas pointing into the document's `components` carried at their root."""
    doc = load_spec(name)
    components = doc["components"]
    tools: dict[str, ToolSpec] = {}
    for route, item in doc["paths"].items():
        for verb, op in item.items():
            if verb not in ("get", "post", "put", "patch", "delete"):
                continue
            props: dict[str, Any] = {}
            required: list[str] = []
            for param in [*item.get("parameters", []), *op.get("parameters", [])]:
                param = _deref(doc, param)
                props[param["name"]] = {**param.get("schema", {}), "description": param.get("description", "")}
                if param.get("required"):
                    required.append(param["name"])
            body = _deref(doc, op.get("requestBody"))
            if isinstance(body, Mapping):
                content = body.get("content", {})
                media: Mapping[str, Any] = content.get("application/json") or next(iter(content.values()), {})
                if "schema" in media:
                    props["body"] = media["schema"]
                    if body.get("required"):
                        required.append("body")
            output = None
            response = op.get("responses", {}).get("200") or op.get("responses", {}).get("201")
            if isinstance(response, Mapping) and "$ref" in response:
                if "application/json" in _deref(doc, response).get("content", {}):
                    # Exercises `~1` unescaping: .../content/application~1json/schema
                    output = {"$ref": response["$ref"] + "/content/application~1json/schema", "components": components}
            elif isinstance(response, Mapping) and "application/json" in response.get("content", {}):
                output = {**response["content"]["application/json"].get("schema", {}), "components": components}
            input_schema = {"type": "object", "properties": props, "required": required, "components": components}
            tool_name = sanitize_identifier(op.get("operationId", f"{verb}_{route}").replace("/", "_"))
            tools[tool_name] = spec(input_schema, output, op.get("summary", ""))
    return tools
