"""The synthesized template is made once per app source and context, then read from the cache."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from dashboards import config
from dashboards.template import CACHE_ENV, TemplateError, cache_key, stack_template


def test_second_read_comes_from_the_cache_and_a_new_context_synthesizes_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))

    first = stack_template("cachetest")
    [entry] = list(tmp_path.glob("template-*.json"))
    started = time.perf_counter()
    second = stack_template("cachetest")
    warm_seconds = time.perf_counter() - started
    every_5_minutes = stack_template("cachetest", {config.METRICS_RATE_MINUTES: "5"})

    assert second == first
    assert warm_seconds < 1.0  # a JSON read, not a synth (which takes seconds)
    other = stack_template("othertest")
    assert len(list(tmp_path.glob("template-*.json"))) == 2  # one per context, not per prefix
    assert every_5_minutes != first
    assert json.dumps(other) == json.dumps(first).replace("cachetest", "othertest")
    assert "cachetest-uploads" in json.dumps(first)
    assert entry.name.startswith("template-")


def test_the_key_follows_the_context() -> None:
    assert cache_key({config.PREFIX: "a"}) != cache_key({config.PREFIX: "b"})
    assert cache_key({config.PREFIX: "a"}) == cache_key({config.PREFIX: "a"})


def test_a_damaged_cache_entry_is_rebuilt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    key = cache_key({config.PREFIX: "zzprefixsentinelzz", config.SKIP_BUNDLING: "true"})
    (tmp_path / f"template-{key}.json").write_text("{not json")  # e.g. a disk filled up mid-write

    assert "damaged-uploads" in json.dumps(stack_template("damaged"))


def test_without_node_one_line_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no node on it

    with pytest.raises(TemplateError, match=r"needs Node\.js .*install Node 20") as raised:
        stack_template("nonode")
    assert "\n" not in str(raised.value)
