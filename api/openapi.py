"""The OpenAPI document states the error envelope every answer really uses.

FastAPI documents its own 422 body (`detail`: a list of validation errors). Our
422 answers also carry `code`, and a route that rejects a well-formed body on
its own (an AppError with status 422) sends `detail` as a sentence, so the
documented shape is widened to what clients actually receive.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi


def install_openapi(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
                tags=app.openapi_tags,
            )
            validation = schema.get("components", {}).get("schemas", {}).get("HTTPValidationError")
            if validation is not None:
                validation["properties"] = {
                    "detail": {
                        "anyOf": [
                            {
                                "type": "array",
                                "items": {"$ref": "#/components/schemas/ValidationError"},
                            },
                            {"type": "string"},
                        ],
                        "title": "Detail",
                    },
                    "code": {"type": "string", "title": "Code"},
                }
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
