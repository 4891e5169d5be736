"""Errors as the OpenAI API shapes them — `{"error": {"message", "type", "param", "code"}}` — so the official
SDKs raise their usual exceptions (`NotFoundError`, `BadRequestError`, …) against routeyard too.

Every error the gateway answers is one of these; an unexpected exception becomes a 500 with a request id and
no detail (the detail is logged, and log lines carry no secrets: bodies and headers are never logged).
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared.errors import ConfigError, InputError
from shared.keys import KeyRefused

log = logging.getLogger("routeyard.gateway")


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        type_: str = "invalid_request_error",
        param: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.type = type_
        self.param = param
        self.extra = extra or {}

    def body(self) -> dict[str, Any]:
        err = {"message": self.message, "type": self.type, "param": self.param, "code": self.code, **self.extra}
        return {"error": err}


def not_found(kind: str, ident: str) -> ApiError:
    """The same answer for "no such id" and "not yours": a tenant cannot learn that another's id exists."""
    return ApiError(404, f"No {kind} found with id '{ident}'.", code=f"{kind}_not_found")


def bad_request(message: str, *, code: str = "invalid_request", param: str | None = None) -> ApiError:
    return ApiError(400, message, code=code, param=param)


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    parts = []
    first_param: str | None = None
    for err in exc.errors()[:10]:
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "header")]
        where = ".".join(loc)
        first_param = first_param or (where or None)
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"{where}: {msg}" if where else msg)
    return "; ".join(parts) or "invalid request", first_param


def install_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=_auth_header(exc))

    @app.exception_handler(KeyRefused)
    async def _key_refused(request: Request, exc: KeyRefused) -> JSONResponse:
        # 402 for a spent limit (the key may pay again after its reset), 403 for a key that may not do this
        return JSONResponse(exc.to_json(), status_code=exc.http_status)

    @app.exception_handler(InputError)
    async def _input_error(request: Request, exc: InputError) -> JSONResponse:
        return JSONResponse(ApiError(400, exc.message, code=exc.code).body(), status_code=400)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = _validation_message(exc)
        return JSONResponse(ApiError(400, message, code="invalid_request", param=param).body(), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = str(exc.detail) if exc.detail else "error"
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        return JSONResponse(
            ApiError(exc.status_code, message, code=code).body(), status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(ConfigError)
    async def _config(request: Request, exc: ConfigError) -> JSONResponse:
        rid = uuid.uuid4().hex[:12]
        log.error("request %s %s failed on configuration (%s): %s", rid, request.url.path, type(exc).__name__, exc)
        body = ApiError(500, f"server misconfigured (request {rid})", type_="server_error").body()
        return JSONResponse(body, status_code=500)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        rid = uuid.uuid4().hex[:12]
        log.exception("request %s %s %s failed", rid, request.method, request.url.path)
        body = ApiError(500, f"internal error (request {rid})", type_="server_error").body()
        return JSONResponse(body, status_code=500)


def _auth_header(exc: ApiError) -> dict[str, str] | None:
    return {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
