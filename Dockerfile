# syntax=docker/dockerfile:1
#
# Faultline operator image: `faultline run` as a non-root user, ready for a read-only root
# filesystem (the chart mounts an in-memory emptyDir on /tmp; nothing else is written).
#
#   docker build -t faultline:0.1.0 .
#   docker run --rm faultline:0.1.0 --help                         # `faultline run --help`
#   docker run --rm --entrypoint faultline faultline:0.1.0 crds   # any other subcommand
#
# Base image: pinned by tag. Pin it by digest as well where a registry is reachable
# (`python:3.11-slim-bookworm@sha256:...`, e.g. with `docker buildx imagetools inspect`);
# the digest could not be resolved where this file was written (no registry access), so it
# is left to the build pipeline through the PYTHON_IMAGE build argument.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- builder: a virtualenv with Faultline and its power backends ----------------------------
FROM ${PYTHON_IMAGE} AS builder

# libvirt-python has no wheels: it compiles against the distribution's libvirt (9.0 on
# bookworm) with pkg-config. Only this stage carries a compiler and headers. Debian package
# versions are not pinned (DL3008): bookworm's point releases replace them on the mirrors, so
# an exact pin breaks the build after every security update; the base tag fixes the release.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev libvirt-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator/ operator/

# `power` = the ipmi (pyghmi), libvirt (libvirt-python) and redfish (sushy) backends. pip
# compiles .pyc files here, so the read-only runtime never needs to write one.
RUN python -m venv /opt/faultline \
    && /opt/faultline/bin/pip install ".[power,openstack]" \
    && /opt/faultline/bin/faultline crds > /dev/null

# --- runtime: Python, the libvirt client library, tini, the virtualenv ----------------------
FROM ${PYTHON_IMAGE} AS runtime

# libvirt0: the client library libvirt-python links against (no daemon). tini: PID 1 that
# forwards SIGTERM to the operator (kopf then stops gracefully) and reaps helper processes.
# Versions unpinned as in the builder (DL3008): the base tag fixes the Debian release.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libvirt0 tini \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 faultline \
    && useradd --system --uid 10001 --gid 10001 --home-dir /tmp --no-create-home \
        --shell /usr/sbin/nologin faultline

COPY --from=builder /opt/faultline /opt/faultline

# No .pyc writes (read-only root), unbuffered logs, temporary files (SSH keys from Secrets,
# 0600 in a 0700 directory) and HOME in /tmp: the only writable path.
ENV PATH=/opt/faultline/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TMPDIR=/tmp \
    HOME=/tmp

# Credentials are never part of the image: the operator reads SSH keys, known_hosts and BMC
# passwords from the Secrets a FaultTarget names (Kubernetes API); the CLI reads them from
# files mounted from Secrets (e.g. -c /etc/faultline/cloud.yaml with keys under it).
USER 10001:10001
WORKDIR /tmp

# 8080: kopf's health endpoint (liveness/readiness probes); 9090: Prometheus metrics.
EXPOSE 8080 9090

# For `docker run`; Kubernetes ignores HEALTHCHECK and uses the chart's httpGet probes on
# the same endpoint.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"]

ENTRYPOINT ["/usr/bin/tini", "--", "faultline", "run"]
