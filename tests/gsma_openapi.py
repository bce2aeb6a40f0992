"""Validation of HTTP exchanges against the GSMA Mobile Money API 1.2 OpenAPI files (test-only).

The files are read from ``../shared/standards/mobile-money`` (never copied into the project);
tests that need them skip with a reason when they are absent. ``$ref``s are resolved inside each
file by ``jsonschema``'s registry; OpenAPI 3.0 schemas are JSON Schema draft 4 in spirit
(``exclusiveMinimum: true``), so a Draft 4 validator checks them. PyYAML reads response codes as
ints: they are compared as strings.

Also :func:`callback_endpoint`, the loopback endpoint the GSMA tests receive callbacks on.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import urllib.parse
from collections.abc import Iterator, Mapping
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

STANDARDS = Path(__file__).parents[1].parent / "shared" / "standards" / "mobile-money"
FILES = ("gsma-mmapi-1.2.0-disbursements.yaml", "gsma-mmapi-1.2.0-master.yaml")

#: Not in the GSMA files: the OAuth token endpoint (RFC 6749, served by the sandbox for tests).
OUTSIDE_THE_SPEC = frozenset({"/oauth/token"})
#: HTTP statuses the GSMA files do not list but HTTP gives every operation; the body must still
#: be an ``errorObject``.
HTTP_LEVEL = frozenset({429})


def require_spec() -> None:
    missing = [name for name in FILES if not (STANDARDS / name).is_file()]
    if missing:
        pytest.skip(f"GSMA OpenAPI files not found under {STANDARDS} (../shared is absent)")


class SpecViolation(AssertionError):
    pass


@cache
def _load(name: str) -> dict[str, Any]:
    yaml = pytest.importorskip(
        "yaml", reason="PyYAML is a test dependency (pip install -e .[test])"
    )
    with (STANDARDS / name).open(encoding="utf-8") as handle:
        return _stringify(yaml.safe_load(handle))


def _stringify(node: Any) -> Any:
    if isinstance(node, dict):
        return {str(key): _stringify(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_stringify(value) for value in node]
    return node


class Spec:
    """One OpenAPI file: operations by method and path, schemas validated with $refs."""

    def __init__(self, name: str) -> None:
        jsonschema = pytest.importorskip("jsonschema")
        referencing = pytest.importorskip("referencing")
        from referencing.jsonschema import DRAFT4

        self.name = name
        self.document = _load(name)
        self.uri = f"urn:gsma:{name}"
        resource = referencing.Resource.from_contents(self.document, default_specification=DRAFT4)
        self.registry = referencing.Registry().with_resource(self.uri, resource)
        self.jsonschema = jsonschema
        self.paths = []
        for template, item in self.document["paths"].items():
            pattern = "^" + re.sub(r"\{[^}]+\}", "([^/]+)", template) + "$"
            names = re.findall(r"\{([^}]+)\}", template)
            self.paths.append((re.compile(pattern), names, template, item))

    def _resolve(self, node: Mapping[str, Any]) -> Mapping[str, Any]:
        while "$ref" in node:
            pointer = node["$ref"].removeprefix("#/").split("/")
            target: Any = self.document
            for part in pointer:
                target = target[part]
            node = target
        return node

    def validate(self, schema: Mapping[str, Any], value: Any, where: str) -> None:
        # inline $refs ("#/components/...") must resolve in the spec: rewrite them to its URI
        validator = self.jsonschema.Draft4Validator(
            _rebase(dict(schema), self.uri),
            registry=self.registry,
            format_checker=self.jsonschema.Draft4Validator.FORMAT_CHECKER,
        )
        errors = sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path))
        if errors:
            first = errors[0]
            path = "/".join(str(p) for p in first.absolute_path)
            raise SpecViolation(f"{where}: {first.message} (at /{path}) [{self.name}]")

    def operation(self, method: str, path: str) -> tuple[dict[str, Any], dict[str, Any], str]:
        """(operation, path parameters by name, template) or KeyError."""
        for pattern, names, template, item in self.paths:
            match = pattern.match(path)
            if match and method.lower() in item:
                params = dict(
                    zip(names, (urllib.parse.unquote(g) for g in match.groups()), strict=True)
                )
                operation = dict(item[method.lower()])
                shared = [self._resolve(p) for p in item.get("parameters", [])]
                own = [self._resolve(p) for p in operation.get("parameters", [])]
                operation["_parameters"] = shared + own
                return operation, params, template
        raise KeyError(f"{method} {path}")


def _rebase(node: Any, uri: str) -> Any:
    if isinstance(node, dict):
        return {
            key: (
                f"{uri}{value}" if key == "$ref" and value.startswith("#") else _rebase(value, uri)
            )
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_rebase(value, uri) for value in node]
    return node


@cache
def specs() -> tuple[Spec, ...]:
    require_spec()
    return tuple(Spec(name) for name in FILES)


def _find(method: str, path: str) -> tuple[Spec, dict[str, Any], dict[str, Any], str]:
    for spec in specs():
        try:
            operation, params, template = spec.operation(method, path)
        except KeyError:
            continue
        return spec, operation, params, template
    raise SpecViolation(f"{method} {path}: no such operation in the GSMA files")


def check_request(
    method: str, path: str, query: str, headers: Mapping[str, str], body: bytes
) -> str:
    """Validate a request (path and header parameters, query, JSON body); its template."""
    spec, operation, params, template = _find(method, path)
    lowered = {name.lower(): value for name, value in headers.items()}
    parsed_query = urllib.parse.parse_qs(query)
    where = f"request {method} {template}"
    for parameter in operation["_parameters"]:
        name, place, schema = parameter["name"], parameter["in"], parameter.get("schema", {})
        if place == "path":
            value: Any = params.get(name)
        elif place == "header":
            value = lowered.get(name.lower())
        elif place == "query":
            value = parsed_query.get(name, [None])[0]
            if value is not None and schema.get("type") == "integer":
                value = int(value)
        else:
            continue
        if value is None:
            if parameter.get("required"):
                raise SpecViolation(f"{where}: required {place} parameter {name} missing")
            continue
        spec.validate(schema, value, f"{where} {place} parameter {name}")
    request_body = operation.get("requestBody")
    if request_body is not None:
        content = spec._resolve(request_body)["content"]["application/json"]["schema"]
        spec.validate(content, json.loads(body), f"{where} body")
    elif body:
        raise SpecViolation(f"{where}: a body where the operation takes none")
    return template


def check_response(
    method: str, path: str, status: int, headers: Mapping[str, str], body: bytes
) -> None:
    """Validate an answer: a status the operation declares (or 429), its JSON body, headers."""
    spec, operation, _params, template = _find(method, path)
    where = f"response {status} to {method} {template}"
    responses = operation["responses"]
    if str(status) not in responses:
        if status in HTTP_LEVEL:
            error = spec.document["components"]["schemas"]["errorObject"]
            spec.validate(error, json.loads(body), where)
            return
        raise SpecViolation(f"{where}: status not declared ({sorted(responses)})")
    declared = spec._resolve(responses[str(status)])
    content = declared.get("content", {}).get("application/json")
    if content is None:
        if body:
            raise SpecViolation(f"{where}: a body where none is declared")
        return
    spec.validate(content["schema"], json.loads(body), f"{where} body")
    lowered = {name.lower(): value for name, value in headers.items()}
    for name, header in (declared.get("headers") or {}).items():
        header = spec._resolve(header or {})
        value = lowered.get(name.lower())
        if value is None or "schema" not in header:
            continue
        schema = header["schema"]
        typed: Any = int(value) if schema.get("type") == "integer" else value
        spec.validate(schema, typed, f"{where} header {name}")


def check_callback(
    operation: tuple[str, str], event: str, headers: Mapping[str, str], body: bytes
) -> None:
    """Validate a callback (PUT) body against the callback declared on an operation."""
    method, template = operation
    for spec in specs():
        item = spec.document["paths"].get(template)
        if item is None or method.lower() not in item:
            continue
        callbacks = item[method.lower()].get("callbacks", {})
        put = next(iter(callbacks[event].values()))["put"]
        content = spec._resolve(put["requestBody"])["content"]["application/json"]["schema"]
        spec.validate(content, json.loads(body), f"callback {event}")
        for parameter in put.get("parameters", []):
            parameter = spec._resolve(parameter)
            value = {k.lower(): v for k, v in headers.items()}.get(parameter["name"].lower())
            if value is not None:
                spec.validate(
                    parameter.get("schema", {}), value, f"callback header {parameter['name']}"
                )
        return
    raise SpecViolation(f"no callback {event} on {method} {template}")


#: What a callback endpoint received: (headers, body) in arrival order.
Received = list[tuple[dict[str, str], bytes]]


class _Collector(BaseHTTPRequestHandler):
    """A web app's callback endpoint: it queues what arrives (the ledger applies it later)."""

    queue: Received
    lock: threading.Lock
    protocol_version = "HTTP/1.1"

    def do_PUT(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with self.lock:
            self.queue.append((dict(self.headers.items()), body))
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@contextlib.contextmanager
def callback_endpoint(path: str = "/callbacks") -> Iterator[tuple[str, Received]]:
    """A loopback HTTP endpoint taking the sandbox server's callbacks (PUT): its URL, and the
    list what arrives is appended to."""
    queue: Received = []

    class Handler(_Collector):
        pass

    Handler.queue = queue
    Handler.lock = threading.Lock()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    host, port = httpd.server_address[:2]
    try:
        yield f"http://{host!s}:{port}{path}", queue
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()
