"""Where generated corpora are kept, and that readers never see a file half written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from loadtest import corpus
from loadtest.corpus import build_corpus, default_cache_dir


def test_the_corpus_is_a_user_cache_not_stack_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(corpus.CACHE_ENV, raising=False)
    monkeypatch.setenv("IMGOPS_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert default_cache_dir() == tmp_path / "cache" / "imgops" / "corpus"
    monkeypatch.setenv(corpus.CACHE_ENV, str(tmp_path / "mine"))
    assert default_cache_dir() == tmp_path / "mine"


def test_a_second_build_reads_what_the_first_wrote(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(corpus.KINDS, "jpeg1080", corpus.Kind(64, 48, "JPEG", "image/jpeg", "jpg"))
    first = build_corpus(mix={"jpeg1080": 1.0}, count=3, seed=1, cache_dir=tmp_path)
    assert not list(tmp_path.rglob("*.tmp"))  # every file was moved into place whole

    def not_again(*args: object) -> tuple[bytes, int]:
        raise AssertionError("generated again")

    monkeypatch.setattr(corpus, "render", not_again)
    again = build_corpus(mix={"jpeg1080": 1.0}, count=3, seed=1, cache_dir=tmp_path)
    assert again == first
    assert [image.path.read_bytes()[:2] for image in again] == [b"\xff\xd8"] * 3


def test_the_command_module_does_not_import_the_cli() -> None:
    """The stack's spawned processes run the console script again, which imports `imgops`: that must stay cheap."""
    code = "import sys, imgops; print(sorted(m for m in sys.modules if m.startswith(('imgops.', 'typer', 'boto'))))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
