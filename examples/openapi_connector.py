"""An OpenAPI document becomes tools: a program lists pets, adds one (after approval) and reads it back.

The example starts its own tiny pet-store server on 127.0.0.1, so it runs offline:
`.venv/bin/python examples/openapi_connector.py`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import codemode
from codemode.connectors.openapi import HttpOpenApiConnector

PET = {
    "type": "object",
    "required": ["id", "name"],
    "properties": {"id": {"type": "integer"}, "name": {"type": "string"}, "tag": {"type": "string", "nullable": True}},
}

SPEC: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "Pet store", "version": "1"},
    "servers": [{"url": "https://pets.example.com/v1"}],
    "paths": {
        "/pets": {
            "get": {
                "operationId": "list_pets",
                "summary": "List pets",
                "parameters": [{"name": "limit", "in": "query", "schema": {"type": "integer", "maximum": 100}}],
                "responses": {
                    "200": {
                        "description": "pets",
                        "content": {
                            "application/json": {
                                "schema": {"type": "array", "items": {"$ref": "#/components/schemas/Pet"}}
                            }
                        },
                    }
                },
            },
            "post": {
                "operationId": "create_pet",
                "summary": "Add a pet",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/NewPet"}}},
                },
                "responses": {
                    "201": {
                        "description": "created",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Pet"}}},
                    }
                },
            },
        },
        "/pets/{petId}": {
            "get": {
                "summary": "Read one pet",
                "parameters": [{"name": "petId", "in": "path", "required": True, "schema": {"type": "integer"}}],
                "responses": {
                    "200": {
                        "description": "a pet",
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Pet"}}},
                    }
                },
            }
        },
    },
    "components": {
        "schemas": {
            "Pet": PET,
            "NewPet": {
                "type": "object",
                "required": ["name"],
                "properties": {"name": {"type": "string"}, "tag": {"type": "string"}},
            },
        }
    },
}


STORE: list[dict[str, Any]] = [{"id": 1, "name": "Rex", "tag": "dog"}]


class PetStore(BaseHTTPRequestHandler):
    """The pet store's HTTP API, in memory."""

    def _send(self, status: int, value: Any) -> None:
        body = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/v1/pets":
            self._send(200, STORE)
        elif path.startswith("/v1/pets/"):
            found = [p for p in STORE if str(p["id"]) == path.rsplit("/", 1)[1]]
            self._send(200, found[0]) if found else self._send(404, {"message": "no such pet"})
        else:
            self._send(404, {"message": "not found"})

    def do_POST(self) -> None:
        if self.headers.get("Authorization") != "Bearer demo-token":
            return self._send(401, {"message": "bad token"})
        new = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        pet = {"id": len(STORE) + 1, "name": new["name"], "tag": new.get("tag")}
        STORE.append(pet)
        self._send(201, pet)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class Pets(HttpOpenApiConnector):
    """Reads run freely; every call that is not a GET waits for a human."""

    def tool(self, name: str, spec: codemode.ToolSpec) -> codemode.ToolSpec:
        op = self.operation(name)
        gated = name == "request" or (op is not None and op.method != "GET")
        return dataclasses.replace(spec, requires_approval=gated)


PROGRAM = """
before = await pets.list_pets(limit=10)
print(f"{len(before)} pet(s) before")
new = await pets.create_pet(body={"name": "Tom", "tag": "cat"})
return await pets.get_pets_petId(petId=new["id"])
"""


async def main(workdir: Path) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), PetStore)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base_url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    try:
        pets = Pets("pets", SPEC, base_url, headers={"Authorization": "Bearer demo-token"})
        async with codemode.Runtime([pets], store=codemode.SqliteStore(workdir / "codemode.db")) as runtime:
            print("What the model reads for pets.create_pet:")
            print((await runtime.describe("pets.create_pet")).types)
            outcome = await runtime.execute(PROGRAM)
            for action in outcome.pending:
                print(f"paused: {action.connector}.{action.method}({action.args})")
            action = outcome.pending[0]  # approve exactly the action that was shown, by its seq
            outcome = await runtime.approve(action.execution_id, action.seq, by="ann")
            print(f"completed: {outcome.result} logs={outcome.logs}")
    finally:
        server.shutdown()
        server.server_close()


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(main(Path(tmp)))
