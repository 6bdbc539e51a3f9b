"""The upload page on AWS: a private bucket behind CloudFront (OAC), its files and config.json deployed with the
stack, and the API and the upload bucket allowing its origin (and only its origin)."""

from __future__ import annotations

import json
from typing import Any

from aws_cdk.assertions import Match

from dashboards.web import CONFIG_FILE, OUTPUT_KEY, PAGE_FILES
from pipeline.resources import ResourceNames
from tests.infrastructure.conftest import Synthesized

NAMES = ResourceNames("imgops")


def resolve(synthesized: Synthesized, value: Any) -> Any:
    return synthesized.stack.resolve(value)


def page_origin(synthesized: Synthesized) -> Any:
    return resolve(synthesized, synthesized.stack.web.origin)


def test_the_page_bucket_is_private_encrypted_ssl_only_and_logged(synthesized: Synthesized) -> None:
    web = synthesized.stack.web
    bucket = synthesized.resources("AWS::S3::Bucket")[resolve(synthesized, web.bucket.bucket_name)["Ref"]]
    properties = bucket["Properties"]
    assert properties["PublicAccessBlockConfiguration"] == dict.fromkeys(
        ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"), True
    )
    assert properties["BucketEncryption"]["ServerSideEncryptionConfiguration"] == [
        {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
    ]
    assert properties["LoggingConfiguration"]["DestinationBucketName"] == resolve(
        synthesized, synthesized.stack.storage.access_logs_bucket.bucket_name
    )
    [policy] = [
        p["Properties"]["PolicyDocument"]["Statement"]
        for p in synthesized.resources("AWS::S3::BucketPolicy").values()
        if p["Properties"]["Bucket"] == resolve(synthesized, web.bucket.bucket_name)
    ]
    denials = [s["Condition"] for s in policy if s["Effect"] == "Deny"]
    assert denials == [{"Bool": {"aws:SecureTransport": "false"}}]
    readers = [(s["Principal"], s["Action"]) for s in policy if s["Effect"] == "Allow"]
    assert readers == [({"Service": "cloudfront.amazonaws.com"}, "s3:GetObject")]  # CloudFront's OAC alone


def test_the_distribution_serves_index_html_over_https_with_security_headers(synthesized: Synthesized) -> None:
    web = synthesized.stack.web
    synthesized.template.has_resource_properties(
        "AWS::CloudFront::Distribution",
        {
            "DistributionConfig": Match.object_like(
                {
                    "DefaultRootObject": "index.html",
                    "DefaultCacheBehavior": Match.object_like(
                        {
                            "ViewerProtocolPolicy": "redirect-to-https",
                            "ResponseHeadersPolicyId": Match.any_value(),
                        }
                    ),
                    "Origins": [
                        Match.object_like(
                            {
                                "DomainName": resolve(synthesized, web.bucket.bucket_regional_domain_name),
                                "OriginAccessControlId": Match.any_value(),
                            }
                        )
                    ],
                }
            )
        },
    )
    [headers] = synthesized.resources("AWS::CloudFront::ResponseHeadersPolicy").values()
    security = headers["Properties"]["ResponseHeadersPolicyConfig"]["SecurityHeadersConfig"]
    policy = security["ContentSecurityPolicy"]["ContentSecurityPolicy"]
    assert "script-src 'self'" in policy
    assert "connect-src 'self' https://*.amazonaws.com" in policy
    assert "'unsafe-inline'" not in policy
    assert security["FrameOptions"]["FrameOption"] == "DENY"
    assert security["StrictTransportSecurity"]["AccessControlMaxAgeSec"] >= 31_536_000


def test_the_deployment_ships_the_page_and_a_config_from_the_stacks_outputs(synthesized: Synthesized) -> None:
    stack = synthesized.stack
    [deployment] = synthesized.resources("Custom::CDKBucketDeployment").values()
    properties = deployment["Properties"]
    assert properties["DestinationBucketName"] == resolve(synthesized, stack.web.bucket.bucket_name)
    assert properties["DistributionId"] == resolve(synthesized, stack.web.distribution.distribution_id)
    assert properties["Prune"] is True
    # config.json is a JSON source whose values CloudFormation fills in at deploy time.
    markers = json.dumps(properties["SourceMarkers"])
    for token in (stack.api.http_api.api_id, stack.auth.client.user_pool_client_id):
        assert json.dumps(resolve(synthesized, token)) in markers
    assert '"https://cognito-idp.' in markers
    # The page's own files: the asset staged from dashboards/web, without Python files.
    page_assets = [
        path for path in synthesized.outdir.glob("asset.*") if path.is_dir() and (path / "index.html").exists()
    ]
    assert len(page_assets) == 1
    assert sorted(p.name for p in page_assets[0].iterdir()) == sorted(PAGE_FILES)
    config_assets = [path for path in synthesized.outdir.glob("asset.*") if (path / CONFIG_FILE).exists()]
    assert len(config_assets) == 1


def test_the_page_bucket_can_be_destroyed_with_the_stack(synthesized: Synthesized) -> None:
    """CloudFormation deletes only an empty bucket: the deployment (deleted before the bucket it depends on) must
    delete the files it wrote, or `cdk destroy` stops at the page's bucket."""
    web = synthesized.stack.web
    bucket = synthesized.resources("AWS::S3::Bucket")[resolve(synthesized, web.bucket.bucket_name)["Ref"]]
    assert bucket["DeletionPolicy"] == "Delete"
    assert "VersioningConfiguration" not in bucket["Properties"]  # no old versions left behind by the deletion
    [deployment] = synthesized.resources("Custom::CDKBucketDeployment").values()
    assert deployment["Properties"]["RetainOnDelete"] is False
    # A Ref to the bucket: CloudFormation deletes the deployment first.
    assert deployment["Properties"]["DestinationBucketName"] == resolve(synthesized, web.bucket.bucket_name)


def test_the_deployment_handler_is_named_and_logs_to_its_own_group(synthesized: Synthesized) -> None:
    [handler] = [
        f["Properties"]
        for f in synthesized.resources("AWS::Lambda::Function").values()
        if f["Properties"].get("Handler") == "index.handler"
    ]
    assert handler["FunctionName"] == f"{NAMES.prefix}-web-deploy"
    assert handler["Architectures"] == ["x86_64"]
    assert "LogGroup" in handler["LoggingConfig"]
    role_ref = handler["Role"]["Fn::GetAtt"][0]
    role = synthesized.resources("AWS::IAM::Role")[role_ref]["Properties"]
    assert "ManagedPolicyArns" not in role  # no AWSLambdaBasicExecutionRole: it may write any log group


def test_the_api_and_the_upload_bucket_allow_the_page_origin_only(synthesized: Synthesized) -> None:
    origin = page_origin(synthesized)
    synthesized.template.has_resource_properties(
        "AWS::ApiGatewayV2::Api",
        {
            "CorsConfiguration": {
                "AllowOrigins": [origin],
                "AllowMethods": ["GET", "POST"],
                "AllowHeaders": ["authorization", "content-type"],
                "MaxAge": 3600,
            }
        },
    )
    synthesized.template.has_resource_properties(
        "AWS::S3::Bucket",
        {
            "BucketName": NAMES.upload_bucket,
            "CorsConfiguration": {
                "CorsRules": [{"AllowedMethods": ["POST"], "AllowedOrigins": [origin], "MaxAge": 3600}]
            },
        },
    )
    processed = [
        b["Properties"]
        for b in synthesized.resources("AWS::S3::Bucket").values()
        if b["Properties"].get("BucketName") == NAMES.processed_bucket
    ]
    assert "CorsConfiguration" not in processed[0]  # thumbnails are <img> loads: no CORS needed


def test_the_page_url_is_an_output(synthesized: Synthesized) -> None:
    output = synthesized.json["Outputs"][OUTPUT_KEY]
    assert output["Value"] == resolve(synthesized, synthesized.stack.web.url)
    assert output["Description"]
