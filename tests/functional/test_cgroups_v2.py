"""cgroup v2 detection against a REAL cgroup2 hierarchy: mounted on a temporary folder where the kernel lets this
user mount one (root here), else the one already mounted (e.g. /sys/fs/cgroup/unified); skipped where neither.

On this project's machines the kernel mounts cgroup2, but memory and cpu are bound to cgroup v1, so the v2 root
offers neither (its cgroup.controllers lists only hugetlb): detection must say v2 cannot cap memory, and why.
The file writes and the OOM count are then tested on fixture trees (tests/unit/test_cgroups_v2.py). Where a real
v2 root does offer memory, the cap is tested for real: a child that allocates past it is OOM-killed and
memory.events counts it."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from localaws.cgroups import Cgroup, detect

MOUNT = shutil.which("mount")
UMOUNT = shutil.which("umount") or "/bin/umount"
SH = shutil.which("sh") or "/bin/sh"


def _mounted_cgroup2() -> Path | None:
    with contextlib.suppress(OSError):
        for line in Path("/proc/mounts").read_text().splitlines():
            fields = line.split()
            if len(fields) > 2 and fields[2] == "cgroup2":
                return Path(fields[1])
    return None


@pytest.fixture
def cgroup2(tmp_path: Path) -> Iterator[Path]:
    """A real cgroup2 hierarchy: our own mount if allowed, else the system's."""
    folder = tmp_path / "cgroup2"
    folder.mkdir()
    mounted = (
        os.geteuid() == 0
        and MOUNT is not None
        and subprocess.run([MOUNT, "-t", "cgroup2", "none", str(folder)], capture_output=True, check=False).returncode
        == 0
    )
    if mounted:
        try:
            yield folder
        finally:
            subprocess.run([UMOUNT, str(folder)], capture_output=True, check=False)
        return
    existing = _mounted_cgroup2()
    if existing is None:
        pytest.skip("no cgroup2 hierarchy: the kernel would not mount one here and none is mounted")
    yield existing


def test_detection_on_a_real_cgroup2_hierarchy_says_what_it_can_cap(cgroup2: Path) -> None:
    offered = set((cgroup2 / "cgroup.controllers").read_text().split())
    support = detect(cgroup2)  # no memory/ or cpu/ folder of v1 there: only v2 can be picked

    if "memory" not in offered:
        assert support.version is None
        assert f"the memory controller is not offered at {cgroup2}" in support.reason
        assert Cgroup.create("v2-real", memory_mb=128, root=cgroup2) is None
        assert not [child for child in cgroup2.iterdir() if child.name.startswith("imgops-")]  # nothing left
        return
    if not os.access(cgroup2, os.W_OK):
        assert support.version is None
        assert "not writable" in support.reason
        return
    assert support.version == 2
    assert support.memory == cgroup2
    assert (support.cpu == cgroup2) == ("cpu" in offered)


def test_a_real_v2_memory_cap_kills_and_is_counted(cgroup2: Path) -> None:
    offered = (cgroup2 / "cgroup.controllers").read_text().split()
    support = detect(cgroup2)
    if support.version != 2:
        pytest.skip(
            f"this cgroup2 hierarchy cannot cap memory (cgroup.controllers: {' '.join(offered) or 'none'}; "
            f"{support.reason}): the v2 writes are tested on fixture trees instead"
        )
    group = Cgroup.create("v2-real", memory_mb=64, root=cgroup2)
    assert group is not None
    assert group.memory is not None
    try:
        assert (group.memory / "memory.max").read_text().strip() == str(64 * 1024 * 1024)
        allocate = "b = bytearray(256 * 1024 * 1024); b[::4096] = b'x' * len(b[::4096])"
        join = f'echo $$ > {group.procs_files()[0]} && exec {sys.executable} -c "{allocate}"'
        died = subprocess.run([SH, "-c", join], capture_output=True, check=False, timeout=60)
        assert died.returncode != 0
        assert group.oom_killed()
    finally:
        group.remove()
    assert not group.memory.exists()
