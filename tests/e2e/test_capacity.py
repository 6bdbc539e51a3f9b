"""The capacity counters on the local stack as users run it: uploads through the real API (the worker writing
thumbnails), then churn on both buckets (creates, overwrites, deletes, lifecycle expirations), with S3's events
duplicated and reordered on their way. CustomS3 must equal the listings, per bucket and per owner, within 2 minutes;
the reconciler must then find no drift; `imgops capacity top` must name the runaway uploader."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from imgops.cli import app
from loadtest.capacity_churn import ChurnPlan, churn, runaway_owner, wait_until_published
from loadtest.corpus import build_corpus, parse_mix, upload_plan
from loadtest.harness import LoadTest, RunOptions
from loadtest.targets import LoadTarget
from localaws.context import LocalLambdaContext
from localaws.object_events import Mischief
from localaws.stack import LocalStack, LocalStackOptions, scheduled_event
from monitoring import reconcile, s3_metrics
from monitoring.capacity_handlers import store_from_env
from monitoring.s3_metrics import SAFETY_MARGIN_MS
from monitoring.target import STATE_DIR_ENV, for_local
from tests.e2e.conftest import wait_until_drained

pytestmark = pytest.mark.slow

# The bound: every capacity graph has data within 2 minutes of a change.
PUBLISHED_WITHIN_SECONDS = 120


def test_custom_s3_follows_churn_within_two_minutes_and_the_reconciler_finds_no_drift(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(STATE_DIR_ENV, str(tmp_path))
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    options = LocalStackOptions(
        workers=2,
        prefix="capchurn",
        object_events=Mischief.parse("duplicate=0.2,reorder=0.3"),  # docs/capacity.md's example
        bucket_metrics_every_seconds=3600,  # the reconciler runs at start, then when this test runs it
    )
    with LocalStack(options) as stack:
        info = stack.start()
        aws = for_local(info)
        s3, sqs, cloudwatch = aws.client("s3"), aws.client("sqs"), aws.client("cloudwatch")
        target = LoadTarget(aws, info.demo_username, info.demo_password)
        mix = parse_mix("jpeg1080=100")
        files = build_corpus(mix=mix, count=2, seed=3, cache_dir=tmp_path / "corpus")
        uploads = LoadTest(target, upload_plan(files, mix, 6, 1), RunOptions(concurrency=3)).run()
        assert {r.status for r in uploads.records} == {"DONE"}, [(r.status, r.reason) for r in uploads.records]

        plan = ChurnPlan(objects=600, owners=6)
        buckets = [info.upload_bucket, info.processed_bucket]
        churn(s3, upload_bucket=buckets[0], processed_bucket=buckets[1], plan=plan, expire=stack.expire)
        wait_until_drained(sqs, info.queue_url)  # the worker reads what landed in user-uploads/ (and refuses it)
        changed = datetime.now(UTC)

        converged = wait_until_published(cloudwatch, s3, buckets, changed, timeout=PUBLISHED_WITHIN_SECONDS)
        print(f"\nCustomS3 equal to the listings {converged:.0f} s after the churn")

        context = LocalLambdaContext.create(s3_metrics.function_name(info.prefix), timeout_seconds=290, memory_mb=256)
        report = reconcile.handler(scheduled_event(info.region, f"{info.prefix}-bucket-metrics"), context)
        assert [(b["source"], b["drift_objects"], b["drift_bytes"]) for b in report["buckets"]] == [
            ("listing", 0, 0),
            ("listing", 0, 0),
        ]

        # The same check from the inventory report S3 would deliver, as for a bucket too large to list.
        written = CliRunner().invoke(app, ["local", "inventory"])
        assert written.exit_code == 0, written.output
        from_reports = reconcile.reconcile(
            buckets,
            s3=s3,
            store=store_from_env(),
            cloudwatch=cloudwatch,
            remaining_ms=lambda: SAFETY_MARGIN_MS,  # no time to list: the inventory report it is
            inventory=reconcile.inventory_from_env(),
        )
        assert [(b["source"], b["drift_objects"], b["drift_bytes"]) for b in from_reports["buckets"]] == [
            ("inventory", 0, 0),
            ("inventory", 0, 0),
        ]

        result = CliRunner().invoke(app, ["capacity", "top", "--json"])
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["owners"][0]["owner"] == runaway_owner(plan)
