"""Set up the lab's OpenStack through its APIs; runs in the services' venv (openstacksdk).

Run as `python openstack_setup.py PHASE` with OS_CLIENT_CONFIG_FILE naming the lab's
clouds.yaml and a JSON document on stdin (never passwords on the command line):

- `identity` {"service_password", "users", "endpoints": {name: [type, url]}}: project
  `service`, the service users (roles admin and service there), services and endpoints.
- `resources` {"flavor", "image"}: flavor m1.tiny and a tiny public raw image.

Idempotent: what exists already is left as it is.
"""

import json
import sys
import time
from typing import Any

import openstack

REGION = "RegionOne"
CLOUD = "faultline-lab"


def connect() -> Any:
    return openstack.connect(cloud=CLOUD)


def identity(conn: Any, spec: dict[str, Any]) -> None:
    ident = conn.identity
    domain = ident.find_domain("default")
    project = ident.find_project("service", domain_id=domain.id) or ident.create_project(
        name="service", domain_id=domain.id, description="Service users of the lab"
    )
    roles: dict[str, Any] = {}
    for name in ("admin", "service"):
        roles[name] = ident.find_role(name) or ident.create_role(name=name)
    for user_name in spec["users"]:
        user = ident.find_user(user_name, domain_id=domain.id)
        if user is None:
            user = ident.create_user(
                name=user_name, password=spec["service_password"], domain_id=domain.id
            )
        else:
            ident.update_user(user, password=spec["service_password"])
        for role in roles.values():
            ident.assign_project_role_to_user(project, user, role)
    for name, (service_type, url) in spec["endpoints"].items():
        if service_type == "identity":
            continue  # keystone-manage bootstrap made it
        service = next(iter(ident.services(type=service_type)), None)
        if service is None:
            service = ident.create_service(name=name, type=service_type, is_enabled=True)
        existing = {e.interface: e for e in ident.endpoints(service_id=service.id)}
        for interface in ("public", "internal", "admin"):
            endpoint = existing.get(interface)
            if endpoint is None:
                ident.create_endpoint(
                    service_id=service.id, interface=interface, url=url, region_id=REGION
                )
            elif endpoint.url != url:
                ident.update_endpoint(endpoint, url=url)


def resources(conn: Any, spec: dict[str, Any]) -> None:
    flavor = spec["flavor"]
    if conn.compute.find_flavor(flavor["name"]) is None:
        conn.compute.create_flavor(
            name=flavor["name"], ram=flavor["ram"], vcpus=flavor["vcpus"], disk=flavor["disk"]
        )
    image = spec["image"]
    if conn.image.find_image(image["name"]) is None:
        body = {
            "name": image["name"],
            "disk_format": "raw",
            "container_format": "bare",
            "visibility": "public",
        }
        created = conn.image.post("/images", json=body).json()
        conn.image.put(
            f"/images/{created['id']}/file",
            data=image["data"].encode(),
            headers={"Content-Type": "application/octet-stream"},
        )
        deadline = time.monotonic() + 60
        while conn.image.get_image(created["id"]).status != "active":
            if time.monotonic() > deadline:
                raise SystemExit(f"image {image['name']} did not become active")
            time.sleep(0.2)


def main() -> None:
    phase = sys.argv[1]
    spec = json.load(sys.stdin)
    conn = connect()
    phases = {"identity": identity, "resources": resources}
    phases[phase](conn, spec)
    print(f"{phase}: done")


if __name__ == "__main__":
    main()
