"""Serve the emulated Kubernetes API until interrupted: ``python -m faultline.lab.kubeapi``."""

from __future__ import annotations

import argparse
import pathlib
import signal
import threading

from faultline.lab.kubeapi.api import KubeAPI, load_manifests


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m faultline.lab.kubeapi", description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (default: any)")
    parser.add_argument("--kubeconfig", type=pathlib.Path, help="write a kubeconfig here")
    parser.add_argument(
        "--apply",
        action="append",
        default=[],
        type=pathlib.Path,
        help="YAML/JSON manifests (files or directories) to apply at start, CRDs first",
    )
    parser.add_argument("--access-log", action="store_true", help="log every request")
    args = parser.parse_args(argv)

    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with KubeAPI(port=args.port, access_log=args.access_log) as api:
        files = sorted(
            f
            for path in args.apply
            for f in (path.rglob("*") if path.is_dir() else [path])
            if f.suffix in (".yaml", ".yml", ".json")
        )
        docs = [doc for f in files for doc in load_manifests(f)]
        crds = [d for d in docs if d.get("kind") == "CustomResourceDefinition"]
        for doc in crds + [d for d in docs if d not in crds]:
            api.apply(doc)
        if args.kubeconfig:
            api.write_kubeconfig(args.kubeconfig)
        print(f"Kubernetes API emulator on {api.url}", flush=True)
        if args.kubeconfig:
            print(f"export KUBECONFIG={args.kubeconfig.resolve()}", flush=True)
        stop.wait()


if __name__ == "__main__":
    main()
