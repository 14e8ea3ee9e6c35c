"""The repository's Dockerfile built for real (buildah, on a local Debian 12 + Python 3.11 base) and the
image run by runc: entrypoint and version, user, what is (not) in it, read-only root, and /metrics served
from the simulator's Hubble socket mounted from outside, as the chart mounts the node's /var/run/cilium.

Figures (sizes, RSS, build time) are printed by ``bench/image.py``; here they are budgets.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from bench.image import Container, free_port, wait_metrics
from cilium_node_exporter import __version__
from tests.support import deploy_guide
from tests.support.paths import REPO
from tests.support.procs import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("image"), pytest.mark.timeout(1200)]

VENV = "/opt/cilium-node-exporter"
ENTRYPOINT = [f"{VENV}/bin/cilium-node-exporter"]
PYTHON = [f"{VENV}/bin/python"]
# Cilium's agent chowns hubble.sock to root:<gid of group "cilium"> and chmods it 0660
# (pkg/api SetDefaultPermissions, every release 1.14-1.19); the chart's non-root mode adds that gid.
CILIUM_GID = 1337
# Programs a container image must not carry here: shells, coreutils, package managers, installers, compilers.
FORBIDDEN = {"sh", "bash", "dash", "busybox", "ls", "cat", "cp", "rm", "chmod", "env", "mount", "su", "sudo",
             "apt", "apt-get", "dpkg", "perl", "pip", "pip3", "pip3.11", "easy_install", "gcc", "cc", "c++",
             "g++", "ld", "as", "make", "curl", "wget", "nc", "ldd", "ldconfig"}

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def run_image(workdir: Path, rootfs: Path, config: dict[str, Any], args: list[str], **kw: Any) -> tuple[int, str]:
    with Container(workdir, rootfs, config, args, **kw) as container:
        code = container.wait(120)
        return code, container.output()


def test_entrypoint_is_the_exporter_and_reports_the_package_version(workdir: Path, rootfs: Path,
                                                                    image_config: dict[str, Any]) -> None:
    assert image_config["Entrypoint"] == ENTRYPOINT
    assert not image_config.get("Cmd")
    code, out = run_image(workdir, rootfs, image_config, ["--version"])
    assert code == 0, out
    assert out.strip() == f"cilium-node-exporter {__version__}"
    code, out = run_image(workdir, rootfs, image_config, ["--no-such-flag"])
    assert code == 2 and "--no-such-flag" in out, out


def test_image_user_is_65532_with_a_passwd_entry(rootfs: Path, image_config: dict[str, Any]) -> None:
    assert image_config["User"] == "65532:65532"  # numeric, so runAsNonRoot can verify it
    passwd = {line.split(":")[2]: line for line in (rootfs / "etc/passwd").read_text().splitlines()}
    assert set(passwd) == {"0", "65532", "65534"}
    assert all(line.endswith(":/sbin/nologin") for line in passwd.values())
    assert not (rootfs / "sbin/nologin").exists()  # nobody can log in: there is nothing to log in to


def _executables(rootfs: Path) -> dict[str, bytes]:
    """Every regular file with an execute bit: path -> its first bytes."""
    found = {}
    for path in rootfs.rglob("*"):
        if path.is_file() and not path.is_symlink() and os.stat(path).st_mode & 0o111:
            with path.open("rb") as handle:
                found["/" + str(path.relative_to(rootfs))] = handle.read(128)
    return found


def test_no_shell_package_manager_pip_or_compiler(rootfs: Path) -> None:
    names = {p.name for p in rootfs.rglob("*") if not p.is_dir()}
    assert not names & FORBIDDEN, sorted(names & FORBIDDEN)
    executables = _executables(rootfs)
    programs = {p for p, head in executables.items() if head.startswith(b"\x7fELF") and ".so" not in Path(p).name}
    assert programs == {"/usr/bin/python3.11"}, programs  # the interpreter is the only program
    scripts = {p: head.split(b"\n")[0] for p, head in executables.items() if head.startswith(b"#!")}
    for path, shebang in scripts.items():  # stdlib and wheel files with a python shebang: python runs them
        assert re.fullmatch(rb"#! ?(/usr/bin/env )?(\S*/)?python[0-9.]*( -\w+)?", shebang.strip()), (path, shebang)
    assert scripts[ENTRYPOINT[0]].strip() == f"#!{VENV}/bin/python3".encode()
    site = next((rootfs / VENV.lstrip("/")).glob("lib/python3.*/site-packages"))
    assert not list(site.glob("pip*")) and not list(site.glob("setuptools*")) and not list(site.glob("wheel*"))
    # only the exporter and its runtime dependencies (pyproject's core list, plus grpcio's typing_extensions)
    core = {re.split(r"[<>=!~ \[]", d)[0].replace("-", "_").lower() for d in PYPROJECT["project"]["dependencies"]}
    installed = {d.name.split("-")[0].lower() for d in site.glob("*.dist-info")}
    assert installed == {"cilium_node_exporter", "typing_extensions", *core}
    stdlib = next((rootfs / "usr/lib").glob("python3.*"))
    assert not (stdlib / "ensurepip").exists() and not (stdlib / "site-packages").exists()
    assert not (rootfs / "usr/include").exists()


def test_python_in_the_image_has_no_installer(workdir: Path, rootfs: Path, image_config: dict[str, Any]) -> None:
    probe = ("import importlib.util as u, sys; "
             "print([m for m in ('pip', 'ensurepip', 'setuptools', 'distutils', 'venv') if u.find_spec(m)]); "
             "import ssl, zlib, json, decimal, grpc, google.protobuf; "
             "print(ssl.OPENSSL_VERSION)")
    code, out = run_image(workdir, rootfs, image_config, ["-c", probe], entrypoint=PYTHON)
    assert code == 0, out
    found, openssl = out.strip().splitlines()
    assert found == "['venv']"  # the venv module stays (stdlib); it cannot install pip without ensurepip
    assert openssl.startswith("OpenSSL 3.")


def test_root_filesystem_is_read_only_and_nothing_is_writable(workdir: Path, rootfs: Path,
                                                              image_config: dict[str, Any]) -> None:
    """As uid 0 with no capabilities (the chart's default identity), so only the read-only mount stops it."""
    probe = ("import errno\nfor p in ('/x', '/tmp/x', '/opt/cilium-node-exporter/x', '/etc/passwd'):\n"
             "    try:\n        open(p, 'a')\n    except OSError as e:\n        print(p, errno.errorcode[e.errno])\n"
             "    else:\n        print(p, 'WRITABLE')\n")
    code, out = run_image(workdir, rootfs, image_config, ["-c", probe], entrypoint=PYTHON, user=(0, 0))
    assert code == 0, out
    assert dict(line.split() for line in out.strip().splitlines()) == {
        "/x": "EROFS", "/tmp/x": "EROFS", "/opt/cilium-node-exporter/x": "EROFS", "/etc/passwd": "EROFS"}


def test_dpkg_records_and_copyrights_for_the_debian_libraries(rootfs: Path) -> None:
    status_dir = rootfs / "var/lib/dpkg/status.d"
    records = {p.name: p.read_text() for p in status_dir.iterdir()}
    assert {"libc6", "libssl3", "zlib1g", "libffi8"} <= set(records), sorted(records)
    for name, text in records.items():
        assert re.search(rf"^Package: {re.escape(name)}$", text, re.M) and re.search(r"^Version: \S+", text, re.M)
        assert (rootfs / "usr/share/doc" / name / "copyright").exists(), name
    # Modules nothing imports are left out together with the libraries they would pull in.
    assert not {"libsqlite3-0", "libncursesw6", "libreadline8", "libdb5.3", "libkrb5-3"} & set(records)


def test_serves_metrics_from_the_mounted_hubble_socket_as_non_root(workdir: Path, rootfs: Path,
                                                                    image_config: dict[str, Any]) -> None:
    sockdir = workdir / "cilium"
    sockdir.mkdir()
    sock = sockdir / "hubble.sock"
    sim_log = (workdir / "simulator.log").open("wb")
    simulator = subprocess.Popen([sys.executable, "-m", "cilium_node_exporter", "simulate", "--scenario", "steady",
                                  "--version", "1.16.7", "--hubble-socket", str(sock)],
                                 stdout=sim_log, stderr=subprocess.STDOUT)
    try:
        wait_until(sock.exists, 30, "the simulator's socket")
        os.chown(sock, 0, CILIUM_GID)
        os.chmod(sock, 0o660)
        port = free_port()
        args = ["--sources=hubble", "--node-name=sim-1", f"--listen-address=127.0.0.1:{port}"]
        # The default --hubble-address is unix:///var/run/cilium/hubble.sock, where the chart mounts it.
        with Container(workdir, rootfs, image_config, args, binds={sockdir: "/var/run/cilium"},
                       groups=(CILIUM_GID,)) as container:
            metrics = wait_metrics(
                container, port, lambda m: m.value("cilium_node_exporter_source_up", source="hubble") == 1
                and m.sum("cilium_node_policy_verdicts_total") > 0, what="hubble up and verdicts counted")
            (info,) = metrics.series("cilium_node_hubble_info")
            assert "v1.16.7" in dict(info)["version"], info  # ServerStatus.version, e.g. cilium v1.16.7+g<rev>
            # docs/deploy.md "Check that it works" greps this; its sampleLimit must leave room.
            assert re.search(r"^cilium_node_exporter_source_up", metrics.text, re.M)
            assert len(metrics.samples) < _example_sample_limit() / 10, len(metrics.samples)
            assert container.status("Uid").split() == ["65532"] * 4
            assert container.status("Groups").split() == [str(CILIUM_GID)]
            assert int(container.status("CapEff"), 16) == 0
            rss = container.rss_bytes()
            limit = _chart_memory_limit()
            assert rss < limit / 2, f"RSS at start {rss / 2**20:.1f} MiB against the chart's limit"
            os.kill(container.pid(), signal.SIGTERM)
            assert container.wait(30) == 0, container.output()
            assert "Traceback" not in container.output(), container.output()
    finally:
        simulator.terminate()
        simulator.wait(10)
        sim_log.close()


def _example_sample_limit() -> int:
    values = yaml.safe_load((REPO / "docs/examples/kube-prometheus-stack-values.yaml").read_text())
    return int(values["serviceMonitor"]["sampleLimit"])


def _chart_memory_limit() -> int:
    values = yaml.safe_load((REPO / "helm/cilium-node-exporter/values.yaml").read_text())
    limit = values["resources"]["limits"]["memory"]
    assert limit.endswith("Mi")
    return int(limit[:-2]) * 2**20


def test_layers_within_budget(buildah: Any, built: dict[str, Any], workdir: Path) -> None:
    """Two layers on nothing: the runtime tree taken from the base, then the venv (ours: the exporter and
    its runtime dependencies). The venv is the part the 40 MB goal applies to; the whole image, base
    included, stays within 100 MB unpacked (bench/image.py prints the figures)."""
    layers = buildah.layers(built["image"], workdir)
    assert [("COPY" in layer["created_by"]) for layer in layers] == [True, True], layers
    runtime, venv = layers
    assert venv["size"] <= 40 * 10**6, layers
    assert runtime["size"] + venv["size"] <= 100 * 10**6, layers


def test_the_deploy_guides_buildah_commands(buildah: Any, built: dict[str, Any], registry: Any) -> None:
    """docs/deploy.md's buildah build + manifest push, as written but for what this machine lacks: its own
    architecture only (no qemu-user-static here), the local base image (no registry to pull
    python:3.11-slim-bookworm from), chroot isolation, and a registry on loopback over plain HTTP."""
    variables = deploy_guide.variables()
    (build,) = deploy_guide.command("buildah", "build")
    (push,) = deploy_guide.command("buildah", "manifest", "push")
    name = f"{variables['REPO']}:{variables['VERSION']}"
    assert build == ["buildah", "build", "--layers", "--platform", "linux/amd64,linux/arm64", "--manifest", name, "."]
    assert push == ["buildah", "manifest", "push", "--all", name, f"docker://{name}"]
    arch = {"x86_64": "amd64", "aarch64": "arm64"}[os.uname().machine]
    local = variables["REPO"].replace("registry.example.com", registry.host) + ":" + variables["VERSION"]
    buildah("build", "--isolation", "chroot", "--build-arg", f"PYTHON_IMAGE={built['base']}",
            *[f"linux/{arch}" if a == "linux/amd64,linux/arm64" else local if a == name else a for a in build[2:-1]],
            str(REPO))
    buildah(*push[1:4], local, f"docker://{local}", "--tls-verify=false")
    repository, tag = local.split("/", 1)[1].rsplit(":", 1)
    index = registry.get(f"{repository}/manifests/{tag}")
    assert [m["platform"]["architecture"] for m in index["manifests"]] == [arch], index
    manifest = registry.get(f"{repository}/manifests/{index['manifests'][0]['digest']}")
    config = registry.get(f"{repository}/blobs/{manifest['config']['digest']}", accept="*/*")["config"]
    assert config["Entrypoint"] == ENTRYPOINT and config["User"] == "65532:65532"


def test_every_module_has_bytecode_the_read_only_image_never_rewrites(rootfs: Path) -> None:
    """PEP 552 flags 0b01: hash-based and not checked against the source, so no start compiles anything."""
    missing, checked = [], []
    trees = [next((rootfs / "usr/lib").glob("python3.*")), rootfs / VENV.lstrip("/")]
    for tree in trees:
        for source in tree.rglob("*.py"):
            cached = list((source.parent / "__pycache__").glob(f"{source.stem}.cpython-*.pyc"))
            if not cached:
                missing.append(str(source.relative_to(rootfs)))
                continue
            flags = int.from_bytes(cached[0].read_bytes()[4:8], "little")
            if flags != 0b01:
                checked.append((str(cached[0].relative_to(rootfs)), flags))
    assert not missing, missing[:20]
    assert not checked, checked[:20]
