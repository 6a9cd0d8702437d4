"""The OpenAPI document the service publishes, made to say what the service answers.

BentoML documents every 400 as ``{"error": str, "detail": str}`` (its ``InvalidArgument``
component), but a body that fails validation gets pydantic's errors: ``detail`` is a *list* of
``{"loc", "msg", "type"}`` objects, one per problem, naming the field and what is wrong with it
(the search page and clients rely on that). Schema-driven clients and fuzzers (schemathesis) rightly
flag the mismatch, so the published component is replaced by the truth: ``detail`` is either a
string or that list. Two more places where BentoML's document and the service disagree:

- a body with required fields is itself required (``requestBody.required``): ``POST /search`` with no
  body is a 400 "query: Field required", which the document must not call valid;
- a field that may be null (``user_id``) is ``nullable`` (OpenAPI 3.0 has no ``null`` type; BentoML
  drops it), so ``"user_id": null`` is documented as valid, as it is.

``publish_error_schema(service)`` installs ``fix_spec`` on a BentoML service object; the
``JsonOnly`` middleware (``json_only.py``) refuses bodies that are not JSON with a 400 before they
reach BentoML's parsers (a ``multipart/form-data`` without a boundary made them raise: a 500).
"""

from __future__ import annotations

from typing import Any

ERROR_COMPONENTS = ("InvalidArgument",)  # BentoML's 400 component (NotFound/InternalServerError keep a string)

VALIDATION_ERROR: dict[str, Any] = {
    "type": "object",
    "properties": {
        "loc": {
            "type": "array",
            "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
            "description": "where: the field (path) that is wrong",
        },
        "msg": {"type": "string", "description": "what is wrong with it"},
        "type": {"type": "string", "description": "pydantic's error code"},
        "url": {"type": "string"},
    },
    "required": ["loc", "msg", "type"],
}


def error_schema(title: str, description: str) -> dict[str, Any]:
    return {
        "title": title,
        "type": "object",
        "description": description,
        "properties": {
            "error": {"title": "Message", "type": "string", "description": "one line: what is wrong"},
            "detail": {
                "title": "Error Detail",
                "anyOf": [{"type": "string"}, {"type": "array", "items": VALIDATION_ERROR}],
            },
        },
        "required": ["error"],
    }


def _nullable_defaults(schema: dict[str, Any]) -> None:
    for prop in (schema.get("properties") or {}).values():
        if isinstance(prop, dict) and "default" in prop and prop["default"] is None:
            prop["nullable"] = True


def fix_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI dict describing what the service really accepts and sends (module docstring)."""
    schemas = spec.get("components", {}).get("schemas", {})
    for name in ERROR_COMPONENTS:
        if name in schemas:
            schemas[name] = error_schema(name, schemas[name].get("description", "Bad Request"))
    for schema in schemas.values():
        _nullable_defaults(schema)
    for ops in spec.get("paths", {}).values():
        for op in ops.values():
            body = op.get("requestBody") if isinstance(op, dict) else None
            if not body:
                continue
            for media in body.get("content", {}).values():
                schema = media.get("schema", {})
                if "$ref" in schema:
                    schema = schemas.get(schema["$ref"].rsplit("/", 1)[-1], {})
                _nullable_defaults(schema)
                if schema.get("required"):
                    body["required"] = True
    return spec


class _Spec:
    """BentoML's spec object, whose ``asdict()`` (what ``GET /docs.json`` serves) is fixed."""

    def __init__(self, spec: Any) -> None:
        self._spec = spec

    def asdict(self) -> dict[str, Any]:
        return fix_spec(self._spec.asdict())

    def __getattr__(self, name: str) -> Any:
        return getattr(self._spec, name)


def publish_error_schema(service: Any) -> Any:
    """Make ``service`` (a ``@bentoml.service`` object) publish ``fix_spec`` of its OpenAPI document."""
    base = type(service)

    class Service(base):  # type: ignore[misc, valid-type]
        __slots__ = ()  # same layout as BentoML's (attrs, slotted) class: the instance can switch to it

        @property
        def openapi_spec(self) -> Any:
            return _Spec(super().openapi_spec)

    Service.__name__ = Service.__qualname__ = base.__name__
    service.__class__ = Service
    return service
