"""The lock is what gets installed and what was tested: requirements/*.lock against pyproject.toml and this venv.

scripts/install puts requirements/main.lock (the main job) or requirements/dev.lock (the tests, CI) into .venv with
hashes checked; scripts/relock writes both from pyproject.toml's ranges. These tests fail when the lock and the ranges
drift apart, when the two locks disagree on a version, or when the environment running the tests is not the lock
(then a green run would say nothing about what a fresh machine installs).
"""

from __future__ import annotations

import re
import sys
import tomllib
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
MAIN_LOCK = ROOT / "requirements" / "main.lock"
DEV_LOCK = ROOT / "requirements" / "dev.lock"
_PIN = re.compile(r"^(?P<name>[A-Za-z0-9_.\-]+)==(?P<version>[^\s;\\]+)\s*(?:;\s*(?P<marker>[^\\]+?))?\s*\\?$")


@dataclass(frozen=True)
class Pin:
    name: str
    version: str
    marker: Marker | None
    hashes: int

    def applies(self) -> bool:
        return self.marker is None or self.marker.evaluate()


def pins(lock: Path) -> list[Pin]:
    """The lock's `name==version ; marker` entries with their `--hash=` lines (uv pip compile --universal output)."""
    found: list[Pin] = []
    for line in lock.read_text(encoding="utf-8").splitlines():
        match = _PIN.match(line.strip())
        if match is not None:
            marker = Marker(match["marker"]) if match["marker"] else None
            found.append(Pin(canonicalize_name(match["name"]), match["version"], marker, 0))
        elif line.strip().startswith("--hash=sha256:") and found:
            found[-1] = Pin(found[-1].name, found[-1].version, found[-1].marker, found[-1].hashes + 1)
    return found


def project() -> dict[str, list[Requirement]]:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return {
        "main": [Requirement(r) for r in pyproject["dependencies"]],
        "dev": [Requirement(r) for r in pyproject["optional-dependencies"]["dev"]],
    }


def here(lock: Path) -> dict[str, str]:
    """The pins that apply to this interpreter and platform."""
    return {pin.name: pin.version for pin in pins(lock) if pin.applies()}


@pytest.mark.parametrize(("lock", "groups"), [(MAIN_LOCK, ("main",)), (DEV_LOCK, ("main", "dev"))])
def test_every_direct_dependency_is_pinned_within_its_range(lock: Path, groups: tuple[str, ...]) -> None:
    locked = here(lock)
    for group in groups:
        for requirement in project()[group]:
            name = canonicalize_name(requirement.name)
            assert name in locked, f"{name} ({group}) is not in {lock.name}: run scripts/relock"
            assert requirement.specifier.contains(locked[name], prereleases=True), (
                f"{lock.name} pins {name}=={locked[name]}, outside pyproject.toml's {requirement}: run scripts/relock"
            )


@pytest.mark.parametrize("lock", [MAIN_LOCK, DEV_LOCK])
def test_every_pin_is_exact_and_hashed(lock: Path) -> None:
    entries = pins(lock)
    assert len(entries) > 50  # the transitive closure, not just the direct dependencies
    assert [pin.name for pin in entries if pin.hashes == 0] == []
    text = lock.read_text(encoding="utf-8")
    assert "-e " not in text
    assert "file:" not in text  # nothing from this machine's disk: a fresh machine must resolve the same files


def test_the_main_lock_is_the_dev_lock_without_the_test_tools() -> None:
    """Same versions (markers may be narrower in main.lock: fewer packages need, say, cffi there)."""
    dev: dict[str, set[str]] = {}
    for pin in pins(DEV_LOCK):
        dev.setdefault(pin.name, set()).add(pin.version)
    differing = {pin.name: pin.version for pin in pins(MAIN_LOCK) if pin.version not in dev.get(pin.name, set())}
    assert differing == {}, f"main.lock pins versions dev.lock does not: {differing}; run scripts/relock"


def test_the_tests_run_on_what_the_lock_installs() -> None:
    """The environment this suite runs in has exactly the dev lock's versions (scripts/test installs it)."""
    if Path(sys.prefix).resolve() != (ROOT / ".venv").resolve():
        pytest.skip(f"not the project's .venv ({sys.prefix}): e.g. scripts/canary's newest-release venv")
    installed: dict[str, str] = {canonicalize_name(d.metadata["Name"]): d.version for d in metadata.distributions()}
    drift = {name: (version, installed.get(name)) for name, version in here(DEV_LOCK).items()}
    drift = {name: pair for name, pair in drift.items() if pair[0] != pair[1]}
    assert drift == {}, f"installed versions differ from requirements/dev.lock (lock, installed): {drift}"
