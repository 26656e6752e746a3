# gatewatch as a container; how to build, run and check it: docs/deploy/README.md
#
#   docker build -t gatewatch .
#   docker run --init -d --name gatewatch --env-file gatewatch.env \
#     -v /var/log/gateway:/logs:ro -v gatewatch-data:/data gatewatch
#
# Two stages: libinjection-python builds from its sdist with a C compiler, which stays in the
# build stage; the runtime stage gets the finished virtualenv only.

ARG PYTHON_IMAGE=python:3.12-slim-bookworm

FROM ${PYTHON_IMAGE} AS build

# DL3008 (pin apt versions): the build stage's compiler leaves no trace in the image, and a pinned
# Debian version disappears from the mirror at its next point release, breaking the build
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

WORKDIR /src
# what `pip install .` needs and nothing else (.dockerignore keeps the rest out of the context)
COPY pyproject.toml README.md LICENSE ./
COPY flows/ flows/
COPY detectors/ detectors/
COPY sinks/ sinks/
COPY dashboards/ dashboards/

# the package's own dependency ranges, no test extras. Then what the image never runs goes:
# pip, and the dependencies' own test suites (about 100 MB: pandas, numpy, scipy, pyarrow)
RUN python -m venv /opt/gatewatch \
 && /opt/gatewatch/bin/pip install --no-cache-dir . \
 && /opt/gatewatch/bin/pip uninstall --yes pip \
 && find /opt/gatewatch/lib -depth -type d -name tests -path '*/site-packages/*' -exec rm -rf {} + \
 && /opt/gatewatch/bin/gatewatch --version


FROM ${PYTHON_IMAGE}

# a dedicated system user with a fixed numeric id: chown a bind-mounted store to 10001:10001
RUN groupadd --system --gid 10001 gatewatch \
 && useradd --system --uid 10001 --gid gatewatch --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin gatewatch \
 && mkdir -p /data /logs /etc/gatewatch \
 && chown gatewatch:gatewatch /data

COPY --from=build /opt/gatewatch /opt/gatewatch
COPY docs/deploy/gatewatch.container.toml /etc/gatewatch/gatewatch.toml
COPY docs/deploy/healthcheck.py /opt/gatewatch/healthcheck.py

# the venv is read-only at run time, so no bytecode is written; logs are not held back.
# STREAMLIT_BROWSER_SERVER_ADDRESS: the URL the dashboard prints; without it, Streamlit on 0.0.0.0
# asks an internet service for this host's public address at every start
ENV PATH=/opt/gatewatch/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    GATEWATCH_CONFIG=/etc/gatewatch/gatewatch.toml \
    GATEWATCH_STORE=/data \
    STREAMLIT_BROWSER_SERVER_ADDRESS=localhost

WORKDIR /data
VOLUME ["/data"]
USER 10001:10001

# documentation only: the dashboard, the decision API, Prometheus /metrics (publish with -p)
EXPOSE 8501 8089 9464

# run stops cleanly on SIGTERM and keeps its open windows for the next start; give it time
# (docker stop -t 60, compose stop_grace_period)
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
  CMD ["python", "/opt/gatewatch/healthcheck.py"]

ENTRYPOINT ["gatewatch"]
CMD ["run", "/logs/*.log", "--store", "/data"]
