"""The local execution environment obeys the function configuration: memory cap, timeout, environment."""

from __future__ import annotations

import pytest

from localaws.cgroups import memory_writable
from localaws.environment import ExecutionEnvironment, FunctionConfig

HANDLER = "tests.lambda_handlers.handler"


def environment(
    memory_mb: int = 256, timeout_seconds: int = 5, **variables: str
) -> tuple[ExecutionEnvironment, list[str]]:
    lines: list[str] = []
    function = FunctionConfig("env-test", HANDLER, memory_mb, timeout_seconds, variables)
    return ExecutionEnvironment(function, base_environment={"PATH": "/usr/bin:/bin"}, on_output=lines.append), lines


def test_an_invocation_sees_the_functions_settings_and_its_output_comes_back() -> None:
    env, lines = environment(memory_mb=512, IMGOPS_TEST_SETTING="from the function")
    try:
        first = env.invoke({"action": "ok"}, "request-1")
        second = env.invoke({"action": "ok"}, "request-2")
    finally:
        env.stop()

    assert first.status == second.status == "success"
    assert first.result["memory_limit_mb"] == 512
    assert first.result["setting"] == "from the function"
    assert 4000 < first.result["remaining_ms"] <= 5000
    assert first.result["pid"] == second.result["pid"]  # a warm environment serves the next invocation
    assert "invoked env-test request-1" in lines


def test_a_handler_error_is_reported_and_the_environment_lives_on() -> None:
    env, lines = environment()
    try:
        failed = env.invoke({"action": "raise"}, "request-1")
        after = env.invoke({"action": "ok"}, "request-2")
    finally:
        env.stop()

    assert (failed.status, failed.error_type) == ("error", "ValueError")
    assert "boom" in failed.error_message
    assert any("Traceback" in line for line in lines)  # the stack trace goes to the function's log
    assert after.status == "success"


def test_the_timeout_stops_the_invocation_and_the_next_one_starts_a_fresh_environment() -> None:
    env, _ = environment(timeout_seconds=1)
    try:
        slow = env.invoke({"action": "sleep", "seconds": 30}, "request-1")
        pid_after = env.invoke({"action": "ok"}, "request-2")
    finally:
        env.stop()

    assert (slow.status, slow.duration_ms) == ("timeout", 1000.0)
    assert pid_after.status == "success"


@pytest.mark.skipif(not memory_writable(), reason="cgroup v1 memory controller not writable here")
def test_memory_beyond_the_functions_size_is_an_out_of_memory_kill() -> None:
    env, _ = environment(memory_mb=128)
    try:
        fits = env.invoke({"action": "allocate", "mb": 40}, "request-1")
        too_big = env.invoke({"action": "allocate", "mb": 300}, "request-2")
    finally:
        env.stop()

    assert fits.status == "success"
    assert 40 < fits.max_memory_mb < 128
    assert (too_big.status, too_big.error_type, too_big.max_memory_mb) == ("oom", "Runtime.OutOfMemory", 128)


@pytest.mark.skipif(not memory_writable(), reason="cgroup v1 controllers not writable here")
def test_the_cpu_share_option_gives_the_environment_lambdas_quota() -> None:
    from localaws.cgroups import CFS_PERIOD_US, cpu_quota_us

    lines: list[str] = []
    function = FunctionConfig("cpu-test", HANDLER, 512, 5)
    env = ExecutionEnvironment(
        function, base_environment={"PATH": "/usr/bin:/bin"}, on_output=lines.append, cpu_share=True
    )
    try:
        outcome = env.invoke({"action": "ok"}, "request-1")
        assert env.cgroup is not None
        assert env.cgroup.cpu is not None
        quota = int((env.cgroup.cpu / "cpu.cfs_quota_us").read_text())
        members = (env.cgroup.cpu / "cgroup.procs").read_text().split()
    finally:
        env.stop()

    assert outcome.status == "success"
    assert quota == cpu_quota_us(512) == round(CFS_PERIOD_US * 512 / 1769)  # 512 MB: 29 % of one vCPU
    assert str(outcome.result["pid"]) in members
