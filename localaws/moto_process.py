"""The embedded AWS: moto's server in a process of its own (it is pure Python; sharing a GIL slows both).

In front of moto's WSGI app sits `ServiceMeter`, which does two things moto does not:

- It publishes what DynamoDB and SNS publish on AWS (AWS/DynamoDB, AWS/SNS; see localaws/metrics.py for
  the names, dimensions and approximations) from the requests it serves: the request and response bodies of
  DynamoDB calls (`X-Amz-Target: DynamoDB_20120810.<Operation>`) and SNS `Publish`/`PublishBatch` calls.
  Observations are aggregated in memory and sent by a daemon thread (StatisticsPublisher) to this same server's
  CloudWatch; those PutMetricData calls are CloudWatch requests, which the meter passes through uncounted. The
  CloudWatch client is made on the flush thread, after the server answers, so starting stays as fast as before,
  and a failing publish is reported (at most once a minute) and otherwise ignored: requests never wait for it.
- It answers `GET /_imgops/health` itself (200, no AWS service involved), what liveness checks probe instead of
  a service URL (moto's `/` is S3 ListBuckets).
- It serves DynamoDB requests one at a time. moto's DynamoDB is not thread-safe: an UpdateItem changes an item in
  place while a GetItem on another thread serializes it, and the GetItem dies with "dictionary changed size during
  iteration" (HTTP 500; seen in the 1,000-image main job). DynamoDB itself never answers a read with a 500 for that.
  Every DynamoDB call here is an in-memory operation of well under a millisecond of moto's time, and they all share
  one GIL anyway, so the lock costs next to nothing; S3 (which copies its key store before iterating) and SQS (whose
  ReceiveMessage may long-poll for 20 s) are not serialized.

In front of it, `DescribedStacks` (localaws/cloudformation.py) answers CloudFormation's DescribeStacks for the
stacks the parent publishes (`MotoProcess.publish_stack`), without importing moto's CloudFormation. In front of
all, `CognitoCors` (localaws/cors.py): the browser's CORS preflights to Cognito are answered by the stack, for the
origins the parent allows (`MotoProcess.allow_origins`), whatever moto's release does with them.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import multiprocessing
import multiprocessing.connection
import multiprocessing.synchronize
import os
import re
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from localaws import dynamodb_queries, dynamodb_transactions, service_models, sqs_backlog
from localaws.cloudformation import DescribedStack, DescribedStacks
from localaws.cors import CognitoCors
from localaws.metrics import (
    DEFAULT_FLUSH_SECONDS,
    DYNAMODB_NAMESPACE,
    SNS_NAMESPACE,
    Observation,
    StatisticsPublisher,
    dynamodb_observations,
    metrics_client_config,
    sns_failed_delivery_observations,
    sns_message_size,
    sns_publish_observations,
)
from localaws.object_events import ACCOUNT, ObjectEventTap, Route
from pipeline.aws import shared_loader
from pipeline.errors import ImgopsError

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch import CloudWatchClient

HEALTH_PATH = "/_imgops/health"
# What the parent says to the server's process over their pipe.
STOP = "stop"
ALLOW_ORIGINS = "allow-origins"
PUBLISH_STACK = "publish-stack"
ROUTE_OBJECT_EVENTS = "route-object-events"
EXPIRE_OBJECTS = "expire-objects"
DYNAMODB_TARGET_PREFIX = "DynamoDB_20120810."
# Bodies larger than this pass through unobserved (DynamoDB items are at most 400 KB; SNS messages 256 KB).
MAX_OBSERVED_BODY_BYTES = 2 * 1024 * 1024
DEFAULT_REGION = "us-east-1"
MAX_REMEMBERED_HOSTS = 1024
_CREDENTIAL_SCOPE = re.compile(r"Credential=[^/,\s]+/\d{8}/(?P<region>[a-z0-9-]+)/(?P<service>[a-z0-9-]+)/")
_ERROR_CODE = re.compile(rb"<Code>([^<]+)</Code>")
_BATCH_ENTRY_ID = re.compile(r"PublishBatchRequestEntries\.member\.\d+\.Id")
# moto answers a Publish whose fan-out hits a missing queue with these; SNS would count a failed notification.
_DELIVERY_ERRORS = frozenset({"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"})

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class MotoStartError(ImgopsError, RuntimeError):
    pass


# --- The middleware -----------------------------------------------------------------------------------------


class ServiceMeter:
    """WSGI middleware in front of moto: the health path, and AWS/DynamoDB + AWS/SNS from the requests served."""

    def __init__(self, app: WsgiApp, publisher: StatisticsPublisher | None) -> None:
        self._app = app
        self._publisher = publisher
        self._dynamodb = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == HEALTH_PATH and environ.get("REQUEST_METHOD") in ("GET", "HEAD"):
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", "16")])
            return [b'{"status":"ok"}\n']
        if not str(environ.get("HTTP_X_AMZ_TARGET", "")).startswith(DYNAMODB_TARGET_PREFIX):
            return self._serve(environ, start_response)
        with self._dynamodb:  # see the module's docstring; the answer is read whole before the lock is let go
            result = self._serve(environ, start_response)
            return result if isinstance(result, list) else _read_whole(result)

    def _serve(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        observed = self._observed_kind(environ) if self._publisher is not None else None
        if observed is None:
            return self._app(environ, start_response)
        return self._serve_observed(observed, environ, start_response)

    @staticmethod
    def _observed_kind(environ: Mapping[str, Any]) -> str | None:
        """ "dynamodb:<Operation>" or "sns" for requests worth reading; None for everything else (S3 uploads...)."""
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return None
        if not 0 < length <= MAX_OBSERVED_BODY_BYTES or environ.get("REQUEST_METHOD") != "POST":
            return None
        target = str(environ.get("HTTP_X_AMZ_TARGET", ""))
        if target.startswith(DYNAMODB_TARGET_PREFIX):
            return "dynamodb:" + target.removeprefix(DYNAMODB_TARGET_PREFIX)
        scope = _CREDENTIAL_SCOPE.search(str(environ.get("HTTP_AUTHORIZATION", "")))
        if scope is not None and scope.group("service") == "sns":
            return "sns"
        return None

    def _serve_observed(self, kind: str, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        length = int(environ["CONTENT_LENGTH"])
        body = environ["wsgi.input"].read(length)
        environ["wsgi.input"] = io.BytesIO(body)  # moto reads it again
        status: list[int] = []

        def capture(status_line: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            with contextlib.suppress(ValueError, IndexError):
                status.append(int(status_line.split(" ", 1)[0]))
            return start_response(status_line, headers, exc_info) if exc_info else start_response(status_line, headers)

        started = time.perf_counter()
        result = self._app(environ, capture)
        try:
            answer = b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        latency_ms = (time.perf_counter() - started) * 1000
        with contextlib.suppress(Exception):  # metrics must never fail a request
            self._observe(kind, environ, body, status[0] if status else 500, answer, latency_ms)
        return [answer]

    def _observe(
        self, kind: str, environ: Mapping[str, Any], body: bytes, status: int, answer: bytes, latency_ms: float
    ) -> None:
        assert self._publisher is not None
        scope = _CREDENTIAL_SCOPE.search(str(environ.get("HTTP_AUTHORIZATION", "")))
        region = scope.group("region") if scope is not None else DEFAULT_REGION
        if kind.startswith("dynamodb:"):
            request = json.loads(body or b"{}")
            response = json.loads(answer or b"{}") if answer.startswith(b"{") else {}
            error_code = str(response.get("__type", "")).rsplit("#", 1)[-1] if status >= 400 else ""
            observations = dynamodb_observations(
                kind.removeprefix("dynamodb:"),
                request,
                status=status,
                error_code=error_code,
                response=response if status < 400 else None,
                latency_ms=latency_ms,
            )
            self._publisher.observe(region, DYNAMODB_NAMESPACE, observations)
            return
        form = {key: values[-1] for key, values in parse_qs(body.decode("utf-8", "replace")).items()}
        self._publisher.observe(region, SNS_NAMESPACE, sns_observations(form, status, answer))


def _read_whole(result: Iterable[bytes]) -> list[bytes]:
    try:
        return [b"".join(result)]
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()


def sns_observations(form: Mapping[str, str], status: int, answer: bytes) -> list[Observation]:
    """AWS/SNS for one Publish or PublishBatch request (any other SNS action: nothing)."""
    action = form.get("Action", "")
    topic_arn = form.get("TopicArn", "")
    topic_name = topic_arn.rsplit(":", 1)[-1]
    if action not in ("Publish", "PublishBatch") or not topic_name:
        return []
    if status >= 400:
        code = _ERROR_CODE.search(answer)
        failed = code is not None and code.group(1).decode() in _DELIVERY_ERRORS
        return sns_failed_delivery_observations(topic_name) if failed else []
    if action == "Publish":
        entries = [("", form)]
    else:
        prefixes = sorted(
            {
                key.split(".Id", 1)[0]
                for key in form
                if re.fullmatch(r"PublishBatchRequestEntries\.member\.\d+\.Id", key)
            }
        )
        entries = [(prefix + ".", form) for prefix in prefixes]
    observations: list[Observation] = []
    for prefix, fields in entries:
        message = fields.get(prefix + "Message", "")
        attributes = message_attributes(fields, prefix)
        fan_out = deliveries(topic_arn, message, attributes)
        delivered, filtered = fan_out if fan_out is not None else (None, None)
        observations += sns_publish_observations(
            topic_name, size=sns_message_size(message, attributes), delivered=delivered, filtered=filtered, failed=0
        )
    return observations


def message_attributes(form: Mapping[str, str], prefix: str = "") -> dict[str, dict[str, str]]:
    """`MessageAttributes.entry.N.{Name,Value.DataType,Value.StringValue}` → {name: {"Type", "Value"}} (moto's
    form, which its filter-policy matcher reads)."""
    found: dict[str, dict[str, str]] = {}
    pattern = re.compile(re.escape(prefix) + r"MessageAttributes\.entry\.(\d+)\.Name")
    for key, name in form.items():
        match = pattern.fullmatch(key)
        if match is None:
            continue
        base = f"{prefix}MessageAttributes.entry.{match.group(1)}.Value."
        value = form.get(base + "StringValue", form.get(base + "BinaryValue", ""))
        found[name] = {"Type": form.get(base + "DataType", "String"), "Value": value}
    return found


def deliveries(topic_arn: str, message: str, attributes: Mapping[str, Any]) -> tuple[int, int] | None:
    """(delivered, filtered out) for a message just published to `topic_arn`: its subscriptions, each matched
    against its filter policy the way moto matched it. None if moto's internals are not what this expects."""
    try:
        from moto.sns.models import sns_backends
        from moto.sns.utils import FilterPolicyMatcher

        _, _, _, region, account, _ = topic_arn.split(":", 5)
        backend = sns_backends[account][region]
        subscriptions: list[Any] = []
        token: Any = None
        while True:
            page, token = backend.list_subscriptions_by_topic(topic_arn=topic_arn, next_token=token)
            subscriptions += page
            if not token:
                break
        delivered = filtered = 0
        for subscription in subscriptions:
            policy = subscription.attributes.get("FilterPolicy")
            matcher = (
                FilterPolicyMatcher(json.loads(policy), subscription.attributes.get("FilterPolicyScope"))
                if policy
                else None
            )
            if matcher is None or matcher.matches(dict(attributes), message):
                delivered += 1
            else:
                filtered += 1
    except Exception:  # noqa: BLE001 - a moto upgrade must not break publishing the rest
        return None
    return delivered, filtered


# --- The process --------------------------------------------------------------------------------------------


def _cloudwatch_connector(endpoint_url: str) -> Callable[[str], CloudWatchClient]:
    def connect(region: str) -> CloudWatchClient:
        import boto3

        client: CloudWatchClient = boto3.session.Session().client(
            "cloudwatch",
            region_name=region,
            endpoint_url=endpoint_url,
            aws_access_key_id="testing",  # the embedded AWS takes any key
            aws_secret_access_key="testing",  # noqa: S106 - not a secret
            config=metrics_client_config(),
        )
        return client

    return connect


def _warn(message: str) -> None:
    print(f"embedded AWS: metrics: {message}", file=sys.stderr, flush=True)


def _dispatcher() -> WsgiApp:
    """moto's dispatcher, remembering which backend serves a host.

    moto answers that on every request by listing its own package's directory (about 200 stat calls); the answer
    never changes while the server runs. About a tenth of the server's CPU under the main job."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    class Dispatcher(DomainDispatcherApplication):
        def __init__(self) -> None:
            super().__init__(create_backend_app)
            self._backends: dict[str | None, Any] = {}

        def get_backend_for_host(self, host: str | None) -> Any:
            if host in self._backends:
                return self._backends[host]
            backend = super().get_backend_for_host(host)
            if len(self._backends) < MAX_REMEMBERED_HOSTS:  # hosts are service × region; a bound all the same
                self._backends[host] = backend
            return backend

    return Dispatcher()


def share_service_models() -> None:
    """Every botocore session in this process shares one loader of service models and endpoints (shared_loader).

    moto makes sessions of its own (one parses all of botocore's endpoints.json, ~0.4 s of CPU, when the
    CloudFormation the stack's outputs live in is first used) and so does the metrics publisher; once is enough.
    For the server's process only: it changes botocore for everything in the process."""
    import botocore.session

    botocore.session.create_loader = lambda *args, **kwargs: shared_loader()


class MeteredMotoServer:
    """moto's ThreadedMotoServer, with ServiceMeter in front of its app and CognitoCors in front of both."""

    def __init__(self, port: int, publisher: StatisticsPublisher | None) -> None:
        from moto.moto_server.werkzeug_app import MotoRequestHandler
        from werkzeug.serving import make_server

        self.stacks = DescribedStacks(ServiceMeter(_dispatcher(), publisher))
        self.cors = CognitoCors(self.stacks)
        self._server = make_server("127.0.0.1", port, self.cors, threaded=True, request_handler=MotoRequestHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="moto", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join(5)


def _serve(
    port: int,
    conn: multiprocessing.connection.Connection,
    metrics: bool,
    flush_every: float,
    log_file: str | None = None,
) -> None:
    # The parent decides when to stop: Ctrl-C or a SIGTERM to the process group must not kill this one first.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if log_file is not None:  # the stack's log, like the workers' output: not the console a load test draws on
        with Path(log_file).open("ab", buffering=0) as log:
            os.dup2(log.fileno(), sys.stdout.fileno())
            os.dup2(log.fileno(), sys.stderr.fileno())
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request on the console
    service_models.install()
    dynamodb_transactions.install()
    dynamodb_queries.install()
    sqs_backlog.install()
    share_service_models()
    endpoint: list[str] = []
    publisher = (
        StatisticsPublisher(
            lambda region: _cloudwatch_connector(endpoint[0])(region), flush_every=flush_every, on_error=_warn
        )
        if metrics
        else None
    )
    try:
        server = MeteredMotoServer(port, publisher)
        server.start()
    except Exception as exc:  # noqa: BLE001 - reported to the parent as a start failure
        conn.send(("error", str(exc)))
        return
    endpoint.append(server.url)
    taps = ObjectEventTap()
    conn.send(("ok", server.url))
    if publisher is not None:
        publisher.start()
    with contextlib.suppress(EOFError, OSError):  # "stop", or the parent gone: either way, stop
        while (message := conn.recv()) != STOP:
            if isinstance(message, tuple) and message[0] == ALLOW_ORIGINS:
                server.cors.allow(message[1])
                conn.send(ALLOW_ORIGINS)
            elif isinstance(message, tuple) and message[0] == PUBLISH_STACK:
                server.stacks.publish(message[1])
                conn.send(PUBLISH_STACK)
            elif isinstance(message, tuple) and message[0] == ROUTE_OBJECT_EVENTS:
                taps.install()  # only once some bucket's events are wanted: moto's hook stays as it is until then
                taps.route(message[1], message[2])
                conn.send(ROUTE_OBJECT_EVENTS)
            elif isinstance(message, tuple) and message[0] == EXPIRE_OBJECTS:
                conn.send((EXPIRE_OBJECTS, taps.expire(ACCOUNT, message[1], message[2])))
    if publisher is not None:
        publisher.close(timeout=5)  # while the server still takes the last PutMetricData
    server.stop()


class MotoProcess:
    """moto's server in a child process; `metrics` publishes AWS/DynamoDB and AWS/SNS from what it serves, every
    `flush_every` seconds. With `log_file`, what the process prints (a request moto failed on, a metrics warning)
    is appended there instead of reaching the console."""

    def __init__(
        self,
        port: int = 0,
        *,
        metrics: bool = True,
        flush_every: float = DEFAULT_FLUSH_SECONDS,
        log_file: Path | None = None,
    ) -> None:
        context = multiprocessing.get_context("spawn")
        # A pipe, not an Event, says "stop": setting an Event blocks for good if a process waiting on it died.
        self._parent_conn, child_conn = context.Pipe()
        log = None if log_file is None else str(log_file)
        self._process = context.Process(
            target=_serve, args=(port, child_conn, metrics, flush_every, log), name="moto", daemon=True
        )
        self.endpoint_url = ""
        self._port = port

    def start(self, timeout: float = 30.0) -> str:
        if self._port:
            ensure_port_free(self._port)
        self._process.start()
        if not self._parent_conn.poll(timeout):
            self.stop()
            raise MotoStartError(f"the embedded AWS (moto) did not start within {timeout:.0f} s")
        try:
            status, detail = self._parent_conn.recv()
        except EOFError:  # the child died before it could say anything
            status, detail = "error", f"its process exited with code {self._process.exitcode}"
        if status != "ok":
            self.stop()
            raise MotoStartError(f"the embedded AWS (moto) could not start: {detail}")
        self.endpoint_url = str(detail)
        return self.endpoint_url

    def allow_origins(self, origins: Iterable[str], timeout: float = 10.0) -> None:
        """Let these browser origins call the embedded Cognito (the local page's: localaws.web)."""
        self._parent_conn.send((ALLOW_ORIGINS, sorted(origins)))
        if not self._parent_conn.poll(timeout) or self._parent_conn.recv() != ALLOW_ORIGINS:
            raise MotoStartError(f"the embedded AWS (moto) did not take the page's origins within {timeout:.0f} s")

    def publish_stack(self, stack: DescribedStack, timeout: float = 10.0) -> None:
        """Let DescribeStacks find `stack` (its outputs) on the embedded AWS (localaws.cloudformation)."""
        self._parent_conn.send((PUBLISH_STACK, stack))
        if not self._parent_conn.poll(timeout) or self._parent_conn.recv() != PUBLISH_STACK:
            raise MotoStartError(f"the embedded AWS (moto) did not take the stack's outputs within {timeout:.0f} s")

    def route_object_events(self, buckets: Iterable[str], route: Route, timeout: float = 10.0) -> None:
        """Send these buckets' object changes to a queue as S3 sends them to EventBridge (localaws.object_events)."""
        self._parent_conn.send((ROUTE_OBJECT_EVENTS, sorted(buckets), route))
        if not self._parent_conn.poll(timeout) or self._parent_conn.recv() != ROUTE_OBJECT_EVENTS:
            raise MotoStartError(f"the embedded AWS (moto) did not take the event routes within {timeout:.0f} s")

    def expire(self, bucket: str, keys: Iterable[str], timeout: float = 30.0) -> int:
        """Expire objects as a lifecycle rule would (their events say so); returns how many existed."""
        self._parent_conn.send((EXPIRE_OBJECTS, bucket, list(keys)))
        answer = self._parent_conn.recv() if self._parent_conn.poll(timeout) else None
        if not isinstance(answer, tuple) or answer[0] != EXPIRE_OBJECTS:
            raise MotoStartError(f"the embedded AWS (moto) did not expire the objects within {timeout:.0f} s")
        return int(answer[1])

    def stop(self, timeout: float = 10.0, *, kill_reserve: float = 0.5) -> bool:
        """Ask the server to stop; kill it if it has not `kill_reserve` seconds before `timeout` (it ignores SIGTERM,
        see _serve), and wait for it until `timeout`: every wait ends by then. Returns whether its process is gone."""
        if self._process.pid is None:  # never started (interrupted before it could be)
            return True
        started = time.monotonic()
        deadline = started + max(0.0, timeout)
        # Not serving yet (interrupted while starting): nothing of it to keep, and it would not read "stop" before.
        kill_at = max(started, deadline - kill_reserve) if self.endpoint_url else started
        if self._process.is_alive():
            with contextlib.suppress(OSError):
                self._parent_conn.send(STOP)
        self._process.join(max(0.0, kill_at - time.monotonic()))
        if self._process.is_alive():
            self._process.kill()
            self._process.join(max(0.0, deadline - time.monotonic()))
        return not self._process.is_alive()


def ensure_port_free(port: int) -> None:
    """moto's server hangs rather than failing when its port is taken; check first."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            raise MotoStartError(f"port {port} on 127.0.0.1 is already in use; pick another with --port") from None
