"""cgroup v2 support and sizing's refusal without caps, against FIXTURE trees (temporary folders laid out like
/sys/fs/cgroup), not the kernel: on this project's machines memory and cpu are bound to cgroup v1, so a real
cgroup2 hierarchy offers neither (tests/functional/test_cgroups_v2.py checks detection on a real mount). The
fixtures check what is written (memory.max, memory.swap.max, cpu.max, cgroup.subtree_control, cgroup.procs),
how OOM kills are read (memory.events), and which hierarchy detection picks; the kernel's enforcement of those
values is tested on v1 by tests/functional/test_sizing_probe.py and test_execution_environment.py."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, cast

import pytest

from loadtest.corpus import CorpusImage, SampleImage
from localaws.cgroups import (
    CFS_PERIOD_US,
    ROOT_ENV,
    Cgroup,
    cgroup_parents,
    cpu_quota_us,
    cpu_writable,
    detect,
    memory_writable,
)
from sizing.memory import NO_CAPS, LocalSizing, SizingError, SizingOptions, WorkerSpec, worst_case_floor

V2_CONTROLLERS = "cpuset cpu io memory hugetlb pids"


def v2_tree(
    folder: Path, *, controllers: str = V2_CONTROLLERS, subtree: str = "", delegated: bool = False, procs: str = ""
) -> Path:
    """A cgroup2 folder as the kernel shows it: the root (no cgroup.type) or a delegated subtree's root."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cgroup.controllers").write_text(controllers + "\n")
    (folder / "cgroup.subtree_control").write_text(subtree + "\n")
    (folder / "cgroup.procs").write_text(procs)
    if delegated:
        (folder / "cgroup.type").write_text("domain\n")
    return folder


def v1_tree(root: Path) -> Path:
    """cgroup v1's memory and cpu hierarchies, as on this machine."""
    (root / "memory").mkdir(parents=True)
    (root / "memory" / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    (root / "memory" / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 0\n")
    (root / "cpu").mkdir()
    (root / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    return root


@pytest.fixture
def deny_v1(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """v1's folders present but not writable by this user (root may write anything, so os.access is told so)."""
    real = os.access

    def access(path: Any, mode: int, **kwargs: Any) -> bool:
        if Path(path).parent == tmp_path and Path(path).name in {"memory", "cpu"}:
            return False
        return real(path, mode, **kwargs)

    monkeypatch.setattr(os, "access", access)  # localaws.cgroups calls os.access


def test_v2_writes_the_memory_cap_no_swap_and_the_cpu_share(tmp_path: Path) -> None:
    v2_tree(tmp_path)
    group = Cgroup.create("worker", memory_mb=512, cpu_share=True, root=tmp_path)

    assert group is not None
    assert group.version == 2
    assert group.memory is not None
    assert group.memory == group.cpu  # one folder holds both controllers on v2
    assert group.memory.parent == tmp_path
    assert group.memory.name.startswith("imgops-worker-")
    assert (group.memory / "memory.max").read_text() == str(512 * 1024 * 1024)
    assert (group.memory / "memory.swap.max").read_text() == "0"  # Lambda has no swap
    assert (group.memory / "cpu.max").read_text() == f"{cpu_quota_us(512)} {CFS_PERIOD_US}"
    assert (group.memory / "cpu.max").read_text() == "28943 100000"  # 512 / 1,769 of one CPU
    assert (tmp_path / "cgroup.subtree_control").read_text() == "+memory +cpu"  # enabled for the children
    assert group.procs_files() == [str(group.memory / "cgroup.procs")]  # joined once, not once per controller
    group.join(4242)
    assert (group.memory / "cgroup.procs").read_text() == "4242"


def test_v2_without_the_cpu_share_writes_no_quota_and_enables_only_memory(tmp_path: Path) -> None:
    v2_tree(tmp_path, subtree="cpu")  # cpu already enabled for children: left as it is
    group = Cgroup.create("worker", memory_mb=128, root=tmp_path)

    assert group is not None
    assert group.memory is not None
    assert group.cpu is None
    assert not (group.memory / "cpu.max").exists()
    assert (tmp_path / "cgroup.subtree_control").read_text() == "+memory"


def test_controllers_already_enabled_are_not_written_again(tmp_path: Path) -> None:
    v2_tree(tmp_path, subtree="cpu memory")
    assert Cgroup.create("worker", memory_mb=256, cpu_share=True, root=tmp_path) is not None
    assert (tmp_path / "cgroup.subtree_control").read_text() == "cpu memory\n"


def test_v2_oom_kills_are_read_from_memory_events(tmp_path: Path) -> None:
    v2_tree(tmp_path)
    group = Cgroup.create("worker", memory_mb=128, root=tmp_path)
    assert group is not None
    assert group.memory is not None
    events = group.memory / "memory.events"

    assert not group.oom_killed()  # no memory.events yet: nothing counted
    events.write_text("low 0\nhigh 0\nmax 7\noom 1\noom_kill 0\noom_group_kill 0\n")
    assert not group.oom_killed()  # hitting the cap (max, oom) is not a kill
    events.write_text("low 0\nhigh 0\nmax 9\noom 2\noom_kill 1\noom_group_kill 0\n")
    assert group.oom_killed()
    (group.memory / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 0\n")
    assert group.oom_killed()  # v2 reads memory.events, whatever else the folder holds


def test_v1_oom_kills_are_still_read_from_memory_oom_control(tmp_path: Path) -> None:
    v1_tree(tmp_path)
    group = Cgroup.create("worker", memory_mb=128, cpu_share=True, root=tmp_path)
    assert group is not None
    assert group.version == 1
    assert group.memory is not None
    assert group.cpu is not None
    assert (group.memory / "memory.limit_in_bytes").read_text() == str(128 * 1024 * 1024)
    assert (group.cpu / "cpu.cfs_quota_us").read_text() == str(cpu_quota_us(128))
    assert len(group.procs_files()) == 2
    (group.memory / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
    assert group.oom_killed()


def test_detection_prefers_a_writable_v1(tmp_path: Path) -> None:
    v1_tree(tmp_path)
    v2_tree(tmp_path / "unified")  # a hybrid system, as here
    support = detect(tmp_path)
    assert (support.version, support.memory, support.cpu) == (1, tmp_path / "memory", tmp_path / "cpu")


@pytest.mark.usefixtures("deny_v1")
def test_detection_picks_v2_when_v1_is_not_writable(tmp_path: Path) -> None:
    v1_tree(tmp_path)
    v2_tree(tmp_path / "unified")
    support = detect(tmp_path)
    assert (support.version, support.memory, support.cpu) == (2, tmp_path / "unified", tmp_path / "unified")
    group = Cgroup.create("worker", memory_mb=256, root=tmp_path)
    assert group is not None
    assert group.memory is not None
    assert group.memory.parent == tmp_path / "unified"


@pytest.mark.usefixtures("deny_v1")
def test_detection_picks_none_when_neither_caps_memory(tmp_path: Path) -> None:
    v1_tree(tmp_path)
    v2_tree(tmp_path / "unified", controllers="hugetlb")  # memory and cpu bound to v1: this machine's v2 root
    support = detect(tmp_path)

    assert (support.version, support.memory, support.cpu) == (None, None, None)
    assert support.reason.startswith(f"cgroup v1: no writable memory controller at {tmp_path / 'memory'}; cgroup v2:")
    assert "memory controller is not offered" in support.reason
    assert "\n" not in support.reason
    assert Cgroup.create("worker", memory_mb=256, root=tmp_path) is None
    assert not memory_writable(tmp_path)
    assert not cpu_writable(tmp_path)


def test_the_root_comes_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ROOT_ENV, str(tmp_path))
    assert not memory_writable()  # an empty folder: no hierarchy at all
    assert "no cgroup2 hierarchy" in detect().reason
    v2_tree(tmp_path)
    assert memory_writable()
    assert cpu_writable()
    group = Cgroup.create("worker", memory_mb=1769, cpu_share=True)
    assert group is not None
    assert group.memory is not None
    assert (group.memory / "cpu.max").read_text() == f"{CFS_PERIOD_US} {CFS_PERIOD_US}"  # 1,769 MB: one CPU


def test_a_v2_root_without_the_cpu_controller_caps_memory_only(tmp_path: Path) -> None:
    v2_tree(tmp_path, controllers="memory pids")
    support = detect(tmp_path)
    assert (support.version, support.memory, support.cpu) == (2, tmp_path, None)
    assert "cpu controller is not offered" in support.reason
    group = Cgroup.create("worker", memory_mb=512, cpu_share=True, root=tmp_path)
    assert group is not None
    assert group.memory is not None
    assert group.cpu is None
    assert not (group.memory / "cpu.max").exists()
    assert (tmp_path / "cgroup.subtree_control").read_text() == "+memory"


def test_a_delegated_subtree_must_hold_no_process_of_its_own(tmp_path: Path) -> None:
    """v2's no-internal-process rule: below the root, a cgroup with processes cannot enable memory for children."""
    busy = v2_tree(tmp_path / "busy", delegated=True, procs="1234\n")
    assert detect(busy).version is None
    assert "holds processes of its own" in detect(busy).reason

    empty = v2_tree(tmp_path / "empty", delegated=True)
    assert detect(empty).version == 2

    enabled = v2_tree(tmp_path / "enabled", delegated=True, procs="1234\n", subtree="memory cpu")
    assert detect(enabled).version == 2  # already enabled (its processes then live in leaves)


def test_stale_v2_cgroups_are_found_by_label(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from localaws.environment import cgroup_name, labelled_cgroups

    monkeypatch.setenv(ROOT_ENV, str(tmp_path))
    v2_tree(tmp_path / "unified")
    group = Cgroup.create(cgroup_name("worker", "up123"), memory_mb=128)
    assert group is not None
    assert cgroup_parents() == [tmp_path / "unified"]
    assert labelled_cgroups("up123") == [group.memory]
    assert labelled_cgroups("up999") == []


def test_this_machine_keeps_cgroup_v1() -> None:
    """What the e2e tests rely on: where v1's memory controller is writable, nothing changes."""
    v1 = Path("/sys/fs/cgroup/memory")
    if os.environ.get(ROOT_ENV) or not ((v1 / "memory.limit_in_bytes").is_file() and os.access(v1, os.W_OK)):
        pytest.skip("cgroup v1's memory controller is not writable here")
    support = detect()
    assert (support.version, support.memory) == (1, v1)


# --- Sizing without any cap -------------------------------------------------------------------------------------


def sample(tmp_path: Path) -> list[SampleImage]:
    path = tmp_path / "photo.jpg"
    path.write_bytes(b"not decoded")
    return [SampleImage(CorpusImage(path, "jpeg1080", "image/jpeg", 1920, 1080, 11, 1), 1.0)]


def test_sizing_without_caps_recommends_nothing_and_says_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ROOT_ENV, str(tmp_path / "no-cgroups"))
    spec = WorkerSpec("worker", 1024, 50_000_000, "arm64", 60, 25 * 1024 * 1024)
    stack = cast(Any, None)  # refused before any AWS call

    with pytest.raises(SizingError) as refused:
        LocalSizing(stack, spec, sample(tmp_path), SizingOptions(), prices={}, cache_dir=tmp_path)

    message = str(refused.value)
    assert message.startswith(NO_CAPS)
    assert NO_CAPS == (
        "no memory cap available here (cgroup v1 or v2): no size is recommended that the worst accepted input "
        "was not proven to survive"
    )
    assert "cgroup v1: no writable memory controller" in message
    assert "cgroup v2: no cgroup2 hierarchy" in message
    assert "\n" not in message

    steps: list[str] = []
    with pytest.raises(SizingError, match=r"^no memory cap available here"):  # --target aws: no floor either
        worst_case_floor(cast(Any, None), spec, (128, 1024), cast(Any, None), tmp_path, steps.append)
    assert steps == []  # refused before measuring anything


def test_sizing_with_v2_caps_only_goes_ahead(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    v2_tree(tmp_path / "cg")
    monkeypatch.setenv(ROOT_ENV, str(tmp_path / "cg"))
    spec = WorkerSpec("worker", 1024, 50_000_000, "arm64", 60, 25 * 1024 * 1024)
    sizing = LocalSizing(cast(Any, None), spec, sample(tmp_path), SizingOptions(), prices={}, cache_dir=tmp_path)
    assert sizing.capped
