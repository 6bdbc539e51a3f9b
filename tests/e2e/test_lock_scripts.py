"""The lock's scripts as the docs show them (docs/testing.md, read through test_readme.DOCS): `bash scripts/relock …`
and `bash scripts/canary`, run verbatim.

Both run the test suite themselves, so they are run here with an environment variable that narrows what they test
(IMGOPS_RELOCK_TESTS=0, IMGOPS_CANARY_TESTS=…), never with other words than the docs'. relock runs in a copy of
the repository's lock inputs, so the committed lock is not touched. Both reach PyPI (uv resolves the newest releases).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

from tests.e2e.test_readme import BASH, FENCE, INLINE_CODE, REPO, readme, transcript
from tests.unit.test_lock import pins

pytestmark = pytest.mark.slow

UV = REPO / ".venv" / "bin" / "uv"
TIMEOUT = 600


def shown(script: str) -> list[str]:
    """The docs' inline commands that run `script`."""
    spans = (" ".join(span.split()) for span in INLINE_CODE.findall(FENCE.sub("", readme())))
    return list(dict.fromkeys(span for span in spans if span.startswith(f"bash {script}")))


def run(command: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BASH, "-euo", "pipefail", "-c", command],
        cwd=cwd,
        env={**os.environ, "UV": str(UV), **env},
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def test_the_readme_shows_how_to_relock_and_run_the_canary() -> None:
    assert shown("scripts/relock") == ["bash scripts/relock", "bash scripts/relock --upgrade-package moto"]
    assert shown("scripts/canary") == ["bash scripts/canary"]


@pytest.mark.parametrize("command", shown("scripts/relock"))
def test_relock_writes_two_consistent_locks(command: str, tmp_path: Path) -> None:
    if not UV.exists():
        pytest.skip("no .venv/bin/uv: scripts/install --dev installs it")
    copy = tmp_path / "repo"
    for name in ("pyproject.toml", "requirements", "scripts"):
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, copy / name)
        else:
            copy.mkdir(exist_ok=True)
            shutil.copy2(source, copy / name)

    result = run(command, copy, IMGOPS_RELOCK_TESTS="0")

    assert result.returncode == 0, transcript(result)
    main, dev = pins(copy / "requirements" / "main.lock"), pins(copy / "requirements" / "dev.lock")
    assert {pin.name for pin in main} < {pin.name for pin in dev}
    assert all(pin.hashes for pin in [*main, *dev])
    versions = {(pin.name, pin.version) for pin in dev}
    assert {(pin.name, pin.version) for pin in main} <= versions
    if "--upgrade-package moto" in command:  # only moto may move, and what a newer moto needs
        before = {(pin.name, pin.version) for pin in pins(REPO / "requirements" / "dev.lock")}
        moved = {name for name, _ in versions ^ before}
        assert moved <= {"moto"} | needed_by("moto", copy / "requirements" / "dev.lock"), moved


def needed_by(package: str, lock: Path) -> set[str]:
    """The packages `package` pulls in, directly or not, read from the lock's `# via` comments."""
    parents: dict[str, set[str]] = {}
    current = ""
    for line in lock.read_text(encoding="utf-8").splitlines():
        if line and not line[0].isspace() and "==" in line:
            current = canonicalize_name(line.split("==", 1)[0])
        elif current and line.strip().startswith("#"):
            words = line.strip().lstrip("#").strip().removeprefix("via").split()
            parents.setdefault(current, set()).update(canonicalize_name(word) for word in words if word[0].isalpha())
    found: set[str] = set()
    frontier: set[str] = {canonicalize_name(package)}
    while frontier:
        frontier = {child for child, via in parents.items() if via & frontier} - found
        found |= frontier
    return found


def test_the_canary_installs_the_newest_names_what_changed_and_runs_the_tests() -> None:
    """Its plumbing, with one quick test file: a new release that breaks a test is what the canary itself finds."""
    [command] = shown("scripts/canary")

    result = run(command, REPO, IMGOPS_CANARY_TESTS="tests/unit/test_lock.py")

    assert result.returncode == 0, transcript(result)
    assert "locked packages resolve to another version today" in result.stdout, transcript(result)
    assert "canary: the newest releases pass" in result.stderr, transcript(result)


def test_a_failing_canary_exits_non_zero_and_says_so(tmp_path: Path) -> None:
    [command] = shown("scripts/canary")
    failing = tmp_path / "test_breaks.py"
    failing.write_text("def test_a_new_release_breaks_us() -> None:\n    assert False\n")

    result = run(command, REPO, IMGOPS_CANARY_TESTS=str(failing))

    assert result.returncode == 1, transcript(result)
    assert "canary: FAILED with the newest releases (exit 1)" in result.stderr, transcript(result)
    assert "test_a_new_release_breaks_us" in result.stdout
