"""The upload page: a private bucket behind CloudFront (OAC), its files and config.json put there on deploy.

The page talks to three other origins: the HTTP API, Cognito and the upload bucket. Cognito answers any origin;
the API and the upload bucket allow this distribution's origin only (`Api(browser_origins=...)`,
`allow_uploads`). The thumbnails are plain <img> loads of presigned URLs, which need no CORS.
"""

from __future__ import annotations

from typing import cast

import aws_cdk as cdk
from aws_cdk import aws_cloudfront as cloudfront
from aws_cdk import aws_cloudfront_origins as origins
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_deployment as s3deploy
from constructs import Construct

from dashboards.constructs.function import LOG_RETENTION
from dashboards.nag import acknowledge, objects_finding
from dashboards.web import CONFIG_FILE, PAGE_DIR, PageConfig, content_security_policy

# Every AWS endpoint the page reaches (execute-api, cognito-idp, S3 virtual-hosted and regional) is under this.
AWS_ORIGINS = ("https://*.amazonaws.com",)
# A browser preflight result is reused this long.
CORS_MAX_AGE = cdk.Duration.hours(1)
# CDK's id prefix for BucketDeployment's singleton handler (one per stack and memory size).
_DEPLOYMENT_HANDLER_PREFIX = "Custom::CDKBucketDeployment"


class WebPage(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, access_logs_bucket: s3.IBucket) -> None:
        super().__init__(scope, construct_id)
        self.bucket = s3.Bucket(
            self,
            "Bucket",
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            server_access_logs_bucket=access_logs_bucket,
            server_access_logs_prefix="web/",
            # Only what the deployment wrote: it is rebuilt from this repository on every deploy.
            removal_policy=cdk.RemovalPolicy.DESTROY,
        )
        headers = cloudfront.ResponseHeadersPolicy(
            self,
            "SecurityHeaders",
            comment="imgops upload page: CSP, HSTS, no framing, no sniffing, no referrer",
            security_headers_behavior=cloudfront.ResponseSecurityHeadersBehavior(
                content_security_policy=cloudfront.ResponseHeadersContentSecurityPolicy(
                    content_security_policy=content_security_policy(AWS_ORIGINS), override=True
                ),
                content_type_options=cloudfront.ResponseHeadersContentTypeOptions(override=True),
                frame_options=cloudfront.ResponseHeadersFrameOptions(
                    frame_option=cloudfront.HeadersFrameOption.DENY, override=True
                ),
                referrer_policy=cloudfront.ResponseHeadersReferrerPolicy(
                    referrer_policy=cloudfront.HeadersReferrerPolicy.NO_REFERRER, override=True
                ),
                strict_transport_security=cloudfront.ResponseHeadersStrictTransportSecurity(
                    access_control_max_age=cdk.Duration.days(365), include_subdomains=True, override=True
                ),
            ),
        )
        self.distribution = cloudfront.Distribution(
            self,
            "Distribution",
            comment="imgops upload page",
            default_root_object="index.html",
            default_behavior=cloudfront.BehaviorOptions(
                origin=origins.S3BucketOrigin.with_origin_access_control(
                    self.bucket, origin_access_levels=[cloudfront.AccessLevel.READ]
                ),
                viewer_protocol_policy=cloudfront.ViewerProtocolPolicy.REDIRECT_TO_HTTPS,
                cache_policy=cloudfront.CachePolicy.CACHING_OPTIMIZED,
                allowed_methods=cloudfront.AllowedMethods.ALLOW_GET_HEAD,
                response_headers_policy=headers,
            ),
            price_class=cloudfront.PriceClass.PRICE_CLASS_100,
            http_version=cloudfront.HttpVersion.HTTP2_AND_3,
        )
        for rule, reason in (
            ("AwsSolutions-CFR1", "The upload page is for every signed-in user, wherever they are."),
            (
                "AwsSolutions-CFR2",
                "Three static files and config.json; every action the page takes is authorised by Cognito and "
                "the API's JWT authorizer, which a WAF web ACL here would not protect.",
            ),
            (
                "AwsSolutions-CFR3",
                "CloudFront's default metrics cover a static page; standard logs need an ACL-enabled bucket.",
            ),
            (
                "AwsSolutions-CFR4",
                "No custom domain yet: the default *.cloudfront.net certificate cannot enforce TLSv1.2. "
                "Adding a domain comes with an ACM certificate and TLSv1.2_2021.",
            ),
        ):
            acknowledge(self.distribution.node.default_child, rule, reason)

    @property
    def origin(self) -> str:
        """The page's origin as browsers send it in `Origin` (no trailing slash)."""
        return f"https://{self.distribution.distribution_domain_name}"

    @property
    def url(self) -> str:
        return f"{self.origin}/"

    def allow_uploads(self, bucket: s3.Bucket) -> None:
        """The page POSTs the file to the upload bucket's presigned POST URL; an XHR with upload progress always
        sends a preflight, so S3 must answer it for this origin (and only for it)."""
        bucket.add_cors_rule(
            allowed_methods=[s3.HttpMethods.POST],
            allowed_origins=[self.origin],
            max_age=int(CORS_MAX_AGE.to_seconds()),
        )

    def publish(self, config: PageConfig, *, handler_name: str) -> s3deploy.BucketDeployment:
        """The page's files and its config.json (the stack's outputs, resolved at deploy time), then a CloudFront
        invalidation. CDK runs this through a Lambda of its own; `handler_name` names it like the stack's."""
        log_group = logs.LogGroup(self, "DeployLogs", retention=LOG_RETENTION, removal_policy=cdk.RemovalPolicy.DESTROY)
        # Its own role, which may write only its own log group (CDK's default attaches the managed basic-execution
        # policy, which allows any); CDK adds the S3 and CloudFront grants the sync needs.
        role = iam.Role(
            self,
            "DeployRole",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="CDK BucketDeployment handler of the imgops upload page",
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["logs:CreateLogStream", "logs:PutLogEvents"], resources=[log_group.log_group_arn]
            )
        )
        deployment = s3deploy.BucketDeployment(
            self,
            "Deploy",
            destination_bucket=self.bucket,
            sources=[
                s3deploy.Source.asset(str(PAGE_DIR), exclude=["*.py", "__pycache__"]),
                s3deploy.Source.json_data(CONFIG_FILE, config.as_json()),
            ],
            # Browsers revalidate: a deploy shows at once (the invalidation clears CloudFront's copy).
            cache_control=[s3deploy.CacheControl.no_cache()],
            distribution=self.distribution,
            distribution_paths=["/*"],
            log_group=log_group,
            role=role,
            prune=True,
            # The bucket is destroyed with the stack, and CloudFormation deletes only empty buckets: the deployment,
            # deleted first (it depends on the bucket), removes the files it wrote (CDK's default keeps them).
            retain_on_delete=False,
        )
        handler = self._deployment_handler()
        cfn_handler = cast("lambda_.CfnFunction", handler.node.default_child)
        # Named like the stack's other functions, and its architecture stated (CDK leaves it to the default).
        cfn_handler.add_property_override("FunctionName", handler_name)
        cfn_handler.add_property_override("Architectures", ["x86_64"])
        acknowledge(handler, "AwsSolutions-L1", "CDK's BucketDeployment handler: CDK picks and updates its runtime.")
        # CDK's grants to the handler's role, which syncs whole prefixes (read the staged asset, replace the page).
        wildcards = {
            "Action::s3:GetBucket*": "reads the staged asset and the page bucket",
            "Action::s3:GetObject*": "reads the staged asset and the page bucket",
            "Action::s3:List*": "lists the page bucket to prune what the new version no longer has",
            "Action::s3:Abort*": "aborts its own failed multipart copies",
            "Action::s3:DeleteObject*": "prunes files the new version of the page no longer has",
            "Resource::arn:<AWS::Partition>:s3:::cdk-hnb659fds-assets-<AWS::AccountId>-<AWS::Region>/*": (
                "the CDK bootstrap asset bucket, where the page's files are staged"
            ),
            objects_finding(self.bucket, "").removeprefix("AwsSolutions-IAM5[").removesuffix("]"): (
                "every object of the page bucket: the page is replaced as a whole"
            ),
            "Resource::*": "cloudfront:CreateInvalidation/GetInvalidation, which take no resource narrower than *",
        }
        for finding, why in wildcards.items():
            acknowledge(role, f"AwsSolutions-IAM5[{finding}]", f"CDK's BucketDeployment handler {why}.")
        return deployment

    def _deployment_handler(self) -> lambda_.Function:
        stack = cdk.Stack.of(self)
        found = [
            child
            for child in stack.node.children
            if child.node.id.startswith(_DEPLOYMENT_HANDLER_PREFIX) and isinstance(child, lambda_.Function)
        ]
        if len(found) != 1:
            raise RuntimeError(f"expected one BucketDeployment handler in {stack.stack_name}, found {len(found)}")
        return found[0]
