"""boto3 clients, created on first use (never at import) and reused across warm invocations."""

from __future__ import annotations

import os
from functools import cache
from typing import TYPE_CHECKING

import boto3
import boto3.session
import botocore.loaders
import botocore.session
from botocore.config import Config

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import DynamoDBServiceResource
    from mypy_boto3_rekognition import RekognitionClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sns import SNSClient

# Standard retry mode already backs off on throttling; a handful of attempts keeps a stuck call
# well inside the function timeout so SQS redelivery (not a Lambda timeout) handles what remains.
# A batch of such calls would not fit: the worker bounds its clients' retries by the invocation's time
# (pipeline.invocation).
_RETRIES = Config(retries={"max_attempts": 4, "mode": "standard"}, connect_timeout=5, read_timeout=20)
# Labels are optional and run before the item is finished: a stalled Rekognition must give up (labels_error) long
# before the worker's timeout, so the thumbnails are never redone for it. Two tries of at most ~7 s each.
_LABELS_RETRIES = Config(retries={"max_attempts": 2, "mode": "standard"}, connect_timeout=2, read_timeout=5)


def s3_config() -> Config:
    """SigV4 so presigned URLs can bind headers; path-style when an endpoint (moto, LocalStack) is set."""
    if os.environ.get("AWS_ENDPOINT_URL"):
        return _RETRIES.merge(Config(signature_version="s3v4", s3={"addressing_style": "path"}))
    return _RETRIES.merge(Config(signature_version="s3v4", s3={"addressing_style": "auto"}))


class _UniquePaths(list[str]):
    """boto3 appends its own data path to the loader for every new session: with a shared loader, once is enough."""

    def append(self, path: str) -> None:
        if path not in self:
            super().append(path)


@cache
def shared_loader() -> botocore.loaders.Loader:
    """One loader of service models and endpoints for every session in this process.

    A session otherwise reads and parses every service's JSON model again, and all of botocore's endpoints.json
    (~0.4 s of CPU) for its first client: the tools make a session per stack target and per call."""
    return botocore.loaders.Loader(extra_search_paths=_UniquePaths())  # what create_loader() makes, deduplicated


def new_session(**kwargs: str | None) -> boto3.session.Session:
    """A boto3 session of its own (region, credentials) sharing this process's service models (shared_loader)."""
    core = botocore.session.get_session()
    core.register_component("data_loader", shared_loader())
    return boto3.session.Session(botocore_session=core, **kwargs)


@cache
def s3_client() -> S3Client:
    return boto3.client("s3", config=s3_config())


@cache
def sns_client() -> SNSClient:
    return boto3.client("sns", config=_RETRIES)


@cache
def rekognition_client() -> RekognitionClient:
    """Only the worker with IMGOPS_LABELS=rekognition makes this client."""
    return boto3.client("rekognition", config=_LABELS_RETRIES)


@cache
def dynamodb_resource() -> DynamoDBServiceResource:
    return boto3.resource("dynamodb", config=_RETRIES)


def forget_clients() -> None:
    """Drop the cached clients and boto3's default session, which caches the credentials it found (an embedded
    local stack that stops takes its endpoint and dummy credentials with it)."""
    for cached in (s3_client, sns_client, dynamodb_resource, rekognition_client):
        cached.cache_clear()
    boto3.DEFAULT_SESSION = None
