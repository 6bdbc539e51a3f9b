"""The drills by alarm, with what each breaks: read by the CLI at start-up, so nothing heavy is imported here."""

from __future__ import annotations

# Alarm slug -> the cause its drill creates; drills.catalogue runs them (one drill per alarm).
CAUSES: dict[str, str] = {
    "dlq-not-empty": "DynamoDB throttles every retry: uploads park in the DLQ",
    "queue-oldest-message-age": "the worker's trigger disabled: nobody polls",
    "worker-fault-rate": "a bad deploy: a setting the worker refuses",
    "worker-throttles": "reserved concurrency 0 on the worker",
    "worker-duration-near-timeout": "a slow S3: invocations near the timeout",
    "api-5xx-rate": "IAM denies the read API's DynamoDB reads",
    "upload-bucket-size": "a runaway client fills the upload bucket",
    "capacity-event-lag": "the capacity counter's trigger disabled",
    "capacity-drift-uploads": "object events parked in the capacity DLQ",
    "capacity-drift-processed": "object events parked in the capacity DLQ",
    "s3-metrics-not-reporting-uploads": "IAM denies the capacity publisher",
    "s3-metrics-not-reporting-processed": "IAM denies the capacity publisher",
    "pipeline-unhealthy": "DynamoDB denied: two high alarms, one page",
}
# Names on-call already knows.
ALIASES: dict[str, str] = {"dlq": "dlq-not-empty"}
