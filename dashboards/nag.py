"""cdk-nag v3 acknowledgements, made next to the resource they concern and always with a reason."""

from __future__ import annotations

from typing import cast

import aws_cdk as cdk
from aws_cdk import aws_s3 as s3
from constructs import IConstruct

PACK = "AwsSolutions"


def acknowledge(scope: IConstruct | None, rule: str, reason: str) -> None:
    """`rule` as cdk-nag names it (`AwsSolutions-L1`, `AwsSolutions-IAM5[Resource::*]`); for the subtree.

    `scope` may be an L2's `node.default_child`, to keep the acknowledgement off the L2's other children.
    """
    if scope is None:
        raise ValueError(f"acknowledging {rule}: no construct to attach it to")
    if not reason.strip():
        raise ValueError(f"acknowledging {rule} needs a reason")
    cdk.Validations.of(scope).acknowledge(cdk.Acknowledgment(id=f"{PACK}::{rule}", reason=reason))


def objects_finding(bucket: s3.IBucket, prefix: str) -> str:
    """The IAM5 finding for `<bucket>/<prefix>*`, as cdk-nag names it (by the bucket's logical id)."""
    logical_id = cdk.Stack.of(bucket).get_logical_id(cast("cdk.CfnElement", bucket.node.default_child))
    return f"AwsSolutions-IAM5[Resource::<{logical_id}.Arn>/{prefix}*]"
