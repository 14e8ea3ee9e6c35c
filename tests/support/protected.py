"""The real exporter behind its web configuration (TLS, basic auth): ready once its plain health listener
answers, since the main listener may want a certificate or a password."""

from __future__ import annotations

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

    def ready_url(self) -> str:
        return self.health_url + "/readyz"
