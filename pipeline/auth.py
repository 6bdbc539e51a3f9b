"""Who is calling: the JWT authorizer (API Gateway, or the local API) has verified the token already."""

from __future__ import annotations

import re

from aws_lambda_powertools.event_handler.exceptions import UnauthorizedError
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2

# Cognito subs are UUIDs; anything that could bend an S3 key (`/`, `..`, `%`) is refused outright.
SUB_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")

# The API accepts access tokens (OAuth's token for calling APIs); ID tokens are for the client itself.
ACCEPTED_TOKEN_USE = "access"  # noqa: S105 - a claim value, not a secret


def caller_sub(event: APIGatewayProxyEventV2) -> str:
    authorizer = event.request_context.authorizer
    claims = authorizer.jwt_claim if authorizer is not None else None
    if not claims:
        raise UnauthorizedError("missing or invalid bearer token")
    if claims.get("token_use") != ACCEPTED_TOKEN_USE:
        raise UnauthorizedError("an access token is required")
    sub = str(claims.get("sub", ""))
    if not SUB_PATTERN.fullmatch(sub):
        raise UnauthorizedError("token has no usable subject")
    return sub
