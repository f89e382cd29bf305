"""Every error of the tree is answered the same way, with the headers it carries."""

from __future__ import annotations

import json

from service.errors import AuthError, MethodNotAllowed, NotFound, TooManyRequests
from service.http_errors import error_line, error_response


def test_an_error_is_its_status_message_and_headers() -> None:
    unauthorized = error_response(AuthError("missing token"))
    assert unauthorized.status_code == 401
    assert unauthorized.headers["WWW-Authenticate"] == 'Bearer realm="opsgenie-dx-relay"'
    assert json.loads(bytes(unauthorized.body)) == {"errors": ["missing token"]}
    forbidden = error_response(AuthError("Forbidden", status_code=403))
    assert "WWW-Authenticate" not in forbidden.headers
    assert error_response(MethodNotAllowed(["GET", "HEAD"])).headers["Allow"] == "GET, HEAD"
    limited = TooManyRequests("Too many requests")
    limited.headers["X-RateLimit-Remaining"] = "0"
    answer = error_response(limited)
    assert (answer.status_code, answer.headers["X-RateLimit-Remaining"]) == (429, "0")


def test_a_stream_tells_its_failure_in_the_last_line() -> None:
    line = error_line(NotFound("no such thing"))
    assert line.endswith("\n")
    assert json.loads(line) == {"errors": ["no such thing"], "status": 404}
