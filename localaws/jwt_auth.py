"""What API Gateway's JWT authorizer does, for the local API: verify a Cognito token against the JWKS."""

from __future__ import annotations

from typing import Any

import jwt

from pipeline.auth import ACCEPTED_TOKEN_USE


class TokenRejected(Exception):
    """The bearer token does not authorize the call; the message says why (never echoed to callers)."""


class CognitoJwtVerifier:
    def __init__(self, *, issuer: str, client_id: str, jwks_url: str, leeway_seconds: int = 0) -> None:
        self._issuer = issuer
        self._client_id = client_id
        self._leeway = leeway_seconds
        self._jwks = jwt.PyJWKClient(jwks_url, cache_keys=True, lifespan=300, timeout=5)

    def verify(self, authorization: str | None) -> dict[str, Any]:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise TokenRejected("no bearer token")
        try:
            key = self._jwks.get_signing_key_from_jwt(token.strip())
            claims: dict[str, Any] = jwt.decode(
                token.strip(),
                key.key,
                algorithms=["RS256"],
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": ["exp", "iat", "iss", "sub", "token_use"], "verify_aud": False},
            )
        except (jwt.PyJWTError, jwt.PyJWKClientError) as exc:
            raise TokenRejected(f"invalid token: {exc}") from None
        if claims.get("token_use") != ACCEPTED_TOKEN_USE:
            raise TokenRejected(f"token_use is {claims.get('token_use')!r}, expected {ACCEPTED_TOKEN_USE!r}")
        if claims.get("client_id") != self._client_id:
            raise TokenRejected("token was issued to another app client")
        return claims
