"""The example Alertmanager configuration shipped with the pack: one incident, one notification.

- ``critical`` alerts go to the ``page`` receiver grouped by cluster only: every page of a cluster within
  ``group_wait`` is one notification, later ones join it at most every ``group_interval`` (5m), so a fleet-wide
  incident notifies at most three times in its first 15 minutes, whatever the number of nodes.
- ``warning`` alerts go to the ``ticket`` receiver grouped by cluster and alert name: 200 nodes with the same
  problem are one ticket.
- ``info`` alerts are not sent.
- The pack's inhibitions (alerting.inhibit_rules) mute echoes per node and per cluster.

Receiver URLs are placeholders (``.invalid``): replace them with your pager and ticket webhooks.
"""

from __future__ import annotations

from typing import Any

from alerts.alerting import inhibit_rules
from cilium_node_exporter.mixin.config import Values

PAGE_URL = "http://page.receiver.invalid/cilium-node-exporter"
TICKET_URL = "http://ticket.receiver.invalid/cilium-node-exporter"


def alertmanager_config(v: Values) -> dict[str, Any]:
    """A complete Alertmanager configuration for this pack."""
    cluster = v.config["clusterLabel"]
    return {
        "route": {
            "receiver": "ticket",
            "group_by": [cluster, "alertname"],
            "group_wait": "1m",
            "group_interval": "10m",
            "repeat_interval": "24h",
            "routes": [
                {"receiver": "page", "matchers": ['severity="critical"'], "group_by": [cluster],
                 "group_wait": "30s", "group_interval": "5m", "repeat_interval": "4h"},
                {"receiver": "ticket", "matchers": ['severity="warning"']},
                {"receiver": "none", "matchers": ['severity="info"']},
            ],
        },
        "receivers": [
            {"name": "page", "webhook_configs": [{"url": PAGE_URL, "send_resolved": True}]},
            {"name": "ticket", "webhook_configs": [{"url": TICKET_URL, "send_resolved": True}]},
            {"name": "none"},
        ],
        "inhibit_rules": inhibit_rules(v),
    }
