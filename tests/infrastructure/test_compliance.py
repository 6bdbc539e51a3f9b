"""cdk-nag (AwsSolutions, run by the synth itself) and cfn-lint on the synthesized template."""

from __future__ import annotations

import json

from cfnlint.api import lint  # type: ignore[import-untyped]  # cfn-lint ships no type information

from dashboards.constructs.inventory import RESULTS_PREFIX
from dashboards.nag import objects_finding
from tests.infrastructure.conftest import Synthesized

# Each one is a decision with a written reason next to the resource; a new finding needs a new decision.
EXPECTED_ACKNOWLEDGEMENTS = {
    "AwsSolutions-L1",
    "AwsSolutions-COG2",
    "AwsSolutions-COG8",
    "AwsSolutions-IAM5[Resource::*]",
    "AwsSolutions-CFR1",
    "AwsSolutions-CFR2",
    "AwsSolutions-CFR3",
    "AwsSolutions-CFR4",
    # CDK's BucketDeployment handler of the upload page (dashboards/constructs/web.py): the grants CDK gives it.
    "AwsSolutions-IAM5[Action::s3:GetBucket*]",
    "AwsSolutions-IAM5[Action::s3:GetObject*]",
    "AwsSolutions-IAM5[Action::s3:List*]",
    "AwsSolutions-IAM5[Action::s3:Abort*]",
    "AwsSolutions-IAM5[Action::s3:DeleteObject*]",
    "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:s3:::cdk-hnb659fds-assets-<AWS::AccountId>-<AWS::Region>/*]",
    # The reconciler's Athena query reads the inventory tables of the stack's own Glue database (one per bucket).
    "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:glue:<AWS::Region>:<AWS::AccountId>:table/imgops_capacity/*]",
}


def test_cdk_nag_reports_nothing_unacknowledged(synthesized: Synthesized) -> None:
    [report] = synthesized.validation_report()["pluginReports"]
    assert report["pluginName"] == "AwsSolutions"
    assert report["conclusion"] == "success"
    assert report["violations"] == [], [v["ruleName"] for v in report["violations"]]


def test_every_acknowledgement_is_expected_and_has_a_reason(synthesized: Synthesized) -> None:
    acknowledged: dict[str, str] = {}
    for resource in synthesized.json["Resources"].values():
        for rule in resource.get("Metadata", {}).get("cdk_nag", {}).get("rules_to_suppress", []):
            acknowledged[rule["id"].removeprefix("AwsSolutions::")] = rule["reason"]
    # Every object of the upload page's bucket, which the page's deployment replaces as a whole.
    page_objects = objects_finding(synthesized.stack.web.bucket, "")
    # Every report in the inventory bucket, which the reconciler reads whichever is newest (S3 names its files).
    inventory_objects = objects_finding(synthesized.stack.storage.inventory_bucket, "")
    # And Athena's results of the reconciler's queries, in the inventory bucket.
    query_results = objects_finding(synthesized.stack.storage.inventory_bucket, RESULTS_PREFIX)
    whole_buckets = {page_objects, inventory_objects, query_results}
    assert whole_buckets <= set(acknowledged)
    object_prefix_findings = {
        rule for rule in acknowledged if rule.startswith("AwsSolutions-IAM5[Resource::<") and rule not in whole_buckets
    }
    assert {rule for rule in acknowledged if rule not in {*object_prefix_findings, *whole_buckets}} == (
        EXPECTED_ACKNOWLEDGEMENTS
    )
    # Object-level grants on exactly the two pipeline prefixes, nothing broader.
    assert sorted(rule.split(".Arn>/", 1)[1] for rule in object_prefix_findings) == ["processed/*]", "user-uploads/*]"]
    for rule, reason in acknowledged.items():
        assert len(reason) > 40, f"{rule}: the reason must say why"


def test_cfn_lint_finds_no_errors(synthesized: Synthesized) -> None:
    matches = lint(json.dumps(synthesized.json), regions=["us-east-1"])
    errors = [f"{match.rule.id} {match.message}" for match in matches if match.rule.id.startswith("E")]
    assert errors == []
