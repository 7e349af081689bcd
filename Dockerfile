# syntax=docker/dockerfile:1
# The slo-guard operator image: `docker build -t slo-guard:0.1.0 .` (docs/install.md).
# Checked offline by tests/unit/test_dockerfile.py; the install steps are replayed by
# tests/integration/test_wheel_install.py.

# Both stages use this image. The digest pins the bytes and the tag says which Python they carry; update the two
# together (`docker buildx imagetools inspect python:3.11-slim-bookworm`) when moving to a newer Python.
# The digest could not be verified where this file was written (no registry access): resolve it before release.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:2e32f7d302adc1c37428355c1e646897c0c53f4fd60b6a551245fb90ee129f91

FROM ${PYTHON_IMAGE} AS builder
WORKDIR /src
COPY pyproject.toml README.md ./
COPY requirements/constraints.txt requirements/constraints.txt
COPY operator/ operator/
# The same pins the tests run with. pip runs from the base image and installs into a pip-less venv, so no
# installer lands in /opt/venv; the final stage copies nothing else.
RUN python -m pip wheel --no-cache-dir --no-deps --wheel-dir /tmp/dist . \
    && python -m venv --without-pip /opt/venv \
    && python -m pip --python /opt/venv/bin/python install --no-cache-dir \
        -c requirements/constraints.txt /tmp/dist/*.whl

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="slo-guard" \
      org.opencontainers.image.description="Kubernetes operator that enforces error-budget policies on workloads" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="Apache-2.0"
# kopf names its peer from the user's passwd entry unless POD_ID is set; give the numeric user one. The base
# image's pip and setuptools go: nothing installs at run time, and they are what scanners flag.
RUN groupadd --system --gid 65532 slo-guard \
    && useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin slo-guard \
    && python -m pip uninstall --yes --no-cache-dir pip setuptools wheel
COPY --from=builder /opt/venv /opt/venv
# The root filesystem is read-only in the cluster: never try to write .pyc files (pip compiled them already).
# Two malloc arenas keep the Prometheus and Kubernetes thread pools from each holding memory of their own.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    MALLOC_ARENA_MAX=2
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["slo-guard", "run"]
