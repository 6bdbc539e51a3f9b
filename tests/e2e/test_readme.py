"""Every command README.md (and localaws/README.md, DOCS) shows, taken from the docs themselves and run exactly as
written (issue #9).

The commands are read from the README on every run, so an edit there cannot escape this file:

- The ```bash blocks run verbatim in bash, in the order a user follows them: the main job (install, then a load test
  of 1,000 images on an embedded local stack), then `imgops local up` in the background with the second shell's
  curl walk-through against it, then Ctrl-C. The `bash scripts/test` block is the one block not run: it is what CI
  itself runs (`.ci/run`), and running it here would recurse.
- Every other `imgops …` command in the README (inline code in the prose, and lines of the ```text blocks without
  placeholders) is parsed by the real CLI exactly as written — option names, values, conversions and the defaults'
  own validation — without running its body. The cheap ones that need no earlier state are also run for real, and
  the ones that need a running local stack run against the one `imgops local up` started.
- Not run, only parsed: the benchmarks (`imgops loadtest run --images 2000`, `imgops bench thumbnails …`, the
  commands benchmarks/*.json record and docs/benchmarks.md renders). They are measurements of this machine, not
  tests, and take minutes; the cost report that reads their run folders is parsed only for the same reason.
- Synopsis lines (`[--option …]`, `<image_id>`, `a | b` placeholders) are syntax, not commands: they are checked to
  name real commands and real options only.

State is isolated with environment variables alone, never flags: IMGOPS_STATE_DIR points at a temporary folder and
AWS_ENDPOINT_URL is removed. The main job (install, then run) runs in a fresh copy of the repository, as a new user's
clone: its `.venv` and its `runs/` folder are the copy's, never the ones the other test files use meanwhile.
"""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import requests
import typer
from PIL import Image
from typer.core import TyperGroup

import imgops.cli
from benchmarks.figures import result_files
from monitoring.target import StackInfo
from tests.e2e.conftest import kill, wait_for_state_file

if TYPE_CHECKING:
    from typer._click import Command, Context

REPO = Path(__file__).parents[2]
README = REPO / "README.md"
# Read with the README: the other docs whose `imgops …` commands this file parses and runs. Every page of docs/ is
# taken by a glob, so a new page cannot escape; runbooks/README.md holds the on-call synopsis (its pages' commands are
# run by test_runbooks).
DOCS = (
    README,
    REPO / "localaws" / "README.md",
    REPO / "runbooks" / "README.md",
    *sorted((REPO / "docs").glob("*.md")),
)
VENV_BIN = REPO / ".venv" / "bin"
BASH = shutil.which("bash") or "/bin/bash"
ROOT = typer.main.get_command(imgops.cli.app)

# The README's ```bash blocks, each recognised by a command only it contains, in the order a user follows them.
MAIN_JOB = "imgops loadtest run"
CI = "bash scripts/test"
LOCAL_UP = "imgops local up"
SECOND_SHELL = "imgops local env"
BASH_BLOCKS = (MAIN_JOB, CI, LOCAL_UP, SECOND_SHELL)

MAIN_JOB_TIMEOUT = 1200  # s: 7 min beside the other tests (benchmarks/suite.json); the run itself gives up at 900

# How each concrete `imgops …` command of the README is covered beyond being parsed. A command the README gains (or
# loses) fails test_every_readme_command_is_accounted_for until it is entered here.
RUN_BY_A_BASH_BLOCK = ("imgops loadtest run", "imgops local up", "imgops local env")
RUN_ON_THE_LOCAL_STACK = (
    "imgops local token",
    "imgops local status",
    "imgops dlq purge --yes",
    "imgops alarms check",
    "imgops monitoring publish",
    "imgops capacity top",
    "imgops local inventory",
    "imgops monitoring reconcile",
    "imgops dashboards render",
    "imgops loadtest run --target aws --stack-name imgops-pipeline --images 20",
)
# The README shows these in a shell where `eval "$(imgops local env)"` ran (the deployed-stack path, locally).
AFTER_LOCAL_ENV = ("imgops loadtest run --target aws --stack-name imgops-pipeline --images 20",)
# quick, no earlier state
RUN_HERE = (
    "imgops loadtest selfcheck",
    "imgops dashboards synth",
    "imgops alarms test",
    "imgops dashboards bundle",
    "imgops cost capacity",
    "imgops cost report",
)
NOT_RUN = {
    "imgops loadtest locust --workers 2": "tests/e2e/test_locust.py runs a headless master and 2 workers",
    "imgops loadtest sizing": (
        "a measurement of a minute or more under cgroup caps; tests/e2e/test_loadtest.py runs sizing end to end"
    ),
    "imgops loadtest run --images 200": (
        "the measurement behind the dashboards' graphs-with-data figure; tests/e2e/test_dashboards_render.py takes "
        "the same path with fewer images"
    ),
    "imgops drill all": "tests/e2e/test_drill.py runs it through the CLI (runbooks/README.md gives its time)",
    "imgops loadtest run --target aws --stack-name acme-imgops-pipeline --images 20": (
        "needs the stack deployed on AWS; the same path runs on the local stack as "
        "`imgops loadtest run --target aws --stack-name imgops-pipeline --images 20` (RUN_ON_THE_LOCAL_STACK)"
    ),
    "imgops drill dlq": "the dlq-not-empty drill with its own sizes; tests/e2e/test_drill.py runs it (drill all)",
    "imgops bench churn": (
        "a benchmark of 50,000 objects by default (tens of minutes here); tests/e2e/test_capacity.py takes the same "
        "path (loadtest.capacity_churn) with 600 objects and asserts what it prints"
    ),
}
# The benchmarks' commands, as their result files record them (docs/benchmarks.md renders them from there): each is
# a measurement of this machine, minutes long, run by `python -m benchmarks measure NAME`, not by a test. The cost
# report among them reads the run folders the others wrote, which exist only where they ran.
MEASURED = {
    json.loads(path.read_text(encoding="utf-8"))["command"]: f"benchmark: `python -m benchmarks measure {path.stem}`"
    for path in result_files()
}
RUN_BY_A_TEST = (*RUN_BY_A_BASH_BLOCK, *RUN_ON_THE_LOCAL_STACK, *RUN_HERE)  # a measurement of those runs here too
NOT_RUN |= {command: why for command, why in MEASURED.items() if command not in (*RUN_BY_A_TEST, *NOT_RUN)}
# Output that shows the command did its job, beyond exit code 0.
EXPECTED_OUTPUT = {
    "imgops alarms check": "alarm(s) in ALARM",
    "imgops alarms test": "quiet-night",
    "imgops monitoring publish": "published",
    "imgops capacity top": "nothing was listed",
    "imgops local inventory": "/manifest.json",
    "imgops monitoring reconcile": "Capacity reconciled",
    "imgops cost report": "Capacity metrics (events)",
    "imgops dashboards render": "graphs with data",
    "imgops loadtest run --target aws --stack-name imgops-pipeline --images 20": "on aws:imgops-pipeline: DONE 20",
    "imgops loadtest selfcheck": "2000 of 2000 uploads",
    "imgops dashboards synth": "2 dashboards, 12 alarms",
    "imgops dashboards bundle": "all load",
    "imgops cost capacity": "Capacity metrics",
    "imgops local status": "HTTP API",
    "imgops dlq purge --yes": "nothing removed",  # the new stack's DLQ is empty
}
TRACEBACK = "Traceback (most recent call last)"


# --- Reading the README -----------------------------------------------------------------------------------------

FENCE = re.compile(r"^```(?P<lang>[\w-]*)\n(?P<body>.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`([^`\n]+(?:\n[^`\n]+)*)`")  # a span may wrap onto the next line
COMMENT = re.compile(r"(^|\s+)#\s.*$")
PLACEHOLDERS = ("[", "]", "…", "|", "<", ">")


def readme() -> str:
    return "\n\n".join(doc.read_text(encoding="utf-8") for doc in DOCS)


def fenced_blocks(lang: str) -> list[str]:
    return [match["body"] for match in FENCE.finditer(readme()) if match["lang"] == lang]


def bash_block(marker: str) -> str:
    [block] = [block for block in fenced_blocks("bash") if marker in block]
    return block


def prose_commands() -> list[str]:
    """`imgops …` inline code outside the fenced blocks, whitespace normalised."""
    spans = (" ".join(span.split()) for span in INLINE_CODE.findall(FENCE.sub("", readme())))
    return [span for span in spans if span == "imgops" or span.startswith("imgops ")]


def text_block_commands() -> list[str]:
    """`imgops …` lines of the ```text blocks, comments dropped, indented continuation lines joined."""
    entries: list[str] = []
    for block in fenced_blocks("text"):
        for line in block.splitlines():
            code = COMMENT.sub("", line).strip()
            if not code:
                continue
            if line[:1].isspace() and entries:
                entries[-1] += f" {code}"
            elif code.startswith("imgops "):
                entries.append(code)
    return entries


def readme_commands() -> list[str]:
    return list(dict.fromkeys([*prose_commands(), *text_block_commands()]))


def is_synopsis(command: str) -> bool:
    return any(mark in command for mark in PLACEHOLDERS)


def concrete_commands() -> list[str]:
    return [command for command in readme_commands() if not is_synopsis(command)]


def logical_lines(block: str) -> list[str]:
    """A bash block's commands, verbatim: backslash continuations kept together, comments and blank lines dropped."""
    commands: list[str] = []
    current = ""
    for line in block.splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        current += line + "\n"
        if not line.endswith("\\"):
            commands.append(current.rstrip("\n"))
            current = ""
    return commands


# --- The real CLI -----------------------------------------------------------------------------------------------


def resolve(words: list[str]) -> tuple[list[tuple[str, Command]], list[str]]:
    """Follow `imgops group command …` as far as the words name commands: the (name, command) chain and the rest."""
    chain: list[tuple[str, Command]] = [("imgops", ROOT)]
    rest = words[1:]
    while rest and isinstance(chain[-1][1], TyperGroup):
        group = chain[-1][1]
        sub = group.get_command(typer.Context(group, info_name=chain[-1][0]), rest[0])
        if sub is None:
            break
        chain.append((rest[0], sub))
        rest = rest[1:]
    return chain, rest


def parse(command: str) -> Context:
    """Parse `command` as `imgops` does, through each group to the command, without running anything.

    make_context converts and validates every value given and every default (typer checks defaults against their
    min/max too) and refuses unknown options and extra arguments; only invoke() would run the command's body.
    """
    words = shlex.split(command)
    assert words[0] == "imgops", command
    ctx = ROOT.make_context("imgops", words[1:], resilient_parsing=False)
    while isinstance(ctx.command, TyperGroup):
        # What the group's invoke() hands its subcommand: the words after the group's own options.
        name, sub, args = ctx.command.resolve_command(ctx, [*ctx._protected_args, *ctx.args])
        assert name is not None
        assert sub is not None
        ctx = sub.make_context(name, args, parent=ctx, resilient_parsing=False)
    return ctx


def names_a_group(command: str) -> bool:
    chain, rest = resolve(shlex.split(command))
    return isinstance(chain[-1][1], TyperGroup) and not rest


def option_names(command: Command) -> set[str]:
    return {name for param in command.params for name in (*param.opts, *param.secondary_opts)}


# --- Running as a user does ---------------------------------------------------------------------------------------


def readme_env(state_dir: Path, *, venv_active: bool = False) -> dict[str, str]:
    """The caller's environment with the local stack's state moved to `state_dir` and no AWS endpoint override."""
    env = {**os.environ, "IMGOPS_STATE_DIR": str(state_dir)}
    env.pop("AWS_ENDPOINT_URL", None)
    if venv_active:  # what `source .venv/bin/activate` does for the commands shown in the prose
        env["PATH"] = f"{VENV_BIN}{os.pathsep}{env['PATH']}"
    return env


def bash(script: str, *, cwd: Path, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BASH, "-euo", "pipefail", "-c", script],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def transcript(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One IMGOPS_STATE_DIR for the module: the corpus the main job generates is reused by the self-check."""
    return tmp_path_factory.mktemp("imgops-state")


# --- The README's structure -------------------------------------------------------------------------------------


def test_every_bash_block_is_run_in_the_order_shown() -> None:
    languages = {match["lang"] for match in FENCE.finditer(readme())}
    assert languages <= {"bash", "text"}, f"fenced blocks this file does not read: {languages - {'bash', 'text'}}"
    blocks = fenced_blocks("bash")
    owners = [[marker for marker in BASH_BLOCKS if marker in block] for block in blocks]
    assert all(len(owner) == 1 for owner in owners), f"a ```bash block this file does not run: {blocks}"
    assert [owner[0] for owner in owners] == list(BASH_BLOCKS), "the README's ```bash blocks changed"


def test_every_readme_command_is_accounted_for() -> None:
    """Each concrete command is run, or is a benchmark / needs a benchmark's output (NOT_RUN), or names a group."""
    groups = {command for command in concrete_commands() if names_a_group(command)}
    accounted = [*RUN_BY_A_BASH_BLOCK, *RUN_ON_THE_LOCAL_STACK, *RUN_HERE, *NOT_RUN]
    assert sorted(accounted) == sorted(set(concrete_commands()) - groups), "classify README commands in this file"
    for command in RUN_BY_A_BASH_BLOCK:
        assert any(command in block for block in fenced_blocks("bash")), command


def test_the_skipped_block_is_what_ci_runs() -> None:
    """The one ```bash block not run here is CI's own entry point: running it would run this file again."""
    assert bash_block(CI).strip() in (REPO / ".ci" / "run").read_text().splitlines()


# --- ```bash blocks, in the order a user follows them ---------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(MAIN_JOB_TIMEOUT + 60)
def test_main_job(state_dir: Path, tmp_path: Path) -> None:
    """Install and run the main job, verbatim, from the root of a fresh copy of the repository: all 1,000 images
    DONE. A copy, because the block installs into `.venv`: the repository's own is the one every other test file
    runs in, at the same time (scripts/test runs files in parallel)."""
    block = bash_block(MAIN_JOB)
    checkout = fresh_copy(tmp_path / "imgops")
    result = bash(block, cwd=checkout, env=readme_env(state_dir), timeout=MAIN_JOB_TIMEOUT)
    assert result.returncode == 0, transcript(result)
    assert TRACEBACK not in result.stdout + result.stderr, transcript(result)
    assert (checkout / ".venv" / "bin" / "imgops").exists()
    [folder] = [path for path in (checkout / "runs").iterdir() if path.name in result.stdout]
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["images"] == 1000
    assert summary["counts"] == {"DONE": 1000}, transcript(result)
    assert (folder / "report.html").is_file()


# What a clone does not have: what `git clone` leaves out (.gitignore) and the repository itself.
NOT_IN_A_CLONE = (".git", ".venv", "runs", "cdk.out", "build", "dist", "__pycache__", "*.egg-info", ".*_cache")


def fresh_copy(destination: Path) -> Path:
    """The working tree as a clone has it (the files under test, uncommitted edits included), without a venv."""
    shutil.copytree(REPO, destination, ignore=shutil.ignore_patterns(*NOT_IN_A_CLONE, ".hypothesis"))
    return destination


# The ```bash block `bash scripts/test` is deliberately not run: it is what CI runs (.ci/run), so this would recurse.


@dataclass(frozen=True)
class LocalUp:
    process: subprocess.Popen[str]
    log: Path
    info: StackInfo

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


@pytest.fixture(scope="module")
def local_up(state_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalUp]:
    """The README's `.venv/bin/imgops local up` block, verbatim, in the background, as in a terminal of its own."""
    assert not (state_dir / "local-stack.json").exists()
    log = tmp_path_factory.mktemp("local-up") / "stdout.txt"
    with log.open("w", encoding="utf-8") as stdout:
        process = subprocess.Popen(
            [BASH, "-euo", "pipefail", "-c", bash_block(LOCAL_UP)],
            cwd=REPO,
            env=readme_env(state_dir),
            stdout=stdout,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own process group, as a terminal's foreground job is: Ctrl-C reaches all
        )
    info = wait_for_state_file(process, state_dir, output=lambda: log.read_text(encoding="utf-8", errors="replace"))
    yield LocalUp(process, log, info)
    if process.poll() is None:
        kill(process)


@pytest.fixture(scope="module")
def second_shell(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The second shell's working directory: the block writes photo.jpg and grant.json, so not the repository.

    `.venv` links to the repository's, so `source .venv/bin/activate` works as written.
    """
    cwd = tmp_path_factory.mktemp("second-shell")
    (cwd / ".venv").symlink_to(REPO / ".venv", target_is_directory=True)
    return cwd


# Step 3 of the walk-through again, verbatim, "a moment later": until the worker has finished with the image.
POLL = """
# test_readme.py: repeat step 3 until the image is DONE or FAILED (at most ~30 s)
for attempt in $(seq 30); do
  sleep 1
STEP_3 > image.json
  python -c 'import json, sys; sys.exit(json.load(open("image.json")).get("status") not in ("DONE", "FAILED"))' && break
done
"""


@pytest.mark.slow
def test_second_shell_uploads_with_curl(local_up: LocalUp, second_shell: Path, state_dir: Path) -> None:
    """The second shell's block, verbatim, against the running stack: the photo ends DONE with 3 thumbnails."""
    block = bash_block(SECOND_SHELL)
    step_3 = logical_lines(block)[-1]
    assert "/images/" in step_3, step_3
    result = bash(block + POLL.replace("STEP_3", step_3), cwd=second_shell, env=readme_env(state_dir), timeout=120)
    assert result.returncode == 0, transcript(result) + local_up.output()
    assert TRACEBACK not in result.stdout + result.stderr, transcript(result)

    grant = json.loads((second_shell / "grant.json").read_text())
    assert grant["method"] == "PUT", grant
    image = json.loads((second_shell / "image.json").read_text())
    assert image["imageId"] == grant["image_id"], image
    assert image["status"] == "DONE", f"{image}\n{local_up.output()}"
    assert (image["format"], int(image["width"]), int(image["height"])) == ("JPEG", 4032, 3024)
    assert set(image["thumbnails"]) == {"1024", "512", "256"}
    for size, url in image["thumbnails"].items():
        thumbnail = requests.get(url, timeout=10)
        assert thumbnail.status_code == 200, thumbnail.text
        with Image.open(io.BytesIO(thumbnail.content)) as picture:
            assert picture.size == (int(size), int(size) * 3 // 4)


def _token_is_accepted(stdout: str, info: StackInfo) -> None:
    token = stdout.strip()
    unknown = requests.get(
        f"{info.api_url}/images/{uuid.uuid4()}", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    assert unknown.status_code == 404, unknown.text  # authorized, and no such image (a bad token gets 401)


@pytest.mark.slow
@pytest.mark.parametrize("command", RUN_ON_THE_LOCAL_STACK)
def test_prose_command_on_the_running_stack(
    command: str, local_up: LocalUp, second_shell: Path, state_dir: Path
) -> None:
    """Commands the README shows for a running local stack, verbatim, in the second shell (venv activated)."""
    assert command in concrete_commands()
    shell = (
        'source .venv/bin/activate\neval "$(imgops local env)"'
        if command in AFTER_LOCAL_ENV
        else ("source .venv/bin/activate")
    )
    result = bash(f"{shell}\n{command}", cwd=second_shell, env=readme_env(state_dir), timeout=300)
    assert result.returncode == 0, transcript(result)
    assert TRACEBACK not in result.stdout + result.stderr, transcript(result)
    checks: dict[str, Callable[[str, StackInfo], None]] = {"imgops local token": _token_is_accepted}
    if command in checks:
        checks[command](result.stdout, local_up.info)
    else:
        assert EXPECTED_OUTPUT[command] in result.stdout, transcript(result)


@pytest.mark.slow
def test_ctrl_c_stops_local_up(local_up: LocalUp, state_dir: Path) -> None:
    """Ctrl-C in `imgops local up`'s terminal (SIGINT to its process group): it stops cleanly, exit 0."""
    os.killpg(local_up.process.pid, signal.SIGINT)
    try:
        returncode = local_up.process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"`imgops local up` did not stop within 60 s of Ctrl-C:\n{local_up.output()}")
    output = local_up.output()
    assert returncode == 0, output
    assert "Local stack stopped." in output, output
    assert TRACEBACK not in output, output
    assert not (state_dir / "local-stack.json").exists()


# --- The other `imgops …` commands ---------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("command", RUN_HERE)
def test_cheap_command_runs(command: str, state_dir: Path, tmp_path: Path) -> None:
    """Run verbatim with the venv active, in an empty working directory (synth writes cdk.out/ into it)."""
    assert command in concrete_commands()
    result = bash(command, cwd=tmp_path, env=readme_env(state_dir, venv_active=True), timeout=180)
    assert result.returncode == 0, transcript(result)
    assert TRACEBACK not in result.stdout + result.stderr, transcript(result)
    assert EXPECTED_OUTPUT[command] in result.stdout, transcript(result)


@pytest.mark.parametrize("command", concrete_commands(), ids=str)
def test_readme_command_parses(command: str) -> None:
    """Options, values and defaults as the CLI parses them, without running the command (see parse)."""
    if names_a_group(command):
        return  # the prose names a group (`imgops faults`) as a heading would: not a command to run
    try:
        parse(command)
    except typer.TyperException as exc:
        problem = exc.format_message()
    else:
        return
    pytest.fail(f"README command `{command}` does not parse: {problem}", pytrace=False)


@pytest.mark.parametrize("synopsis", [command for command in readme_commands() if is_synopsis(command)], ids=str)
def test_synopsis_names_real_commands_and_options(synopsis: str) -> None:
    words = [word.strip("[]") for word in shlex.split(synopsis)]
    chain, rest = resolve(words)
    (*_, (parent_name, parent)), (name, command) = chain[:-1], chain[-1]
    assert not isinstance(command, TyperGroup), f"`{synopsis}`: {rest[:1]} is not a command of `{name}`"
    alternatives = [rest[i + 1] for i, word in enumerate(rest[:-1]) if word == "|"]  # `imgops local up | token`
    assert isinstance(parent, TyperGroup)
    for alternative in alternatives:
        assert parent.get_command(typer.Context(parent, info_name=parent_name), alternative), (synopsis, alternative)
    unknown = {word.split("=")[0] for word in rest if word.startswith("--")} - option_names(command)
    assert not unknown, f"`{synopsis}` names options `imgops … {name}` does not have: {sorted(unknown)}"
