"""The RAPI client and discovery against the lab's real Ganeti cluster, with its quirks."""

from __future__ import annotations

import base64
import http.client
import json
import ssl
import subprocess
from pathlib import Path
from typing import Any

import pytest
from ganeti_helpers import (
    INST1,
    INST2,
    INST3,
    MASTER,
    NODE2,
    cloud_config,
    gnt,
    node_role_cli,
    run,
)

import faultline
from faultline.drivers.ganeti import (
    GanetiAuthError,
    GanetiError,
    GanetiJobError,
    GanetiTlsError,
    RapiClient,
    discover_nodes,
)
from faultline.engine.discovery import discovered_config
from faultline.lab import Lab
from faultline.lab import addon_ganeti as addon
from faultline.models.config import parse_config
from faultline.models.errors import ConfigError
from faultline.models.ganeti import GanetiConnection, GanetiDiscovery

pytestmark = pytest.mark.lab


def raw_request(
    conn: GanetiConnection, method: str, path: str, body: bytes | None, headers: dict[str, str]
) -> tuple[int, Any]:
    """A request of the test's own (no Faultline code): what RAPI itself does."""
    ctx = ssl.create_default_context(cafile=conn.ca_file)
    ctx.check_hostname = False
    port = int(conn.url.rsplit(":", 1)[1])
    client = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=30)
    password = Path(conn.password_file or "").read_text().strip()
    token = base64.b64encode(f"{conn.username}:{password}".encode()).decode()
    client.request(method, path, body=body, headers={"Authorization": f"Basic {token}", **headers})
    response = client.getresponse()
    data = response.read()
    client.close()
    return response.status, json.loads(data) if data else None


# -- the lab cluster ---------------------------------------------------------------------------


def test_the_cluster_is_real_and_rapi_is_on_loopback(glab: Lab, conn: GanetiConnection) -> None:
    assert conn.url.startswith("https://127.0.0.1:")
    assert conn.ca_file and conn.password_file
    assert Path(conn.password_file).stat().st_mode & 0o077 == 0
    nodes = gnt(glab, "gnt-node", "list", "--no-headers", "-o", "name,role").split("\n")
    assert [line.split() for line in nodes if line] == [[MASTER, "M"], [NODE2, "C"]]
    info = gnt(glab, "gnt-cluster", "info")
    assert "Enabled hypervisors: fake" in info
    listed = gnt(glab, "gnt-instance", "list", "--no-headers", "-o", "name,pnode,status")
    rows = [line.split() for line in listed.strip().split("\n")]
    assert [r[0] for r in rows] == [INST1, INST2, INST3]
    assert {r[1] for r in rows} == {MASTER, NODE2}
    # Only the forwarder listens outside the cluster's namespace, and only on loopback.
    port = conn.url.rsplit(":", 1)[1]
    listening = subprocess.run(
        ["ss", "-Htln", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout.split()
    assert f"127.0.0.1:{port}" in listening


def test_addon_down_is_idempotent_and_leaves_nothing(lab_root: Path) -> None:
    """`down` on a lab whose add-on never started, twice: no error, nothing left."""
    scratch = Lab(state_dir=lab_root / "ganeti-never-up")
    (scratch.state_dir / "addons" / addon.NAME).mkdir(parents=True)
    addon.ADDON.down(scratch)
    addon.ADDON.down(scratch)
    assert not (scratch.state_dir / "addons" / addon.NAME).exists()


# -- discovery ---------------------------------------------------------------------------------


def test_discovery_returns_nodes_and_instances_with_labels(conn: GanetiConnection) -> None:
    found = {n.fqdn: n for n in run(discover_nodes(conn, GanetiDiscovery()))}
    assert set(found) == {MASTER, NODE2, INST1, INST2, INST3}
    assert found[MASTER].labels == {
        "ganeti.kind": "node",
        "ganeti.name": MASTER,
        "ganeti.role": "master",
    }
    assert found[NODE2].labels["ganeti.role"] == "candidate"
    inst = found[INST2]
    assert inst.labels == {
        "ganeti.kind": "instance",
        "ganeti.name": INST2,
        "ganeti.pnode": NODE2,
        "ganeti.status": "running",
    }
    assert inst.ip.startswith("10.252.") and inst.mac
    assert found[MASTER].ip != found[NODE2].ip
    only_nodes = run(discover_nodes(conn, GanetiDiscovery(instances=False)))
    assert {n.fqdn for n in only_nodes} == {MASTER, NODE2}


def test_discovery_merges_into_the_lab_config(glab: Lab) -> None:
    config = run(discovered_config(parse_config(cloud_config(glab, nodes=False))))
    fqdns = [n.fqdn for n in config.nodes]
    assert fqdns[:3] == ["node1", "node2", "node3"]  # static nodes first
    assert set(fqdns[3:]) == {INST1, INST2, INST3}
    with faultline.connect(cloud_config(glab)) as cloud:
        labelled = cloud.get_nodes().filter(lambda n: n.labels.get("ganeti.kind") == "node")
        assert sorted(n.fqdn for n in labelled) == [MASTER, NODE2]


def test_discovery_needs_the_ganeti_section(glab: Lab) -> None:
    data = cloud_config(glab)
    del data["ganeti"]
    with pytest.raises(ConfigError) as err:
        parse_config(data)
    assert "discovery.ganeti" in str(err.value) and "ganeti" in str(err.value)


# -- jobs and errors ---------------------------------------------------------------------------


def test_a_failing_job_names_the_job_and_ganetis_reason(rapi: RapiClient, glab: Lab) -> None:
    with pytest.raises(GanetiJobError) as err:
        run(rapi.set_node_role(MASTER, "drained"))
    job = err.value.job_id
    assert f"job {job}" in str(err.value)
    assert "master-failover" in str(err.value)  # Ganeti's own words
    assert "OpPrereqError" in str(err.value)
    assert node_role_cli(glab, MASTER) == "M"
    assert "error" in gnt(glab, "gnt-job", "list", "--no-headers", "-o", "id,status", str(job))


def test_an_unknown_job_is_an_error_not_a_queued_job(rapi: RapiClient) -> None:
    with pytest.raises(GanetiJobError) as err:
        run(rapi.wait_job(987654))
    assert err.value.job_id == 987654
    assert "job 987654 is unknown" in str(err.value)


def test_bad_credentials_are_named_without_the_secret(
    conn: GanetiConnection, tmp_path: Path
) -> None:
    wrong = tmp_path / "wrong-password"
    wrong.write_text("not-the-password-Zq9\n")
    bad = conn.model_copy(update={"password_file": str(wrong)})
    with pytest.raises(GanetiAuthError) as err:
        run(RapiClient(bad).instance_startup(INST1))
    text = str(err.value)
    assert "HTTP 401" in text and "'faultline'" in text and "passwordFile" in text
    assert "not-the-password-Zq9" not in text
    assert Path(conn.password_file or "").read_text().strip() not in text
    missing = conn.model_copy(update={"password_file": str(tmp_path / "absent")})
    with pytest.raises(GanetiError, match="cannot read passwordFile"):
        run(RapiClient(missing).nodes())


def test_an_untrusted_certificate_is_refused(conn: GanetiConnection, tmp_path: Path) -> None:
    # The system CAs do not know the cluster's self-signed certificate.
    system = conn.model_copy(update={"ca_file": None})
    with pytest.raises(GanetiTlsError) as err:
        run(RapiClient(system).nodes())
    assert "not trusted" in str(err.value) and "caFile" in str(err.value)
    # Another self-signed certificate pinned: refused as well.
    other = tmp_path / "other.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=ganeti.example.com", "-keyout", str(tmp_path / "k.pem"),
         "-out", str(other)],
        check=True, capture_output=True,
    )  # fmt: skip
    pinned_wrong = conn.model_copy(update={"ca_file": str(other)})
    with pytest.raises(GanetiTlsError) as err:
        run(RapiClient(pinned_wrong).nodes())
    assert str(other) in str(err.value)
    assert Path(conn.password_file or "").read_text().strip() not in str(err.value)
    # Verification off has to be written out, and then works.
    insecure = conn.model_copy(update={"ca_file": None, "insecure": True})
    assert len(run(RapiClient(insecure).nodes())) == 2


def test_connection_config_errors_name_the_field() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({"ganeti": {"url": "https://c:5080", "username": "u"}})
    assert err.value.field == "ganeti" and "passwordFile" in str(err.value)
    with pytest.raises(ConfigError) as err:
        parse_config({"ganeti": {"url": "https://u:p@c:5080"}})
    assert err.value.field == "ganeti.url"
    with pytest.raises(ConfigError) as err:
        parse_config({"ganeti": {"url": "https://c", "caFile": "/x", "insecure": True}})
    assert "contradict" in str(err.value)


# -- RAPI quirks (what the client works around, shown on the real RAPI) -------------------------


def test_a_body_without_json_content_type_is_refused(conn: GanetiConnection) -> None:
    status, answer = raw_request(conn, "PUT", f"/2/instances/{INST1}/startup", b"{}", {})
    assert status == 415, answer


def test_dry_run_query_is_ignored_on_role_put_so_the_client_uses_a_body_dry_run(
    conn: GanetiConnection, rapi: RapiClient, glab: Lab, healthy: Lab
) -> None:
    # The quirk: ?dry-run=1 on the role PUT really drains the node.
    status, job = raw_request(
        conn, "PUT", f"/2/nodes/{NODE2}/role?dry-run=1", b'"drained"',
        {"Content-Type": "application/json"},
    )  # fmt: skip
    assert status == 200
    run(rapi.wait_job(int(job)))
    assert node_role_cli(glab, NODE2) == "D"
    run(rapi.set_node_role(NODE2, "master-candidate"))
    assert node_role_cli(glab, NODE2) == "C"
    # The client's dry run (POST /modify with dry_run in the body) checks and changes nothing.
    done = run(rapi.set_node_role(NODE2, "drained", dry_run=True))
    assert node_role_cli(glab, NODE2) == "C"
    log = gnt(glab, "gnt-job", "info", str(done.job_id))
    assert "dry-run mode requested" in log
    # ... and Ganeti's checks run in it: draining the master is refused before any change.
    with pytest.raises(GanetiJobError, match="master-failover"):
        run(rapi.set_node_role(MASTER, "drained", dry_run=True))


def test_instance_dry_run_goes_in_the_query(rapi: RapiClient, glab: Lab, healthy: Lab) -> None:
    run(rapi.instance_shutdown(INST1, dry_run=True))
    assert gnt(glab, "gnt-instance", "list", "--no-headers", "-o", "status", INST1).strip() == (
        "running"
    )
