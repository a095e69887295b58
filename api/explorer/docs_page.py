"""``/docs`` from the OpenAPI schema, rendered on the server: every route with its parameters, body and
responses, and every response model with its fields. Nothing is loaded from elsewhere (FastAPI's default
Swagger UI fetches its script and styles from a CDN, which leaves an offline user a blank page)."""

from __future__ import annotations

from typing import Any


def type_of(schema: dict[str, Any]) -> str:
    """A short type name of a JSON schema: ``int``, ``list[Span]``, ``str | null``..."""
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[-1]
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return " | ".join(type_of(s) for s in schema[key])
    t = schema.get("type")
    if t == "array":
        return f"list[{type_of(schema.get('items', {}))}]"
    if t == "object" and "additionalProperties" in schema and isinstance(schema["additionalProperties"], dict):
        return f"dict[str, {type_of(schema['additionalProperties'])}]"
    names = {"integer": "int", "string": "str", "number": "float", "boolean": "bool", "null": "null",
             "object": "object"}
    return names.get(t, t or "any")


def operations(spec: dict[str, Any]) -> dict[str, Any]:
    """Routes grouped by tag, and models, from an OpenAPI document."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for path, item in spec.get("paths", {}).items():
        for method, op in item.items():
            if method not in ("get", "post", "put", "delete", "patch"):
                continue
            params = [{"name": p["name"], "in": p["in"], "required": p.get("required", False),
                       "type": type_of(p.get("schema", {})), "default": p.get("schema", {}).get("default"),
                       "description": p.get("description") or p.get("schema", {}).get("description", "")}
                      for p in op.get("parameters", [])]
            body = None
            content = op.get("requestBody", {}).get("content", {})
            if "application/json" in content:
                body = type_of(content["application/json"].get("schema", {}))
            responses = []
            for code, r in op.get("responses", {}).items():
                model = None
                for media, c in r.get("content", {}).items():
                    if "schema" in c:
                        model = type_of(c["schema"])
                        break
                responses.append({"code": code, "description": r.get("description", ""), "model": model})
            tryable = method == "get" and not params
            tag = (op.get("tags") or ["other"])[0]
            groups.setdefault(tag, []).append({
                "method": method.upper(), "path": path, "summary": op.get("summary", ""),
                "description": op.get("description", ""), "params": params, "body": body, "responses": responses,
                "try": path if tryable else None, "id": f"{method}-{path}".replace("/", "-").replace("{", "").replace("}", ""),
            })
    models = []
    for name, schema in sorted(spec.get("components", {}).get("schemas", {}).items()):
        req = set(schema.get("required", []))
        fields = [{"name": k, "type": type_of(v), "required": k in req, "description": v.get("description", "")}
                  for k, v in schema.get("properties", {}).items()]
        models.append({"name": name, "description": schema.get("description", ""), "fields": fields})
    return {"groups": groups, "models": models}
