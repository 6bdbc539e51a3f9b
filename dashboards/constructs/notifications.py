"""The image-events topic the worker publishes DONE/FAILED notifications to, encrypted with the topic key."""

from __future__ import annotations

from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from constructs import Construct

from pipeline.resources import ResourceNames


class ImageEvents(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, names: ResourceNames, master_key: kms.IKey) -> None:
        super().__init__(scope, construct_id)
        self.topic = sns.Topic(
            self,
            "Topic",
            topic_name=names.notifications_topic,
            display_name="imgops image events",
            enforce_ssl=True,
            master_key=master_key,
        )
