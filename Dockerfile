# elderwatch: streaming worker and its one-shot jobs (topics create, simulate, feed, ...).
#   docker build -t elderwatch .
#   docker run --rm -e KAFKA_BOOTSTRAP_SERVERS=broker:9092 elderwatch            # worker
#   docker run --rm -e KAFKA_BOOTSTRAP_SERVERS=broker:9092 elderwatch topics create
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src

# Only what `pip install .` needs (README.m[d] is optional: the glob copies it when present).
COPY pyproject.toml requirements.lock README.m[d] ./
COPY schemas/ schemas/
COPY streams/ streams/
COPY detectors/ detectors/
COPY dispatch/ dispatch/
COPY elderwatch/ elderwatch/
COPY replay_data/ replay_data/

# The lock as constraints: the exact versions streams/recovery.py was verified with (the worker refuses
# others at start), without the test extras the lock also pins.
RUN pip install -c requirements.lock . \
    && rm -rf build *.egg-info

# Non-root. /data is the mount point for simulated/replayed files: created here and owned by
# the user so a fresh named volume mounted there inherits the ownership and is writable.
RUN groupadd --system --gid 10001 elderwatch \
    && useradd --system --uid 10001 --gid elderwatch --create-home --home-dir /home/elderwatch elderwatch \
    && mkdir -p /data \
    && chown elderwatch:elderwatch /data

USER elderwatch
WORKDIR /home/elderwatch

# Metrics (/metrics), liveness (/health) and readiness (/ready); set ELDERWATCH_WEB_HOST=0.0.0.0 to reach them from outside.
EXPOSE 6066

ENTRYPOINT ["elderwatch"]
CMD ["worker"]
