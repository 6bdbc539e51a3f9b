"""POST /uploads: a short-lived URL that lets one user upload one image under their own prefix."""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import asdict, dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any, Literal

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import BadRequestError, RequestEntityTooLargeError

from pipeline import aws
from pipeline.auth import caller_sub
from pipeline.keys import upload_key
from pipeline.resources import SUPPORTED_CONTENT_TYPES
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


# A real request is about 60 bytes; this leaves room for extra keys and bounds the work a body can cause.
MAX_REQUEST_CHARS = 16 * 1024
_ALLOWED = ", ".join(sorted(SUPPORTED_CONTENT_TYPES))
_JSON_TYPES: dict[type, str] = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}


@dataclass(frozen=True)
class UploadRequest:
    content_type: str  # canonical: one of SUPPORTED_CONTENT_TYPES, exactly what the upload must send
    method: UploadMethod


def parse_upload_request(body: str | None, *, base64_encoded: bool = False) -> UploadRequest:
    """Every malformed body is the caller's mistake, so it becomes a 400 (413 if too large), never a 500.

    The body is a JSON object: `content_type` (required) and `method` (`PUT` if absent or null); other keys are
    ignored. Both are matched case-insensitively, ASCII only, without surrounding whitespace, because media types
    and method names are case-insensitive to the people typing them: `IMAGE/JPEG ` asks for `image/jpeg`, and the
    grant's `content_type` says so, since that exact value is what the signed upload must send. Parameters
    (`image/jpeg; charset=x`) are refused rather than dropped: they would not be part of the signature, so an
    upload sending them would fail later at S3 with a less helpful 403.
    """
    text = _body_text(body or "", base64_encoded=base64_encoded)
    try:
        request: object = json.loads(text) if text else {}
    except RecursionError:
        raise BadRequestError("request body is nested too deeply") from None
    except ValueError:  # JSONDecodeError, and integers beyond Python's digit limit
        raise BadRequestError("request body must be JSON") from None
    if not isinstance(request, dict):
        raise BadRequestError(f"request body must be a JSON object; got {_describe(request)}")

    content_type = request.get("content_type")
    if content_type is None:
        raise BadRequestError(f"content_type is required, one of {_ALLOWED}")
    if not isinstance(content_type, str):
        raise BadRequestError(f"content_type must be a string, one of {_ALLOWED}; got {_describe(content_type)}")
    canonical = _fold(content_type)
    if canonical not in SUPPORTED_CONTENT_TYPES:
        raise BadRequestError(f"content_type must be one of {_ALLOWED}; got {_describe(content_type)}")

    method = request.get("method")
    method = "PUT" if method is None else method
    folded = _fold(method) if isinstance(method, str) else None
    if folded == "put":
        return UploadRequest(content_type=canonical, method="PUT")
    if folded == "post":
        return UploadRequest(content_type=canonical, method="POST")
    raise BadRequestError(f"method must be PUT or POST; got {_describe(method)}")


def _body_text(body: str, *, base64_encoded: bool) -> str:
    """API Gateway base64-encodes a body it takes for binary (by its Content-Type); either way it must be UTF-8."""
    if len(body) > (MAX_REQUEST_CHARS * 4 // 3 + 4 if base64_encoded else MAX_REQUEST_CHARS):
        raise RequestEntityTooLargeError(f"request body is longer than {MAX_REQUEST_CHARS} characters")
    if not base64_encoded:
        return body
    try:
        return base64.b64decode(body, validate=True).decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequestError("request body must be UTF-8 JSON") from None
    except ValueError:  # binascii.Error, or non-ASCII characters in what should be base64
        raise BadRequestError("request body is marked base64-encoded but is not valid base64") from None


def _fold(value: str) -> str:
    """Without surrounding whitespace and lower-cased, but only if ASCII: `str.upper` turns `poſt` into `POST`."""
    stripped = value.strip()
    return stripped.lower() if stripped.isascii() else stripped


def _describe(value: object) -> str:
    """What the caller sent, short and on one line; only strings are echoed, and only their start."""
    if isinstance(value, str):
        return repr(value) if len(value) <= 40 else f"{value[:40]!r}..."
    if value is None:
        return "null"
    return _JSON_TYPES.get(type(value), "a number")


@app.post("/uploads")
def create_upload() -> Response[str]:
    event = app.current_event
    user_sub = caller_sub(event)
    request = parse_upload_request(event.body, base64_encoded=bool(event.is_base64_encoded))
    grant = grant_upload(
        user_sub=user_sub,
        content_type=request.content_type,
        method=request.method,
        settings=_settings(),
        s3=aws.s3_client(),
    )
    logger.info("upload granted", extra={"user": user_sub, "key": grant.file_path, "method": request.method})
    return Response(status_code=201, content_type=content_types.APPLICATION_JSON, body=json.dumps(asdict(grant)))


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
