"""What only a restart of the exporter's container cures, for ``/healthz``.

The chart mounts Cilium's ``hubble.sock`` and ``cilium.sock`` one file each (not the whole run directory,
which also holds Envoy's admin and xDS sockets and, from 1.17, the agent's debug shell socket). A file
mount binds the socket the agent had when the pod started; an agent restart removes it and binds a new
one (``os.Remove`` then ``net.Listen``), and the container keeps the old, deleted file (its link count
drops to 0) where no one listens. Only a new container binds the new file: ``/healthz`` then fails, and
the kubelet restarts the container. A directory mount, or no mount, never shows a deleted file.
"""

from __future__ import annotations

import os
from collections.abc import Iterable


def replaced_sockets(paths: Iterable[str]) -> list[str]:
    """The paths whose file was deleted on the host while mounted here (``st_nlink`` 0)."""
    out = []
    for path in paths:
        try:
            if os.stat(path).st_nlink == 0:
                out.append(path)
        except OSError:  # absent: the source reports it; nothing a restart would change
            continue
    return out


def problem(paths: Iterable[str]) -> str | None:
    """The ``/healthz`` message when a mounted socket was replaced, else None."""
    replaced = replaced_sockets(paths)
    if not replaced:
        return None
    return (f"{', '.join(replaced)} was replaced on the host (the Cilium agent restarted) and this container still "
            "has the old file mounted: restart the container to mount the new one")
