"""CloudFront in front of the processed bucket, which stays private: only this distribution reads it (OAC)."""

from __future__ import annotations

from aws_cdk import aws_cloudfront as cloudfront
from aws_cdk import aws_cloudfront_origins as origins
from aws_cdk import aws_s3 as s3
from constructs import Construct

from dashboards.nag import acknowledge


class ThumbnailCdn(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, processed_bucket: s3.IBucket) -> None:
        super().__init__(scope, construct_id)
        self.distribution = cloudfront.Distribution(
            self,
            "Distribution",
            comment="imgops thumbnails",
            default_behavior=cloudfront.BehaviorOptions(
                origin=origins.S3BucketOrigin.with_origin_access_control(
                    processed_bucket, origin_access_levels=[cloudfront.AccessLevel.READ]
                ),
                viewer_protocol_policy=cloudfront.ViewerProtocolPolicy.REDIRECT_TO_HTTPS,
                # Thumbnails are immutable (the worker sets max-age=1y, immutable): cache hard.
                cache_policy=cloudfront.CachePolicy.CACHING_OPTIMIZED,
                allowed_methods=cloudfront.AllowedMethods.ALLOW_GET_HEAD,
            ),
            # North America and Europe edges only: the cheapest class; other viewers are served from them.
            price_class=cloudfront.PriceClass.PRICE_CLASS_100,
            http_version=cloudfront.HttpVersion.HTTP2_AND_3,
        )

        for rule, reason in (
            ("AwsSolutions-CFR1", "Thumbnails are served worldwide by design; no geography is excluded."),
            (
                "AwsSolutions-CFR2",
                "Static, immutable, cached objects behind unguessable ids; a WAF web ACL ($5/month + "
                "requests) buys little here. Add one if the distribution is abused.",
            ),
            (
                "AwsSolutions-CFR3",
                "CloudFront's default metrics (requests, 4xx/5xx rates) cover operations; per-viewer "
                "standard logs need an ACL-enabled bucket and are enabled when an audit needs them.",
            ),
            (
                "AwsSolutions-CFR4",
                "No custom domain yet: the default *.cloudfront.net certificate cannot enforce TLSv1.2. "
                "Adding a domain comes with an ACM certificate and TLSv1.2_2021.",
            ),
        ):
            acknowledge(self.distribution.node.default_child, rule, reason)

    @property
    def domain_name(self) -> str:
        return self.distribution.distribution_domain_name
