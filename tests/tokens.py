"""Cognito-like access tokens for tests, signed with the pool's own key (moto's)."""

from __future__ import annotations

import time
from typing import Any

import jwt
from moto.utilities.utils import load_resource

from monitoring.target import StackInfo


def claims_for(stack: StackInfo, **overrides: Any) -> dict[str, Any]:
    """An access token's claims as Cognito writes them; `None` removes a claim."""
    now = int(time.time())
    claims = {
        "iss": stack.issuer,
        "sub": stack.demo_sub,
        "client_id": stack.user_pool_client_id,
        "token_use": "access",
        "scope": "aws.cognito.signin.user.admin",
        "username": stack.demo_username,
        "iat": now,
        "exp": now + 3600,
        **overrides,
    }
    return {name: value for name, value in claims.items() if value is not None}


def pool_key() -> Any:
    """moto's signing key (one key for every moto pool), so these tokens differ from real ones only in claims."""
    return jwt.PyJWK(load_resource("cognitoidp/resources/jwks-private.json")).key


def pool_signed(stack: StackInfo, **overrides: Any) -> str:
    return jwt.encode(claims_for(stack, **overrides), pool_key(), algorithm="RS256", headers={"kid": "dummy"})
