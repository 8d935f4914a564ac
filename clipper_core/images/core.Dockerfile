# clipper/core: clipper-core (with its tracing extra) installed offline from host-built wheels
# into /opt/clipper (a venv).
# Build context: deps/ (wheels of clipper-core's dependencies, resolved on the host, and
# requirements.txt) and wheels/ (the clipper-core wheel).
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}
# Dependencies first: Docker's build cache reuses this layer while they do not change.
COPY deps /tmp/clipper-deps
RUN python3 -m venv /opt/clipper \
 && /opt/clipper/bin/python -m pip install --no-cache-dir --no-index \
        --find-links /tmp/clipper-deps -r /tmp/clipper-deps/requirements.txt \
 && rm -rf /tmp/clipper-deps
COPY wheels /tmp/clipper-wheels
RUN /opt/clipper/bin/python -m pip install --no-cache-dir --no-index --no-deps \
        /tmp/clipper-wheels/*.whl \
 && rm -rf /tmp/clipper-wheels
ENV PATH=/opt/clipper/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONUNBUFFERED=1 \
    LANG=C.UTF-8
CMD ["python", "-c", "import clipper_core; print('clipper-core', clipper_core.__version__)"]
