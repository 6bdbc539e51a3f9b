"""GET /images/{image_id}: status and results, to the image's owner only."""

from __future__ import annotations

import json
import uuid
from functools import cache
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError

from pipeline import aws, store
from pipeline.auth import caller_sub
from pipeline.settings import Settings
from pipeline.store import Status

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext
    from mypy_boto3_dynamodb.service_resource import Table
    from mypy_boto3_s3 import S3Client

logger = Logger(service="imgops-read-api")
app = APIGatewayHttpResolver()

# Bookkeeping the worker keeps for idempotency; not part of the API's answer.
# The worker's bookkeeping, and its failure records: an AWS error message can name accounts, roles and resources.
_INTERNAL_FIELDS = frozenset(
    {"sourceVersion", "claimed_at", "notified_at", "claimToken", "lease_expires", *store.ATTEMPT_FIELDS}
)
IMAGE_NOT_FOUND = "image not found"


def describe_image(*, image_id: str, user_sub: str, settings: Settings, table: Table, s3: S3Client) -> dict[str, Any]:
    """Another user's image answers exactly like a missing one, so ids cannot be probed."""
    if not is_image_id(image_id):
        raise NotFoundError(IMAGE_NOT_FOUND)
    item = store.get(table, image_id)
    if item is None or item.get("userId") != user_sub:
        raise NotFoundError(IMAGE_NOT_FOUND)
    answer = {name: value for name, value in item.items() if name not in _INTERNAL_FIELDS}
    if item.get("status") == Status.DONE.value:
        answer["thumbnails"] = {
            size: s3.generate_presigned_url(
                "get_object",
                Params={"Bucket": settings.processed_bucket, "Key": key},
                ExpiresIn=settings.url_expiry_seconds,
            )
            for size, key in item.get("processedS3Keys", {}).items()
        }
    return answer


def is_image_id(value: str) -> bool:
    """Only ids as issued (lower-case hyphenated UUIDs) reach DynamoDB; anything else, however long or odd, is
    simply not found, the same answer as an unknown id, so the shape of a valid id is not revealed by a 400."""
    try:  # uuid.UUID alone would also take upper case, braces, `urn:uuid:` and no hyphens
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False


@cache
def _settings() -> Settings:
    return Settings.from_env()


@app.get("/images/<image_id>")
def get_image(image_id: str) -> dict[str, Any]:
    settings = _settings()
    return describe_image(
        image_id=image_id,
        user_sub=caller_sub(app.current_event),
        settings=settings,
        table=aws.dynamodb_resource().Table(settings.images_table),
        s3=aws.s3_client(),
    )


@app.not_found
def unknown_image(_: NotFoundError) -> Response[str]:
    """API Gateway sends this function only GET /images/{image_id}, so a path the router will not match is an id
    with characters it does not route (a NUL, a quote): one more unknown id. As Powertools' handler for every
    NotFoundError it also answers `describe_image`'s, so all of them read the same."""
    body = {"statusCode": 404, "message": IMAGE_NOT_FOUND}
    return Response(status_code=404, content_type=content_types.APPLICATION_JSON, body=json.dumps(body))


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
