"""``geoattest.dev.procs.free_ports``: the fleet and the benchmarks take several ports at once
(the worker's metrics and the push listener); each must be distinct, or the second service
finds its port taken (a quickstart run once had both on one port)."""

from __future__ import annotations

import socket

from geoattest.dev.procs import free_ports


def test_the_ports_are_distinct_and_each_can_be_bound() -> None:
    ports = free_ports(64)
    assert len(set(ports)) == 64
    with socket.socket() as one, socket.socket() as other:
        one.bind(("127.0.0.1", ports[0]))
        other.bind(("127.0.0.1", ports[1]))
