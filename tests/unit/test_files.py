"""pipeline.files.write_atomically: readers and concurrent writers see a whole file, and a failed write leaves what
was there and no temporary behind."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from pipeline.files import write_atomically


def test_concurrent_writers_and_a_reader_only_ever_see_whole_files(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    contents = [bytes([65 + writer]) * 200_000 for writer in range(8)]
    write_atomically(target, contents[0])
    seen: set[bytes] = set()
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            seen.add(target.read_bytes())

    def write(data: bytes) -> None:
        for _ in range(25):
            write_atomically(target, data)

    reader = threading.Thread(target=read)
    reader.start()
    writers = [threading.Thread(target=write, args=(data,)) for data in contents]
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join()
    stop.set()
    reader.join()
    assert seen <= set(contents)  # never a mix, never a truncated file
    assert target.read_bytes() in contents
    assert sorted(path.name for path in tmp_path.iterdir()) == ["state.json"]  # no temporary left


def test_a_failed_write_keeps_what_was_there_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "templates"
    (target / "entry").mkdir(parents=True)  # a folder in the way: the rename fails after the data is written
    with pytest.raises(IsADirectoryError):
        write_atomically(target, "new")
    assert (target / "entry").is_dir()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["templates"]


def test_text_is_written_as_utf8_and_the_file_is_the_owners(tmp_path: Path) -> None:
    target = write_atomically(tmp_path / "page.md", "ü → ✓")
    assert target.read_bytes() == "ü → ✓".encode()
    assert target.stat().st_mode & 0o777 == 0o600
    assert write_atomically(tmp_path / "shared", b"x", mode=0o644).stat().st_mode & 0o777 == 0o644
