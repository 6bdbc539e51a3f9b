"""Lambda's resource model on this machine: a memory cap and a CPU share per execution environment (cgroups).

Lambda gives a function `memory` MB and a CPU share that grows linearly with it: 1,769 MB is one vCPU-second
per second (../shared/FACTS.md). A cgroup reproduces both, on whichever hierarchy this process may use:

- cgroup v1 (this project's machines): `memory.limit_in_bytes` (swap capped too: Lambda has none) in the memory
  hierarchy and `cpu.cfs_quota_us` in the cpu one; OOM kills counted in `memory.oom_control`.
- else cgroup v2, the unified hierarchy (`/sys/fs/cgroup` itself, or `/sys/fs/cgroup/unified` on a hybrid
  system), or the root of a subtree delegated to this user: one child with `memory.max`, `memory.swap.max` = 0
  and `cpu.max` = "<quota> <period>"; OOM kills counted in `memory.events` (`oom_kill`). The parent must offer
  the controllers (`cgroup.controllers`), let them be enabled for children (`cgroup.subtree_control`) and, unless
  it is the hierarchy's root, hold no process of its own (v2's no-internal-process rule).

`IMGOPS_CGROUP_ROOT` (default `/sys/fs/cgroup`) says where to look, so a fixture tree laid out the same way (or a
delegated subtree's folder) can stand in. `detect` says which hierarchy is usable and, where none is, why.
Where neither is usable `Cgroup.create` returns None and callers run uncapped, saying so. A non-root user's
`systemd-run --user --scope -p MemoryMax=…` is not used: point `IMGOPS_CGROUP_ROOT` at a delegated subtree instead.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

ROOT_ENV = "IMGOPS_CGROUP_ROOT"
DEFAULT_ROOT = Path("/sys/fs/cgroup")
# Lambda: 1,769 MB of memory = one vCPU-second per second.
MB_PER_VCPU = 1769
CFS_PERIOD_US = 100_000
PREFIX = "imgops-"


def cgroup_root() -> Path:
    """Where the cgroup hierarchies are looked for: `IMGOPS_CGROUP_ROOT`, else /sys/fs/cgroup."""
    return Path(os.environ.get(ROOT_ENV) or DEFAULT_ROOT)


@dataclass(frozen=True)
class Support:
    """Where capped cgroups can be created here (the parent folders), and why not where they cannot."""

    version: int | None  # 1, 2, or None: no memory cap here
    memory: Path | None  # the parent a memory-capped child is created in
    cpu: Path | None  # the parent a CPU-quota child is created in (v2: the same folder as `memory`)
    reason: str = ""  # why memory (or CPU) caps are unavailable; empty when both are


def _v1(root: Path) -> tuple[Path | None, Path | None, str]:
    """cgroup v1's memory and cpu hierarchies under `root`, where this process may create children."""
    memory, cpu = root / "memory", root / "cpu"
    usable_memory = memory if (memory / "memory.limit_in_bytes").is_file() and os.access(memory, os.W_OK) else None
    usable_cpu = cpu if (cpu / "cpu.cfs_quota_us").is_file() and os.access(cpu, os.W_OK) else None
    why = "" if usable_memory else f"no writable memory controller at {memory}"
    if usable_memory and not usable_cpu:
        why = f"no writable cpu controller at {cpu}"
    return usable_memory, usable_cpu, why


def _words(path: Path) -> set[str]:
    try:
        return set(path.read_text().split())
    except OSError:
        return set()


def unified_hierarchy(root: Path) -> Path | None:
    """The cgroup v2 folder under `root`: `root` itself (v2 only, or a delegated subtree) or `root/unified`."""
    for folder in (root, root / "unified"):
        if (folder / "cgroup.controllers").is_file():
            return folder
    return None


def _v2_usable(folder: Path, controller: str) -> str:
    """Why a child of `folder` could not get `controller`; empty when it can."""
    if controller not in _words(folder / "cgroup.controllers"):
        return f"the {controller} controller is not offered at {folder} (bound to cgroup v1, or not delegated)"
    if not os.access(folder, os.W_OK):
        return f"{folder} is not writable by this user (not a delegated subtree)"
    if controller in _words(folder / "cgroup.subtree_control"):
        return ""
    if not os.access(folder / "cgroup.subtree_control", os.W_OK):
        return f"{folder}/cgroup.subtree_control is not writable: {controller} cannot be enabled for children"
    # Only the root may both hold processes and enable domain controllers for its children (the root alone
    # has no cgroup.type).
    if (folder / "cgroup.type").exists() and _words(folder / "cgroup.procs"):
        return f"{folder} holds processes of its own: {controller} cannot be enabled for its children"
    return ""


def _v2(root: Path) -> tuple[Path | None, Path | None, str]:
    folder = unified_hierarchy(root)
    if folder is None:
        return None, None, f"no cgroup2 hierarchy at {root} or {root / 'unified'}"
    memory_why = _v2_usable(folder, "memory")
    if memory_why:
        return None, None, memory_why
    cpu_why = _v2_usable(folder, "cpu")
    return folder, (None if cpu_why else folder), cpu_why


def detect(root: Path | None = None) -> Support:
    """Which hierarchy caps memory here: cgroup v1 where its memory controller is writable, else v2, else none."""
    root = root or cgroup_root()
    memory, cpu, why_v1 = _v1(root)
    if memory is not None:
        return Support(1, memory, cpu, why_v1)
    memory, cpu, why_v2 = _v2(root)
    if memory is not None:
        return Support(2, memory, cpu, why_v2)
    return Support(None, None, None, f"cgroup v1: {why_v1}; cgroup v2: {why_v2}")


def memory_writable(root: Path | None = None) -> bool:
    """Whether a memory cap can be created here (cgroup v1 or v2)."""
    return detect(root).memory is not None


def cpu_writable(root: Path | None = None) -> bool:
    """Whether a CPU quota can be applied here, in the same hierarchy as the memory cap."""
    return detect(root).cpu is not None


def cgroup_parents(root: Path | None = None) -> list[Path]:
    """Every folder `Cgroup.create` may create its children in (to find ones a killed process left behind)."""
    root = root or cgroup_root()
    candidates = [root / "memory", root / "cpu", unified_hierarchy(root)]
    return list(dict.fromkeys(folder for folder in candidates if folder is not None and folder.is_dir()))


def cpu_quota_us(memory_mb: int, period_us: int = CFS_PERIOD_US) -> int:
    """The CFS quota that gives `memory_mb` its Lambda CPU share (at least 1 ms per period: the kernel's floor)."""
    return max(1000, round(period_us * memory_mb / MB_PER_VCPU))


def _enable(folder: Path, controllers: list[str]) -> None:
    """Enable `controllers` for the children of a v2 `folder`, in one write (those already enabled are left)."""
    missing = [name for name in controllers if name not in _words(folder / "cgroup.subtree_control")]
    if missing:
        (folder / "cgroup.subtree_control").write_text(" ".join(f"+{name}" for name in missing))


def _write_swap_off(path: Path) -> None:
    """No swap, as on Lambda; a kernel without swap accounting has no such file (and charges no swap to it)."""
    try:
        path.write_text("0")
    except OSError:
        if path.exists():
            raise


@dataclass
class Cgroup:
    """A memory cgroup (and optionally a CPU cgroup) that processes join by pid. On cgroup v2 both are one
    folder: `memory` and `cpu` are then the same path (joining it twice is harmless)."""

    memory: Path | None
    cpu: Path | None
    version: int = 1

    @classmethod
    def create(cls, name: str, *, memory_mb: int, cpu_share: bool = False, root: Path | None = None) -> Cgroup | None:
        """Capped at `memory_mb` (and its CPU share when `cpu_share`); None when no hierarchy can cap memory."""
        support = detect(root)
        if support.memory is None:
            return None
        suffix = f"{name}-{uuid.uuid4().hex[:8]}"
        if support.version == 2:
            return cls._create_v2(support, f"{PREFIX}{suffix}", memory_mb, cpu_share)
        memory = support.memory / f"{PREFIX}{suffix}"
        cpu: Path | None = None
        try:
            memory.mkdir()
            limit = str(memory_mb * 1024 * 1024)
            (memory / "memory.limit_in_bytes").write_text(limit)
            swap = memory / "memory.memsw.limit_in_bytes"
            if swap.exists():  # Lambda has no swap: neither may the environment
                swap.write_text(limit)
            if cpu_share and support.cpu is not None:
                cpu = support.cpu / f"{PREFIX}{suffix}"
                cpu.mkdir()
                (cpu / "cpu.cfs_period_us").write_text(str(CFS_PERIOD_US))
                (cpu / "cpu.cfs_quota_us").write_text(str(cpu_quota_us(memory_mb)))
        except OSError:
            group = cls(memory if memory.exists() else None, cpu)
            group.remove()
            return None
        return cls(memory, cpu)

    @classmethod
    def _create_v2(cls, support: Support, name: str, memory_mb: int, cpu_share: bool) -> Cgroup | None:
        assert support.memory is not None
        folder = support.memory / name
        with_cpu = cpu_share and support.cpu is not None
        try:
            _enable(support.memory, ["memory", "cpu"] if with_cpu else ["memory"])
            folder.mkdir()
            (folder / "memory.max").write_text(str(memory_mb * 1024 * 1024))
            _write_swap_off(folder / "memory.swap.max")
            if with_cpu:
                (folder / "cpu.max").write_text(f"{cpu_quota_us(memory_mb)} {CFS_PERIOD_US}")
        except OSError:
            cls(folder if folder.exists() else None, None, 2).remove()
            return None
        return cls(folder, folder if with_cpu else None, 2)

    def _folders(self) -> list[Path]:
        return list(dict.fromkeys(folder for folder in (self.memory, self.cpu) if folder is not None))

    def procs_files(self) -> list[str]:
        """The `cgroup.procs` files a process writes its pid into to join (once each)."""
        return [str(folder / "cgroup.procs") for folder in self._folders()]

    def join(self, pid: int | None = None) -> None:
        """Move `pid` (default: this process) into the group(s); memory it allocates from now on is capped."""
        for procs in self.procs_files():
            Path(procs).write_text(str(pid or os.getpid()))

    def oom_killed(self) -> bool:
        """Whether the kernel killed a process of this group for exceeding the cap: the `oom_kill` count of
        memory.oom_control (v1) or memory.events (v2)."""
        if self.memory is None:
            return False
        events = "memory.events" if self.version == 2 else "memory.oom_control"
        try:
            lines = (self.memory / events).read_text().splitlines()
        except OSError:
            return False
        counters = dict(line.split(" ", 1) for line in lines if " " in line)
        try:
            return int(counters.get("oom_kill", "0")) > 0
        except ValueError:
            return False

    def remove(self) -> None:
        """Best effort: a group still holding a process is removed by the kernel once it is empty."""
        for folder in self._folders():
            with contextlib.suppress(OSError):
                folder.rmdir()
