"""Where a running local stack says how to reach it, so other `imgops` commands find it."""

from __future__ import annotations

import os
from pathlib import Path

from loadtest.local.provision import StackInfo

STATE_DIR_ENV = "IMGOPS_STATE_DIR"


class NoLocalStack(RuntimeError):
    pass


def state_dir() -> Path:
    configured = os.environ.get(STATE_DIR_ENV)
    return Path(configured) if configured else Path.home() / ".imgops"


def state_file() -> Path:
    return state_dir() / "local-stack.json"


def report_log() -> Path:
    return state_dir() / "worker-reports.log"


def write_state(info: StackInfo) -> Path:
    path = state_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(info.to_json(), encoding="utf-8")
    temporary.replace(path)  # readers never see half a file
    return path


def read_state(path: Path | None = None) -> StackInfo:
    path = path or state_file()
    try:
        return StackInfo.from_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NoLocalStack(f"no local stack is running ({path} not found); start one with `imgops local up`") from None
    except (ValueError, TypeError) as exc:
        raise NoLocalStack(f"{path} is not a local stack state file: {exc}") from None


def faults_file() -> Path:
    """The fault rules the local stack's workers follow (see loadtest.local.faults)."""
    return state_dir() / "faults.json"


def clear_state() -> None:
    state_file().unlink(missing_ok=True)
