"""Every relative link in the docs resolves: the file exists and, with a `#anchor`, the heading does (as GitHub
slugs headings). Docs: README.md, docs/*.md, runbooks/*.md and each package's README.md (benchmarks.figures.docs)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from benchmarks.figures import docs

ROOT = Path(__file__).resolve().parents[2]
DOCS = docs()  # the project's pages, as benchmarks.figures renders them
FENCE = re.compile(r"^```.*?^```[ \t]*$", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped (letters, digits, `_`, `-` and spaces kept),
    spaces as hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).lower()
    text = "".join(char for char in text if char.isalnum() or char in "_- ")
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    found: set[str] = set()
    for heading in HEADING.findall(FENCE.sub("", page.read_text(encoding="utf-8"))):
        base = slug(heading)
        name, n = base, 0
        while name in found:
            n += 1
            name = f"{base}-{n}"
        found.add(name)
    return found


def links(page: Path) -> list[str]:
    text = INLINE_CODE.sub("", FENCE.sub("", page.read_text(encoding="utf-8")))
    return [target for target in LINK.findall(text) if not re.match(r"[a-z][a-z0-9+.-]*:", target)]


def test_slug_matches_githubs() -> None:
    assert slug("Run the stack yourself and upload with curl") == "run-the-stack-yourself-and-upload-with-curl"
    assert slug("Past one machine: Locust") == "past-one-machine-locust"
    assert slug("2026-11-23, x86_64 (superseded)") == "2026-11-23-x86_64-superseded"
    assert (
        slug("Sizing the worker's memory: `imgops loadtest sizing`")
        == "sizing-the-workers-memory-imgops-loadtest-sizing"
    )


def test_every_doc_has_links_checked() -> None:
    assert all(page.is_file() for page in DOCS)
    assert sum(len(links(page)) for page in DOCS) > 20


@pytest.mark.parametrize("page", DOCS, ids=lambda page: str(page.relative_to(ROOT)))
def test_relative_links_resolve(page: Path) -> None:
    broken: list[str] = []
    for target in links(page):
        path, _, anchor = target.partition("#")
        destination = (page.parent / path).resolve() if path else page
        if not destination.exists():
            broken.append(f"{target}: no such file")
        elif anchor and (destination.suffix != ".md" or anchor not in anchors(destination)):
            broken.append(f"{target}: no heading #{anchor} in {destination.relative_to(ROOT)}")
    assert broken == [], f"{page.relative_to(ROOT)}: {broken}"
