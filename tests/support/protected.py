"""The real exporter behind its web configuration (TLS, basic auth): ready once its plain health listener
answers, since the main listener may want a certificate or a password."""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path
from typing import Any

from tests.support.procs import Exporter, free_port


class ProtectedExporter(Exporter):
    """:class:`Exporter` with ``--health-listen-address`` on a free port; ``https`` is the main listener's URL
    with the https scheme."""

    def __init__(self, tmp: Path, *flags: str, **kw: Any) -> None:
        self.health_url = f"http://127.0.0.1:{free_port()}"
        super().__init__(tmp, *flags, f"--health-listen-address={self.health_url.removeprefix('http://')}", **kw)
        self.https = self.base.replace("http://", "https://")

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise AssertionError(f"exporter exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.health_url + "/readyz", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"exporter not ready within {timeout}s:\n{self.log()}")
