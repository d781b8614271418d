"""FaultSchedule end to end: the operator process, the Kubernetes API emulator, the lab.

Every schedule here runs `@every 5s`, so run times are multiples of 5 Unix seconds and
children are named `<schedule>-<that number>`. Assertions about faults are made on the lab
nodes (pids) or on what the engine saw there (a record's `previous`), assertions about the
operator on the objects in the API.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import kmock
import pytest

from lab_observe import eventually, pids

pytestmark = pytest.mark.lab

API = "faultline.dev/v1alpha1"
NS = "default"
LABEL = "faultline.dev/schedule"
EVERY = 5


def schedule(name: str, template: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "FaultSchedule",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "schedule": f"@every {EVERY}s",
            "template": {"spec": {"targetRef": {"name": "lab"}, **template}},
            **spec,
        },
    }


def children(kube: Any, name: str) -> dict[str, dict[str, Any]]:
    """The schedule's FaultInjections (by label), by name."""
    return {
        o["metadata"]["name"]: o
        for o in kube.list(API, "FaultInjection", NS)
        if (o["metadata"].get("labels") or {}).get(LABEL) == name
    }


def sched_status(kube: Any, name: str) -> dict[str, Any]:
    obj = kube.get(API, "FaultSchedule", name, NS) or {}
    return dict(obj.get("status") or {})


def number(child_name: str) -> int:
    return int(child_name.rsplit("-", 1)[1])


def unix(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp())


def wait_for(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def first_child(kube: Any, name: str, timeout: float = EVERY + 10) -> str:
    found = wait_for(lambda: sorted(children(kube, name)), timeout, f"{name}'s first child")
    return str(found[0])


def phase_of(kube: Any, name: str) -> str | None:
    obj = kube.get(API, "FaultInjection", name, NS)
    return None if obj is None else (obj.get("status") or {}).get("phase")


def test_children_on_time_named_by_run_and_history_limits(
    schedules: None, kube: Any, kubectl: Any
) -> None:
    dry = {"command": "kill memcached service on node1 node", "dryRun": True}
    kubectl.apply(schedule("ontime", dry, successfulHistoryLimit=2))
    kubectl.apply(schedule("broken", {"command": "kil memcached service on node1 node"}))
    seen: dict[str, dict[str, Any]] = {}
    first = number(first_child(kube, "ontime"))
    deadline = time.monotonic() + 3 * EVERY + 8
    while time.monotonic() < deadline:  # watch children come (and be pruned) for 3 runs
        for name, obj in children(kube, "ontime").items():
            seen.setdefault(name, obj)
        if first + 2 * EVERY in {number(n) for n in seen}:
            break
        time.sleep(0.1)
    runs = sorted(number(n) for n in seen)
    assert runs == [first + k * EVERY for k in range(3)], runs  # none missed, none twice
    for name, obj in seen.items():
        meta = obj["metadata"]
        assert number(name) % EVERY == 0
        assert unix(meta["annotations"]["faultline.dev/scheduled-at"]) == number(name)
        late = unix(meta["creationTimestamp"]) - number(name)
        assert 0 <= late <= 2, f"{name} created {late} s after its time"
        [owner] = meta["ownerReferences"]
        assert owner["kind"] == "FaultSchedule" and owner["name"] == "ontime"
        assert owner["controller"] is True and owner["blockOwnerDeletion"] is True

    # History: the 2 newest successful children of "ontime" stay, and the newest failed
    # one of "broken" (its sentence has a typo, so every child fails).
    def pruned() -> bool:
        left = children(kube, "ontime")
        done = sorted(n for n, o in left.items() if o.get("status", {}).get("phase") == "Completed")
        older = [n for n in left if done and number(n) < number(done[0])]
        return len(done) == 2 and number(done[1]) - number(done[0]) == EVERY and not older

    wait_for(pruned, 15, "successful history pruned to 2")

    def failed_pruned() -> bool:
        left = children(kube, "broken")
        last = sched_status(kube, "broken").get("lastScheduleTime")
        if len(left) != 1 or not last:
            return False
        (name, obj) = next(iter(left.items()))
        return obj.get("status", {}).get("phase") == "Failed" and number(name) == unix(last)

    wait_for(failed_pruned, 15, "failed history pruned to 1")
    st = sched_status(kube, "ontime")
    assert unix(st["lastScheduleTime"]) % EVERY == 0 and st.get("lastSuccessfulTime")
    assert st["observedGeneration"] == 1
    assert any(c["type"] == "Ready" and c["status"] == "True" for c in st["conditions"])
    table = kubectl("get", "fs", "ontime")
    assert table.returncode == 0, table.stderr
    header = table.stdout.splitlines()[0].split()
    assert header == ["NAME", "SCHEDULE", "SUSPEND", "ACTIVE", "LAST", "SCHEDULE", "AGE"]
    assert "@every 5s" in table.stdout and "false" in table.stdout


def test_forbid_skips_while_active_and_delete_recovers(
    schedules: None, kube: Any, kubectl: Any, lab: Any
) -> None:
    kill = {"command": "kill memcached service on node2 node", "duration": "13s"}
    kubectl.apply(schedule("forbid", kill, startingDeadlineSeconds=2))
    c1 = first_child(kube, "forbid")
    wait_for(lambda: phase_of(kube, c1) == "Active", 15, f"{c1} Active")
    assert pids(lab, "node2", "memcached") == []
    t0 = number(c1)
    # t0+5 and t0+10 are due while c1 holds its fault (Forbid); t0+10 is still waiting when
    # its 2 s deadline passes, so the next child is t0+15's.
    c2 = f"forbid-{t0 + 3 * EVERY}"
    wait_for(lambda: c2 in children(kube, "forbid"), 4 * EVERY, c2)
    assert sorted(number(n) for n in children(kube, "forbid")) == [t0, t0 + 3 * EVERY]
    assert phase_of(kube, c1) == "Completed"
    events = kubectl("get", "events", "--field-selector", "involvedObject.name=forbid").stdout
    assert "AlreadyActive" in events and "MissedSchedule" in events
    wait_for(lambda: phase_of(kube, c2) == "Active", 15, f"{c2} Active")
    assert pids(lab, "node2", "memcached") == []
    # Deleting the schedule deletes its children; each recovers its fault on the way out.
    done = kubectl("delete", "faultschedule", "forbid", "--wait=true", "--timeout=60s")
    assert done.returncode == 0, done.stderr
    eventually(lambda: not children(kube, "forbid"), 30, "children deleted with the schedule")
    assert pids(lab, "node2", "memcached")


def test_replace_recovers_the_active_child_and_suspend_stops_runs(
    schedules: None, kube: Any, kubectl: Any, lab: Any
) -> None:
    kill = {"command": "kill memcached service on node3 node", "duration": "60s"}
    kubectl.apply(schedule("replace", kill, concurrencyPolicy="Replace"))
    c1 = first_child(kube, "replace")
    wait_for(lambda: phase_of(kube, c1) == "Active", 15, f"{c1} Active")
    assert pids(lab, "node3", "memcached") == []
    killed_first = kube.get(API, "FaultInjection", c1, NS)["status"]["records"][0]["previous"]
    c2 = f"replace-{number(c1) + EVERY}"
    wait_for(lambda: c2 in children(kube, "replace"), 2 * EVERY, c2)
    patch = '{"spec": {"suspend": true}}'
    assert kubectl("patch", "fs", "replace", "--type=merge", "-p", patch).returncode == 0
    # c1 was deleted and recovered (memcached started again) before c2 killed it anew:
    # c2 found memcached running, under a new pid.
    wait_for(lambda: phase_of(kube, c2) == "Active", 20, f"{c2} Active")
    eventually(lambda: c1 not in children(kube, "replace"), 15, f"{c1} gone")
    killed_second = kube.get(API, "FaultInjection", c2, NS)["status"]["records"][0]["previous"]
    assert killed_second["running"] is True
    assert set(killed_second["pids"]).isdisjoint(killed_first["pids"])
    assert pids(lab, "node3", "memcached") == []
    # Suspended: the next due time passes without a child; c2 goes on.
    wait_for(lambda: time.time() > number(c2) + EVERY + 1, 2 * EVERY, "the next due time")
    assert sorted(children(kube, "replace")) == [c2]
    st = sched_status(kube, "replace")
    assert unix(st["lastScheduleTime"]) == number(c2) and st["active"] == [c2]
    assert "true" in kubectl("get", "fs", "replace").stdout


def test_sigkill_restart_creates_no_duplicates(
    schedules: None, kube: Any, kubectl: Any, operator: Any
) -> None:
    dry = {"command": "kill memcached service on node1 node", "dryRun": True}
    kubectl.apply(schedule("crashy", dry, concurrencyPolicy="Allow", successfulHistoryLimit=10))
    t0 = number(first_child(kube, "crashy"))
    # The API refuses (503) to create the next child: the run is claimed in status but has
    # no child. The operator is killed right there.
    claimed = f"crashy-{t0 + EVERY}"
    refusing = [True]

    def refused(request: Any) -> bool:
        name = ((request.data or {}).get("metadata") or {}).get("name")
        return bool(refusing and name == claimed)

    kube.call(lambda: kube.emulator[kmock.method.POST, refused] << 503)
    wait_for(
        lambda: sched_status(kube, "crashy").get("pendingChild") == claimed, 2 * EVERY, "claim"
    )
    operator.kill()
    refusing.clear()
    assert claimed not in children(kube, "crashy")
    assert unix(sched_status(kube, "crashy")["lastScheduleTime"]) == t0 + EVERY
    operator.start()
    # The new operator creates the claimed child, under its one name. (Had it come up only
    # after t0+10 was due, CronJob's rule would drop the claimed run for the newer one.)
    after_claim = f"crashy-{t0 + 2 * EVERY}"
    wait_for(lambda: after_claim in children(kube, "crashy"), 3 * EVERY, after_claim)
    # Killed again just after a creation, and down across the next due time: the new
    # operator starts the latest due run only, and does not redo the ones before.
    operator.kill()
    wait_for(lambda: time.time() > t0 + 3 * EVERY + 0.5, 2 * EVERY, "t0+15 to pass")
    operator.start()
    wait_for(
        lambda: max(number(n) for n in children(kube, "crashy")) > t0 + 2 * EVERY,
        3 * EVERY,
        "a run after the restart",
    )
    runs = sorted(number(n) for n in children(kube, "crashy"))
    first_after = next(r for r in runs if r > t0 + 2 * EVERY)
    before = [t0, t0 + EVERY, t0 + 2 * EVERY]
    if claimed not in children(kube, "crashy"):  # the slow-restart case above
        before.remove(t0 + EVERY)
        events = kubectl("get", "events", "--field-selector", "involvedObject.name=crashy")
        assert "MissedSchedule" in events.stdout
    assert first_after in (t0 + 3 * EVERY, t0 + 4 * EVERY, t0 + 5 * EVERY)
    after = [r for r in runs if r >= first_after]
    assert after == [first_after + k * EVERY for k in range(len(after))], runs
    assert runs == before + after, runs  # each run once; missed runs not caught up
    st = sched_status(kube, "crashy")
    assert st.get("pendingChild") is None
    assert unix(st["lastScheduleTime"]) == runs[-1]
