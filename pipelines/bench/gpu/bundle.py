"""The packages and data a lent GPU machine needs for `make gpu-study`, bundled here, and
installed there.

A lent machine has Python 3.12 with torch, pyarrow and pandas, and no network; a call to it
carries at most 64 MiB, and ignored files stay there between back-to-back calls. So:

    make gpu-bundle       # here: .gpu-bundle/parts/part1, part2, ... (ignored), 56 MiB each
    # then one call a part, back to back, each carrying only its own folder; the last runs
    make gpu-install      # there: joins, checks and installs the wheels into .venv
    make gpu-study        # there, in the next call (pipelines/bench/gpu/study.py)

The wheels are postag's dependencies and the test runner, with all they depend on, at
requirements.lock's versions, for CPython 3.12 on manylinux x86_64; less what the machine
has (torch and the CUDA libraries, numpy, pandas, pyarrow): its own torch build is the one
that reaches its GPU. A wheel larger than half a part (Ray's, 79 MB) travels in pieces,
joined there and checked against its sha256. EWT's three files travel too, in the first
part, for POSTAG_EWT_DIR. Measured 2026-12-05: 132 wheels, 261 MiB, five parts.

Standard library only: `install` runs on the bare Python of the lent machine.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import site
import subprocess
import sys
import tomllib
import venv
from dataclasses import dataclass
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[3]
BUNDLE = PROJECT / ".gpu-bundle"
# What travels: one folder a call (`carry: [".gpu-bundle/parts/part1"]`, ...).
PARTS = BUNDLE / "parts"
LOCK = PROJECT / "requirements.lock"
MANIFEST = "manifest.json"
# What one call carries: 64 MiB, less the working tree (about 3 MiB) and a margin.
PART_BYTES = 56 << 20
PYTHON_VERSION = "3.12"
PLATFORMS = ("manylinux2014_x86_64", "manylinux_2_17_x86_64", "manylinux_2_28_x86_64")
# On the machine already: torch in the build that reaches its GPU, and what comes with it
# or that the machine was given (pyarrow, pandas). Never replaced.
PROVIDED = frozenset(
    {"torch", "triton", "numpy", "pandas", "pyarrow", "sympy", "mpmath", "networkx"}
)
PROVIDED_PREFIXES = ("nvidia-",)
# The gpu-marked tests' runner (their modules import nothing else the study lacks).
TEST_RUNNER = ("pytest", "pytest-timeout")
EWT_DIR = "ewt"


def wanted(pyproject: Path, lock: Path) -> list[str]:
    """What the study needs installed there: postag's dependencies and the test runner, at
    the lock's versions, less what the machine provides."""
    project = tomllib.loads(pyproject.read_text())["project"]
    pinned = {name_of(pin): pin.partition("==")[2] for pin in pins(lock)}
    wanted = []
    for requirement in [*project["dependencies"], *TEST_RUNNER]:
        name = name_of(requirement)
        extras = re.search(r"\[[^\]]*\]", requirement)
        if not provided(name):
            wanted.append(f"{name}{extras.group(0) if extras else ''}=={pinned[name]}")
    return wanted


def pins(lock: Path) -> list[str]:
    """The lock's `name==version` lines."""
    lines = [line.split(";")[0].strip() for line in lock.read_text().splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def name_of(requirement: str) -> str:
    """`ray[tune]==2.60.0` -> `ray`, canonical."""
    name = re.split(r"[\[=<>;~! ]", requirement, maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", name).lower()


def provided(name: str) -> bool:
    return name_of(name) in PROVIDED or name_of(name).startswith(PROVIDED_PREFIXES)


def download(requirements: list[str], lock: Path, folder: Path) -> list[Path]:
    """The requirements' wheels and their dependencies' for CPython 3.12 on manylinux
    x86_64, at the lock's versions, less what the machine provides."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    listed = folder / "requirements.txt"
    listed.write_text("\n".join(requirements) + "\n")
    platforms = [arg for platform in PLATFORMS for arg in ("--platform", platform)]
    command = [sys.executable, "-m", "pip", "download", "-qq", "--only-binary=:all:"]
    command += ["--python-version", PYTHON_VERSION, *platforms, "-c", str(lock)]
    subprocess.run([*command, "-r", str(listed), "-d", str(folder)], check=True)
    wheels = sorted(folder.glob("*.whl"))
    for wheel in [w for w in wheels if provided(w.name.split("-")[0])]:
        wheel.unlink()
    return sorted(folder.glob("*.whl"))


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class Piece:
    """`size` bytes of `source` from `offset`: a whole wheel, or one piece of a large one."""

    name: str
    source: Path
    offset: int
    size: int

    def write(self, folder: Path) -> None:
        with self.source.open("rb") as file:
            file.seek(self.offset)
            (folder / self.name).write_bytes(file.read(self.size))


def pieces_of(wheels: list[Path]) -> tuple[list[Piece], dict]:
    """The wheels as pieces of at most half a part, and the manifest that joins them."""
    step = PART_BYTES // 2
    pieces, manifest = [], {}
    for wheel in wheels:
        size = wheel.stat().st_size
        if size <= step:
            mine = [Piece(wheel.name, wheel, 0, size)]
        else:
            offsets = range(0, size, step)
            mine = [
                Piece(f"{wheel.name}.{i:02d}", wheel, offset, min(step, size - offset))
                for i, offset in enumerate(offsets)
            ]
        pieces += mine
        manifest[wheel.name] = {"pieces": [p.name for p in mine], "sha256": sha256(wheel)}
    return pieces, manifest


def first_fit(pieces: list[Piece], first_part_used: int) -> list[list[Piece]]:
    """The pieces in parts of at most PART_BYTES, largest first, each in the first part it
    fits; part 1 starts with `first_part_used` bytes taken (EWT)."""
    parts: list[list[Piece]] = [[]]
    used = [first_part_used]
    for piece in sorted(pieces, key=lambda p: -p.size):
        index = next((i for i, taken in enumerate(used) if taken + piece.size <= PART_BYTES), None)
        if index is None:
            parts.append([])
            used.append(0)
            index = len(parts) - 1
        parts[index].append(piece)
        used[index] += piece.size
    return parts


def pack(wheels: list[Path], ewt: Path, out: Path) -> list[Path]:
    """The wheels, in pieces where large, and EWT's files in parts of at most PART_BYTES;
    part1 holds EWT and the manifest (each wheel's pieces and sha256)."""
    shutil.rmtree(out, ignore_errors=True)
    pieces, manifest = pieces_of(wheels)
    treebank = sorted(ewt.glob("*.conllu"))
    parts = first_fit(pieces, sum(path.stat().st_size for path in treebank))
    folders = []
    for number, part in enumerate(parts, start=1):
        folder = out / f"part{number}"
        (folder / "wheels").mkdir(parents=True)
        for piece in part:
            piece.write(folder / "wheels")
        folders.append(folder)
    (folders[0] / EWT_DIR).mkdir()
    for path in treebank:
        shutil.copy2(path, folders[0] / EWT_DIR / path.name)
    contents = {"parts": len(folders), "wheels": manifest}
    (folders[0] / MANIFEST).write_text(json.dumps(contents, indent=1))
    return folders


def install(bundle: Path, project: Path) -> Path:
    """Join and check the wheels of every part, and install them into project/.venv over
    the machine's own torch (a venv that sees its site-packages); then postag itself."""
    wheels = join_wheels(bundle)
    environment = project / ".venv"
    # No pip of its own: the installer's, seen through the .pth, installs into it.
    venv.create(environment, system_site_packages=True)
    python = environment / "bin" / "python"
    see_installers_packages(python)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--no-deps"]
    subprocess.run([*pip, "--no-index", *map(str, wheels)], check=True)
    subprocess.run([*pip, "--no-build-isolation", "-e", str(project)], check=True)
    # make's own install step is done: it would reach for the network.
    (environment / ".installed-stamp").touch()
    return environment


def see_installers_packages(python: Path) -> None:
    """Let the new environment import what the installing Python has (pip and setuptools
    too), after its own packages. `system_site_packages` reaches only the base interpreter's:
    where the installer is itself a virtual environment (the lent machine's python3 is
    /opt/torch/.venv, whose torch is the one built for its GPU), its packages would be out of
    sight."""
    code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    purelib = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True)
    installer = "\n".join(site.getsitepackages())
    (Path(purelib.stdout.strip()) / "installer-packages.pth").write_text(installer + "\n")


def join_wheels(bundle: Path) -> list[Path]:
    """Every wheel of the bundle, whole, in bundle/wheels: its pieces joined from whichever
    part they came in, and checked against its sha256."""
    manifest = json.loads((bundle / "part1" / MANIFEST).read_text())
    wanted = [f"part{n}" for n in range(1, manifest["parts"] + 1)]
    missing = [name for name in wanted if not (bundle / name).is_dir()]
    if missing:
        raise SystemExit(f"gpu-install: {', '.join(missing)} not here: carry each part first")
    found = {path.name: path for path in bundle.glob("part*/wheels/*")}
    wheels = bundle / "wheels"
    wheels.mkdir(exist_ok=True)
    for name, entry in manifest["wheels"].items():
        with (wheels / name).open("wb") as joined:
            for piece in entry["pieces"]:
                joined.write(found[piece].read_bytes())
        if sha256(wheels / name) != entry["sha256"]:
            raise SystemExit(f"gpu-install: {name} does not match its sha256 once joined")
    return [wheels / name for name in manifest["wheels"]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="gpu_bundle", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("action", choices=["bundle", "install"])
    parser.add_argument("--ewt", type=Path, help="EWT's folder (default: as postag finds it)")
    args = parser.parse_args(argv)
    if args.action == "install":
        environment = install(PARTS, PROJECT)
        print(f"gpu-install: {environment} holds the study's packages, over this machine's torch")
        return 0
    ewt = args.ewt or default_ewt()
    wheels = download(wanted(PROJECT / "pyproject.toml", LOCK), LOCK, BUNDLE / "download")
    folders = pack(wheels, ewt, PARTS)
    for folder in folders:
        size = sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())
        print(f"gpu-bundle: {folder.relative_to(PROJECT)}  {size / (1 << 20):.1f} MiB")
    print(f"gpu-bundle: {len(wheels)} wheels for CPython {PYTHON_VERSION}; carry one part a call")
    return 0


def default_ewt() -> Path:
    """EWT's folder, as postag finds it here (imported here: `install` runs without it)."""
    from postag.data.sources import ewt_files

    return ewt_files().train.parent


if __name__ == "__main__":
    sys.exit(main())
