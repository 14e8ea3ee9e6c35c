"""The last ServerStatus answer of the node's Hubble observer (None while unavailable)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class HubbleStatus:
    """Fields of ``observer.ServerStatusResponse`` the contract exports."""

    seen_flows: int
    num_flows: int
    max_flows: int
    version: str
