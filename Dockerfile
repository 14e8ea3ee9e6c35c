# syntax=docker/dockerfile:1
# cilium-node-exporter image: the wheel is built in the first stage and installed into a slim Python
# runtime with no compiler, no build backend and no pip left behind.
#   docker build -t cilium-node-exporter:dev .
# The DaemonSet image carries only the exporter. The SLO review (`cilium-node-exporter report`, e.g. as a
# monthly CronJob, docs/report.md) needs the `report` extra (matplotlib, numpy, jinja2): a separate image,
#   docker build --build-arg EXTRAS=report -t cilium-node-exporter:dev-report .

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG EXTRAS=

FROM ${PYTHON_IMAGE} AS build
ARG EXTRAS
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY exporter ./exporter
# Our wheel plus wheels of every runtime dependency (all published as manylinux wheels).
RUN pip wheel --wheel-dir /wheels ".${EXTRAS:+[$EXTRAS]}"

FROM ${PYTHON_IMAGE}
ARG EXTRAS
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels "cilium-node-exporter${EXTRAS:+[$EXTRAS]}" \
    && pip uninstall --yes setuptools wheel pip \
    && groupadd --system --gid 65532 exporter \
    && useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin exporter
# Non-root by default. The Helm chart runs it as uid 0 (capabilities dropped) unless hubble.socketGroup
# is set: Hubble's node-local socket is root:<cilium group> 0660.
USER 65532:65532
EXPOSE 9969
ENTRYPOINT ["cilium-node-exporter"]
