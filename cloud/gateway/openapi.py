"""One OpenAPI for clients: every service's document, merged by the gateway.

The gateway asks each service for its ``/openapi.json`` (so the document is always that of the
services running) and merges them: the paths under each service's prefixes and its public paths;
schemas (a name two services use for different schemas gets the service's name in front); one
security scheme (``Authorization: Bearer`` with an access token or an API key) on every route that
needs it; and, on every operation, the problem answers (``application/problem+json``) it can give
through the gateway: 401/403 where a caller is checked, 404 where the path (or a ``…_id`` query
parameter) names a resource,
409 on writes, 413 where a body is read, 422, 429, 502, 503 and 504.
"""

from __future__ import annotations

import copy
from typing import Any

from cloud.platform.spec import ServiceSpec

PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem", "type": "object", "description": "RFC 9457 problem details",
    "required": ["type", "title", "status"],
    "properties": {
        "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
        "detail": {"type": "string"}, "instance": {"type": "string"}, "code": {"type": "string"},
        "errors": {"type": "array", "items": {"type": "object", "properties": {
            "field": {"type": "string"}, "message": {"type": "string"}}}},
    },
}
PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
SECURITY_SCHEME = {"type": "http", "scheme": "bearer",
                   "description": "an access token (POST /auth/login) or an API key (evk_…) of a machine client"}
WRITES = {"post", "put", "patch", "delete"}
METHODS = {"get", "head", "options", *WRITES}
DESCRIPTIONS = {
    "401": "no valid token or API key", "403": "the caller's role may not do this",
    "404": "no such resource, or it is another's", "409": "conflicts with what is stored",
    "413": "the body is larger than the limit", "422": "a parameter or field is invalid",
    "429": "too many requests; see Retry-After", "502": "the service is unreachable",
    "503": "the service is failing (breaker open) or unavailable; see Retry-After",
    "504": "the service did not answer in time",
}


def _problem(code: str, given: dict[str, Any] | None) -> dict[str, Any]:
    description = (given or {}).get("description") or DESCRIPTIONS.get(code, "a problem")
    return {"description": description, "content": {"application/problem+json": {"schema": PROBLEM_REF}}}


def _rename_refs(node: Any, renames: dict[str, str]) -> Any:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value.startswith("#/components/schemas/"):
                name = value.rsplit("/", 1)[1]
                out[key] = f"#/components/schemas/{renames.get(name, name)}"
            else:
                out[key] = _rename_refs(value, renames)
        return out
    if isinstance(node, list):
        return [_rename_refs(item, renames) for item in node]
    return node


def _serves(spec: ServiceSpec, path: str) -> bool:
    return path in spec.public_paths or any(path == p or path.startswith(p + "/") for p in spec.prefixes)


def aggregate(documents: dict[str, dict[str, Any]], specs: list[ServiceSpec], *, title: str = "evpark API",
              public_paths: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The merged document of ``documents`` (service name → its OpenAPI)."""
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {"Problem": PROBLEM_SCHEMA}
    tags: list[dict[str, str]] = []
    for spec in specs:
        document = documents.get(spec.name)
        if document is None:
            continue
        own = document.get("components", {}).get("schemas", {})
        renames = {}
        for name, schema in own.items():
            if name in ("HTTPValidationError", "ValidationError"):
                continue  # our 422 is a problem, not FastAPI's shape
            if name in schemas and schemas[name] != _rename_refs(schema, {}):
                renames[name] = f"{spec.name.title()}{name}"
        for name, schema in own.items():
            if name in ("HTTPValidationError", "ValidationError"):
                continue
            schemas[renames.get(name, name)] = _rename_refs(schema, renames)
        tags.append({"name": spec.name, "description": spec.description})
        for path, operations in document.get("paths", {}).items():
            if not _serves(spec, path):
                continue
            paths[path] = {method: _operation(spec, path, method, operation, path in public_paths)
                           for method, operation in _rename_refs(operations, renames).items() if method in METHODS}
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": "0.1.0",
                 "description": "Every service of evpark behind its gateway. Errors are problem details "
                 "(RFC 9457, application/problem+json)."},
        "tags": tags,
        "paths": paths,
        "components": {"schemas": schemas, "securitySchemes": {"bearer": SECURITY_SCHEME}},
    }


def _operation(spec: ServiceSpec, path: str, method: str, operation: dict[str, Any], public: bool) -> dict[str, Any]:
    op = copy.deepcopy(operation)
    op.setdefault("tags", [spec.name])
    responses: dict[str, Any] = op.setdefault("responses", {})
    codes = {"422", "429", "502", "503", "504"}
    if not public:
        op["security"] = [{"bearer": []}]
        codes |= {"401", "403"}
    else:
        op["security"] = []
    if "{" in path or any(p.get("in") == "query" and str(p.get("name", "")).endswith("_id")
                          for p in op.get("parameters", [])):
        codes.add("404")  # the path or a query parameter names a resource (?site_id=)
    if method in WRITES:
        codes.add("409")
    if "requestBody" in op or method in WRITES:
        codes.add("413")
    for code in codes | {c for c in responses if c[:1] in "45"}:
        responses[code] = _problem(code, responses.get(code))
    return op
