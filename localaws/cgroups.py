"""Lambda's resource model on this machine: a memory cap and a CPU share per execution environment (cgroup v1).

Lambda gives a function `memory` MB and a CPU share that grows linearly with it: 1,769 MB is one vCPU-second
per second (../shared/FACTS.md). A cgroup with `memory.limit_in_bytes` (swap capped too: Lambda has none)
reproduces the first; `cpu.cfs_quota_us` the second. Where the cgroup controllers are not writable (not root,
cgroup v2 only) `Cgroup.create` returns None and callers run uncapped, saying so.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

MEMORY_ROOT = Path("/sys/fs/cgroup/memory")
CPU_ROOT = Path("/sys/fs/cgroup/cpu")
# Lambda: 1,769 MB of memory = one vCPU-second per second.
MB_PER_VCPU = 1769
CFS_PERIOD_US = 100_000


def memory_writable() -> bool:
    return os.access(MEMORY_ROOT, os.W_OK)


def cpu_writable() -> bool:
    return os.access(CPU_ROOT, os.W_OK)


def cpu_quota_us(memory_mb: int, period_us: int = CFS_PERIOD_US) -> int:
    """The CFS quota that gives `memory_mb` its Lambda CPU share (at least 1 ms per period: the kernel's floor)."""
    return max(1000, round(period_us * memory_mb / MB_PER_VCPU))


@dataclass
class Cgroup:
    """A memory cgroup (and optionally a CPU cgroup) that processes join by pid."""

    memory: Path | None
    cpu: Path | None

    @classmethod
    def create(cls, name: str, *, memory_mb: int, cpu_share: bool = False) -> Cgroup | None:
        """Capped at `memory_mb` (and its CPU share when `cpu_share`); None when the controllers are unusable."""
        if not memory_writable():
            return None
        suffix = f"{name}-{uuid.uuid4().hex[:8]}"
        memory = MEMORY_ROOT / f"imgops-{suffix}"
        cpu: Path | None = None
        try:
            memory.mkdir()
            limit = str(memory_mb * 1024 * 1024)
            (memory / "memory.limit_in_bytes").write_text(limit)
            swap = memory / "memory.memsw.limit_in_bytes"
            if swap.exists():  # Lambda has no swap: neither may the environment
                swap.write_text(limit)
            if cpu_share and cpu_writable():
                cpu = CPU_ROOT / f"imgops-{suffix}"
                cpu.mkdir()
                (cpu / "cpu.cfs_period_us").write_text(str(CFS_PERIOD_US))
                (cpu / "cpu.cfs_quota_us").write_text(str(cpu_quota_us(memory_mb)))
        except OSError:
            group = cls(memory if memory.exists() else None, cpu)
            group.remove()
            return None
        return cls(memory, cpu)

    def join(self, pid: int | None = None) -> None:
        """Move `pid` (default: this process) into the group(s); memory it allocates from now on is capped."""
        for folder in (self.memory, self.cpu):
            if folder is not None:
                (folder / "cgroup.procs").write_text(str(pid or os.getpid()))

    def oom_killed(self) -> bool:
        """Whether the kernel killed a process of this group for exceeding the cap (memory.oom_control)."""
        if self.memory is None:
            return False
        try:
            lines = (self.memory / "memory.oom_control").read_text().splitlines()
        except OSError:
            return False
        counters = dict(line.split(" ", 1) for line in lines if " " in line)
        return int(counters.get("oom_kill", "0")) > 0

    def remove(self) -> None:
        """Best effort: a group still holding a process is removed by the kernel once it is empty."""
        for folder in (self.memory, self.cpu):
            if folder is not None:
                with contextlib.suppress(OSError):
                    folder.rmdir()
