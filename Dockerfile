# syntax=docker/dockerfile:1
# prime-tofu-exporter container image (docs/install.md: podman recipe, air-gapped builds).
#   docker build -t prime-tofu-exporter \
#     --build-arg VERSION="$(python3 -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')" \
#     --build-arg REVISION="$(git rev-parse HEAD)" --build-arg CREATED="$(date -u +%Y-%m-%dT%H:%M:%SZ)" .
#   docker run --rm -p 9877:9877 prime-tofu-exporter demo          # the embedded lab
#   docker run -d -p 9877:9877 \
#     -v /etc/prime-tofu-exporter:/etc/prime-tofu-exporter:ro \     # config.yml + known_hosts
#     -v /path/to/pi-password:/run/secrets/pi-password:ro \
#     -v tofu-data:/var/lib/prime-tofu-exporter prime-tofu-exporter
# tests/test_deploy.py runs this file's build and run steps in a fresh venv as a non-root user:
# keep the pip install on one RUN line in the build stage and the entry point in exec form.
# scripts/image-check builds this file as written with podman and runs the image.

# Build stage: compilers live here only, for platforms where a dependency has no wheel.
FROM python:3.11-slim-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential libffi-dev libssl-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md LICENSE constraints.txt ./
COPY exporter ./exporter
COPY pilab ./pilab
RUN python -m venv /opt/venv && /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check -c constraints.txt '.[fast]'
# Build arguments for the OCI labels (org.opencontainers.image.*): VERSION, REVISION, CREATED.
# The version is set once, in pyproject.toml: a VERSION that differs from the installed
# package's fails the build. Unset, the labels stay empty; scripts/image-check passes all three.
ARG VERSION
RUN /opt/venv/bin/python3 -c 'import sys; from importlib.metadata import version; v = version("prime-tofu-exporter"); sys.exit(0 if sys.argv[1] in ("", v) else f"VERSION={sys.argv[1]} but the package is {v}")' "$VERSION"

# Runtime stage: the same Python, the finished venv, nothing to compile with.
FROM python:3.11-slim-bookworm
ARG VERSION
ARG REVISION
ARG CREATED
LABEL org.opencontainers.image.title="prime-tofu-exporter" \
      org.opencontainers.image.description="Prometheus exporter that catches trust-on-first-use certificate drift in Cisco Prime Infrastructure" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11-slim-bookworm"
# A fixed uid/gid so Kubernetes runAsUser/fsGroup and host bind mounts can match it.
RUN groupadd --system --gid 10001 tofu \
 && useradd --system --uid 10001 --gid tofu --no-create-home --home-dir /var/lib/prime-tofu-exporter \
      --shell /usr/sbin/nologin tofu \
 && install -d -o tofu -g tofu -m 0750 /var/lib/prime-tofu-exporter \
 && install -d -m 0755 /etc/prime-tofu-exporter
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PRIME_TOFU_EXPORTER_REVISION=${REVISION:-unknown}
USER 10001:10001
WORKDIR /var/lib/prime-tofu-exporter
# The baseline database (witnessed fingerprints): losing it weakens evidence, so keep it on a volume.
VOLUME ["/var/lib/prime-tofu-exporter"]
EXPOSE 9877
# No curl in a slim image; the venv's Python does the request. Plain HTTP: with --web.config.file
# (TLS) override this healthcheck.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["/opt/venv/bin/python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:9877/-/healthy', timeout=4).status == 200 else 1)"]
ENTRYPOINT ["/opt/venv/bin/prime-tofu-exporter"]
CMD ["--config.file=/etc/prime-tofu-exporter/config.yml", "--storage.path=/var/lib/prime-tofu-exporter"]
