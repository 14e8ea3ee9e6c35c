"""The image's figures: build times, layer sizes (unpacked and as pulled), what the runtime tree holds,
and the exporter's RSS at start inside it (runc, read-only root, the simulator's Hubble socket mounted).

Builds exactly as tests/image does (a local Debian 12 + Python 3.11 base made by mmdebstrap, then the
repository's Dockerfile with buildah); needs root, buildah, mmdebstrap and runc (`make system-deps`).

    .venv/bin/python bench/image.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support.image import Buildah, Container, build_base, free_port, wait_metrics  # noqa: E402
from tests.support.procs import wait_until  # noqa: E402

MB = 10**6


def tree_bytes(path: Path) -> int:
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="cne-image-bench-") as tmp:
        work = Path(tmp)
        buildah = Buildah(work / "buildah")
        try:
            started = time.monotonic()
            base = build_base(buildah, work / "base", "localhost/cne-bench-base:python3.11-bookworm")
            base_s = time.monotonic() - started
            started = time.monotonic()
            image = "localhost/cilium-node-exporter:bench"
            buildah.build(REPO, image, "--build-arg", f"PYTHON_IMAGE={base}")
            build_s = time.monotonic() - started
            print(f"local base (mmdebstrap + import): {base_s:.0f} s; Dockerfile build: {build_s:.0f} s")

            base_layers = buildah.layers(base, work)
            print(f"local base image: {sum(x['size'] for x in base_layers) / MB:.1f} MB unpacked "
                  "(a stand-in for python:3.11-slim-bookworm, which the final image does not contain)")
            layers = buildah.layers(image, work)
            print("\nlayer                                   unpacked    pulled (gzip)")
            for layer in layers:
                what = layer["created_by"].split("COPY", 1)[-1].strip()[:38]
                print(f"{what:38}  {layer['size'] / MB:7.1f} MB  {layer['compressed'] / MB:7.1f} MB")
            total = sum(x["size"] for x in layers)
            pulled = sum(x["compressed"] for x in layers)
            print(f"{'image':38}  {total / MB:7.1f} MB  {pulled / MB:7.1f} MB")

            config = buildah.config(image)
            _, rootfs = buildah.mount(image)
            venv = rootfs / "opt/cilium-node-exporter"
            site = next(venv.glob("lib/python3.*/site-packages"))
            print("\nin the venv layer:")
            for name in ("grpc", "google", "prometheus_client", "cilium_node_exporter", "typing_extensions.py"):
                path = site / name
                size = tree_bytes(path) if path.is_dir() else path.stat().st_size
                print(f"  {name:28} {size / MB:6.1f} MB")
            stdlib = next((rootfs / "usr/lib").glob("python3.*"))
            libs = [p for p in (rootfs / "usr/lib").rglob("*.so*") if stdlib not in p.parents]
            print("in the runtime layer:")
            print(f"  {'standard library':28} {tree_bytes(stdlib) / MB:6.1f} MB")
            print(f"  {'interpreter':28} {(rootfs / 'usr/bin/python3.11').stat().st_size / MB:6.1f} MB")
            lib_bytes = sum(p.stat().st_size for p in libs if p.is_file() and not p.is_symlink())
            packages = len(list((rootfs / "var/lib/dpkg/status.d").iterdir()))
            print(f"  {'shared libraries':28} {lib_bytes / MB:6.1f} MB  ({packages} Debian packages recorded)")

            sockdir = work / "cilium"
            sockdir.mkdir()
            sock = sockdir / "hubble.sock"
            with open(work / "sim.log", "wb") as log:
                sim = subprocess.Popen([sys.executable, "-m", "cilium_node_exporter", "simulate", "--scenario",
                                        "steady", "--hubble-socket", str(sock)], stdout=log, stderr=log)
                try:
                    wait_until(sock.exists, 30, "the simulator's socket")
                    os.chmod(sock, 0o666)
                    port = free_port()
                    args = ["--sources=hubble", "--node-name=sim-1", f"--listen-address=127.0.0.1:{port}"]
                    with Container(work, rootfs, config, args, binds={sockdir: "/var/run/cilium"}) as c:
                        started = time.monotonic()
                        wait_metrics(c, port, lambda m: m.value("cilium_node_exporter_source_up",
                                                                source="hubble") == 1, what="hubble up")
                        ready_s = time.monotonic() - started
                        rss_start = c.rss_bytes()
                        time.sleep(30)
                        rss_30 = c.rss_bytes()
                    print(f"\nexporter in the image (runc, read-only root, hubble source on the steady scenario):"
                          f"\n  serving with hubble up after {ready_s:.1f} s; RSS then {rss_start / 2**20:.1f} MiB,"
                          f" after 30 s {rss_30 / 2**20:.1f} MiB")
                finally:
                    sim.terminate()
                    sim.wait(10)
        finally:
            buildah.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
