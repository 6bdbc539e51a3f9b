"""`imgops local up`: the embedded AWS, the pipeline's resources, the local API and the worker runtime."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, replace
from types import TracebackType

from loadtest.local import state
from loadtest.local.api import ApiServer, LocalHttpApi, default_routes
from loadtest.local.jwt_auth import CognitoJwtVerifier
from loadtest.local.moto_process import MotoProcess
from loadtest.local.provision import StackInfo, provision
from loadtest.local.runtime import RuntimeConfig, WorkerPool
from pipeline.resources import QUEUE_VISIBILITY_TIMEOUT_SECONDS, WORKER_TIMEOUT_SECONDS, ResourceNames

# The embedded AWS accepts any credentials; fixed dummies guarantee real ones are never sent to it.
LOCAL_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "imgops-local", "AWS_SECRET_ACCESS_KEY": "imgops-local"}


@dataclass(frozen=True)
class LocalStackOptions:
    port: int = 0
    api_port: int = 0
    workers: int = field(default_factory=lambda: os.cpu_count() or 2)
    prefix: str = "imgops"
    region: str = "us-east-1"
    worker_timeout_seconds: int = WORKER_TIMEOUT_SECONDS
    visibility_timeout_seconds: int = QUEUE_VISIBILITY_TIMEOUT_SECONDS
    log_level: str = "WARNING"


class LocalStack:
    def __init__(self, options: LocalStackOptions) -> None:
        self.options = options
        self._moto = MotoProcess(options.port)
        self._api: ApiServer | None = None
        self._workers: WorkerPool | None = None
        self.info: StackInfo | None = None

    def start(self) -> StackInfo:
        options = self.options
        os.environ.update(LOCAL_CREDENTIALS)
        endpoint = self._moto.start()
        info = provision(
            ResourceNames(options.prefix),
            endpoint_url=endpoint,
            region=options.region,
            visibility_timeout=options.visibility_timeout_seconds,
        )
        environment = {
            **info.handler_environment(),
            **LOCAL_CREDENTIALS,
            "POWERTOOLS_LOG_LEVEL": options.log_level,
            "AWS_REGION": options.region,
        }
        os.environ.update(environment)  # the API's handlers run in this process
        verifier = CognitoJwtVerifier(issuer=info.issuer, client_id=info.user_pool_client_id, jwks_url=info.jwks_url)
        self._api = ApiServer(LocalHttpApi(default_routes(), verifier), options.api_port).start()
        info = replace(info, api_url=self._api.url)
        self._workers = WorkerPool(
            RuntimeConfig(
                queue_url=info.queue_url,
                queue_arn=info.queue_arn,
                region=info.region,
                function_name=ResourceNames(options.prefix).worker_function,
                report_log=state.report_log(),
                timeout_seconds=options.worker_timeout_seconds,
            ),
            options.workers,
            environment,
        )
        state.report_log().parent.mkdir(parents=True, exist_ok=True)
        self._workers.start()
        state.write_state(info)
        self.info = info
        return info

    def supervise(self, interval: float = 1.0) -> None:
        """Block until interrupted, restarting any worker process that died."""
        while True:
            time.sleep(interval)
            if self._workers is not None:
                self._workers.replace_dead()

    def stop(self) -> None:
        state.clear_state()
        if self._workers is not None:
            self._workers.stop()
        if self._api is not None:
            self._api.stop()
        self._moto.stop()

    def __enter__(self) -> LocalStack:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
