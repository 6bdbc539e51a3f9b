"""POST /uploads: a short-lived URL that lets one user upload one image under their own prefix."""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any, Literal

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import BadRequestError

from pipeline import aws
from pipeline.auth import caller_sub
from pipeline.imaging import SUPPORTED_CONTENT_TYPES
from pipeline.keys import upload_key
from pipeline.settings import Settings

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext
    from mypy_boto3_s3 import S3Client

logger = Logger(service="imgops-presign")
app = APIGatewayHttpResolver()

UploadMethod = Literal["PUT", "POST"]


@dataclass(frozen=True)
class UploadGrant:
    upload_url: str
    file_path: str
    image_id: str
    expires_in: int
    method: UploadMethod
    content_type: str
    # Form fields a presigned POST must send before the file; empty for PUT.
    fields: dict[str, str] = field(default_factory=dict)


def grant_upload(
    *, user_sub: str, content_type: str, method: UploadMethod, settings: Settings, s3: S3Client
) -> UploadGrant:
    """PUT binds the content type into the signature; POST also caps the size, which a PUT URL cannot."""
    extension = SUPPORTED_CONTENT_TYPES[content_type]
    image_id = str(uuid.uuid4())
    key = upload_key(user_sub, image_id, extension)
    expires = settings.url_expiry_seconds
    if method == "PUT":
        url = s3.generate_presigned_url(
            "put_object",
            Params={"Bucket": settings.upload_bucket, "Key": key, "ContentType": content_type},
            ExpiresIn=expires,
        )
        fields: dict[str, str] = {}
    else:
        post = s3.generate_presigned_post(
            Bucket=settings.upload_bucket,
            Key=key,
            Fields={"Content-Type": content_type},
            Conditions=[
                {"Content-Type": content_type},
                ["content-length-range", 1, settings.max_upload_bytes],
            ],
            ExpiresIn=expires,
        )
        url, fields = post["url"], {name: str(value) for name, value in post["fields"].items()}
    return UploadGrant(
        upload_url=url,
        file_path=key,
        image_id=image_id,
        expires_in=expires,
        method=method,
        content_type=content_type,
        fields=fields,
    )


@cache
def _settings() -> Settings:
    return Settings.from_env()


@app.post("/uploads")
def create_upload() -> Response[str]:
    user_sub = caller_sub(app.current_event)
    content_type, method = _parse_request(app.current_event.body)
    grant = grant_upload(
        user_sub=user_sub, content_type=content_type, method=method, settings=_settings(), s3=aws.s3_client()
    )
    logger.info("upload granted", extra={"user": user_sub, "key": grant.file_path, "method": method})
    return Response(status_code=201, content_type=content_types.APPLICATION_JSON, body=json.dumps(asdict(grant)))


def _parse_request(body: str | None) -> tuple[str, UploadMethod]:
    try:
        request: Any = json.loads(body) if body else {}
    except json.JSONDecodeError:
        raise BadRequestError("request body must be JSON") from None
    if not isinstance(request, dict):
        raise BadRequestError("request body must be a JSON object")
    content_type = request.get("content_type")
    if content_type not in SUPPORTED_CONTENT_TYPES:
        allowed = ", ".join(sorted(SUPPORTED_CONTENT_TYPES))
        raise BadRequestError(f"content_type must be one of {allowed}; got {content_type!r}")
    method = str(request.get("method", "PUT")).upper()
    if method not in ("PUT", "POST"):
        raise BadRequestError(f"method must be PUT or POST; got {request.get('method')!r}")
    return content_type, "PUT" if method == "PUT" else "POST"


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
