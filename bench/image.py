"""Build the repository's Dockerfile with buildah and run the image with runc, without a Docker daemon;
run as a script, print the image's figures.

    .venv/bin/python bench/image.py

prints build times, layer sizes (unpacked and as pulled), what the runtime tree holds, and the exporter's
RSS at start inside the image (runc, read-only root, the simulator's Hubble socket mounted). Needs root,
buildah, mmdebstrap and runc (`make system-deps`). tests/image builds and runs the image with the same code:

- ``Buildah``: buildah on a private storage root (``--isolation chroot``: no daemon, no user namespace).
- ``build_base``: a stand-in for ``python:3.11-slim-bookworm`` (no registry to pull from here): Debian 12
  with python3, pip, venv and ca-certificates, made by mmdebstrap from this machine's apt sources and
  imported as an image. It trusts the CAs this machine adds in /usr/local/share/ca-certificates, as a
  site's own base image would, so that pip inside the build reaches PyPI through this network.
- ``Container``: the image's entrypoint, env and user run by runc, the OCI runtime Kubernetes nodes use,
  with a read-only root filesystem, every capability dropped, no-new-privileges, its own pid/ipc/uts/mount
  namespaces and the host's network (as the chart's default ``hostNetwork: true``). No rlimits are set:
  this sandbox forbids setting them (which is why ``podman run`` fails here).
"""

from __future__ import annotations

import atexit
import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import weakref
from pathlib import Path
from typing import Any

from cilium_node_simulator.exporter_process import Metrics, free_port, proc_status

REPO = Path(__file__).resolve().parent.parent

TOOLS = ("buildah", "mmdebstrap", "runc")
BASE_PACKAGES = ("python3", "python3-pip", "python3-venv", "ca-certificates")
LOCAL_CAS = Path("/usr/local/share/ca-certificates")


def missing_tools() -> list[str]:
    return [t for t in TOOLS if shutil.which(t) is None]


def run(cmd: list[str], timeout: float = 600, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run ``cmd``; on failure raise with its output (the tail of a build log is what explains it)."""
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False, **kwargs)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd[:4])}... exited {result.returncode}\n"
                             f"--- stdout:\n{result.stdout[-6000:]}\n--- stderr:\n{result.stderr[-6000:]}")
    return result


class Buildah:
    """buildah with its own storage under ``root``: nothing shared with other users of the machine."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.storage = ["--root", str(root / "storage"), "--runroot", str(root / "run")]

    def __call__(self, *args: str, timeout: float = 900, cwd: Path | None = None) -> str:
        return run(["buildah", *self.storage, *args], timeout=timeout, cwd=cwd).stdout

    def build(self, context: Path, tag: str, *args: str, dockerfile: Path | None = None) -> str:
        extra = ["-f", str(dockerfile)] if dockerfile else []
        return self("build", "--isolation", "chroot", "--layers", *extra, *args, "-t", tag, str(context))

    def config(self, image: str) -> dict[str, Any]:
        """The image's OCI config (``Entrypoint``, ``Env``, ``User``...)."""
        return json.loads(self("inspect", "--type", "image", image))["OCIv1"]["config"]

    def mount(self, image: str) -> tuple[str, Path]:
        """A working container of ``image`` and the path of its mounted root filesystem."""
        container = self("from", "--pull-never", image).strip()
        return container, Path(self("mount", container).strip())

    def layers(self, image: str, workdir: Path) -> list[dict[str, Any]]:
        """Each layer of ``image`` as a registry would store it: ``compressed`` (gzip, what a node pulls)
        and ``size`` (the uncompressed tar) in bytes, and ``created_by`` (the Dockerfile instruction)."""
        layout = workdir / "oci-layout"
        shutil.rmtree(layout, ignore_errors=True)
        self("push", "--quiet", "--compression-format", "gzip", image, f"oci:{layout}")
        blob = lambda digest: layout / "blobs" / "sha256" / digest.split(":")[1]  # noqa: E731
        index = json.loads((layout / "index.json").read_text())
        manifest = json.loads(blob(index["manifests"][0]["digest"]).read_text())
        config = json.loads(blob(manifest["config"]["digest"]).read_text())
        history = [h.get("created_by", "") for h in config.get("history", []) if not h.get("empty_layer")]
        out = []
        for i, layer in enumerate(manifest["layers"]):
            with gzip.open(blob(layer["digest"])) as tar:
                size = sum(len(chunk) for chunk in iter(lambda: tar.read(1 << 20), b""))
            out.append({"compressed": layer["size"], "size": size,
                        "created_by": history[i] if i < len(history) else ""})
        shutil.rmtree(layout)
        return out

    def cleanup(self) -> None:
        """Unmount and remove every working container, then the storage (overlay mounts first)."""
        subprocess.run(["buildah", *self.storage, "rm", "--all"], capture_output=True, timeout=120, check=False)
        subprocess.run(["buildah", *self.storage, "rmi", "--all", "--force"], capture_output=True, timeout=120,
                       check=False)
        shutil.rmtree(self.root, ignore_errors=True)


def build_base(buildah: Buildah, workdir: Path, tag: str) -> str:
    """Debian 12 with python3, pip and venv as an image named ``tag`` (see the module docstring)."""
    workdir.mkdir(parents=True, exist_ok=True)
    hooks = []
    if list(LOCAL_CAS.glob("*.crt")):
        hooks = [f"--customize-hook=copy-in {LOCAL_CAS} /usr/local/share",
                 '--customize-hook=chroot "$1" update-ca-certificates']
    # No mirror argument: mmdebstrap uses this machine's apt sources. The merged-usr hook merges /usr as
    # Debian 12 images are, without installing the usrmerge package (and the Perl it needs).
    run(["mmdebstrap", "--variant=minbase", "--include=" + ",".join(BASE_PACKAGES),
         "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr", *hooks, "--format=tar", "bookworm",
         str(workdir / "rootfs.tar")], timeout=900)
    (workdir / "Containerfile").write_text('FROM scratch\nADD rootfs.tar /\nCMD ["python3"]\n')
    buildah.build(workdir, tag)
    (workdir / "rootfs.tar").unlink()
    return tag


_STARTED: weakref.WeakSet[Container] = weakref.WeakSet()


@atexit.register
def _kill_leftovers() -> None:
    for container in list(_STARTED):
        container.stop()


class Container:
    """Run an image's root filesystem (``rootfs``, from ``Buildah.mount``) with runc; a context manager.

    ``args`` follow the image's entrypoint (``entrypoint`` replaces it); ``binds`` maps host paths to
    read-only mount points; ``user``/``groups`` override the image's ``User``.
    """

    def __init__(self, workdir: Path, rootfs: Path, config: dict[str, Any], args: list[str], *,
                 entrypoint: list[str] | None = None, binds: dict[Path, str] | None = None,
                 user: tuple[int, int] | None = None, groups: tuple[int, ...] = (), name: str = "cne") -> None:
        self.name = f"{name}-{os.getpid()}-{time.monotonic_ns()}"
        self.bundle = workdir / self.name
        self.bundle.mkdir(parents=True)
        self.state = workdir / "runc-state"
        self.log_path = self.bundle / "output.log"
        uid, gid = user or tuple(int(x) for x in config["User"].split(":"))
        spec = oci_spec(rootfs, [*(entrypoint or config["Entrypoint"]), *args], config.get("Env", []),
                        uid, gid, groups, binds or {})
        (self.bundle / "config.json").write_text(json.dumps(spec, indent=1))
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(["runc", "--root", str(self.state), "run", "--bundle", str(self.bundle),
                                      self.name], stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT)
        _STARTED.add(self)

    def __enter__(self) -> Container:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait(self, timeout: float = 60) -> int:
        """Wait for the container to exit; its exit code."""
        code = self.proc.wait(timeout)
        self._close()
        return code

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def pid(self) -> int:
        """The container's init process as this machine's pid namespace numbers it."""
        deadline = time.monotonic() + 30
        while True:
            result = subprocess.run(["runc", "--root", str(self.state), "state", self.name], capture_output=True,
                                    text=True, check=False)
            if result.returncode == 0 and json.loads(result.stdout).get("pid"):
                return int(json.loads(result.stdout)["pid"])
            assert self.proc.poll() is None, f"container exited with {self.proc.returncode}:\n{self.output()}"
            assert time.monotonic() < deadline, f"runc state never showed a pid: {result.stderr}"
            time.sleep(0.05)

    def status(self, field: str) -> str:
        """A line of /proc/PID/status of the container's process, as text (``Uid``, ``CapEff``...)."""
        for line in Path(f"/proc/{self.pid()}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return line.split(":", 1)[1].strip()
        raise KeyError(field)

    def rss_bytes(self) -> int:
        return proc_status(self.pid(), "VmRSS")

    def stop(self, timeout: float = 10) -> None:
        if self.proc.poll() is None:
            subprocess.run(["runc", "--root", str(self.state), "kill", self.name, "TERM"], capture_output=True,
                           check=False)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                subprocess.run(["runc", "--root", str(self.state), "kill", self.name, "KILL"], capture_output=True,
                               check=False)
                self.proc.wait(timeout)
        subprocess.run(["runc", "--root", str(self.state), "delete", "--force", self.name], capture_output=True,
                       check=False)
        self._close()

    def _close(self) -> None:
        if not self._log.closed:
            self._log.close()


def oci_spec(rootfs: Path, args: list[str], env: list[str], uid: int, gid: int, groups: tuple[int, ...],
             binds: dict[Path, str]) -> dict[str, Any]:
    """An OCI runtime spec as a kubelet would ask for the chart's pod: read-only root, no capabilities."""
    no_caps: dict[str, list[str]] = {k: [] for k in ("bounding", "effective", "inheritable", "permitted", "ambient")}
    mounts = [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
        *({"destination": dest, "type": "bind", "source": str(src), "options": ["rbind", "ro"]}
          for src, dest in binds.items()),
    ]
    return {
        "ociVersion": "1.0.2",
        "process": {"terminal": False, "user": {"uid": uid, "gid": gid, "additionalGids": list(groups)},
                    "args": args, "env": env, "cwd": "/", "capabilities": no_caps, "noNewPrivileges": True},
        "root": {"path": str(rootfs), "readonly": True},
        "hostname": "cne-image-test",
        "mounts": mounts,
        "linux": {
            "namespaces": [{"type": t} for t in ("pid", "ipc", "uts", "mount")],
            "maskedPaths": ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
        },
    }


def scrape(port: int, path: str = "/metrics") -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def wait_metrics(container: Container, port: int, predicate: Any, timeout: float = 60, what: str = "") -> Metrics:
    """Scrape the container's /metrics until ``predicate(metrics)`` holds; fail with its output otherwise."""
    deadline = time.monotonic() + timeout
    seen = ""
    while time.monotonic() < deadline:
        assert container.proc.poll() is None, f"container exited {container.proc.returncode}:\n{container.output()}"
        try:
            status, body = scrape(port)
        except OSError as e:
            seen = repr(e)
        else:
            seen = body
            if status == 200:
                try:
                    metrics = Metrics(body)
                    if predicate(metrics):
                        return metrics
                except KeyError:
                    pass
        time.sleep(0.2)
    lines = "\n".join(ln for ln in seen.splitlines() if ln.startswith("cilium_node"))
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n--- last scrape:\n{lines or seen}\n"
                         f"--- container output:\n{container.output()[-4000:]}")



def wait_for_path(path: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} did not appear within {timeout}s"
        time.sleep(0.05)


def tree_bytes(path: Path) -> int:
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


MB = 10**6


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
                    wait_for_path(sock)
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
