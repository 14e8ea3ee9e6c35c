"""Installed size of the production install vs the development install.

Builds the exporter's wheel from what the Dockerfile copies (``pyproject.toml``, ``README.md``,
``exporter/``), installs it with its runtime dependencies only (from PyPI, through pip's cache) into a
fresh virtualenv without pip, as the image holds it, and prints the size of that virtualenv's
site-packages next to the same with the ``kubeconfig`` extra and the development virtualenv's
(``.venv``: ``.[dev]`` and the simulator), with the largest distributions of each::

    .venv/bin/python bench/install_size.py [--top 8]

``tests/exporter/test_packaging.py`` builds and installs the same way, then runs that install.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MiB = 2**20

# Run by the measured interpreter: bytes on disk per distribution (files of its RECORD) and of the whole
# site-packages directory.
_SIZES = r"""
import importlib.metadata as md, json, os, sysconfig
site = sysconfig.get_paths()["purelib"]
total = sum(os.lstat(os.path.join(d, f)).st_size for d, _, fs in os.walk(site) for f in fs)
dists = {}
for dist in md.distributions():
    n = 0
    for f in dist.files or ():
        p = dist.locate_file(f)
        if os.path.isfile(p):
            n += os.lstat(p).st_size
    dists[dist.metadata["Name"]] = n
print(json.dumps({"site": site, "total": total, "dists": dists}))
"""


def build_wheel(out: Path) -> Path:
    """The exporter's wheel (``pip wheel --no-deps``), built from a copy of what the Dockerfile copies."""
    src = out / "src"
    src.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    shutil.copytree(REPO / "exporter", src / "exporter", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check", "-q",
                    "--wheel-dir", str(out), str(src)], check=True)
    (wheel,) = out.glob("cilium_node_exporter-*.whl")
    return wheel


def install(venv: Path, *requirements: str) -> Path:
    """A virtualenv without pip holding ``requirements`` and their dependencies; its python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--disable-pip-version-check",
                    "-q", *requirements], check=True)
    return python


def sizes(python: Path | str) -> dict:
    """``{"site": path, "total": bytes, "dists": {name: bytes}}`` of ``python``'s site-packages."""
    out = subprocess.run([str(python), "-c", _SIZES], capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def _report(label: str, measured: dict, top: int) -> None:
    print(f"{label}: {measured['total'] / MiB:.1f} MiB in {measured['site']} ({len(measured['dists'])} distributions)")
    for name, n in sorted(measured["dists"].items(), key=lambda kv: -kv[1])[:top]:
        print(f"  {name:<32} {n / MiB:>7.1f} MiB")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--top", type=int, default=8, help="largest distributions to list per install")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        wheel = build_wheel(Path(tmp) / "wheel")
        core = sizes(install(Path(tmp) / "core", str(wheel)))
        _report(f"production install ({wheel.name} and its runtime dependencies)", core, args.top)
        with_kubeconfig = sizes(install(Path(tmp) / "kubeconfig", f"{wheel}[kubeconfig]"))
        _report("with the kubeconfig extra (--kubeconfig outside a cluster)", with_kubeconfig, args.top)
    dev = sizes(sys.executable)
    _report("development install (this interpreter: .[dev] and ./simulator)", dev, args.top)
    print(f"production / development: {core['total'] / dev['total']:.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
