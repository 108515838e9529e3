# agentkube: the operator (`agentkube manager`) and the data-plane programs its Deployments run.
#
#   docker build -t agentkube:dev .
#
# Stage 1 builds wheels for agentkube and every dependency and installs them into a virtualenv;
# stage 2 copies only that virtualenv onto a clean slim image: no compilers, no pip cache, no sources.
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY . .
# Wheels first, then an offline install of exactly those. The runtime image never installs anything,
# so pip and setuptools leave the virtualenv; bytecode is compiled now because the root filesystem is
# read-only at run time.
RUN pip wheel --wheel-dir /wheels . \
 && python -m venv /opt/agentkube \
 && /opt/agentkube/bin/pip install --no-index --find-links /wheels agentkube \
 && /opt/agentkube/bin/pip uninstall --yes pip setuptools \
 && /opt/agentkube/bin/python -m compileall -q /opt/agentkube

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="agentkube" \
      org.opencontainers.image.description="Kubernetes operator for MCP proxies, LLM gateways and agentgateway tool gateways" \
      org.opencontainers.image.licenses="Apache-2.0"
# stdio upstreams of an MCP are commands the proxy starts in its own pod: most are published for
# npx (Node.js) or uvx (uv), so the image carries both. A child sees only PATH, HOME and the env its
# MCP gives it; HOME=/tmp (the one writable directory: the root filesystem is read-only and the
# Deployment mounts an emptyDir there) puts the npm and uv caches and uvx's tools under /tmp.
RUN apt-get update \
 && apt-get install --yes --no-install-recommends nodejs npm ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && pip install --no-cache-dir uv \
 && pip uninstall --yes pip setuptools
ENV HOME=/tmp
# A fixed numeric uid, so `runAsNonRoot: true` can verify it without a passwd lookup.
RUN groupadd --gid 65532 agentkube \
 && useradd --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin agentkube
COPY --from=build /opt/agentkube /opt/agentkube
ENV PATH=/opt/agentkube/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 65532:65532
ENTRYPOINT ["agentkube"]
CMD ["manager"]
