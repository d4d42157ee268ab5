# quantpanel in a container: the dashboard on 0.0.0.0:5006, the database on a volume.
#   docker build -t quantpanel .
#   docker run -p 5006:5006 -v quantpanel-data:/data -e QP_ALLOW_ORIGIN=localhost:5006 quantpanel
# The same image runs the scale-out of compose.yaml (`docker compose up`: redis, one ingest, two
# dashboards) and `quantpanel serve --workers N`, hence Debian's redis-server in it.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    QP_ALLOW_ORIGIN=localhost:5006 QP_PORT=5006
WORKDIR /app

RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server \
    && rm -rf /var/lib/apt/lists/*

COPY requirements.txt pyproject.toml README.md ./
RUN pip install -r requirements.txt
COPY quantpanel ./quantpanel
COPY app.py config.yaml ./
COPY data/replay ./data/replay
RUN pip install --no-deps -e . \
    && useradd --create-home --uid 10001 quantpanel \
    && mkdir -p /data && chown quantpanel /data

USER quantpanel
VOLUME ["/data"]
EXPOSE 5006

# The same command as `make run` uses, bound to all interfaces, databases on the volume; the
# websocket message cap lets a storage.max_upload_mb (50 MB) upload through, base64-encoded.
CMD ["sh", "-c", "exec panel serve app.py --address 0.0.0.0 --port ${QP_PORT} --allow-websocket-origin ${QP_ALLOW_ORIGIN} --websocket-max-message-size 70953642 --liveness --args --db-dir /data"]
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s \
    CMD python -c "import os,urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ[\"QP_PORT\"]}/liveness', timeout=4)" || exit 1
