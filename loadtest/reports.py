"""Lambda REPORT lines: one parser for the local runtime's and CloudWatch Logs' output."""

from __future__ import annotations

import re
from dataclasses import dataclass

_STATUS = re.compile(r"\tStatus: (\w+)")
_ERROR_TYPE = re.compile(r"\tError Type: ([\w.]+)")
_FIELD = re.compile(r"(Duration|Billed Duration|Memory Size|Max Memory Used|Init Duration): ([\d.]+) (ms|MB)")


@dataclass(frozen=True)
class Report:
    request_id: str
    duration_ms: float
    billed_duration_ms: float
    memory_size_mb: int
    max_memory_used_mb: int
    init_duration_ms: float | None
    status: str = "success"  # or "timeout", "error" (Lambda's `Status:` field on failed invocations)
    error_type: str = ""


def parse_report(line: str) -> Report | None:
    """None for anything that is not a complete REPORT line."""
    if not line.startswith("REPORT RequestId: "):
        return None
    request_id = line[len("REPORT RequestId: ") :].split("\t", 1)[0].split()[0]
    values = {name: float(value) for name, value, _ in _FIELD.findall(line)}
    try:
        return Report(
            request_id=request_id,
            duration_ms=values["Duration"],
            billed_duration_ms=values["Billed Duration"],
            memory_size_mb=int(values["Memory Size"]),
            max_memory_used_mb=int(values["Max Memory Used"]),
            init_duration_ms=values.get("Init Duration"),
            status=status.group(1) if (status := _STATUS.search(line)) else "success",
            error_type=error.group(1) if (error := _ERROR_TYPE.search(line)) else "",
        )
    except KeyError:
        return None


def parse_reports(lines: list[str]) -> list[Report]:
    return [report for line in lines if (report := parse_report(line.strip())) is not None]
