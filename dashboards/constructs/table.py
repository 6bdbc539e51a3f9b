"""The images table: one item per image, keyed by the id the presign API hands out."""

from __future__ import annotations

from aws_cdk import aws_dynamodb as dynamodb
from constructs import Construct

from pipeline.resources import ResourceNames


class ImagesTable(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, names: ResourceNames) -> None:
        super().__init__(scope, construct_id)
        # On-demand: traffic is bursty (uploads arrive in batches) and idle most of the day.
        self.table = dynamodb.Table(
            self,
            "Table",
            table_name=names.images_table,
            partition_key=dynamodb.Attribute(name="imageId", type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
        )
