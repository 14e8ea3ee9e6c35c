# syntax=docker/dockerfile:1
# cilium-node-exporter image. Three stages, one base:
#   build    our wheel and wheels of the runtime dependencies (all published as manylinux wheels);
#   install  a venv holding those wheels only, and the runtime tree it needs (scripts/image_rootfs.py):
#            the interpreter and its standard library, the shared libraries they load, the CA bundle,
#            passwd/group, and the dpkg records and copyright files of the Debian packages used;
#   final    FROM scratch, two layers: that runtime tree, then the venv. No shell, no coreutils, no
#            package manager, no pip, no compiler.
#   docker build -t cilium-node-exporter:dev .
# PYTHON_IMAGE may be any Debian-based CPython >= 3.11 image with pip, venv and ldd (python:*-slim-*).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG EXTRAS=

FROM ${PYTHON_IMAGE} AS build
ARG EXTRAS
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY exporter ./exporter
RUN pip wheel --wheel-dir /wheels ".${EXTRAS:+[$EXTRAS]}"

FROM ${PYTHON_IMAGE} AS install
ARG EXTRAS
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python3 -m venv /opt/cilium-node-exporter \
    && /opt/cilium-node-exporter/bin/pip install --no-index --find-links=/wheels "cilium-node-exporter${EXTRAS:+[$EXTRAS]}" \
    && /opt/cilium-node-exporter/bin/pip uninstall --yes pip setuptools
COPY scripts/image_rootfs.py /usr/local/share/image_rootfs.py
RUN python3 -B /usr/local/share/image_rootfs.py /opt/cilium-node-exporter /rootfs

FROM scratch
COPY --from=install /rootfs /
COPY --from=install /opt/cilium-node-exporter /opt/cilium-node-exporter
ENV PATH=/opt/cilium-node-exporter/bin PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 LANG=C.UTF-8
# Non-root by default (65532, as in distroless images). The Helm chart runs it as uid 0 (capabilities
# dropped) unless hubble.socketGroup is set: Hubble's node-local socket is root:<cilium group> 0660.
USER 65532:65532
EXPOSE 9969
ENTRYPOINT ["/opt/cilium-node-exporter/bin/cilium-node-exporter"]
