"""postag for a GPU node without network (common on clusters): its packages and data
bundled on a machine with network, copied to the node, installed there over the node's own
CUDA build of torch.

    make offline-bundle                   # here: .offline-bundle/parts/part1 (ignored)
    make offline-bundle OFFLINE_ARGS="--part-mib 500 --python-version 3.11"
    # copy the project and .offline-bundle/ to the node (scp, rsync, a shared file system)
    make offline-install                  # there: joins, checks and installs into .venv
    make test-gpu; make sweep             # there, offline

The wheels are postag's dependencies and the test runner, with all they depend on, at
requirements.lock's versions, for the node's CPython (`--python-version`, this Python's by
default) on manylinux x86_64; less torch and what comes with it (its CUDA libraries,
triton): the node's own torch build is the one that reaches its GPU. With `--part-mib`, the
bundle comes in parts of at most that size (for a copy that limits file or transfer size),
a wheel larger than half a part in pieces, joined there and checked against its sha256.
EWT's three files travel too, in the first part, for POSTAG_EWT_DIR. Measured 2026-12-05,
for Python 3.12 in 56 MiB parts: 132 wheels, 261 MiB, five parts.

Standard library only: `install` runs on the node's bare Python, before anything is installed.
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
BUNDLE = PROJECT / ".offline-bundle"
# What is copied to the node: part1, part2, ... (one part unless --part-mib splits it).
PARTS = BUNDLE / "parts"
LOCK = PROJECT / "requirements.lock"
MANIFEST = "manifest.json"
MIB = 1 << 20
PYTHON_VERSION = f"{sys.version_info.major}.{sys.version_info.minor}"
PLATFORMS = ("manylinux2014_x86_64", "manylinux_2_17_x86_64", "manylinux_2_28_x86_64")
# On the node already: torch in the build that reaches its GPU, and what comes with it.
# Never replaced.
PROVIDED = frozenset({"torch", "triton", "sympy", "mpmath", "networkx"})
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


def download(
    requirements: list[str], lock: Path, folder: Path, python_version: str = PYTHON_VERSION
) -> list[Path]:
    """The requirements' wheels and their dependencies' for CPython `python_version` on
    manylinux x86_64, at the lock's versions, less what the node provides."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    listed = folder / "requirements.txt"
    listed.write_text("\n".join(requirements) + "\n")
    platforms = [arg for platform in PLATFORMS for arg in ("--platform", platform)]
    command = [sys.executable, "-m", "pip", "download", "-qq", "--only-binary=:all:"]
    command += ["--python-version", python_version, *platforms, "-c", str(lock)]
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


def pieces_of(wheels: list[Path], part_bytes: int) -> tuple[list[Piece], dict]:
    """The wheels as pieces of at most half a part, and the manifest that joins them."""
    step = part_bytes // 2
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


def first_fit(pieces: list[Piece], first_part_used: int, part_bytes: int) -> list[list[Piece]]:
    """The pieces in parts of at most `part_bytes`, largest first, each in the first part it
    fits; part 1 starts with `first_part_used` bytes taken (EWT)."""
    parts: list[list[Piece]] = [[]]
    used = [first_part_used]
    for piece in sorted(pieces, key=lambda p: -p.size):
        index = next((i for i, taken in enumerate(used) if taken + piece.size <= part_bytes), None)
        if index is None:
            parts.append([])
            used.append(0)
            index = len(parts) - 1
        parts[index].append(piece)
        used[index] += piece.size
    return parts


def pack(wheels: list[Path], ewt: Path, out: Path, part_bytes: int | None = None) -> list[Path]:
    """The wheels and EWT's files in one part, or with `part_bytes` in parts of at most that
    size, the wheels in pieces where large; part1 holds EWT and the manifest (each wheel's
    pieces and sha256)."""
    shutil.rmtree(out, ignore_errors=True)
    treebank = sorted(ewt.glob("*.conllu"))
    treebank_bytes = sum(path.stat().st_size for path in treebank)
    if part_bytes is None:  # one part: room for everything
        part_bytes = treebank_bytes + 2 * sum(wheel.stat().st_size for wheel in wheels) + 1
    elif part_bytes <= treebank_bytes:
        raise SystemExit(
            f"offline-bundle: a part of {part_bytes / MIB:.0f} MiB cannot hold EWT "
            f"({treebank_bytes / MIB:.1f} MiB) beside any wheel: give a larger --part-mib"
        )
    pieces, manifest = pieces_of(wheels, part_bytes)
    parts = first_fit(pieces, treebank_bytes, part_bytes)
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
    where the installer is itself a virtual environment (a node's torch is often installed in
    one, built for its GPU), its packages would be out of sight."""
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
        raise SystemExit(
            f"offline-install: {', '.join(missing)} not in {bundle}: copy every part there first"
        )
    found = {path.name: path for path in bundle.glob("part*/wheels/*")}
    wheels = bundle / "wheels"
    wheels.mkdir(exist_ok=True)
    for name, entry in manifest["wheels"].items():
        with (wheels / name).open("wb") as joined:
            for piece in entry["pieces"]:
                joined.write(found[piece].read_bytes())
        if sha256(wheels / name) != entry["sha256"]:
            raise SystemExit(f"offline-install: {name} does not match its sha256 once joined")
    return [wheels / name for name in manifest["wheels"]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="offline_bundle",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("action", choices=["bundle", "install"])
    parser.add_argument("--ewt", type=Path, help="EWT's folder (default: as postag finds it)")
    parser.add_argument(
        "--part-mib",
        type=int,
        help="parts of at most this many MiB (default: one part)",
    )
    parser.add_argument(
        "--python-version",
        default=PYTHON_VERSION,
        help=f"the node's Python, MAJOR.MINOR (default: this one's, {PYTHON_VERSION})",
    )
    args = parser.parse_args(argv)
    if args.action == "install":
        environment = install(PARTS, PROJECT)
        print(f"offline-install: {environment} holds postag's packages, over this node's torch")
        return 0
    if args.part_mib is not None and args.part_mib < 1:
        parser.error(f"--part-mib must be at least 1, got {args.part_mib}")
    ewt = args.ewt or default_ewt()
    requirements = wanted(PROJECT / "pyproject.toml", LOCK)
    wheels = download(requirements, LOCK, BUNDLE / "download", args.python_version)
    folders = pack(wheels, ewt, PARTS, args.part_mib and args.part_mib * MIB)
    for folder in folders:
        size = sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())
        print(f"offline-bundle: {folder.relative_to(PROJECT)}  {size / MIB:.1f} MiB")
    print(
        f"offline-bundle: {len(wheels)} wheels for CPython {args.python_version}; copy the "
        f"project with {BUNDLE.relative_to(PROJECT)}/ to the node, then make offline-install"
    )
    return 0


def default_ewt() -> Path:
    """EWT's folder, as postag finds it here (imported here: `install` runs without it)."""
    from postag.data.sources import ewt_files

    return ewt_files().train.parent


if __name__ == "__main__":
    sys.exit(main())
