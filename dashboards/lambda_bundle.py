"""The Lambda bundles: what each holds, how pip builds it for the deployed platform, and whether it would load.

pip is asked for the runtime's platform (manylinux_2_28 for python3.12 on Amazon Linux 2023: Pillow ships Linux
wheels only for that) and binary wheels only. Nothing in pip stops a wrong wheel, a source build or a copied host
library from slipping in, and a native library that cannot load only shows at the first cold start; so every ELF
file in the bundle is read (pyelftools): it must be built for the function's architecture, each extension module
for the runtime's CPython, every library it links must be in the bundle or in the runtime's image, and no symbol
may need a newer glibc than the runtime has. The runtime cannot be run here (python3.12, often arm64); these are
the facts its loader checks. No aws_cdk here: `imgops dashboards bundle` builds and checks without the CDK.
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dashboards.config import Architecture
from pipeline.errors import ImgopsError

REPO_ROOT = Path(__file__).resolve().parents[1]
PYTHON_VERSION = "3.12"
# The Lambda runtime already provides boto3; everything else the handlers import must be bundled. Only the worker
# decodes images: the API handlers' bundle leaves Pillow (~20 MB unzipped) out, so they must never import it.
WORKER_REQUIREMENTS = ("Pillow", "pillow-heif", "aws-lambda-powertools")  # pillow-heif: HEIC/HEIF uploads
API_REQUIREMENTS = ("aws-lambda-powertools",)
METRICS_REQUIREMENTS = ("aws-lambda-powertools",)


@dataclass(frozen=True)
class Bundle:
    """One code asset: the source packages it copies and the requirements it pip-installs."""

    packages: tuple[str, ...]
    requirements: tuple[str, ...]


# The stack's three bundles (the API's is the worker's sources without Pillow: smaller, faster cold start).
BUNDLES: dict[str, Bundle] = {
    "worker": Bundle(("pipeline",), WORKER_REQUIREMENTS),
    "api": Bundle(("pipeline",), API_REQUIREMENTS),
    "metrics": Bundle(("monitoring", "pipeline"), METRICS_REQUIREMENTS),
}
_IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ".mypy_cache", ".pytest_cache")

# The python3.12 runtime: Amazon Linux 2023, glibc 2.34.
RUNTIME_GLIBC = (2, 34)
# Libraries the runtime's image provides (the manylinux_2_28 policy's base set that AL2023 ships), so a wheel may
# link them without bundling them: glibc's parts, the GCC runtime and zlib.
RUNTIME_LIBRARIES = frozenset(
    {
        "libc.so.6",
        "libm.so.6",
        "libmvec.so.1",  # glibc's vector maths (x86_64 builds of x265 use it)
        "libdl.so.2",
        "librt.so.1",
        "libpthread.so.0",
        "libutil.so.1",
        "libresolv.so.2",
        "libgcc_s.so.1",
        "libstdc++.so.6",
        "libz.so.1",
        "ld-linux-x86-64.so.2",
        "ld-linux-aarch64.so.1",
    }
)
# Lambda's limit for a function's code, unzipped (layers included).
MAX_UNZIPPED_BYTES = 250 * 2**20
_ELF_MACHINE = {"x86_64": "EM_X86_64", "arm64": "EM_AARCH64"}
_EXTENSION_MACHINE = {"x86_64": "x86_64", "arm64": "aarch64"}
_EXTENSION = re.compile(r"\.cpython-(?P<version>\d+)-(?P<machine>[a-z0-9_]+)-linux-gnu\.so$")


@dataclass
class BundleReport:
    """What a bundle holds and every reason it would not load; `problems` empty means it would."""

    root: Path
    architecture: Architecture
    python_version: str
    files: int = 0
    unzipped_bytes: int = 0
    native_files: list[str] = field(default_factory=list)
    system_libraries: set[str] = field(default_factory=set)  # linked, provided by the runtime
    newest_glibc: tuple[int, int] = (0, 0)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def zipped_bytes(self) -> int:
        """The deployment package's size as Lambda receives it (deflate, as CDK zips assets)."""
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(_files(self.root)):
                archive.write(path, path.relative_to(self.root).as_posix())
        return buffer.tell()


def check_bundle(root: Path, architecture: Architecture, python_version: str) -> BundleReport:
    """Reads every file under `root` once; never raises for a bad bundle, it lists why in `problems`."""
    from elftools.common.exceptions import ELFError
    from elftools.elf.dynamic import DynamicSection
    from elftools.elf.elffile import ELFFile
    from elftools.elf.gnuversions import GNUVerNeedSection

    report = BundleReport(root, architecture, python_version)
    wanted_machine, wanted_version = _ELF_MACHINE[architecture], python_version.replace(".", "")
    bundled = {path.name for path in _files(root)}
    for path in sorted(_files(root)):
        report.files += 1
        report.unzipped_bytes += path.stat().st_size
        name = path.relative_to(root).as_posix()
        with path.open("rb") as handle:
            if handle.read(4) != b"\x7fELF":
                if name.endswith((".so", ".dylib", ".pyd")) or ".so." in path.name:
                    report.problems.append(f"{name}: a shared library that is not a Linux ELF file")
                continue
            handle.seek(0)
            try:
                elf = ELFFile(handle)
                machine = elf["e_machine"]
                needed, versions = [], []
                for section in elf.iter_sections():
                    if isinstance(section, DynamicSection):
                        needed += [
                            tag.needed  # type: ignore[attr-defined]  # set on DT_NEEDED tags only
                            for tag in section.iter_tags()
                            if tag.entry.d_tag == "DT_NEEDED"
                        ]
                    elif isinstance(section, GNUVerNeedSection):
                        versions += [aux.name for _, auxes in section.iter_versions() for aux in auxes]
            except ELFError as exc:
                report.problems.append(f"{name}: unreadable ELF ({exc})")
                continue
        report.native_files.append(name)
        if machine != wanted_machine:
            report.problems.append(f"{name}: built for {machine}, the function runs {wanted_machine}")
        extension = _EXTENSION.search(path.name)
        if extension and (
            extension["version"] != wanted_version or extension["machine"] != _EXTENSION_MACHINE[architecture]
        ):
            report.problems.append(f"{name}: an extension for another Python (the runtime's is {python_version})")
        for library in needed:
            if library in RUNTIME_LIBRARIES:
                report.system_libraries.add(library)
            elif library not in bundled:
                report.problems.append(f"{name}: links {library}, which neither the bundle nor the runtime has")
        for version in versions:
            if match := re.fullmatch(r"GLIBC_(\d+)\.(\d+)(?:\.\d+)?", version):
                glibc = (int(match[1]), int(match[2]))
                report.newest_glibc = max(report.newest_glibc, glibc)
                if glibc > RUNTIME_GLIBC:
                    report.problems.append(
                        f"{name}: needs {version}; the runtime has glibc {'.'.join(map(str, RUNTIME_GLIBC))}"
                    )
    if report.unzipped_bytes > MAX_UNZIPPED_BYTES:
        report.problems.append(
            f"{report.unzipped_bytes / 2**20:.0f} MB unzipped: over Lambda's {MAX_UNZIPPED_BYTES / 2**20:.0f} MB"
        )
    return report


def _files(root: Path) -> Iterator[Path]:
    return (path for path in root.rglob("*") if path.is_file() and not path.is_symlink())


class BundlingError(ImgopsError, RuntimeError):
    """pip could not produce the Lambda bundle (no network, no wheel for the platform, ...)."""


def pinned_requirements(names: Sequence[str], pyproject: Path = REPO_ROOT / "pyproject.toml") -> list[str]:
    """The project's own version ranges for `names`, so the bundle cannot drift from what tests ran."""
    declared = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    by_name = {_requirement_name(spec): spec for spec in declared}
    missing = [name for name in names if name.lower() not in by_name]
    if missing:
        raise BundlingError(f"{', '.join(missing)} not declared in {pyproject.name}")
    return [by_name[name.lower()] for name in names]


def _requirement_name(spec: str) -> str:
    for index, char in enumerate(spec):
        if not (char.isalnum() or char in "-_."):
            return spec[:index].lower()
    return spec.lower()


def pip_command(
    target: Path, requirements: Sequence[str], architecture: Architecture, python_version: str = PYTHON_VERSION
) -> list[str]:
    machine = "x86_64" if architecture == "x86_64" else "aarch64"
    return [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-compile",
        "--platform",
        f"manylinux_2_28_{machine}",
        "--implementation",
        "cp",
        "--python-version",
        python_version,
        "--only-binary=:all:",
        "--target",
        str(target),
        *requirements,
    ]


def build_bundle(
    target: Path,
    *,
    packages: Sequence[str],
    requirements: Sequence[str],
    architecture: Architecture,
    python_version: str = PYTHON_VERSION,
    source_root: Path = REPO_ROOT,
) -> BundleReport | None:
    """Sources + the platform's wheels in `target`; with wheels, refuses (BundlingError) a bundle that would not
    load on the runtime (bundle_check), so a wrong native library fails the synth, not the first cold start."""
    for package in packages:
        shutil.copytree(source_root / package, target / package, ignore=_IGNORED, dirs_exist_ok=True)
    if not requirements:
        return None
    command = pip_command(target, requirements, architecture, python_version)
    result = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()[-1:]
        raise BundlingError(f"pip install for the Lambda bundle failed: {' '.join(detail)}")
    report = check_bundle(target, architecture, python_version)
    if not report.ok:
        more = f" (and {len(report.problems) - 3} more)" if len(report.problems) > 3 else ""
        raise BundlingError(f"the {architecture} bundle would not load: {'; '.join(report.problems[:3])}{more}")
    return report
