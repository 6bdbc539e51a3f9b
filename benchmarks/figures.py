"""Figures in the docs are data: each measured figure is rendered from a committed result file in benchmarks/.

A doc holds a block per result file:

    <!-- figures: benchmarks/selfcheck.json
    `{command}` pushes **{uploads_per_s:,.0f} uploads/s** ({date}, commit {commit})
    -->
    `imgops loadtest selfcheck` pushes **281 uploads/s** (2026-12-06, commit 1234567)
    <!-- /figures -->

The comment is the template (str.format over the file's `figures`, plus `command`, `date`, `commit`, `machine` and
`table`, its rows as a Markdown table); what follows it is the rendering. `python -m benchmarks render` rewrites every
rendering from its data, `python -m benchmarks measure NAME` re-measures one file and renders in the same step, and
tests/unit/test_figures.py fails when a rendering differs from its data, a block names a file that does not exist, a
file no doc shows, or a measured page has a figure outside its blocks. Two sections then cannot give two answers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = ROOT / "benchmarks"
BLOCK = re.compile(
    r"<!-- figures: (?P<source>\S+)\n(?P<template>.*?)\n-->\n(?P<body>.*?)<!-- /figures -->",
    re.DOTALL,
)
# What every result file records besides its figures: what was run, when, on which code and which machine.
PROVENANCE = ("what", "command", "date", "commit", "machine")
# Pages that exist to report measurements: outside the blocks, their prose may hold no digit at all (figures in
# running text are exactly what drifts), except in code, headings and link targets.
MEASURED_PAGES = ("docs/benchmarks.md",)


class FiguresError(Exception):
    """A block that cannot be rendered: its data file is missing, malformed or lacks a field the template uses."""


@dataclass(frozen=True)
class Block:
    doc: Path
    source: str
    template: str
    body: str

    @property
    def where(self) -> str:
        return f"{self.doc.name} (block for {self.source})"


def docs(root: Path = ROOT) -> list[Path]:
    """Every Markdown page the project writes (not the ones its tools generate in caches or run folders)."""
    pages = [root / "README.md", *sorted((root / "docs").glob("*.md"))]
    pages += sorted(root.glob("*/README.md"))
    pages += sorted((root / "runbooks").glob("*.md"))
    return sorted({page for page in pages if page.is_file() and ".pytest_cache" not in page.parts})


def blocks(doc: Path) -> Iterator[Block]:
    text = doc.read_text(encoding="utf-8")
    for match in BLOCK.finditer(text):
        yield Block(doc, match["source"], match["template"], match["body"])


def load(source: str, root: Path = ROOT) -> dict[str, Any]:
    path = root / source
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FiguresError(f"{source} does not exist") from None
    except json.JSONDecodeError as exc:
        raise FiguresError(f"{source} is not JSON: {exc}") from None
    missing = [key for key in (*PROVENANCE, "figures") if key not in data]
    if missing:
        raise FiguresError(f"{source} lacks {', '.join(missing)}")
    return dict(data)


def markdown_table(table: dict[str, Any]) -> str:
    columns = [str(column) for column in table["columns"]]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in table["rows"]]
    return "\n".join(lines)


def fields(data: dict[str, Any]) -> dict[str, Any]:
    values = {**data["figures"], **{key: data[key] for key in PROVENANCE}}
    if "table" in data:
        values["table"] = markdown_table(data["table"])
    return values


def render(block: Block, root: Path = ROOT) -> str:
    data = load(block.source, root)
    try:
        return block.template.format_map(fields(data)) + "\n"
    except KeyError as exc:
        raise FiguresError(f"{block.where}: {block.source} has no figure {exc}") from None
    except (ValueError, TypeError) as exc:
        raise FiguresError(f"{block.where}: {exc}") from None


def rendered(text: str, doc: Path, root: Path = ROOT, sources: Collection[str] | None = None) -> str:
    """`text` with every block's rendering (or only those of `sources`) replaced by what its data says now."""

    def replace(match: re.Match[str]) -> str:
        block = Block(doc, match["source"], match["template"], match["body"])
        if sources is not None and block.source not in sources:
            return match.group()
        return f"<!-- figures: {block.source}\n{block.template}\n-->\n{render(block, root)}<!-- /figures -->"

    return BLOCK.sub(replace, text)


def render_all(pages: Iterable[Path], root: Path = ROOT, sources: Collection[str] | None = None) -> list[Path]:
    """Rewrite every page whose renderings (of `sources`, default all) are stale; returns the pages changed."""
    changed = []
    for page in pages:
        text = page.read_text(encoding="utf-8")
        new = rendered(text, page, root, sources)
        if new != text:
            page.write_text(new, encoding="utf-8")
            changed.append(page)
    return changed


def stale(pages: Iterable[Path], root: Path = ROOT) -> list[str]:
    """The blocks whose rendering differs from their data (or cannot be rendered), one line each."""
    problems = []
    for page in pages:
        for block in blocks(page):
            try:
                expected = render(block, root)
            except FiguresError as exc:
                problems.append(str(exc))
                continue
            if expected != block.body:
                problems.append(f"{block.where} differs from its data: run `python -m benchmarks render`")
    return problems


def result_files(root: Path = ROOT) -> list[Path]:
    """The measurements' result files: every benchmarks/*.json but the suite's (tests/unit/test_suite_figures.py
    checks the prose that states it)."""
    return sorted(path for path in (root / "benchmarks").glob("*.json") if path.name != "suite.json")


def unused(pages: Iterable[Path], root: Path = ROOT) -> list[str]:
    """Result files that no doc shows."""
    shown = {block.source for page in pages for block in blocks(page)}
    return sorted({str(path.relative_to(root)) for path in result_files(root)} - shown)


_CODE_FENCE = re.compile(r"^```.*?^```", re.DOTALL | re.MULTILINE)
_INLINE_CODE = re.compile(r"`[^`\n]*`")
_LINK_TARGET = re.compile(r"\]\([^)]*\)")
_HEADING = re.compile(r"^#+ .*$", re.MULTILINE)
_NUMBER = re.compile(r"(?<![A-Za-z_\d])\d[\d,.]*")  # 281, 1,769, 0.46, 2000 in 2000²; not S3 or p50


def unsourced(page: Path) -> list[str]:
    """Figures in a measured page's prose outside its blocks: each would be a number with no data behind it."""
    text = BLOCK.sub("", page.read_text(encoding="utf-8"))
    for pattern in (_CODE_FENCE, _INLINE_CODE, _LINK_TARGET, _HEADING):
        text = pattern.sub("", text)
    text = re.sub(r"<!--.*?-->", "", text, flags=re.DOTALL)
    return [match.group().rstrip(",.") for match in _NUMBER.finditer(text)]
