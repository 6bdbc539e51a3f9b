"""A local stand-in for the HTTP API (like `sam local start-api`): JWT check, then the real handlers."""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from werkzeug.exceptions import BadRequest, HTTPException, MethodNotAllowed, RequestEntityTooLarge
from werkzeug.routing import Map, Rule
from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response

from localaws.context import LocalLambdaContext
from localaws.jwt_auth import CognitoJwtVerifier, TokenRejected

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

logger = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]

# An HTTP API's payload limit: a larger request never reaches the integration.
MAX_PAYLOAD_BYTES = 10 * 1024 * 1024
# Bodies an HTTP API passes to Lambda as text (if they are UTF-8); any other arrives base64-encoded.
_TEXT_MEDIA_TYPES = frozenset({"", "application/json", "application/xml", "application/javascript"})
_TEXT_SUFFIXES = ("+json", "+xml")


# The API's handlers run in this process, invoked from the server's threads; on AWS each execution environment
# takes one event at a time, and the handlers rely on it: Powertools' resolvers keep the current event in a class
# attribute, one for the whole process. Run side by side, a presign read a read's event (400 "content_type is
# required" in the 1,000-image main job), a read a presign's (500), and a grant could name another user's folder
# (tests/functional/test_api.py). So invocations take turns, as in one execution environment; each takes a few
# milliseconds, and the token check and the body read stay outside.
_ONE_INVOCATION_AT_A_TIME = threading.Lock()


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # API Gateway syntax: /images/{image_id}
    function_name: str
    handler: Handler


def default_routes() -> list[Route]:
    from pipeline import presign, read_api

    return [
        Route("POST", "/uploads", "presign", presign.handler),
        Route("GET", "/images/{image_id}", "read-api", read_api.handler),
    ]


class ApiRequest(Request):
    """Reading the body stops at the payload limit (413) instead of buffering whatever a client sends."""

    max_content_length = MAX_PAYLOAD_BYTES


class LocalHttpApi:
    def __init__(self, routes: list[Route], verifier: CognitoJwtVerifier) -> None:
        self._routes = {f"{r.method} {r.path}": r for r in routes}
        self._methods = frozenset(r.method for r in routes)
        # No slash merging and no trailing-slash rules, so matching never answers with a redirect.
        self._map = Map(
            [
                Rule(
                    r.path.replace("{", "<").replace("}", ">"),
                    methods=[r.method],
                    endpoint=f"{r.method} {r.path}",
                )
                for r in routes
            ],
            merge_slashes=False,
        )
        self._verifier = verifier

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        return self.respond(ApiRequest(environ))(environ, start_response)

    def respond(self, request: Request) -> Response:
        """In API Gateway's order: payload limit, route, token, integration. Every refusal is a JSON `message`, as
        API Gateway's own are; only a handler that raises or answers nonsense is a 500, as a Lambda error is."""
        try:
            request.get_data()  # cached for the event
        except RequestEntityTooLarge:
            return _json(413, {"message": "Request Entity Too Large"})
        except BadRequest:  # the client went away before sending all it announced
            return _json(400, {"message": "Bad Request"})
        adapter = self._map.bind_to_environ(request.environ)
        try:
            route_key, path_parameters = adapter.match()
        except MethodNotAllowed as exc:
            return _method_not_allowed(m for m in exc.valid_methods or [] if m in self._methods)
        except HTTPException:  # NotFound
            return _json(404, {"message": "Not Found"})
        route = self._routes[str(route_key)]
        # werkzeug lets HEAD match a GET rule and upper-cases `post`; an HTTP API route takes its method exactly.
        if request.environ.get("REQUEST_METHOD") != route.method:
            return _method_not_allowed([route.method])
        try:
            claims = self._verifier.verify(request.headers.get("Authorization"))
        except TokenRejected:
            return _json(401, {"message": "Unauthorized"})
        event = http_api_event(request, route_key=str(route_key), path_parameters=dict(path_parameters), claims=claims)
        try:
            with _ONE_INVOCATION_AT_A_TIME:
                result = route.handler(event, LocalLambdaContext.create(route.function_name, timeout_seconds=29))
            return _integration_response(result)
        except Exception:
            # What API Gateway answers when the integration fails; the traceback stays in the server log.
            logger.exception("handler failed", extra={"route": route_key})
            return _json(500, {"message": "Internal Server Error"})


def http_api_event(
    request: Request, *, route_key: str, path_parameters: dict[str, str], claims: dict[str, Any]
) -> dict[str, Any]:
    """The API Gateway HTTP API (payload 2.0) event a JWT-authorized route receives."""
    now = datetime.now(UTC)
    body, base64_encoded = _event_body(request.get_data(), request.mimetype)
    return {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": request.path,
        "rawQueryString": request.query_string.decode(errors="replace"),
        "headers": {name.lower(): value for name, value in request.headers.items()},
        "queryStringParameters": {name: ",".join(values) for name, values in request.args.lists()} or None,
        "pathParameters": path_parameters or None,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "local",
            "authorizer": {"jwt": {"claims": claims, "scopes": None}},
            "domainName": request.host,
            "domainPrefix": "local",
            "http": {
                "method": request.method,
                "path": request.path,
                "protocol": request.environ.get("SERVER_PROTOCOL", "HTTP/1.1"),
                "sourceIp": request.remote_addr or "127.0.0.1",
                "userAgent": request.user_agent.string,
            },
            "requestId": str(uuid.uuid4()),
            "routeKey": route_key,
            "stage": "$default",
            "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(time.time() * 1000),
        },
        "body": body,
        "isBase64Encoded": base64_encoded,
    }


def _event_body(data: bytes, media_type: str) -> tuple[str | None, bool]:
    """Text if the Content-Type says text (or says nothing) and the bytes are UTF-8, otherwise base64, as an HTTP
    API infers it: a JSON body sent as `image/jpeg` reaches the handler base64-encoded on AWS, too."""
    if not data:
        return None, False
    if media_type.startswith("text/") or media_type.endswith(_TEXT_SUFFIXES) or media_type in _TEXT_MEDIA_TYPES:
        try:
            return data.decode("utf-8"), False
        except UnicodeDecodeError:
            pass
    return base64.b64encode(data).decode("ascii"), True


def _integration_response(result: Any) -> Response:
    """The handler's answer as API Gateway reads a payload 2.0 response; anything malformed raises (a 500)."""
    status = result.get("statusCode") if isinstance(result, dict) else None
    if not isinstance(status, int) or not 100 <= status <= 599:
        raise TypeError(f"not a proxy integration response: {type(result).__name__}")
    body = result.get("body") or ""
    if not isinstance(body, str):
        raise TypeError("the response body is not a string")
    headers = {str(name): str(value) for name, value in (result.get("headers") or {}).items()}
    response = Response(
        base64.b64decode(body) if result.get("isBase64Encoded") else body, status=status, headers=headers
    )
    for cookie in result.get("cookies") or []:
        response.headers.add("Set-Cookie", str(cookie))
    return response


def _method_not_allowed(methods: Iterable[str]) -> Response:
    response = _json(405, {"message": "Method Not Allowed"})
    response.headers["Allow"] = ", ".join(sorted(methods))
    return response


def _json(status: int, body: dict[str, Any]) -> Response:
    return Response(json.dumps(body), status=status, content_type="application/json")


class ApiServer:
    """The local API on 127.0.0.1 in a background thread; `app` may wrap it (localaws.web.PageServer)."""

    def __init__(self, app: LocalHttpApi | WSGIApplication, port: int = 0) -> None:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no access-log line per request
        self._server: BaseWSGIServer = make_server("127.0.0.1", port, app, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, name="local-api", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def start(self) -> ApiServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join(timeout=5)
