"""Servers on the OpenStack lab's fake driver, for the tests that need a tenant's view."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def fake_server(conn: Any, name: str, host: str | None = None) -> Iterator[Any]:
    """An ACTIVE server (on Nova host `host` if given), deleted afterwards."""
    image = conn.image.find_image("faultline-fake", ignore_missing=False)
    flavor = conn.compute.find_flavor("m1.tiny", ignore_missing=False)
    where = {"availability_zone": f"nova:{host}"} if host else {}
    server = conn.compute.create_server(
        name=name, image_id=image.id, flavor_id=flavor.id, networks="none", **where
    )
    try:
        yield conn.compute.wait_for_server(server, status="ACTIVE", interval=0.5, wait=120)
    finally:
        conn.compute.delete_server(server.id, ignore_missing=True)
        conn.compute.wait_for_delete(server, wait=60)
