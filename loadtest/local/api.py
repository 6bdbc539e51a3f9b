"""A local stand-in for the HTTP API (like `sam local start-api`): JWT check, then the real handlers."""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from werkzeug.routing import Map, Rule
from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response

from loadtest.local.jwt_auth import CognitoJwtVerifier, TokenRejected
from loadtest.local.runtime import LocalLambdaContext

logger = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


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


class LocalHttpApi:
    def __init__(self, routes: list[Route], verifier: CognitoJwtVerifier) -> None:
        self._routes = {f"{r.method} {r.path}": r for r in routes}
        self._map = Map(
            [
                Rule(
                    r.path.replace("{", "<").replace("}", ">"),
                    methods=[r.method],
                    endpoint=f"{r.method} {r.path}",
                )
                for r in routes
            ]
        )
        self._verifier = verifier

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        return self.respond(Request(environ))(environ, start_response)

    def respond(self, request: Request) -> Response:
        adapter = self._map.bind_to_environ(request.environ)
        try:
            route_key, path_parameters = adapter.match()
        except Exception:  # noqa: BLE001 - werkzeug signals 404/405 by raising HTTPException
            return _json(404, {"message": "Not Found"})
        route = self._routes[str(route_key)]
        try:
            claims = self._verifier.verify(request.headers.get("Authorization"))
        except TokenRejected:
            return _json(401, {"message": "Unauthorized"})
        event = http_api_event(request, route_key=str(route_key), path_parameters=dict(path_parameters), claims=claims)
        try:
            result = route.handler(event, LocalLambdaContext.create(route.function_name, timeout_seconds=29))
        except Exception:
            # What API Gateway answers when the integration fails; the traceback stays in the server log.
            logger.exception("handler failed", extra={"route": route_key})
            return _json(500, {"message": "Internal Server Error"})
        return Response(
            result.get("body", ""),
            status=int(result.get("statusCode", 200)),
            headers=result.get("headers", {}),
        )


def http_api_event(
    request: Request, *, route_key: str, path_parameters: dict[str, str], claims: dict[str, Any]
) -> dict[str, Any]:
    """The API Gateway HTTP API (payload 2.0) event a JWT-authorized route receives."""
    now = datetime.now(UTC)
    return {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": request.path,
        "rawQueryString": request.query_string.decode(),
        "headers": {name.lower(): value for name, value in request.headers.items()},
        "queryStringParameters": dict(request.args) or None,
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
        "body": request.get_data(as_text=True) or None,
        "isBase64Encoded": False,
    }


def _json(status: int, body: dict[str, Any]) -> Response:
    return Response(json.dumps(body), status=status, content_type="application/json")


class ApiServer:
    """The local API on 127.0.0.1 in a background thread."""

    def __init__(self, app: LocalHttpApi, port: int = 0) -> None:
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
