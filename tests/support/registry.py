"""A real OCI registry on loopback (Debian's docker-registry, the CNCF distribution server) for the
publishing steps: buildah's manifest push and helm's chart push and pull, over plain HTTP."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from cilium_node_simulator.exporter_process import free_port

MANIFEST_TYPES = ", ".join(("application/vnd.oci.image.index.v1+json",
                            "application/vnd.docker.distribution.manifest.list.v2+json",
                            "application/vnd.oci.image.manifest.v1+json",
                            "application/vnd.docker.distribution.manifest.v2+json"))


class Registry:
    """``docker-registry serve`` on 127.0.0.1:<free port> with its storage under ``workdir``."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("docker-registry")
        assert binary, "docker-registry missing: make system-deps"
        workdir.mkdir(parents=True, exist_ok=True)
        self.host = f"127.0.0.1:{free_port()}"
        config = workdir / "config.yml"
        config.write_text(json.dumps({"version": 0.1, "log": {"level": "warn"},
                                      "storage": {"filesystem": {"rootdirectory": str(workdir / "data")}},
                                      "http": {"addr": self.host}}))
        self._log = open(workdir / "registry.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([binary, "serve", str(config)], stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://{self.host}/v2/", timeout=2):
                    break
            except OSError:
                assert self.proc.poll() is None, (workdir / "registry.log").read_text()
                assert time.monotonic() < deadline, "docker-registry did not answer within 30 s"
                time.sleep(0.05)

    def get(self, path: str, accept: str = MANIFEST_TYPES) -> dict[str, Any]:
        request = urllib.request.Request(f"http://{self.host}/v2/{path}", headers={"Accept": accept})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self._log.close()
