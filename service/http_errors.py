"""The one place the error tree becomes HTTP answers.

Every refusal is ``{"errors": [message]}`` with the error's ``status_code`` and
``headers`` (``WWW-Authenticate`` on a 401, ``Allow`` on a 405, the admin API's
``X-RateLimit-*``), so the edges only raise. A bug is a bare JSON 500, never a trace.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ExceptionHandler

from service.errors import RelayError

# The name operators' log queries have known "unhandled error" by.
log = logging.getLogger("service.app")


def error_response(error: RelayError) -> JSONResponse:
    return JSONResponse(
        {"errors": [error.message]}, status_code=error.status_code, headers=error.headers
    )


def error_line(error: RelayError) -> str:
    """The last line of an NDJSON stream that failed after its 200 went out: the status
    can no longer be sent, so the line says it."""
    return json.dumps({"errors": [error.message], "status": error.status_code}) + "\n"


async def relay_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RelayError)
    return error_response(exc)


async def http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (unknown path, a route's wrong method) in the same shape."""
    assert isinstance(exc, HTTPException)
    if exc.status_code in (204, 304):
        return Response(status_code=exc.status_code, headers=exc.headers)
    return JSONResponse({"errors": [exc.detail]}, status_code=exc.status_code, headers=exc.headers)


async def internal_error(request: Request, exc: Exception) -> Response:
    log.error("unhandled error", exc_info=exc, extra={"path": request.url.path})
    return JSONResponse({"errors": ["internal error"]}, status_code=500)


#: ``Starlette(exception_handlers=...)`` of every app serving the relay's routes.
EXCEPTION_HANDLERS: Mapping[type[Exception], ExceptionHandler] = {
    RelayError: relay_error,
    HTTPException: http_error,
    Exception: internal_error,
}
