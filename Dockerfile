# totp-sidecar image: non-root, read-only root file system friendly (the SQLite database is the
# only thing written, on the /var/lib/totp-sidecar volume), no secret inside.
#   docker build -t totp-sidecar .
#   docker run ... (README.md, "Run it as a service")
# Checked statically by tests/unit/test_deploy_docker.py.

# -- build: the package and its dependencies into a virtualenv ---------------------------------
FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/totp-sidecar
WORKDIR /src
# Only what the wheel is built from (.dockerignore keeps everything else out of the context).
COPY pyproject.toml README.md ./
COPY sidecar ./sidecar
COPY templates ./templates
RUN /opt/totp-sidecar/bin/pip install . \
    && /opt/totp-sidecar/bin/python -m compileall -q /opt/totp-sidecar

# -- run ----------------------------------------------------------------------------------------
FROM python:3.11-slim
ENV PATH=/opt/totp-sidecar/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN groupadd --system --gid 10001 totp-sidecar \
    && useradd --system --uid 10001 --gid totp-sidecar --home-dir /var/lib/totp-sidecar \
       --no-create-home --shell /usr/sbin/nologin totp-sidecar \
    && install -d -o totp-sidecar -g totp-sidecar -m 700 /var/lib/totp-sidecar
COPY --from=build /opt/totp-sidecar /opt/totp-sidecar
# A default config (no secrets: they come from the environment or *_file keys); mount your own
# over it: -v "$PWD/config.yaml:/etc/totp-sidecar/config.yaml:ro".
COPY deploy/docker/config.yaml /etc/totp-sidecar/config.yaml
# A named volume starts with this directory's owner; a bind mount needs `chown 10001:10001`.
VOLUME ["/var/lib/totp-sidecar"]
WORKDIR /var/lib/totp-sidecar
USER 10001:10001
EXPOSE 9091
# No curl in the slim image: Python asks /healthz (no proxy from the environment).
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request as u; u.build_opener(u.ProxyHandler({})).open('http://127.0.0.1:9091/healthz', timeout=4)"]
ENTRYPOINT ["totp-sidecar", "serve", "--config", "/etc/totp-sidecar/config.yaml"]
