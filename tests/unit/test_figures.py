"""The docs' measured figures are renderings of benchmarks/*.json (benchmarks/figures.py): a figure that differs
from its data, a block without data, data no doc shows, or a figure in a measured page's prose fails here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.figures import (
    MEASURED_PAGES,
    PROVENANCE,
    ROOT,
    FiguresError,
    blocks,
    docs,
    load,
    render_all,
    result_files,
    stale,
    unsourced,
    unused,
)
from benchmarks.measure import MEASUREMENTS

TEMPLATE = "`{command}` pushes **{uploads_per_s:,.0f} uploads/s** ({date}, commit {commit})\n{table}"


def result_file(root: Path, uploads_per_s: float) -> None:
    data = {key: f"<{key}>" for key in PROVENANCE} | {
        "command": "imgops loadtest selfcheck",
        "figures": {"uploads_per_s": uploads_per_s},
        "table": {"columns": ["a", "b"], "rows": [[1, 2]]},
    }
    (root / "benchmarks").mkdir(exist_ok=True)
    (root / "benchmarks" / "selfcheck.json").write_text(json.dumps(data), encoding="utf-8")


def page(root: Path, body: str = "stale\n") -> Path:
    path = root / "page.md"
    path.write_text(f"Intro.\n\n<!-- figures: benchmarks/selfcheck.json\n{TEMPLATE}\n-->\n{body}<!-- /figures -->\n")
    return path


def test_the_docs_show_what_their_data_says() -> None:
    assert stale(docs()) == []


def test_every_result_file_is_shown_and_complete() -> None:
    assert unused(docs()) == []
    for source in {block.source for doc in docs() for block in blocks(doc)}:
        load(source)  # raises when a provenance field is missing


@pytest.mark.parametrize("name", MEASURED_PAGES)
def test_a_measured_page_has_no_figure_outside_its_blocks(name: str) -> None:
    assert unsourced(ROOT / name) == []


def test_rendering_writes_the_data_and_a_changed_figure_makes_the_page_stale(tmp_path: Path) -> None:
    result_file(tmp_path, 281.4)
    doc = page(tmp_path)
    assert stale([doc], tmp_path) != []
    assert render_all([doc], tmp_path) == [doc]
    assert "pushes **281 uploads/s** (<date>, commit <commit>)\n| a | b |\n|---|---|\n| 1 | 2 |\n" in doc.read_text()
    assert stale([doc], tmp_path) == []
    result_file(tmp_path, 199.0)  # a re-measure the prose has not caught up with
    assert stale([doc], tmp_path) == ["page.md (block for benchmarks/selfcheck.json) differs from its data: "
                                       "run `python -m benchmarks render`"]  # fmt: skip


def test_a_block_naming_a_missing_file_or_figure_is_reported(tmp_path: Path) -> None:
    doc = page(tmp_path)
    assert stale([doc], tmp_path) == ["benchmarks/selfcheck.json does not exist"]
    result_file(tmp_path, 1.0)
    doc.write_text(doc.read_text().replace("{uploads_per_s:,.0f}", "{mb_per_s}"))
    assert stale([doc], tmp_path) == ["page.md (block for benchmarks/selfcheck.json): benchmarks/selfcheck.json has "
                                       "no figure 'mb_per_s'"]  # fmt: skip
    (tmp_path / "benchmarks" / "broken.json").write_text('{"figures": {}}')
    with pytest.raises(FiguresError, match="lacks"):
        load("benchmarks/broken.json", tmp_path)


def test_figures_in_prose_are_found_but_not_in_code_headings_or_links(tmp_path: Path) -> None:
    result_file(tmp_path, 1.0)
    doc = page(tmp_path)
    render_all([doc], tmp_path)
    doc.write_text(
        doc.read_text()
        + "## Run 2\n\n`imgops loadtest run --images 2000` ([data](../benchmarks/x2.json)):\n\n"
        + "```bash\nimgops bench batch --runs 7\n```\n\nabout 281 uploads/s on 2 cores.\n"
    )
    assert unsourced(doc) == ["281", "2"]


def test_the_commands_the_benchmarks_page_shows_run_as_written() -> None:
    """`python -m benchmarks list` and `… check` (docs/benchmarks.md); `measure NAME` is what the data records."""
    listed = subprocess.run([sys.executable, "-m", "benchmarks", "list"], cwd=ROOT, capture_output=True, text=True)
    assert listed.returncode == 0, listed.stderr
    assert [line.split()[0] for line in listed.stdout.splitlines()] == list(MEASUREMENTS)
    checked = subprocess.run([sys.executable, "-m", "benchmarks", "check"], cwd=ROOT, capture_output=True, text=True)
    assert (checked.returncode, checked.stderr) == (0, "")
    unknown = subprocess.run(
        [sys.executable, "-m", "benchmarks", "measure", "nope"], cwd=ROOT, capture_output=True, text=True
    )
    assert unknown.returncode == 1
    assert unknown.stderr.startswith("unknown measurement(s) nope; known: main-job, closed-loop")


def test_every_measurement_has_its_result_file() -> None:
    assert [path.stem for path in result_files()] == sorted(MEASUREMENTS)
