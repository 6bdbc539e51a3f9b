"""Cognito: who may call the API. The API accepts this pool's access tokens for this client only."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_cognito as cognito
from constructs import Construct

from dashboards.nag import acknowledge
from pipeline.resources import ResourceNames

# Access tokens are what the API checks; an hour bounds a leaked token without bothering CLI users.
ACCESS_TOKEN_VALIDITY = cdk.Duration.hours(1)


class Auth(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, names: ResourceNames) -> None:
        super().__init__(scope, construct_id)
        self.user_pool = cognito.UserPool(
            self,
            "Users",
            user_pool_name=names.user_pool,
            # Operators create users (load-test and demo accounts); nobody signs themselves up.
            self_sign_up_enabled=False,
            sign_in_aliases=cognito.SignInAliases(username=True, email=True),
            password_policy=cognito.PasswordPolicy(
                min_length=12,
                require_lowercase=True,
                require_uppercase=True,
                require_digits=True,
                require_symbols=True,
            ),
            account_recovery=cognito.AccountRecovery.EMAIL_ONLY,
            removal_policy=cdk.RemovalPolicy.RETAIN,
        )
        self.client = self.user_pool.add_client(
            "Cli",
            user_pool_client_name=names.user_pool_client,
            # Only what the CLI, the load-test harness and the local stack use: USER_PASSWORD_AUTH, then refresh
            # tokens (CDK adds ALLOW_REFRESH_TOKEN_AUTH to any explicit flow). No SRP: no client speaks it.
            auth_flows=cognito.AuthFlow(user_password=True),
            # No hosted UI and no OAuth flows (CDK would otherwise enable the implicit and code grants with an
            # example.com callback): nothing redirects a browser here. Tokens come from InitiateAuth alone.
            disable_o_auth=True,
            generate_secret=False,
            prevent_user_existence_errors=True,
            access_token_validity=ACCESS_TOKEN_VALIDITY,
            id_token_validity=ACCESS_TOKEN_VALIDITY,
        )

        pool_resource = self.user_pool.node.default_child  # the pool only, not its client
        acknowledge(
            pool_resource,
            "AwsSolutions-COG2",
            "Users are operator-created CLI and load-test accounts that sign in non-interactively "
            "(USER_PASSWORD_AUTH); require MFA before opening sign-up to people.",
        )
        acknowledge(
            pool_resource,
            "AwsSolutions-COG8",
            "The Plus feature plan (threat protection) is billed per monthly active user; with no self "
            "sign-up and operator-managed accounts the Essentials plan suffices. Revisit with sign-up.",
        )

    @property
    def issuer(self) -> str:
        return self.user_pool.user_pool_provider_url
