"""An Alertmanager webhook receiver that records every notification it gets: the demo shows what reached the
page and ticket receivers, the end-to-end tests read it."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Delivery:
    """One alert of one webhook notification."""

    received: float  # time.time() when the notification arrived
    receiver: str  # the Alertmanager receiver that sent it (payload "receiver")
    status: str  # "firing" | "resolved" (of this alert)
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: str
    ends_at: str

    @property
    def name(self) -> str:
        return self.labels.get("alertname", "")


class _Handler(BaseHTTPRequestHandler):
    server: WebhookReceiver

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        try:
            self.server.record(json.loads(body))
            code = 200
        except (ValueError, KeyError, TypeError):
            self.server.bad.append(body)
            code = 400
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()


class WebhookReceiver(ThreadingHTTPServer):
    """Serves on 127.0.0.1:<free port>; ``deliveries()`` filters what arrived."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self._lock = threading.Lock()
        self.payloads: list[dict[str, Any]] = []
        self.bad: list[bytes] = []
        self._deliveries: list[Delivery] = []
        self._thread = threading.Thread(target=self.serve_forever, args=(0.1,), daemon=True, name="webhook")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/alerts"

    def start(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

    def record(self, payload: dict[str, Any]) -> None:
        now = time.time()
        items = [Delivery(now, payload["receiver"], a["status"], dict(a["labels"]), dict(a.get("annotations", {})),
                          a.get("startsAt", ""), a.get("endsAt", "")) for a in payload["alerts"]]
        with self._lock:
            self.payloads.append(payload)
            self._deliveries.extend(items)

    def deliveries(self, alertname: str | None = None, status: str | None = None, **labels: str) -> list[Delivery]:
        """Deliveries in arrival order, filtered by name, status and exact label values."""
        with self._lock:
            items = list(self._deliveries)
        return [d for d in items
                if (alertname is None or d.name == alertname) and (status is None or d.status == status)
                and all(d.labels.get(k) == v for k, v in labels.items())]
