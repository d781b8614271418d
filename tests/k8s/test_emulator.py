"""The emulated Kubernetes API: raw HTTP semantics, the kubernetes client, kubectl and kopf."""

from __future__ import annotations

import http.client
import json
import socket
import statistics
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

import pytest

from faultline.lab.kubeapi import KubeAPI

GROUP, VERSION, PLURAL = "lab.faultline.dev", "v1", "widgets"
WIDGETS = f"/apis/{GROUP}/{VERSION}/namespaces/default/{PLURAL}"
CONFIGMAPS = "/api/v1/namespaces/default/configmaps"


# ---------------------------------------------------------------------------- helpers


class Reply:
    def __init__(self, status: int, headers: http.client.HTTPMessage, body: Any) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def __repr__(self) -> str:
        return f"Reply({self.status}, {self.body!r})"


def call(
    api: KubeAPI,
    method: str,
    path: str,
    body: Any = None,
    *,
    content_type: str = "application/json",
    headers: dict[str, str] | None = None,
) -> Reply:
    conn = http.client.HTTPConnection("127.0.0.1", api.port, timeout=10)
    try:
        data = body if isinstance(body, (bytes, str)) or body is None else json.dumps(body)
        conn.request(
            method, path, body=data, headers={"Content-Type": content_type, **(headers or {})}
        )
        response = conn.getresponse()
        raw = response.read()
        parsed = (
            json.loads(raw)
            if raw and response.headers.get("Content-Type", "").startswith("application/json")
            else raw
        )
        return Reply(response.status, response.headers, parsed)
    finally:
        conn.close()


class Watch:
    """A raw watch stream read line by line."""

    def __init__(self, api: KubeAPI, path: str, **params: str) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", api.port, timeout=10)
        query = urllib.parse.urlencode({"watch": "true", **params})
        self.conn.request("GET", f"{path}?{query}")
        self.response = self.conn.getresponse()

    def next(self, timeout: float = 5.0) -> dict[str, Any]:
        assert self.conn.sock is not None
        self.conn.sock.settimeout(timeout)
        line = self.response.readline()
        if not line:
            raise EOFError("the watch stream ended")
        return json.loads(line)  # type: ignore[no-any-return]

    def close(self) -> None:
        self.conn.close()


def widget(name: str, size: int = 1, **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Widget",
        "metadata": {"name": name, **meta},
        "spec": {"size": size},
    }


def configmap(name: str, **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, **meta},
        "data": {"k": "v"},
    }


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.005) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


def assert_status(reply: Reply, code: int, reason: str) -> None:
    assert reply.status == code, reply
    assert reply.body["kind"] == "Status"
    assert reply.body["apiVersion"] == "v1"
    assert reply.body["status"] == "Failure"
    assert reply.body["code"] == code
    assert reply.body["reason"] == reason
    assert reply.headers["Content-Type"].startswith("application/json")


# ---------------------------------------------------------------------------- raw API semantics


def test_metadata_generation_and_resource_versions(kubeapi: KubeAPI, crd: dict[str, Any]) -> None:
    created = call(kubeapi, "POST", WIDGETS, {**widget("w1"), "spec": {}})
    assert created.status == 201
    meta = created.body["metadata"]
    assert meta["uid"] and meta["creationTimestamp"].endswith("Z")
    assert meta["generation"] == 1 and meta["namespace"] == "default"
    assert created.body["spec"] == {"size": 1}  # openAPIV3Schema default
    rv1 = int(meta["resourceVersion"])

    other = call(kubeapi, "POST", CONFIGMAPS, configmap("c1"))
    assert int(other.body["metadata"]["resourceVersion"]) > rv1  # cluster-wide and monotonic

    spec = call(
        kubeapi,
        "PATCH",
        f"{WIDGETS}/w1",
        {"spec": {"size": 5}},
        content_type="application/merge-patch+json",
    )
    assert spec.body["metadata"]["generation"] == 2
    status = call(
        kubeapi,
        "PATCH",
        f"{WIDGETS}/w1/status",
        {"status": {"phase": "Up"}},
        content_type="application/merge-patch+json",
    )
    assert status.body["metadata"]["generation"] == 2
    assert status.body["status"] == {"phase": "Up"}
    labels = call(
        kubeapi,
        "PATCH",
        f"{WIDGETS}/w1",
        {"metadata": {"labels": {"a": "b"}}},
        content_type="application/merge-patch+json",
    )
    assert labels.body["metadata"]["generation"] == 2
    rvs = [int(r.body["metadata"]["resourceVersion"]) for r in (spec, status, labels)]
    assert rvs == sorted(rvs) and len(set(rvs)) == 3
    noop = call(
        kubeapi,
        "PATCH",
        f"{WIDGETS}/w1",
        {"metadata": {"labels": {"a": "b"}}},
        content_type="application/merge-patch+json",
    )
    assert noop.body["metadata"]["resourceVersion"] == labels.body["metadata"]["resourceVersion"]
    # Server-managed fields cannot be overwritten.
    forged = call(
        kubeapi,
        "PATCH",
        f"{WIDGETS}/w1",
        {"metadata": {"uid": "x", "generation": 99}},
        content_type="application/merge-patch+json",
    )
    assert (
        forged.body["metadata"]["uid"] == meta["uid"] and forged.body["metadata"]["generation"] == 2
    )


def test_status_subresource_rules(kubeapi: KubeAPI, crd: dict[str, Any]) -> None:
    created = call(kubeapi, "POST", WIDGETS, {**widget("w1", 2), "status": {"phase": "Forged"}})
    assert "status" not in created.body  # ignored on create
    main = call(
        kubeapi,
        "PATCH",
        f"{WIDGETS}/w1",
        {"spec": {"size": 3}, "status": {"phase": "X"}},
        content_type="application/merge-patch+json",
    )
    assert main.body["spec"]["size"] == 3 and "status" not in main.body
    sub = call(
        kubeapi,
        "PATCH",
        f"{WIDGETS}/w1/status",
        {"spec": {"size": 9}, "status": {"phase": "Y"}},
        content_type="application/merge-patch+json",
    )
    assert sub.body["spec"]["size"] == 3 and sub.body["status"] == {"phase": "Y"}
    body = dict(sub.body, spec={"size": 7}, status={"phase": "Z"})
    put_status = call(kubeapi, "PUT", f"{WIDGETS}/w1/status", body)
    assert put_status.status == 200, put_status
    assert put_status.body["spec"]["size"] == 3 and put_status.body["status"] == {"phase": "Z"}
    put_main = call(
        kubeapi, "PUT", f"{WIDGETS}/w1", dict(put_status.body, spec={"size": 4}, status={})
    )
    assert put_main.body["spec"]["size"] == 4 and put_main.body["status"] == {"phase": "Z"}
    assert call(kubeapi, "GET", f"{WIDGETS}/w1/status").body["status"] == {"phase": "Z"}


def test_scale_subresource(kubeapi: KubeAPI) -> None:
    path = "/apis/apps/v1/namespaces/default/deployments"
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}}, "template": {}},
    }
    assert call(kubeapi, "POST", path, deployment).status == 201
    scale = call(kubeapi, "GET", f"{path}/web/scale").body
    assert (scale["kind"], scale["spec"]["replicas"]) == ("Scale", 1)
    patched = call(
        kubeapi,
        "PATCH",
        f"{path}/web/scale",
        {"spec": {"replicas": 3}},
        content_type="application/merge-patch+json",
    )
    assert patched.body["spec"]["replicas"] == 3
    current = call(kubeapi, "GET", f"{path}/web").body
    assert current["spec"]["replicas"] == 3 and current["metadata"]["generation"] == 2
    bad = dict(scale, spec={"replicas": -1})
    assert_status(call(kubeapi, "PUT", f"{path}/web/scale", bad), 422, "Invalid")


def test_patch_flavours_and_canonical_errors(kubeapi: KubeAPI, crd: dict[str, Any]) -> None:
    created = call(kubeapi, "POST", WIDGETS, widget("w1", 1))
    rv = created.body["metadata"]["resourceVersion"]
    assert_status(call(kubeapi, "POST", WIDGETS, widget("w1")), 409, "AlreadyExists")
    missing = call(kubeapi, "GET", f"{WIDGETS}/nope")
    assert_status(missing, 404, "NotFound")
    assert missing.body["details"] == {"name": "nope", "group": GROUP, "kind": PLURAL}
    assert missing.body["message"] == f'{PLURAL}.{GROUP} "nope" not found'

    strategic = call(
        kubeapi,
        "PATCH",
        f"{WIDGETS}/w1",
        {"spec": {"color": "red"}},
        content_type="application/strategic-merge-patch+json",
    )
    assert strategic.body["spec"] == {"size": 1, "color": "red"}  # merge semantics for CRs
    ops = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": rv},
        {"op": "add", "path": "/metadata/finalizers", "value": ["x/y"]},
    ]
    failed = call(
        kubeapi, "PATCH", f"{WIDGETS}/w1", ops, content_type="application/json-patch+json"
    )
    assert_status(failed, 422, "Invalid")
    ops[0]["value"] = strategic.body["metadata"]["resourceVersion"]
    ok = call(kubeapi, "PATCH", f"{WIDGETS}/w1", ops, content_type="application/json-patch+json")
    assert ok.status == 200 and ok.body["metadata"]["finalizers"] == ["x/y"]

    stale = dict(ok.body, metadata=dict(ok.body["metadata"], resourceVersion=rv))
    assert_status(call(kubeapi, "PUT", f"{WIDGETS}/w1", stale), 409, "Conflict")
    stale_patch = {"metadata": {"resourceVersion": rv}, "spec": {"size": 2}}
    assert_status(
        call(
            kubeapi,
            "PATCH",
            f"{WIDGETS}/w1",
            stale_patch,
            content_type="application/merge-patch+json",
        ),
        409,
        "Conflict",
    )
    invalid = call(
        kubeapi,
        "PATCH",
        f"{WIDGETS}/w1",
        {"spec": {"color": "purple", "size": -1}},
        content_type="application/merge-patch+json",
    )
    assert_status(invalid, 422, "Invalid")
    assert {c["field"] for c in invalid.body["details"]["causes"]} == {"spec.color", "spec.size"}
    assert_status(call(kubeapi, "POST", WIDGETS, widget("Bad_Name")), 422, "Invalid")
    assert_status(
        call(kubeapi, "PATCH", f"{WIDGETS}/w1", {}, content_type="text/plain"),
        415,
        "UnsupportedMediaType",
    )
    assert_status(
        call(kubeapi, "GET", f"/apis/{GROUP}/{VERSION}/namespaces/default/gadgets"), 404, "NotFound"
    )


def test_finalizers_deletion_and_watch_events(kubeapi: KubeAPI, crd: dict[str, Any]) -> None:
    created = call(kubeapi, "POST", WIDGETS, widget("w1", finalizers=["lab/hold"]))
    watch = Watch(kubeapi, WIDGETS, resourceVersion=created.body["metadata"]["resourceVersion"])
    try:
        deleting = call(kubeapi, "DELETE", f"{WIDGETS}/w1")
        assert deleting.status == 200 and deleting.body["metadata"]["deletionTimestamp"]
        assert call(kubeapi, "GET", f"{WIDGETS}/w1").status == 200  # held by the finalizer
        more = call(
            kubeapi,
            "PATCH",
            f"{WIDGETS}/w1",
            {"metadata": {"finalizers": ["lab/hold", "lab/new"]}},
            content_type="application/merge-patch+json",
        )
        assert_status(more, 422, "Invalid")
        released = call(
            kubeapi,
            "PATCH",
            f"{WIDGETS}/w1",
            {"metadata": {"finalizers": None}},
            content_type="application/merge-patch+json",
        )
        assert released.status == 200
        assert_status(call(kubeapi, "GET", f"{WIDGETS}/w1"), 404, "NotFound")
        events = [watch.next() for _ in range(3)]
        assert [e["type"] for e in events] == ["MODIFIED", "MODIFIED", "DELETED"]
        assert events[0]["object"]["metadata"]["deletionTimestamp"]
        rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
        assert rvs == sorted(rvs) and rvs[0] > int(created.body["metadata"]["resourceVersion"])
    finally:
        watch.close()


def test_generate_name_events_and_leases(kubeapi: KubeAPI) -> None:
    names = set()
    for path, body in [
        (
            "/api/v1/namespaces/default/events",
            {
                "metadata": {"generateName": "kopf-event-"},
                "involvedObject": {"kind": "Widget", "name": "w"},
                "reason": "Test",
                "message": "hello",
                "type": "Normal",
            },
        ),
        (
            "/apis/events.k8s.io/v1/namespaces/default/events",
            {
                "metadata": {"generateName": "kopf-event-"},
                "reason": "Test",
                "note": "hi",
                "type": "Normal",
                "eventTime": "2025-01-01T00:00:00.000000Z",
                "action": "Tested",
                "reportingController": "lab",
                "reportingInstance": "lab-1",
            },
        ),
    ]:
        for _ in range(3):
            reply = call(kubeapi, "POST", path, body)
            assert reply.status == 201, reply
            assert reply.body["metadata"]["name"].startswith("kopf-event-")
            names.add((path, reply.body["metadata"]["name"]))
    assert len(names) == 6
    lease = {
        "metadata": {"name": "leader"},
        "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15},
    }
    created = call(kubeapi, "POST", "/apis/coordination.k8s.io/v1/namespaces/default/leases", lease)
    assert created.status == 201 and created.body["kind"] == "Lease"
    taken = dict(created.body, spec={"holderIdentity": "b", "leaseDurationSeconds": 15})
    assert (
        call(
            kubeapi, "PUT", "/apis/coordination.k8s.io/v1/namespaces/default/leases/leader", taken
        ).status
        == 200
    )
    assert_status(
        call(
            kubeapi, "PUT", "/apis/coordination.k8s.io/v1/namespaces/default/leases/leader", taken
        ),
        409,
        "Conflict",
    )  # the same (now stale) resourceVersion again: a lost election


def test_namespaces(kubeapi: KubeAPI, crd: dict[str, Any]) -> None:
    listing = call(kubeapi, "GET", "/api/v1/namespaces")
    assert listing.status == 200 and listing.body["kind"] == "NamespaceList"
    assert {"default", "kube-system"} <= {ns["metadata"]["name"] for ns in listing.body["items"]}
    assert call(kubeapi, "GET", "/api/v1/namespaces/default").body["status"] == {"phase": "Active"}
    missing = call(kubeapi, "POST", "/api/v1/namespaces/ghost/configmaps", configmap("c"))
    assert_status(missing, 404, "NotFound")
    assert call(kubeapi, "POST", "/api/v1/namespaces", {"metadata": {"name": "team"}}).status == 201
    path = f"/apis/{GROUP}/{VERSION}/namespaces/team/{PLURAL}"
    assert call(kubeapi, "POST", path, widget("held", finalizers=["lab/hold"])).status == 201
    assert call(kubeapi, "POST", "/api/v1/namespaces/team/configmaps", configmap("c")).status == 201
    # A body without metadata.namespace lands in the URL's namespace (and in its watches).
    assert call(kubeapi, "GET", f"{path}/held").body["metadata"]["namespace"] == "team"
    assert (
        call(kubeapi, "DELETE", "/api/v1/namespaces/team").body["status"]["phase"] == "Terminating"
    )
    wait_for(lambda: call(kubeapi, "GET", "/api/v1/namespaces/team/configmaps/c").status == 404)
    assert_status(
        call(kubeapi, "POST", "/api/v1/namespaces/team/configmaps", configmap("d")),
        403,
        "Forbidden",
    )
    assert call(kubeapi, "GET", "/api/v1/namespaces/team").status == 200  # waits for the finalizer
    call(
        kubeapi,
        "PATCH",
        f"{path}/held",
        {"metadata": {"finalizers": []}},
        content_type="application/merge-patch+json",
    )
    wait_for(lambda: call(kubeapi, "GET", "/api/v1/namespaces/team").status == 404)


def test_lists_selectors_and_pagination(kubeapi: KubeAPI, crd: dict[str, Any]) -> None:
    for n in range(6):
        labels = {"tier": "front" if n % 2 else "back", "idx": str(n)}
        if n == 0:
            labels["special"] = "yes"
        assert call(kubeapi, "POST", WIDGETS, widget(f"w{n}", n, labels=labels)).status == 201
    listing = call(kubeapi, "GET", WIDGETS).body
    assert listing["kind"] == "WidgetList" and listing["apiVersion"] == f"{GROUP}/{VERSION}"
    assert int(listing["metadata"]["resourceVersion"]) >= 6
    assert all(item["kind"] == "Widget" for item in listing["items"])

    def names(query: str, path: str = WIDGETS) -> list[str]:
        reply = call(kubeapi, "GET", f"{path}?{query}")
        assert reply.status == 200, reply
        return [item["metadata"]["name"] for item in reply.body["items"]]

    q = urllib.parse.urlencode
    assert names(q({"labelSelector": "tier=front"})) == ["w1", "w3", "w5"]
    assert names(q({"labelSelector": "tier!=front,idx notin (2)"})) == ["w0", "w4"]
    assert names(q({"labelSelector": "idx in (1,2)"})) == ["w1", "w2"]
    assert names(q({"labelSelector": "special"})) == ["w0"]
    assert names(q({"labelSelector": "!special,tier==back"})) == ["w2", "w4"]
    assert names(q({"fieldSelector": "metadata.name=w3"})) == ["w3"]
    cluster_wide = f"/apis/{GROUP}/{VERSION}/{PLURAL}"
    assert names(
        q({"fieldSelector": "metadata.namespace=default,metadata.name!=w0"}), cluster_wide
    ) == ["w1", "w2", "w3", "w4", "w5"]
    assert names(q({"fieldSelector": "metadata.namespace=other"}), cluster_wide) == []

    page1 = call(kubeapi, "GET", f"{WIDGETS}?limit=4").body
    assert len(page1["items"]) == 4 and page1["metadata"]["remainingItemCount"] == 2
    page2 = call(
        kubeapi, "GET", f"{WIDGETS}?{q({'limit': 4, 'continue': page1['metadata']['continue']})}"
    ).body
    assert [i["metadata"]["name"] for i in page2["items"]] == ["w4", "w5"]
    assert "continue" not in page2["metadata"]

    deleted = call(kubeapi, "DELETE", f"{WIDGETS}?{q({'labelSelector': 'tier=back'})}")
    assert deleted.status == 200 and len(deleted.body["items"]) == 3
    assert names("") == ["w1", "w3", "w5"]


def test_watch_protocol(kubeapi: KubeAPI, crd: dict[str, Any]) -> None:
    first = call(kubeapi, "POST", WIDGETS, widget("before"))
    rv = first.body["metadata"]["resourceVersion"]

    # Without a resourceVersion: synthetic ADDED for the current state, then live events.
    initial = Watch(kubeapi, WIDGETS, timeoutSeconds="5")
    assert initial.response.headers["Content-Type"].startswith("application/json")
    assert initial.next()["object"]["metadata"]["name"] == "before"
    initial.close()

    # With a resourceVersion: only the later events; with a label selector: transitions.
    resumed = Watch(
        kubeapi, WIDGETS, resourceVersion=rv, labelSelector="color=blue", timeoutSeconds="5"
    )
    call(kubeapi, "POST", WIDGETS, widget("plain"))
    call(kubeapi, "POST", WIDGETS, widget("blue", labels={"color": "blue"}))
    call(
        kubeapi,
        "PATCH",
        f"{WIDGETS}/plain",
        {"metadata": {"labels": {"color": "blue"}}},
        content_type="application/merge-patch+json",
    )
    call(
        kubeapi,
        "PATCH",
        f"{WIDGETS}/blue",
        {"metadata": {"labels": {"color": "red"}}},
        content_type="application/merge-patch+json",
    )
    seen = [
        (e["type"], e["object"]["metadata"]["name"]) for e in (resumed.next() for _ in range(3))
    ]
    assert seen == [("ADDED", "blue"), ("ADDED", "plain"), ("DELETED", "blue")]
    resumed.close()

    # timeoutSeconds is honoured: the server ends the stream.
    started = time.monotonic()
    short = Watch(
        kubeapi, WIDGETS, resourceVersion=rv, timeoutSeconds="1", fieldSelector="metadata.name=none"
    )
    with pytest.raises(EOFError):
        short.next(timeout=5)
    assert 0.9 <= time.monotonic() - started < 3
    short.close()

    # Streaming lists: initial events, then the initial-events-end bookmark.
    streaming = Watch(
        kubeapi,
        WIDGETS,
        sendInitialEvents="true",
        allowWatchBookmarks="true",
        resourceVersionMatch="NotOlderThan",
        timeoutSeconds="5",
    )
    types = [streaming.next()["type"] for _ in range(3)]
    assert types == ["ADDED", "ADDED", "ADDED"]
    bookmark = streaming.next()
    assert bookmark["type"] == "BOOKMARK"
    assert bookmark["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}
    streaming.close()

    # A single named object, cluster-wide path, legacy /watch/ prefix.
    legacy = Watch(
        kubeapi,
        f"/apis/{GROUP}/{VERSION}/watch/namespaces/default/{PLURAL}/plain",
        resourceVersion=rv,
    )
    call(kubeapi, "DELETE", f"{WIDGETS}/plain")
    seen = [(e["type"], e["object"]["metadata"]["name"]) for e in (legacy.next() for _ in range(3))]
    assert seen == [("ADDED", "plain"), ("MODIFIED", "plain"), ("DELETED", "plain")]
    legacy.close()


def test_watch_bookmarks_and_expired_resource_versions() -> None:
    with KubeAPI(event_window=5, bookmark_interval=0.2) as api:
        for n in range(10):
            call(api, "POST", CONFIGMAPS, configmap(f"c{n}"))
        expired = Watch(api, CONFIGMAPS, resourceVersion="1")
        error = expired.next()
        assert error["type"] == "ERROR" and error["object"]["code"] == 410
        assert error["object"]["reason"] == "Expired"
        expired.close()
        rv = call(api, "GET", CONFIGMAPS).body["metadata"]["resourceVersion"]
        bookmarks = Watch(
            api, CONFIGMAPS, resourceVersion=rv, allowWatchBookmarks="true", timeoutSeconds="5"
        )
        event = bookmarks.next()
        assert event["type"] == "BOOKMARK" and event["object"]["metadata"]["resourceVersion"] == rv
        bookmarks.close()


def test_discovery_and_crd_lifecycle_over_http(
    kubeapi: KubeAPI, widget_crd: dict[str, Any]
) -> None:
    crd_body = widget_crd
    created = call(
        kubeapi, "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd_body
    )
    assert created.status == 201
    name = crd_body["metadata"]["name"]
    established = call(
        kubeapi, "GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}"
    ).body
    assert {c["type"]: c["status"] for c in established["status"]["conditions"]}[
        "Established"
    ] == "True"
    groups = call(kubeapi, "GET", "/apis").body
    ours = next(g for g in groups["groups"] if g["name"] == GROUP)
    assert ours["preferredVersion"]["version"] == VERSION
    assert call(kubeapi, "GET", f"/apis/{GROUP}").body["kind"] == "APIGroup"
    resources = {
        r["name"]: r for r in call(kubeapi, "GET", f"/apis/{GROUP}/{VERSION}").body["resources"]
    }
    assert resources[PLURAL]["shortNames"] == ["wdg"] and resources[PLURAL]["namespaced"] is True
    assert resources[PLURAL]["kind"] == "Widget" and "watch" in resources[PLURAL]["verbs"]
    assert f"{PLURAL}/status" in resources
    core = {r["name"] for r in call(kubeapi, "GET", "/api/v1").body["resources"]}
    assert {"namespaces", "configmaps", "events", "secrets"} <= core
    assert "coordination.k8s.io" in {g["name"] for g in groups["groups"]}

    # Unknown fields are pruned (or rejected with fieldValidation=Strict).
    body = {**widget("w1"), "spec": {"size": 2, "bogus": 1}}
    assert_status(
        call(kubeapi, "POST", f"{WIDGETS}?fieldValidation=Strict", body), 400, "BadRequest"
    )
    pruned = call(kubeapi, "POST", WIDGETS, body)
    assert pruned.body["spec"] == {"size": 2}
    # Deleting the CRD deletes its objects and stops serving it.
    assert (
        call(
            kubeapi, "DELETE", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}"
        ).status
        == 200
    )
    wait_for(lambda: call(kubeapi, "GET", f"/apis/{GROUP}/{VERSION}").status == 404)
    assert_status(call(kubeapi, "GET", WIDGETS), 404, "NotFound")
    assert all(g["name"] != GROUP for g in call(kubeapi, "GET", "/apis").body["groups"])


def test_dry_run_and_server_side_apply(kubeapi: KubeAPI, crd: dict[str, Any]) -> None:
    dry = call(kubeapi, "POST", f"{WIDGETS}?dryRun=All", widget("w1"))
    assert dry.status == 201 and dry.body["metadata"]["name"] == "w1"
    assert call(kubeapi, "GET", f"{WIDGETS}/w1").status == 404
    applied = call(
        kubeapi,
        "PATCH",
        f"{WIDGETS}/w1?fieldManager=lab",
        "apiVersion: lab.faultline.dev/v1\nkind: Widget\nmetadata: {name: w1}\nspec: {size: 4}\n",
        content_type="application/apply-patch+yaml",
    )
    assert applied.status == 201 and applied.body["spec"]["size"] == 4
    again = call(
        kubeapi,
        "PATCH",
        f"{WIDGETS}/w1?fieldManager=lab",
        {"spec": {"size": 5}},
        content_type="application/apply-patch+yaml",
    )
    assert again.status == 200 and again.body["spec"]["size"] == 5
    assert_status(
        call(
            kubeapi,
            "PATCH",
            f"{WIDGETS}/w1",
            {"spec": {}},
            content_type="application/apply-patch+yaml",
        ),
        400,
        "BadRequest",
    )
    dry_delete = call(kubeapi, "DELETE", f"{WIDGETS}/w1?dryRun=All")
    assert dry_delete.status == 200 and call(kubeapi, "GET", f"{WIDGETS}/w1").status == 200


def test_owner_references_garbage_collection(kubeapi: KubeAPI, crd: dict[str, Any]) -> None:
    owner = call(kubeapi, "POST", WIDGETS, widget("owner")).body
    ref = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Widget",
        "name": "owner",
        "uid": owner["metadata"]["uid"],
    }
    call(kubeapi, "POST", CONFIGMAPS, configmap("child-cm", ownerReferences=[ref]))
    call(kubeapi, "POST", WIDGETS, widget("child-w", ownerReferences=[ref]))
    grand_ref = {
        **ref,
        "name": "child-w",
        "uid": call(kubeapi, "GET", f"{WIDGETS}/child-w").body["metadata"]["uid"],
    }
    call(kubeapi, "POST", CONFIGMAPS, configmap("grandchild", ownerReferences=[grand_ref]))
    survivor = call(kubeapi, "POST", WIDGETS, widget("survivor")).body
    two_owners = [ref, {**ref, "name": "survivor", "uid": survivor["metadata"]["uid"]}]
    call(kubeapi, "POST", CONFIGMAPS, configmap("shared", ownerReferences=two_owners))

    assert call(kubeapi, "DELETE", f"{WIDGETS}/owner").status == 200
    for path in (f"{CONFIGMAPS}/child-cm", f"{WIDGETS}/child-w", f"{CONFIGMAPS}/grandchild"):
        wait_for(lambda path=path: call(kubeapi, "GET", path).status == 404)
    assert call(kubeapi, "GET", f"{CONFIGMAPS}/shared").status == 200  # still owned by "survivor"

    # Orphan propagation keeps the dependents and strips the reference.
    call(kubeapi, "DELETE", f"{WIDGETS}/survivor", {"propagationPolicy": "Orphan"})
    time.sleep(0.1)
    shared = call(kubeapi, "GET", f"{CONFIGMAPS}/shared").body
    assert [r["name"] for r in shared["metadata"]["ownerReferences"]] == ["owner"]

    # Foreground: the owner waits for its dependents.
    fg = call(kubeapi, "POST", WIDGETS, widget("fg")).body
    fg_ref = {**ref, "name": "fg", "uid": fg["metadata"]["uid"]}
    call(
        kubeapi,
        "POST",
        CONFIGMAPS,
        configmap("fg-child", ownerReferences=[fg_ref], finalizers=["lab/hold"]),
    )
    deleting = call(kubeapi, "DELETE", f"{WIDGETS}/fg", {"propagationPolicy": "Foreground"}).body
    assert "foregroundDeletion" in deleting["metadata"]["finalizers"]
    wait_for(
        lambda: (
            call(kubeapi, "GET", f"{CONFIGMAPS}/fg-child").body["metadata"].get("deletionTimestamp")
        )
    )
    assert call(kubeapi, "GET", f"{WIDGETS}/fg").status == 200
    call(
        kubeapi,
        "PATCH",
        f"{CONFIGMAPS}/fg-child",
        {"metadata": {"finalizers": None}},
        content_type="application/merge-patch+json",
    )
    wait_for(lambda: call(kubeapi, "GET", f"{WIDGETS}/fg").status == 404)


def test_token_auth(tmp_path: Any) -> None:
    with KubeAPI(token="s3cret", require_token=True) as api:  # noqa: S106 - a test token
        assert_status(call(api, "GET", "/api/v1/namespaces"), 401, "Unauthorized")
        wrong = call(api, "GET", "/api/v1/namespaces", headers={"Authorization": "Bearer nope"})
        assert_status(wrong, 401, "Unauthorized")
        good = call(api, "GET", "/api/v1/namespaces", headers={"Authorization": "Bearer s3cret"})
        assert good.status == 200
        assert call(api, "GET", "/healthz").status == 200  # probes need no token
        config = api.kubeconfig()
        assert config["users"][0]["user"] == {"token": "s3cret"}
        assert config["clusters"][0]["cluster"]["server"] == api.url
        assert api.write_kubeconfig(tmp_path / "kc").stat().st_mode & 0o777 == 0o600


def test_kmock_dsl_injects_api_faults(kubeapi: KubeAPI, crd: dict[str, Any]) -> None:
    import kmock

    call(kubeapi, "POST", WIDGETS, widget("w1"))
    # Fail the next GET of this widget once with 503; the emulation serves the rest.
    kubeapi.call(lambda: kubeapi.emulator[kmock.method.GET, kmock.name("w1")][:1] << 503)
    assert call(kubeapi, "GET", f"{WIDGETS}/w1").status == 503
    assert call(kubeapi, "GET", f"{WIDGETS}/w1").status == 200
    assert kubeapi.call(lambda: len(kubeapi.emulator.objects)) >= 1


# ---------------------------------------------------------------------------- kubernetes client


def test_kubernetes_client_custom_objects(k8s_client: Any, crd: dict[str, Any]) -> None:
    from kubernetes import client, watch
    from kubernetes.client.rest import ApiException

    api = client.CustomObjectsApi(k8s_client)
    created = api.create_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL, widget("w1", 2)
    )
    rv = created["metadata"]["resourceVersion"]
    listed = api.list_namespaced_custom_object(GROUP, VERSION, "default", PLURAL)
    assert [i["metadata"]["name"] for i in listed["items"]] == ["w1"]

    stream = watch.Watch()
    events: list[tuple[str, int]] = []

    def consume() -> None:
        for event in stream.stream(
            api.list_namespaced_custom_object,
            GROUP,
            VERSION,
            "default",
            PLURAL,
            resource_version=rv,
            timeout_seconds=5,
        ):
            events.append((event["type"], event["object"]["spec"]["size"]))
            if event["type"] == "DELETED":
                stream.stop()

    consumer = threading.Thread(target=consume)
    consumer.start()
    patched = api.patch_namespaced_custom_object(
        GROUP, VERSION, "default", PLURAL, "w1", {"spec": {"size": 3}}
    )
    assert patched["spec"]["size"] == 3
    api.patch_namespaced_custom_object_status(
        GROUP, VERSION, "default", PLURAL, "w1", {"status": {"phase": "Up"}}
    )
    with pytest.raises(ApiException) as conflict:
        api.replace_namespaced_custom_object(
            GROUP, VERSION, "default", PLURAL, "w1", created
        )  # stale rv
    assert conflict.value.status == 409 and json.loads(conflict.value.body)["reason"] == "Conflict"
    with pytest.raises(ApiException) as failed_test:
        api.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            "default",
            PLURAL,
            "w1",
            [{"op": "test", "path": "/spec/size", "value": 99}],
            _content_type="application/json-patch+json",
        )
    assert failed_test.value.status == 422
    api.delete_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "w1")
    consumer.join(10)
    assert events == [("MODIFIED", 3), ("MODIFIED", 3), ("DELETED", 3)]
    with pytest.raises(ApiException) as missing:
        api.get_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "w1")
    assert missing.value.status == 404


def test_kubernetes_client_configmaps(k8s_client: Any) -> None:
    from kubernetes import client, watch
    from kubernetes.client.rest import ApiException

    core = client.CoreV1Api(k8s_client)
    cm = core.create_namespaced_config_map(
        "default",
        client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name="c1", labels={"app": "lab"}), data={"a": "1"}
        ),
    )
    assert cm.metadata.uid and cm.metadata.resource_version
    assert [
        c.metadata.name
        for c in core.list_namespaced_config_map("default", label_selector="app=lab").items
    ] == ["c1"]
    patched = core.patch_namespaced_config_map(
        "c1", "default", {"data": {"b": "2"}}
    )  # strategic merge
    assert patched.data == {"a": "1", "b": "2"}
    stale = cm
    stale.data = {"c": "3"}
    with pytest.raises(ApiException) as conflict:
        core.replace_namespaced_config_map("c1", "default", stale)
    assert conflict.value.status == 409
    fresh = core.read_namespaced_config_map("c1", "default")
    fresh.data = {"c": "3"}
    assert core.replace_namespaced_config_map("c1", "default", fresh).data == {"c": "3"}
    with pytest.raises(ApiException) as failed_test:
        core.patch_namespaced_config_map(
            "c1", "default", [{"op": "test", "path": "/data/c", "value": "nope"}]
        )
    assert failed_test.value.status == 422
    events = []
    rv = fresh.metadata.resource_version
    core.delete_namespaced_config_map("c1", "default")
    for event in watch.Watch().stream(
        core.list_namespaced_config_map, "default", resource_version=rv, timeout_seconds=1
    ):
        events.append((event["type"], event["object"].metadata.name))
    assert events[-1] == ("DELETED", "c1")
    namespaces = [ns.metadata.name for ns in core.list_namespace().items]
    assert "default" in namespaces
    leases = client.CoordinationV1Api(k8s_client)
    lease = leases.create_namespaced_lease(
        "default",
        client.V1Lease(
            metadata=client.V1ObjectMeta(name="peer"), spec=client.V1LeaseSpec(holder_identity="me")
        ),
    )
    assert lease.spec.holder_identity == "me"


# ---------------------------------------------------------------------------- kubectl


def test_kubectl_apply_get_delete(
    kubectl: Callable[..., Any], kubeapi: KubeAPI, tmp_path: Any, widget_crd: dict[str, Any]
) -> None:
    crd_file = tmp_path / "crd.json"
    crd_file.write_text(json.dumps(widget_crd))
    assert "created" in kubectl("apply", "-f", str(crd_file)).stdout
    manifest = tmp_path / "w.yaml"
    manifest.write_text(
        "apiVersion: lab.faultline.dev/v1\nkind: Widget\n"
        "metadata:\n  name: w1\nspec:\n  size: 3\n  color: red\n"
    )
    assert "widget.lab.faultline.dev/w1 created" in kubectl("apply", "-f", str(manifest)).stdout
    assert "unchanged" in kubectl("apply", "-f", str(manifest)).stdout
    table = kubectl("get", "wdg").stdout.split("\n")
    assert table[0].split() == ["NAME", "SIZE", "PHASE", "AGE"] and table[1].split()[:2] == [
        "w1",
        "3",
    ]
    as_json = json.loads(kubectl("get", "widget", "w1", "-o", "json").stdout)
    assert (
        as_json["metadata"]["uid"]
        and "kubectl.kubernetes.io/last-applied-configuration" in as_json["metadata"]["annotations"]
    )
    kubectl("label", "wdg", "w1", "team=lab")
    assert (
        kubectl("get", "widgets", "-l", "team=lab", "-o", "name").stdout.strip()
        == "widget.lab.faultline.dev/w1"
    )
    kubectl(
        "patch",
        "wdg",
        "w1",
        "--subresource=status",
        "--type=merge",
        "-p",
        '{"status":{"phase":"Ready"}}',
    )
    assert "Ready" in kubectl("get", "wdg", "w1").stdout
    assert "deleted" in kubectl("delete", "wdg", "w1").stdout  # waits for the DELETED watch event
    assert kubeapi.get(f"{GROUP}/{VERSION}", "Widget", "w1", "default") is None
    assert "No resources found" in kubectl("get", "wdg").stderr
    kubectl(
        "apply", "-f", "-", stdin="apiVersion: v1\nkind: Namespace\nmetadata: {name: scratch}\n"
    )
    assert "scratch" in kubectl("get", "ns").stdout
    # Typed generators send protobuf bodies (decoded for these kinds).
    kubectl("create", "namespace", "typed")
    kubectl("create", "configmap", "settings", "-n", "typed", "--from-literal=level=high")
    kubectl("create", "secret", "generic", "creds", "-n", "typed", "--from-literal=pw=hunter2")
    assert kubeapi.get("v1", "ConfigMap", "settings", "typed")["data"] == {"level": "high"}
    assert kubeapi.get("v1", "Secret", "creds", "typed")["data"] == {"pw": "aHVudGVyMg=="}
    kubectl("delete", "namespace", "typed")  # waits until the namespace controller is done
    assert kubeapi.get("v1", "ConfigMap", "settings", "typed") is None
    assert "customresourcedefinition" in kubectl("delete", "-f", str(crd_file)).stdout


# ---------------------------------------------------------------------------- kopf


def test_kopf_create_status_finalizer_and_latency(
    kubeapi: KubeAPI,
    crd: dict[str, Any],
    kopf_registry: Callable[[], Any],
    make_operator: Callable[..., Any],
) -> None:
    import kopf

    registry = kopf_registry()
    deleted: list[str] = []

    @kopf.on.create(GROUP, VERSION, PLURAL, registry=registry)
    def on_create(spec: Any, patch: Any, **_: Any) -> None:
        patch.status["phase"] = "Ready"
        patch.status["doubled"] = spec["size"] * 2

    @kopf.on.delete(GROUP, VERSION, PLURAL, registry=registry)
    def on_delete(name: str, **_: Any) -> None:
        deleted.append(name)

    make_operator(registry)
    create_latencies, delete_latencies = [], []
    for n in range(10):
        started = time.monotonic()
        call(kubeapi, "POST", WIDGETS, widget(f"w{n}", n))
        obj = wait_for(
            lambda n=n: (
                lambda o: o if (o.body.get("status") or {}).get("phase") == "Ready" else None
            )(call(kubeapi, "GET", f"{WIDGETS}/w{n}")),
            interval=0.002,
        )
        create_latencies.append(time.monotonic() - started)
        assert obj.body["status"]["doubled"] == 2 * n
        assert "kopf.zalando.org/KopfFinalizerMarker" in obj.body["metadata"]["finalizers"]
    for n in range(10):
        started = time.monotonic()
        call(kubeapi, "DELETE", f"{WIDGETS}/w{n}")
        wait_for(lambda n=n: call(kubeapi, "GET", f"{WIDGETS}/w{n}").status == 404, interval=0.002)
        delete_latencies.append(time.monotonic() - started)
    assert sorted(set(deleted)) == sorted(f"w{n}" for n in range(10))
    ms = [statistics.median(create_latencies), max(create_latencies)]
    ms += [statistics.median(delete_latencies), max(delete_latencies)]
    print(
        "\nkopf create->handler->status: median {:.0f} ms, max {:.0f} ms; "
        "delete through finalizer: median {:.0f} ms, max {:.0f} ms".format(*(x * 1000 for x in ms))
    )
    assert statistics.median(create_latencies) < 2 and statistics.median(delete_latencies) < 2


@pytest.mark.parametrize("login", ["kubeconfig", "client"])
def test_kopf_logins(
    kubeapi: KubeAPI,
    crd: dict[str, Any],
    kopf_registry: Callable[..., Any],
    make_operator: Callable[..., Any],
    login: str,
) -> None:
    import kopf

    registry = kopf_registry(login=login)

    @kopf.on.create(GROUP, VERSION, PLURAL, registry=registry)
    def on_create(patch: Any, **_: Any) -> None:
        patch.status["login"] = login

    make_operator(registry)
    call(kubeapi, "POST", WIDGETS, widget("w1"))
    wait_for(lambda: (call(kubeapi, "GET", f"{WIDGETS}/w1").body.get("status") or {}).get("login"))


def test_kopf_timer_and_daemon(
    kubeapi: KubeAPI,
    crd: dict[str, Any],
    kopf_registry: Callable[[], Any],
    make_operator: Callable[..., Any],
) -> None:
    import kopf

    registry = kopf_registry()
    ticks: list[str] = []
    daemon_started = threading.Event()

    @kopf.timer(GROUP, VERSION, PLURAL, interval=0.1, registry=registry)
    def tick(name: str, **_: Any) -> None:
        ticks.append(name)

    @kopf.daemon(GROUP, VERSION, PLURAL, registry=registry)
    async def watchdog(stopped: Any, patch: Any, **_: Any) -> None:
        daemon_started.set()
        await stopped.wait(60)

    make_operator(registry)
    call(kubeapi, "POST", WIDGETS, widget("ticking"))
    assert daemon_started.wait(10)
    wait_for(lambda: ticks.count("ticking") >= 3)
    call(kubeapi, "DELETE", f"{WIDGETS}/ticking")
    wait_for(
        lambda: call(kubeapi, "GET", f"{WIDGETS}/ticking").status == 404
    )  # daemons stop, finalizer goes


def test_kopf_restart_does_not_repeat_create(
    kubeapi: KubeAPI,
    crd: dict[str, Any],
    kopf_registry: Callable[[], Any],
    make_operator: Callable[..., Any],
) -> None:
    import kopf

    calls: list[tuple[str, str]] = []

    def operator(tag: str) -> Any:
        registry = kopf_registry()

        @kopf.on.create(GROUP, VERSION, PLURAL, registry=registry)
        def on_create(name: str, patch: Any, **_: Any) -> None:
            calls.append((tag, name))
            patch.status["handledBy"] = tag

        @kopf.on.update(GROUP, VERSION, PLURAL, registry=registry)
        def on_update(name: str, **_: Any) -> None:
            calls.append((f"{tag}-update", name))

        return make_operator(registry)

    first = operator("first")
    call(kubeapi, "POST", WIDGETS, widget("w1"))
    wait_for(
        lambda: (call(kubeapi, "GET", f"{WIDGETS}/w1").body.get("status") or {}).get("handledBy")
    )
    first.stop()
    call(kubeapi, "POST", WIDGETS, widget("w2"))  # created while no operator runs
    operator("second")
    wait_for(
        lambda: (
            (call(kubeapi, "GET", f"{WIDGETS}/w2").body.get("status") or {}).get("handledBy")
            == "second"
        )
    )
    call(
        kubeapi,
        "PATCH",
        f"{WIDGETS}/w1",
        {"spec": {"size": 9}},
        content_type="application/merge-patch+json",
    )
    wait_for(lambda: ("second-update", "w1") in calls)
    assert sorted(c for c in calls if not c[0].endswith("update")) == [
        ("first", "w1"),
        ("second", "w2"),
    ]
    annotations = call(kubeapi, "GET", f"{WIDGETS}/w1").body["metadata"]["annotations"]
    assert "kopf.zalando.org/last-handled-configuration" in annotations


def test_kopf_cluster_peering_and_streaming_lists(
    kubeapi: KubeAPI,
    crd: dict[str, Any],
    peering_crds: list[dict[str, Any]],
    kopf_registry: Callable[[], Any],
    make_operator: Callable[..., Any],
) -> None:
    import kopf

    kubeapi.apply(
        {"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": "lab"}}
    )
    registry = kopf_registry()
    handled: list[tuple[str, str]] = []

    @kopf.on.create(GROUP, VERSION, PLURAL, registry=registry)
    def on_create(namespace: str, name: str, **_: Any) -> None:
        handled.append((namespace, name))

    settings = kopf.OperatorSettings()
    settings.watching.initial_streaming = (
        True  # sendInitialEvents=true & the initial-events-end bookmark
    )
    call(kubeapi, "POST", WIDGETS, widget("early"))
    make_operator(
        registry, clusterwide=True, standalone=False, peering_name="lab", settings=settings
    )
    peering = wait_for(
        lambda: (kubeapi.get("kopf.dev/v1", "ClusterKopfPeering", "lab") or {}).get("status")
    )
    assert len(peering) == 1  # this operator's identity, with its priority and lifetime
    call(kubeapi, "POST", WIDGETS, widget("late"))
    wait_for(lambda: {("default", "early"), ("default", "late")} <= set(handled))


def test_kopf_namespace_patterns(
    kubeapi: KubeAPI,
    crd: dict[str, Any],
    kopf_registry: Callable[[], Any],
    make_operator: Callable[..., Any],
) -> None:
    import kopf

    kubeapi.ensure_namespace("lab-a")
    registry = kopf_registry()
    handled: list[tuple[str, str]] = []

    @kopf.on.create(GROUP, VERSION, PLURAL, registry=registry)
    def on_create(namespace: str, name: str, body: Any, **_: Any) -> None:
        handled.append((namespace, name))
        kopf.info(body, reason="Handled", message="seen by the lab operator")  # a k8s Event

    make_operator(registry, namespaces=("lab-*",))
    call(kubeapi, "POST", f"/apis/{GROUP}/{VERSION}/namespaces/lab-a/{PLURAL}", widget("w1"))
    kubeapi.ensure_namespace("lab-b")  # appears after the start: found through the namespace watch
    call(kubeapi, "POST", f"/apis/{GROUP}/{VERSION}/namespaces/lab-b/{PLURAL}", widget("w2"))
    call(kubeapi, "POST", WIDGETS, widget("ignored"))
    wait_for(lambda: {("lab-a", "w1"), ("lab-b", "w2")} <= set(handled))
    time.sleep(0.3)
    assert ("default", "ignored") not in handled
    wait_for(
        lambda: call(kubeapi, "GET", "/api/v1/namespaces/lab-a/events").body["items"]
    )  # kopf's k8s-events
    event = call(kubeapi, "GET", "/api/v1/namespaces/lab-a/events").body["items"][0]
    assert event["involvedObject"]["name"] == "w1" and event["metadata"]["name"].startswith(
        "kopf-event-"
    )


def test_api_restart_keeps_state_and_kopf_reconnects(
    kubeapi: KubeAPI,
    crd: dict[str, Any],
    kopf_registry: Callable[..., Any],
    make_operator: Callable[..., Any],
) -> None:
    import kopf

    registry = kopf_registry()

    @kopf.on.create(GROUP, VERSION, PLURAL, registry=registry)
    def on_create(patch: Any, **_: Any) -> None:
        patch.status["phase"] = "Ready"

    make_operator(registry)
    call(kubeapi, "POST", WIDGETS, widget("before"))
    before = kubeapi.wait_for(
        f"{GROUP}/{VERSION}",
        "Widget",
        "before",
        "default",
        condition=lambda o: o and (o.get("status") or {}).get("phase") == "Ready",
    )
    port = kubeapi.port
    kubeapi.stop()  # an API server outage
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    time.sleep(0.5)
    kubeapi.start()
    assert kubeapi.port == port
    again = kubeapi.get(f"{GROUP}/{VERSION}", "Widget", "before", "default")
    assert again == before  # same object, same resourceVersion
    call(kubeapi, "POST", WIDGETS, widget("after"))
    kubeapi.wait_for(
        f"{GROUP}/{VERSION}",
        "Widget",
        "after",
        "default",
        condition=lambda o: o and (o.get("status") or {}).get("phase") == "Ready",
    )


def test_thousand_objects_with_kopf(
    kubeapi: KubeAPI,
    crd: dict[str, Any],
    kopf_registry: Callable[[], Any],
    make_operator: Callable[..., Any],
) -> None:
    """The benchmark's scale: 1,000 custom objects handled by kopf."""
    import kopf

    registry = kopf_registry()
    created_at: dict[str, float] = {}
    handled_at: dict[str, float] = {}

    @kopf.on.create(GROUP, VERSION, PLURAL, registry=registry)
    def on_create(name: str, patch: Any, **_: Any) -> None:
        handled_at.setdefault(name, time.monotonic())
        patch.status["phase"] = "Ready"

    make_operator(registry)
    started = time.monotonic()

    def create(indices: range) -> None:
        for n in indices:
            created_at[f"w{n:04d}"] = time.monotonic()
            assert call(kubeapi, "POST", WIDGETS, widget(f"w{n:04d}", n % 7)).status == 201

    writers = [threading.Thread(target=create, args=(range(k, 1000, 4),)) for k in range(4)]
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join()
    posted = time.monotonic() - started

    def all_ready() -> bool:
        items = call(kubeapi, "GET", WIDGETS).body["items"]
        return len(items) == 1000 and all(
            (i.get("status") or {}).get("phase") == "Ready" for i in items
        )

    wait_for(all_ready, timeout=240, interval=0.5)
    total = time.monotonic() - started
    lags = [handled_at[name] - created_at[name] for name in created_at]
    stats = kubeapi.stats()
    lag_ms = (statistics.median(lags) * 1000, sorted(lags)[949] * 1000)
    print(
        f"\n1000 objects: POSTed in {posted:.1f}s, all Ready after {total:.1f}s; "
        f"create->handler lag median {lag_ms[0]:.0f} ms, p95 {lag_ms[1]:.0f} ms; {stats}"
    )
    assert stats["objects"] >= 1000


def test_watch_from_a_future_resource_version_waits_quietly(kubeapi: KubeAPI) -> None:
    watch = Watch(kubeapi, CONFIGMAPS, resourceVersion="999999")
    with pytest.raises((socket.timeout, TimeoutError)):
        watch.next(timeout=0.3)  # nothing yet, and no error
    watch.close()
