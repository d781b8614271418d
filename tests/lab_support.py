"""Labs and engine connections that more than one test module builds the same way."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import faultline
from faultline.lab import Lab


@contextmanager
def addon_lab(
    root: Path, name: str, addons: tuple[str, ...], container_tools: tuple[str, ...] = ()
) -> Iterator[Lab]:
    """A 3-node lab of its own under `root/name`, torn down also on failures and Ctrl-C.

    temporary: if the test session dies hard, the next one's cleanup_leftovers() removes it.
    """
    lab = Lab(
        state_dir=root / name,
        nodes=3,
        temporary=True,
        container_tools=container_tools,
        addons=addons,
    )
    try:
        lab.up()
        yield lab
    finally:
        lab.down()


@contextmanager
def recovering_cloud(config: Path | dict[str, Any], tmp_path: Path) -> Iterator[Any]:
    """The engine's os-faults compatible API on `config` (a file, or the config itself),
    with its journal in `tmp_path`.

    Whatever a test leaves applied is recovered afterwards through the engine itself, so a
    failing test cannot leak its fault into the next one.
    """
    journal = tmp_path / "journal.jsonl"
    connected = (
        faultline.connect(config, journal=journal)
        if isinstance(config, dict)
        else faultline.connect(config_filename=config, journal=journal)
    )
    with connected as cloud:
        yield cloud
        leftovers = [r for r in cloud.records() if r.needs_recovery]
        if leftovers:
            cloud.recover(leftovers, raise_on_error=False)
