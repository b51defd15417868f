"""The OpenAPI document at ``/docs.json`` (and so the Swagger page at ``/``) as served.

BentoML generates a spec from the endpoints' pydantic models, but describes itself ("a
Machine Learning Service created with BentoML", version None, badges), declares ``detail`` of
a 400 as a string where the service answers a list of field errors, omits the refusals of
the guard (401, 413, 415, 503) and the feedback's 422, leaves the request bodies optional,
types ``retrieval_version`` as a string where it can be null, and keeps the field examples
under the JSON Schema ``examples`` keyword that OpenAPI 3.0 (and Swagger UI) ignore, so the
page offered ``"user_id": "string"``. :func:`reelrank_spec` fixes that document once per
worker; :class:`OpenApiDocs` serves it, with the versions the worker serves at that moment.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from importlib import metadata
from typing import Any

from serving.guards import ASGIApp, Receive, Scope, Send, send_json

DESCRIPTION = """\
Short-video recommendations: a two-tower model retrieves candidates, an XGBoost ranker \
scores them (a value blended from per-engagement heads), and a re-ranker spreads creators \
and topics and keeps a slot for a fresh upload.

* `POST /recommend`: a user's feed. A user with no features yet (new, or an unknown id) gets \
the cold-start path: `cold_start: true` in the answer. `explain: true` adds, per item, why it \
is there (retrieval source, value and heads, slot).
* `POST /rank`: scores for the given candidate videos; unknown ids are listed, not scored.
* `POST /feedback`: what users did with served videos (`request_id` from the answer); a \
batch naming an unknown request is refused whole (422).

Bodies are JSON (`application/json`, else 415) of at most `serving.max_body_bytes` (else \
413). A malformed body is a 400 that names each field and the reason. When the server has an \
API key, the three endpoints need it as `x-api-key` (else 401). An overloaded or stopping \
server answers 503 with `Retry-After`.

`/livez`, `/readyz` and `/metrics` (Prometheus) are BentoML's, with reelrank's series added.
"""

PROTECTED = ("/recommend", "/rank", "/feedback")

REQUEST_EXAMPLES: dict[str, dict[str, Any]] = {
    "/recommend": {"user_id": "u000042", "k": 10, "surface": "spotlight", "explain": False},
    "/rank": {"user_id": "u000042", "video_ids": ["v000007", "v000123", "v000404"]},
    "/feedback": {
        "events": [
            {
                "request_id": "3f9c2a7e5b1d4c8e9a0b6d2f4e8c1a3b",
                "video_id": "v000007",
                "watch_time_s": 12.5,
                "completed": True,
                "liked": True,
            }
        ]
    },
}


def _error(description: str, *, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    if headers:
        out["headers"] = headers
    return out


RETRY_AFTER = {
    "Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "integer"}}
}
COMPONENTS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "string", "description": "what was wrong"}},
    },
    "ValidationError": {
        "type": "object",
        "required": ["error", "detail"],
        "properties": {
            "error": {"type": "string", "example": "1 validation error for RecommendRequest"},
            "detail": {
                "type": "array",
                "description": "one entry per invalid field",
                "items": {
                    "type": "object",
                    "required": ["loc", "msg", "type"],
                    "properties": {
                        "loc": {
                            "type": "array",
                            "items": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
                        },
                        "msg": {"type": "string"},
                        "type": {"type": "string"},
                    },
                },
            },
        },
    },
    "Rejected": {
        "type": "array",
        "description": "BentoML answers an error the service raises as a one-element list",
        "items": {"$ref": "#/components/schemas/Error"},
    },
}


def _responses(path: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "400": {
            "description": "malformed body: each invalid field, and why",
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/ValidationError"}}
            },
        },
        "401": _error("missing or wrong API key (when the server has one)"),
        "413": _error("body over serving.max_body_bytes"),
        "415": _error("body not application/json"),
        "503": _error("overloaded or shutting down: retry after Retry-After", headers=RETRY_AFTER),
        "500": _error("unexpected server error (see the server log)"),
    }
    if path == "/feedback":
        out["422"] = {
            "description": "events naming an unknown or expired request: nothing is written",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Rejected"}}},
        }
    return out


def _openapi30(node: Any) -> Any:
    """JSON Schema to OpenAPI 3.0: ``examples`` lists become ``example``, an optional field
    whose default is null becomes ``nullable`` (a ``$ref`` moves under ``allOf``, where its
    siblings count), ``anyOf [X, null]`` becomes X nullable."""
    if isinstance(node, list):
        return [_openapi30(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _openapi30(v) for k, v in node.items()}
    any_of = out.get("anyOf")
    if isinstance(any_of, list) and {"type": "null"} in any_of:
        rest = [s for s in any_of if s != {"type": "null"}]
        out.pop("anyOf")
        out.update(rest[0] if len(rest) == 1 else {"anyOf": rest})
        out["nullable"] = True
    if "default" in out and out["default"] is None and ("type" in out or "$ref" in out):
        out["nullable"] = True
        if "$ref" in out:  # OpenAPI 3.0 ignores the siblings of a $ref
            out["allOf"] = [{"$ref": out.pop("$ref")}]
    examples = out.get("examples")
    if isinstance(examples, list) and examples and "type" in out:
        out["example"] = out.pop("examples")[0]
    return out


def package_version() -> str:
    try:
        return metadata.version("reelrank")
    except metadata.PackageNotFoundError:
        return "unknown"


def reelrank_spec(bentoml_spec: dict[str, Any]) -> dict[str, Any]:
    """BentoML's spec with reelrank's description, errors, required bodies and examples."""
    spec = _openapi30(json.loads(json.dumps(bentoml_spec)))  # a copy, with JSON keys
    spec["info"] = {
        "title": "reelrank recommender",
        "version": package_version(),
        "description": DESCRIPTION,
    }
    spec.setdefault("components", {}).setdefault("schemas", {}).update(COMPONENTS)
    for name in ("InvalidArgument", "NotFound", "InternalServerError"):
        spec["components"]["schemas"].pop(name, None)
    for path, item in spec["paths"].items():
        post = item.get("post")
        if path not in PROTECTED or post is None:
            continue
        post["responses"] = {"200": post["responses"]["200"], **_responses(path)}
        body = post["requestBody"]
        body["required"] = True
        body["content"]["application/json"]["example"] = REQUEST_EXAMPLES[path]
    for item in spec["paths"].values():  # BentoML's own endpoints: no BentoML error schemas
        for op in item.values():
            if isinstance(op, dict) and "responses" in op:
                for code, response in list(op["responses"].items()):
                    ref = json.dumps(response)
                    if any(n in ref for n in ("InvalidArgument", "NotFound", "InternalServer")):
                        op["responses"][code] = _error(response.get("description", "error"))
    return spec


class OpenApiDocs:
    """Serves ``GET /docs.json`` from :func:`reelrank_spec` (built on first use), with
    ``info.version`` the package version and ``x-served-versions`` what this worker serves
    now (``versions``: set by the service once its models are loaded)."""

    versions: Callable[[], dict[str, str | None]] | None = None

    def __init__(self, app: ASGIApp, service: Any, paths: Iterable[str] = ("/docs.json",)) -> None:
        self.app = app
        self.service = service
        self.paths = frozenset(paths)
        self._spec: dict[str, Any] | None = None

    def spec(self) -> dict[str, Any]:
        if self._spec is None:
            self._spec = reelrank_spec(self.service.openapi_spec.asdict())
        spec = dict(self._spec)
        served = OpenApiDocs.versions() if OpenApiDocs.versions is not None else {}
        info = dict(spec["info"])
        lines = [f"- {k}: {v}" for k, v in served.items() if v is not None]
        if lines:
            info["description"] += "\nServed now by this worker:\n\n" + "\n".join(lines) + "\n"
        info["x-served-versions"] = {"reelrank": package_version(), **served}
        spec["info"] = info
        return spec

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") not in self.paths:
            await self.app(scope, receive, send)
            return
        await send_json(send, 200, self.spec())
