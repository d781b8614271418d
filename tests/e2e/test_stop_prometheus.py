"""A Prometheus stop condition against a real Prometheus (Debian's package).

Prometheus runs on 127.0.0.1 and scrapes, every second, a tiny memcached exporter inside
lab node2: busybox httpd on node2's address, whose CGI asks the node's memcached for its
stats and answers `memcached_up 1` or `0`. Killing memcached on node2 is then seen by
Prometheus exactly as a real outage would be, and the injection that caused it is aborted.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_operator import condition, injection, status, wait_phase

from faultline.lab import Lab, packages
from faultline.lab.system import LabError
from lab_observe import eventually, pids

pytestmark = pytest.mark.lab

EXPORTER = """\
#!/bin/sh
echo "Content-Type: text/plain; version=0.0.4"
echo
echo "# TYPE memcached_up gauge"
if printf 'stats\\r\\nquit\\r\\n' | nc -w 1 127.0.0.1 11211 | grep -q 'STAT pid'; then
  echo "memcached_up 1"
else
  echo "memcached_up 0"
fi
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Prometheus:
    url: str
    target: str

    def query(self, promql: str) -> list[dict[str, Any]]:
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - http://127.0.0.1
            body = json.load(resp)
        assert body["status"] == "success", body
        return list(body["data"]["result"])

    def value(self, promql: str) -> str | None:
        result = self.query(promql)
        return str(result[0]["value"][1]) if result else None


def _start_exporter(lab: Lab, node: str, port: int) -> tuple[str, str]:
    """busybox httpd in the node (its network, PID and mount namespaces), serving the CGI
    from the node's own /run. Returns its pid there, and that directory."""
    root = f"/run/faultline-exporter-{port}"
    lab.exec(
        node,
        f"mkdir -p {root}/cgi-bin && cat > {root}/cgi-bin/metrics"
        f" && chmod 755 {root}/cgi-bin/metrics",
        input=EXPORTER,
        check=True,
    )
    address = f"{lab.node(node).ip}:{port}"
    done = lab.exec(
        node,
        f"setsid busybox httpd -f -p {address} -h {root} </dev/null >/dev/null 2>&1 & echo $!",
        check=True,
    )
    return done.stdout.strip(), root


@pytest.fixture
def prometheus(healthy_lab: Lab, tmp_path: Path) -> Iterator[Prometheus]:
    packages.ensure(("prometheus",))  # also in the Makefile's system-packages
    lab = healthy_lab
    exporter_port = free_port()
    exporter_pid, exporter_root = _start_exporter(lab, "node2", exporter_port)
    try:
        yield from _run_prometheus(f"{lab.node('node2').ip}:{exporter_port}", tmp_path)
    finally:
        with contextlib.suppress(LabError):  # a node powered off took it along
            lab.exec("node2", f"kill {exporter_pid}; rm -rf {exporter_root}")


def _run_prometheus(target: str, tmp_path: Path) -> Iterator[Prometheus]:
    """Prometheus on 127.0.0.1, data in tmp_path, scraping `target` every second."""
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "800ms", "evaluation_interval": "1s"},
        "scrape_configs": [
            {
                "job_name": "memcached",
                "metrics_path": "/cgi-bin/metrics",
                "static_configs": [{"targets": [target], "labels": {"node": "node2"}}],
            }
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = (tmp_path / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            "/usr/bin/prometheus",
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        prom = Prometheus(f"http://127.0.0.1:{port}", target)

        def scraped() -> bool:
            assert proc.poll() is None, (tmp_path / "prometheus.log").read_text()[-3000:]
            try:
                return prom.value('memcached_up{job="memcached"}') == "1"
            except OSError:
                return False

        try:
            eventually(scraped, 30, "Prometheus scrapes node2's exporter: memcached_up 1")
        except AssertionError as exc:
            with urllib.request.urlopen(f"{prom.url}/api/v1/targets", timeout=5) as resp:  # noqa: S310
                targets = resp.read().decode()
            log_tail = (tmp_path / "prometheus.log").read_text()[-2000:]
            raise AssertionError(f"{exc}\ntargets: {targets}\nlog: {log_tail}") from None
        yield prom
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()


def test_prometheus_stop_condition_aborts_and_recovers(
    e2e: Any, prometheus: Prometheus, kube: Any, kubectl: Any, lab: Any
) -> None:
    """The fault itself breaks what Prometheus watches: killing node2's memcached turns its
    exporter's memcached_up to 0, the query returns 1, the injection is aborted and
    memcached is started again (and Prometheus sees it back)."""
    down = 'memcached_up{job="memcached", node="node2"} == bool 0'
    kubectl.apply(
        injection(
            "watched-by-prometheus",
            command="kill memcached service on node2 node",
            duration="5m",
            stopConditions=[
                {  # healthy throughout: the exporter itself stays up
                    "name": "exporter-scraped",
                    "prometheus": {"url": prometheus.url, "query": 'up{job="memcached"} == bool 0'},
                    "intervalSeconds": 0.5,
                    "failureThreshold": 2,
                },
                {
                    "name": "memcached-up",
                    "prometheus": {"url": prometheus.url, "query": down},
                    "intervalSeconds": 0.5,
                    "failureThreshold": 2,
                },
            ],
        )
    )
    st = wait_phase(kube, "watched-by-prometheus", "Aborted", timeout=60)
    assert st["reason"] == "StopCondition"
    stopped = condition(st, "Stopped")
    assert stopped["status"] == "True" and stopped["reason"] == "StopCondition"
    assert "'memcached-up'" in stopped["message"] and down in stopped["message"]
    assert "exporter-scraped" not in stopped["message"]
    assert st["message"] == stopped["message"]
    assert condition(st, "AllRecovered")["status"] == "True"
    (record,) = st["records"]
    assert record["node"] == "node2" and record["phase"] == "Recovered"
    # Really killed, really back: memcached runs again and Prometheus scrapes it as up.
    assert pids(lab, "node2", "memcached")
    eventually(lambda: prometheus.value(down) == "0", 15, "Prometheus sees memcached up again")
    events = kubectl(
        "get", "events", "--field-selector", "involvedObject.name=watched-by-prometheus"
    )
    assert "StopCondition" in events.stdout


def test_prometheus_unreachable_counts_as_failing(
    e2e: Any, kube: Any, kubectl: Any, lab: Any
) -> None:
    """A stop condition that cannot be evaluated is not a healthy one."""
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    kubectl.apply(
        injection(
            "blind",
            command="kill memcached service on node3 node",
            duration="5m",
            stopConditions=[
                {
                    "name": "prometheus-gone",
                    "prometheus": {"url": url, "query": "vector(0)", "timeoutSeconds": 1},
                    "intervalSeconds": 0.5,
                    "failureThreshold": 2,
                }
            ],
        )
    )
    st = wait_phase(kube, "blind", "Aborted", timeout=30)
    assert "'prometheus-gone'" in condition(st, "Stopped")["message"]
    assert url in condition(st, "Stopped")["message"]
    assert status(kube, "blind")["reason"] == "StopCondition"
    assert pids(lab, "node3", "memcached")  # recovered
