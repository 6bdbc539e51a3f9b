"""The imgops stack: composes the constructs and owns the deploy-time parameters; builds nothing itself."""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from constructs import Construct

from dashboards.config import AppConfig
from dashboards.constructs.alerts import OpsAlerts
from dashboards.constructs.api import STAGE_NAME, Api
from dashboards.constructs.auth import Auth
from dashboards.constructs.bundling import python_code
from dashboards.constructs.capacity import CapacityCounters
from dashboards.constructs.cdn import ThumbnailCdn
from dashboards.constructs.inventory import InventoryQueries
from dashboards.constructs.monitoring import Monitoring
from dashboards.constructs.notifications import ImageEvents
from dashboards.constructs.queue import WorkQueue
from dashboards.constructs.s3_metrics import BucketMetrics
from dashboards.constructs.storage import Storage
from dashboards.constructs.table import ImagesTable
from dashboards.constructs.topic_key import TopicKey
from dashboards.constructs.web import WebPage
from dashboards.constructs.worker import Worker
from dashboards.lambda_bundle import BUNDLES
from dashboards.web import OUTPUT_KEY as WEB_PAGE_OUTPUT
from dashboards.web import PageConfig, cognito_endpoint
from monitoring import s3_metrics
from pipeline.resources import WORKER_BATCH_SIZE, ResourceNames, StackOutputs

# Deploy-time defaults. Lambda's SQS poller needs a batching window above 10 messages; keep to 1-10.
MAX_BATCH_SIZE = 10
# Enough to drain a burst quickly without letting one queue take the account's 1,000 concurrent executions.
DEFAULT_MAX_CONCURRENCY = 20
# Requests/s and burst for the whole API; a CLI user makes a few requests per upload.
DEFAULT_THROTTLE_RATE = 50
DEFAULT_THROTTLE_BURST = 100


class ImgopsStack(cdk.Stack):
    def __init__(self, scope: Construct, construct_id: str, *, config: AppConfig, **kwargs: Any) -> None:
        super().__init__(
            scope,
            construct_id,
            description="imgops: presigned uploads, SQS-driven thumbnail worker, dashboards and alarms",
            **kwargs,
        )
        self.config = config
        names = ResourceNames(config.prefix)

        batch_size = cdk.CfnParameter(
            self,
            "WorkerBatchSize",
            type="Number",
            default=WORKER_BATCH_SIZE,
            min_value=1,
            max_value=MAX_BATCH_SIZE,
            description="SQS messages per worker invocation (1-10).",
        )
        max_concurrency = cdk.CfnParameter(
            self,
            "WorkerMaxConcurrency",
            type="Number",
            default=DEFAULT_MAX_CONCURRENCY,
            min_value=2,
            max_value=1000,
            description="Most concurrent worker invocations the SQS event source starts (2-1000).",
        )
        throttle_rate = cdk.CfnParameter(
            self,
            "ApiThrottleRateLimit",
            type="Number",
            default=DEFAULT_THROTTLE_RATE,
            min_value=1,
            description="HTTP API stage steady-state requests per second.",
        )
        throttle_burst = cdk.CfnParameter(
            self,
            "ApiThrottleBurstLimit",
            type="Number",
            default=DEFAULT_THROTTLE_BURST,
            min_value=1,
            description="HTTP API stage burst (token bucket size).",
        )
        alarm_email = cdk.CfnParameter(
            self,
            "AlarmEmail",
            type="String",
            default="",
            allowed_pattern=r"^$|^[^@\s]+@[^@\s]+$",
            description="E-mail address subscribed to the ops alarm topic (empty: no subscription).",
        )

        self.storage = Storage(self, "Storage", names=names, processed_expiry_days=config.processed_expiry_days)
        self.work_queue = WorkQueue(self, "WorkQueue", names=names)
        self.storage.notify_uploads(self.work_queue.queue)
        self.images = ImagesTable(self, "Images", names=names)
        self.topic_key = TopicKey(self, "TopicKey", alias=f"alias/{names.prefix}-topics")
        self.image_events = ImageEvents(self, "ImageEvents", names=names, master_key=self.topic_key.key)
        self.auth = Auth(self, "Auth", names=names)

        install = not config.skip_bundling
        worker_code, api_code, metrics_code = (
            python_code(BUNDLES[name], architecture=config.architecture, install_dependencies=install)
            for name in ("worker", "api", "metrics")
        )

        self.worker = Worker(
            self,
            "Worker",
            names=names,
            code=worker_code,
            architecture=config.architecture,
            queue=self.work_queue.queue,
            upload_bucket=self.storage.upload_bucket,
            processed_bucket=self.storage.processed_bucket,
            table=self.images.table,
            topic=self.image_events.topic,
            topic_key=self.topic_key,
            batch_size=batch_size.value_as_number,
            max_concurrency=max_concurrency.value_as_number,
            memory_mb=config.worker_memory_mb,
            labels=config.labels,
            labels_min_confidence=config.labels_min_confidence,
        )
        # Before the API: the API and the upload bucket allow the page's origin (CORS); its files come last.
        self.web = WebPage(self, "Web", access_logs_bucket=self.storage.access_logs_bucket)
        self.web.allow_uploads(self.storage.upload_bucket)
        self.api = Api(
            self,
            "Api",
            names=names,
            code=api_code,
            architecture=config.architecture,
            jwt_issuer=self.auth.issuer,
            jwt_audience=self.auth.client.user_pool_client_id,
            upload_bucket=self.storage.upload_bucket,
            processed_bucket=self.storage.processed_bucket,
            table=self.images.table,
            topic=self.image_events.topic,
            throttle_rate_limit=throttle_rate.value_as_number,
            throttle_burst_limit=throttle_burst.value_as_number,
            browser_origins=[self.web.origin],
        )
        self.web.publish(
            PageConfig(
                api_url=self.api.url,
                cognito_endpoint=cognito_endpoint(cdk.Aws.REGION),
                user_pool_client_id=self.auth.client.user_pool_client_id,
                region=cdk.Aws.REGION,
            ),
            handler_name=f"{names.prefix}-web-deploy",
        )
        self.capacity = CapacityCounters(
            self,
            "Capacity",
            names=names,
            code=metrics_code,
            architecture=config.architecture,
            upload_bucket=self.storage.upload_bucket,
            processed_bucket=self.storage.processed_bucket,
        )
        self.inventory = InventoryQueries(
            self,
            "Inventory",
            names=names,
            inventory_bucket=self.storage.inventory_bucket,
            source_buckets=[names.upload_bucket, names.processed_bucket],
        )
        self.bucket_metrics = BucketMetrics(
            self,
            "BucketMetrics",
            function_name=s3_metrics.function_name(names.prefix),
            code=metrics_code,
            architecture=config.architecture,
            upload_bucket=self.storage.upload_bucket,
            processed_bucket=self.storage.processed_bucket,
            inventory=self.inventory,
            capacity=self.capacity,
            rate_minutes=config.metrics_rate_minutes,
        )
        self.cdn = ThumbnailCdn(self, "Cdn", processed_bucket=self.storage.processed_bucket)
        self.alerts = OpsAlerts(
            self,
            "Alerts",
            topic_name=f"{names.prefix}-ops-alarms",
            email=alarm_email.value_as_string,
            master_key=self.topic_key.key,
        )
        self.monitoring = Monitoring(
            self,
            "Monitoring",
            config=config,
            alarm_topic=self.alerts.topic,
            worker=self.worker.function,
            presign=self.api.presign_function,
            read_api=self.api.read_function,
            metrics_function=self.bucket_metrics.function,
            capacity=self.capacity,
            queue=self.work_queue.queue,
            dead_letter_queue=self.work_queue.dead_letter_queue,
            table=self.images.table,
            image_events=self.image_events.topic,
            http_api=self.api.http_api,
            api_stage=STAGE_NAME,
            upload_bucket_name=self.storage.upload_bucket.bucket_name,
            processed_bucket_name=self.storage.processed_bucket.bucket_name,
        )

        # `imgops loadtest run --target aws` reads these keys (pipeline.resources.StackOutputs); `key` pins the
        # output name even if an output ever moves into a nested construct, where CDK would hash its id.
        for output_id, value, description in (
            (StackOutputs.API_URL, self.api.url, "Base URL of the HTTP API"),
            (StackOutputs.TOPIC_ARN, self.image_events.topic.topic_arn, "Image status notifications (SNS)"),
            (StackOutputs.USER_POOL_ID, self.auth.user_pool.user_pool_id, "Cognito user pool"),
            (StackOutputs.USER_POOL_CLIENT_ID, self.auth.client.user_pool_client_id, "App client (JWT audience)"),
            (StackOutputs.WORKER_FUNCTION, self.worker.function.function_name, "Thumbnail worker Lambda"),
            (StackOutputs.UPLOAD_BUCKET, self.storage.upload_bucket.bucket_name, "Originals (presigned PUTs)"),
            (StackOutputs.PROCESSED_BUCKET, self.storage.processed_bucket.bucket_name, "Thumbnails"),
            (StackOutputs.WORK_QUEUE_URL, self.work_queue.queue.queue_url, "Upload events for the worker"),
            (StackOutputs.DLQ_URL, self.work_queue.dead_letter_queue.queue_url, "Uploads that failed every retry"),
            (StackOutputs.IMAGES_TABLE, self.images.table.table_name, "One item per image"),
            ("ThumbnailCdnDomain", self.cdn.domain_name, "CloudFront domain for processed/…"),
            ("AlarmTopicArn", self.alerts.topic.topic_arn, "Ops alarm topic"),
            (WEB_PAGE_OUTPUT, self.web.url, "The upload page (CloudFront)"),
        ):
            cdk.CfnOutput(self, output_id, value=value, description=description, key=output_id)
