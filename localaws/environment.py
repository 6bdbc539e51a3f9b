"""A local Lambda execution environment: one process per environment, configured as the function is.

Lambda runs a function in execution environments: a process that imports the handler once (init) and then
serves invocations one at a time, inside the function's memory (and CPU share), stopped at the function's
timeout. This module does the same on this machine: `ExecutionEnvironment` starts `python -m
localaws.environment` with the function's environment variables, in a cgroup capped at its memory size
(`localaws.cgroups`), talks to it over a pipe (one JSON line per invocation), ends an invocation that
outlives the timeout by killing the process — `Task timed out after N seconds`, as Lambda reports it — and
recognises an out-of-memory kill. Whatever the handler prints comes back line by line to `on_output`
(the runtime sends it to the console and to CloudWatch Logs).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localaws.cgroups import Cgroup, cgroup_parents
from localaws.context import LocalLambdaContext, peak_rss_kb, reset_peak_rss

# Lambda's init phase gets 10 s; a slow local machine gets some slack on top.
INIT_TIMEOUT_SECONDS = 30.0
# How long stop() waits for a SIGKILLed environment to be reaped (a process in uninterruptible sleep takes longer).
REAP_TIMEOUT_SECONDS = 5.0


def cgroup_name(function_name: str, label: str) -> str:
    """The name an environment's cgroup is created with (`Cgroup.create` adds `imgops-` and a random suffix).

    The label says whose environments they are, so the stack that started them can remove the cgroups a killed
    poller could not (see `remove_cgroups`)."""
    return f"{function_name}-{label}" if label else function_name


def labelled_cgroups(label: str) -> list[Path]:
    """The cgroup folders (memory and CPU; v1 or v2) of environments created with `label`."""
    return sorted(folder for root in cgroup_parents() for folder in root.glob(f"imgops-*-{label}-*") if folder.is_dir())


def remove_cgroups(label: str, timeout: float = 2.0) -> list[Path]:
    """SIGKILL whatever is left in the cgroups labelled `label` and remove them; returns those still there after
    `timeout` (a killed process leaves its cgroup once it has been reaped)."""
    deadline = time.monotonic() + timeout
    left = labelled_cgroups(label)
    while left:
        for folder in left:
            for pid in _cgroup_pids(folder):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
                # A zombie still holds its cgroup. An environment whose poller was killed is this process's child
                # once it is the subreaper (become_subreaper): reap it now rather than wait for init to.
                with contextlib.suppress(OSError):
                    os.waitpid(pid, os.WNOHANG)
            with contextlib.suppress(OSError):
                folder.rmdir()
        left = [folder for folder in left if folder.exists()]
        if left and time.monotonic() < deadline:
            time.sleep(0.05)
        else:
            break
    return left


# linux/prctl.h
PR_SET_CHILD_SUBREAPER = 36
PR_GET_CHILD_SUBREAPER = 37


def set_subreaper(on: bool) -> bool | None:
    """Make this process the one its orphaned descendants are reparented to (Linux), instead of init, or stop being
    it. Returns whether it was before; None where that cannot be asked or set (then nothing changed)."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
        was = ctypes.c_int(0)
        if prctl(PR_GET_CHILD_SUBREAPER, ctypes.byref(was), 0, 0, 0) != 0:
            return None
        if prctl(PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0) != 0:
            return None
    except (OSError, AttributeError):
        return None
    return bool(was.value)


def become_subreaper() -> bool:
    """This process as its descendants' subreaper for good: when a stop kills a poller, its execution environment
    becomes this process's child, which remove_cgroups can reap at once (init here reaps only every couple of
    seconds, and until then the zombie keeps its cgroup). False where that cannot be set."""
    return set_subreaper(True) is not None


def _cgroup_pids(folder: Path) -> list[int]:
    try:
        return [int(line) for line in (folder / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return []


@dataclass(frozen=True)
class FunctionConfig:
    """What `lambda get-function-configuration` says, as far as running the function is concerned."""

    name: str
    handler: str
    memory_mb: int
    timeout_seconds: int
    environment: Mapping[str, str] = field(default_factory=dict)
    log_group: str = ""

    @classmethod
    def from_lambda(cls, configuration: Mapping[str, Any]) -> FunctionConfig:
        name = str(configuration["FunctionName"])
        logging = configuration.get("LoggingConfig", {})
        return cls(
            name=name,
            handler=str(configuration["Handler"]),
            memory_mb=int(configuration["MemorySize"]),
            timeout_seconds=int(configuration["Timeout"]),
            environment=dict(configuration.get("Environment", {}).get("Variables", {})),
            log_group=str(logging.get("LogGroup") or f"/aws/lambda/{name}"),
        )


@dataclass(frozen=True)
class Outcome:
    """One invocation as Lambda sees it. `status`: success | error (the handler raised) | timeout | oom | crash."""

    status: str
    duration_ms: float
    max_memory_mb: int
    result: Any = None
    error_type: str = ""
    error_message: str = ""


class ExecutionEnvironment:
    """One environment of `function`; not thread-safe (Lambda runs one invocation per environment at a time)."""

    def __init__(
        self,
        function: FunctionConfig,
        *,
        base_environment: Mapping[str, str],
        on_output: Callable[[str], None],
        cpu_share: bool = False,
        cgroup_label: str = "",
    ) -> None:
        self.function = function
        self._cgroup_label = cgroup_label
        self._base_environment = dict(base_environment)
        self._on_output = on_output
        self._cpu_share = cpu_share
        self._process: subprocess.Popen[bytes] | None = None
        self._commands: Any = None
        self._results: Any = None
        self._reader: threading.Thread | None = None
        self.cgroup: Cgroup | None = None
        self.init_ms: float | None = None  # reported once, on the first invocation (a cold start)
        self.capped = False

    @property
    def pid(self) -> int | None:
        """The environment's process (for reading its CPU time in /proc), while it runs."""
        return self._process.pid if self.alive and self._process is not None else None

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start the process and wait for its init (the handler module imported)."""
        self.cgroup = Cgroup.create(
            cgroup_name(self.function.name, self._cgroup_label),
            memory_mb=self.function.memory_mb,
            cpu_share=self._cpu_share,
        )
        self.capped = self.cgroup is not None
        command_read, command_write = os.pipe()
        result_read, result_write = os.pipe()
        environment = {
            **self._base_environment,
            **self.function.environment,
            "AWS_LAMBDA_FUNCTION_NAME": self.function.name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(self.function.memory_mb),
            "AWS_LAMBDA_LOG_GROUP_NAME": self.function.log_group,
            "PYTHONUNBUFFERED": "1",
        }
        arguments = [
            sys.executable,
            "-m",
            "localaws.environment",
            self.function.handler,
            self.function.name,
            str(command_read),
            str(result_write),
            *self._cgroup_procs(),
        ]
        started = time.perf_counter()
        self._process = subprocess.Popen(  # noqa: S603 - our own module with our own arguments
            arguments,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            pass_fds=(command_read, result_write),
        )
        os.close(command_read)
        os.close(result_write)
        self._commands = os.fdopen(command_write, "w", encoding="utf-8")
        self._results = os.fdopen(result_read, "r", encoding="utf-8")
        self._reader = threading.Thread(target=self._forward_output, name=f"{self.function.name}-output", daemon=True)
        self._reader.start()
        ready = self._read_result(INIT_TIMEOUT_SECONDS)
        if ready is None or "ready" not in ready:
            self.stop()
            raise RuntimeError(f"{self.function.name}: the execution environment failed its init")
        self.init_ms = (time.perf_counter() - started) * 1000

    def invoke(self, event: Mapping[str, Any], request_id: str) -> Outcome:
        """Run one invocation; a timeout, an out-of-memory kill or a crash ends this environment."""
        if not self.alive:
            self.start()
        assert self._process is not None
        command = {
            "event": event,
            "request_id": request_id,
            "timeout_seconds": self.function.timeout_seconds,
            "memory_mb": self.function.memory_mb,
        }
        started = time.perf_counter()
        self._commands.write(json.dumps(command) + "\n")
        self._commands.flush()
        reply = self._read_result(self.function.timeout_seconds)
        duration_ms = (time.perf_counter() - started) * 1000
        if reply is not None:
            max_memory_mb = max(1, round(int(reply.get("max_memory_kb", 0)) / 1024))
            if "error_type" in reply:
                return Outcome("error", duration_ms, max_memory_mb, None, reply["error_type"], reply["error_message"])
            return Outcome("success", duration_ms, max_memory_mb, reply.get("result"))
        # No reply: either the deadline passed (Lambda stops the environment) or the process died (EOF first).
        timed_out = duration_ms >= self.function.timeout_seconds * 1000
        if not timed_out and self._process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(timeout=5)
        oom = self.cgroup is not None and self.cgroup.oom_killed()
        self.stop()
        if timed_out:
            duration_ms = self.function.timeout_seconds * 1000.0
            return Outcome("timeout", duration_ms, self.function.memory_mb, None, "Sandbox.Timedout", "")
        if oom:
            return Outcome("oom", duration_ms, self.function.memory_mb, None, "Runtime.OutOfMemory", "")
        return Outcome("crash", duration_ms, 0, None, "Runtime.ExitError", "the runtime exited")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGKILL)
        if process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(REAP_TIMEOUT_SECONDS)
        for stream in (self._commands, self._results):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        self._commands = self._results = None
        if self._reader is not None:
            self._reader.join(timeout=2)
            self._reader = None
        if self.cgroup is not None:
            self.cgroup.remove()
            self.cgroup = None

    def _cgroup_procs(self) -> list[str]:
        if self.cgroup is None:
            return []
        return self.cgroup.procs_files()

    def _read_result(self, timeout: float) -> dict[str, Any] | None:
        """The next JSON line from the environment, or None on timeout or EOF."""
        assert self._results is not None
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            ready, _, _ = select.select([self._results], [], [], remaining)
            if ready:
                line = self._results.readline()
                if not line:
                    return None
                return dict(json.loads(line))

    def _forward_output(self) -> None:
        process = self._process
        if process is None or process.stdout is None:
            return
        for raw in process.stdout:
            self._on_output(raw.decode("utf-8", "replace").rstrip("\n"))


def _serve(handler_path: str, function_name: str, commands_fd: int, results_fd: int, cgroups: list[str]) -> None:
    """The environment's side: join the cgroup before anything else allocates, init, then serve invocations."""
    for procs in cgroups:
        with open(procs, "w", encoding="ascii") as handle:  # noqa: PTH123 - a cgroup control file
            handle.write(str(os.getpid()))
    from localaws.faults import install_from_environment

    install_from_environment()
    module_name, _, function = handler_path.rpartition(".")
    import importlib

    handler = getattr(importlib.import_module(module_name), function)
    commands = os.fdopen(commands_fd, "r", encoding="utf-8")
    results = os.fdopen(results_fd, "w", encoding="utf-8")
    results.write(json.dumps({"ready": True}) + "\n")
    results.flush()
    for line in commands:
        command = json.loads(line)
        context = LocalLambdaContext.create(
            function_name, timeout_seconds=command["timeout_seconds"], memory_mb=command["memory_mb"]
        )
        context._aws_request_id = command["request_id"]
        reset_peak_rss()
        reply: dict[str, Any]
        try:
            reply = {"result": handler(command["event"], context)}
        except Exception as exc:  # noqa: BLE001 - reported as the invocation's error, as Lambda does
            import traceback

            traceback.print_exc()
            reply = {"error_type": type(exc).__name__, "error_message": (str(exc).splitlines() or [""])[0]}
        sys.stdout.flush()
        sys.stderr.flush()
        reply["max_memory_kb"] = peak_rss_kb()
        results.write(json.dumps(reply, default=str) + "\n")
        results.flush()


if __name__ == "__main__":
    _serve(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5:])
