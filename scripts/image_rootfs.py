"""Assemble the runtime file tree the exporter's venv needs in an image without a base.

Run by the Dockerfile's ``install`` stage with the base image's own Python:
``python3 image_rootfs.py VENV ROOTFS``. The venv itself (our package and its runtime dependencies, no
pip) becomes the image's second layer; this copies into ROOTFS, the first layer, at their original paths:

- the interpreter the venv points to (every symlink on the way) and its standard library, without the
  base's own site-packages (pip, setuptools), ``ensurepip`` (a bundled pip wheel), build tooling and
  modules nothing here imports whose extension modules would pull in more libraries;
- the shared libraries every ELF file of the venv and of the tree loads (``ldd``; an unresolved one fails
  the build), the loader configuration and a fresh ``ld.so.cache`` (python:*-slim keeps libpython in
  /usr/local/lib, which the loader does not search by default);
- the CA bundle, ``/etc/passwd`` and ``/etc/group`` naming uid/gid 0, 65532 (the image's user) and 65534
  (the chart's ``nonRootUser``), an empty ``/tmp``;
- bytecode for every module of the venv and the standard library, checked by hash but not against its
  source (python:*-slim images ship the standard library without .pyc files, and a read-only root file
  system would make every start compile it again in memory; the image never changes, so unchecked);
- for every Debian package a copied file belongs to, its dpkg status entry in ``/var/lib/dpkg/status.d/``
  (where SBOM and vulnerability scanners look in distroless images) and its copyright file.

No shell, coreutils, package manager, pip or compiler: the base image's are simply not copied.
"""

from __future__ import annotations

import compileall
import os
import py_compile
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

# Standard-library entries left out: the base's own packages and pip's bundled wheel (no installer in the
# image), build tooling, and modules nothing in the exporter imports whose extension modules would pull in
# libraries (ncurses, readline, Berkeley DB, NIS/Kerberos, SQLite, Tk) that scanners would then report.
STDLIB_SKIP = frozenset({"site-packages", "dist-packages", "ensurepip", "distutils", "lib2to3", "idlelib",
                         "tkinter", "turtledemo", "test", "curses", "dbm", "sqlite3", "pydoc_data",
                         "__phello__"})
# Extension modules (lib-dynload) left out, by module name: the ones behind the entries above, and
# CPython's own test modules.
DYNLOAD_SKIP = frozenset({"_curses", "_curses_panel", "readline", "_dbm", "_gdbm", "nis", "_sqlite3",
                          "_tkinter", "_crypt", "ossaudiodev", "_ctypes_test", "_xxsubinterpreters",
                          "_xxtestfuzz", "xxlimited", "xxlimited_35"})
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
USERS = {0: "root", 65532: "nonroot", 65534: "nobody"}


def copy_path(src: Path, rootfs: Path, copied: set[Path]) -> Path:
    """Copy ``src`` to the same path under ``rootfs``, recreating every symlink on the way (``/lib`` ->
    ``usr/lib`` on merged-/usr systems, ``python3`` -> ``python3.11``); return the real file copied."""
    current = Path("/")
    parts = Path(os.path.abspath(src)).parts[1:]
    for index, part in enumerate(parts):
        current = current / part
        target = rootfs / current.relative_to("/")
        if current.is_symlink():
            if not target.is_symlink():
                target.parent.mkdir(parents=True, exist_ok=True)
                target.symlink_to(os.readlink(current))
            link = Path(os.readlink(current))
            resolved = link if link.is_absolute() else current.parent / link
            return copy_path(Path(os.path.normpath(resolved.joinpath(*parts[index + 1:]))), rootfs, copied)
    if current.is_dir():
        (rootfs / current.relative_to("/")).mkdir(parents=True, exist_ok=True)
    elif current not in copied:
        target = rootfs / current.relative_to("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(current, target)
        copied.add(current)
    return current


def base_interpreter(venv: Path) -> Path:
    """The first path outside the venv on the venv's ``bin/python`` symlink chain."""
    path = venv / "bin" / "python"
    while path.is_symlink() and path.is_relative_to(venv):
        link = Path(os.readlink(path))
        path = link if link.is_absolute() else path.parent / link
    return path


def skipped_extension_modules(directory: str, names: list[str]) -> set[str]:
    """``shutil.copytree`` ignore hook: the extension modules of DYNLOAD_SKIP and CPython's test modules."""
    return {n for n in names if n.endswith(".so") and (n.split(".")[0] in DYNLOAD_SKIP or n.startswith("_test"))}


def copy_tree(src: Path, rootfs: Path, copied: set[Path], skip: frozenset[str] = frozenset()) -> None:
    """Copy a directory tree (symlinks kept as symlinks), leaving out top-level entries named in ``skip``."""
    copy_path(src, rootfs, copied)
    for entry in sorted(src.iterdir()):
        if entry.name in skip:
            continue
        target = rootfs / entry.relative_to("/")
        if entry.is_symlink():
            target.symlink_to(os.readlink(entry))
        elif entry.is_dir():
            shutil.copytree(entry, target, symlinks=True, ignore=skipped_extension_modules)
            copied.update(Path("/") / p.relative_to(rootfs) for p in target.rglob("*")
                          if p.is_file() and not p.is_symlink())
        else:
            shutil.copy2(entry, target)
            copied.add(entry)


def is_elf(path: Path) -> bool:
    with path.open("rb") as handle:
        return handle.read(4) == b"\x7fELF"


def shared_libraries(elf: Path) -> list[Path]:
    """The libraries (and the loader) ``elf`` loads, from ``ldd``; an unresolved one is an error."""
    result = subprocess.run(["ldd", str(elf)], capture_output=True, text=True, check=False)
    if result.returncode != 0:  # static, or not a loadable object for this machine
        if "not a dynamic executable" in result.stdout + result.stderr:
            return []
        raise SystemExit(f"ldd {elf} failed: {result.stderr.strip()}")
    libs = []
    for line in result.stdout.splitlines():
        fields = line.split()
        if "=>" in fields:
            target = fields[fields.index("=>") + 1]
            if target == "not":
                raise SystemExit(f"{elf}: {line.strip()}")
            if target.startswith("/"):
                libs.append(Path(target))
        elif fields and fields[0].startswith("/"):  # the dynamic loader
            libs.append(Path(fields[0]))
    return libs


def copy_libraries(rootfs: Path, copied: set[Path], venv: Path) -> None:
    """Copy the closure of shared libraries of every ELF file of the venv and copied so far."""
    venv_files = [p for p in venv.rglob("*") if p.is_file() and not p.is_symlink()]
    pending = [p for p in [*venv_files, *copied] if is_elf(p)]
    seen: set[Path] = set()
    while pending:
        elf = pending.pop()
        for lib in shared_libraries(elf):
            real = copy_path(lib, rootfs, copied)
            if real not in seen:
                seen.add(real)
                pending.append(real)


def dpkg_owners(paths: set[Path]) -> set[str]:
    """Debian packages owning any of ``paths`` (tried as copied, and with/without /usr: Debian 12 packages
    still list /lib/... while the files live under /usr/lib/...)."""
    if not shutil.which("dpkg-query"):
        return set()
    candidates: set[str] = set()
    for path in paths:
        text = str(path)
        candidates.add(text)
        candidates.add(text.removeprefix("/usr") if text.startswith("/usr/") else "/usr" + text)
    owners: set[str] = set()
    ordered = sorted(candidates)
    for start in range(0, len(ordered), 2000):
        result = subprocess.run(["dpkg-query", "--search", *ordered[start:start + 2000]],
                                capture_output=True, text=True, check=False)
        for line in result.stdout.splitlines():
            packages, _, _ = line.partition(": ")
            if "diversion" not in packages:
                owners.update(p.strip() for p in packages.split(","))
    return owners


def write_package_records(packages: set[str], rootfs: Path) -> None:
    status_dir = rootfs / "var/lib/dpkg/status.d"
    status_dir.mkdir(parents=True, exist_ok=True)
    for package in sorted(packages):
        status = subprocess.run(["dpkg-query", "--status", package], capture_output=True, text=True,
                                check=True).stdout
        (status_dir / package.partition(":")[0]).write_text(status)
        copyright_file = Path("/usr/share/doc") / package.partition(":")[0] / "copyright"
        if copyright_file.is_file():
            copy_path(copyright_file, rootfs, set())


def compile_bytecode(tree: Path, runtime_path: Path) -> None:
    """Write ``__pycache__`` bytecode for ``tree``, which runs at ``runtime_path``."""
    ok = compileall.compile_dir(tree, quiet=1, ddir=runtime_path, force=True, workers=0,
                                invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    if not ok:
        raise SystemExit(f"compiling {tree} failed")


def write_users(rootfs: Path) -> None:
    etc = rootfs / "etc"
    etc.mkdir(parents=True, exist_ok=True)
    homes = {0: "/root", 65532: "/nonexistent", 65534: "/nonexistent"}
    (etc / "passwd").write_text("".join(f"{name}:x:{uid}:{uid}:{name}:{homes[uid]}:/sbin/nologin\n"
                                        for uid, name in USERS.items()))
    (etc / "group").write_text("".join(f"{name}:x:{gid}:\n" for gid, name in USERS.items()))


def write_loader_cache(rootfs: Path, copied: set[Path]) -> None:
    for conf in [Path("/etc/ld.so.conf"), *sorted(Path("/etc/ld.so.conf.d").glob("*.conf"))]:
        if conf.is_file():
            copy_path(conf, rootfs, copied)
    subprocess.run(["ldconfig", "-r", str(rootfs)], check=True)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        raise SystemExit("usage: image_rootfs.py VENV ROOTFS")
    venv, rootfs = Path(argv[0]), Path(argv[1])
    if not (venv / "pyvenv.cfg").is_file():
        raise SystemExit(f"{venv} is not a venv")
    rootfs.mkdir(parents=True)
    copied: set[Path] = set()
    copy_path(base_interpreter(venv), rootfs, copied)
    stdlib = {Path(sysconfig.get_paths()[key]) for key in ("stdlib", "platstdlib")}
    for path in sorted(stdlib):
        copy_tree(path, rootfs, copied, STDLIB_SKIP)
    for path in sorted(stdlib):
        compile_bytecode(rootfs / path.relative_to("/"), path)
    compile_bytecode(venv, venv)
    copy_libraries(rootfs, copied, venv)
    write_loader_cache(rootfs, copied)
    if not CA_BUNDLE.is_file():
        raise SystemExit(f"{CA_BUNDLE} missing from the base image (Debian's ca-certificates)")
    copy_path(CA_BUNDLE, rootfs, copied)
    write_users(rootfs)
    (rootfs / "tmp").mkdir(mode=0o1777)
    (rootfs / "tmp").chmod(0o1777)
    write_package_records(dpkg_owners(copied), rootfs)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
