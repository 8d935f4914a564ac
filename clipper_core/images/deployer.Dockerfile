# clipper/<deployer>-closure: what clipper/python-closure runs, plus a framework deployer's needs,
# built FROM the base image with what changes least first, so that Docker's build cache keeps
# the framework's layers while clipper-core changes: Deployer.image_apt_packages (apt, inside the
# build), deps/ (the wheels of Deployer.image_requirements and of every dependency, resolved on
# the host), wheels/ (clipper-core and the deployer plugin), then Deployer.image_commands.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}
ARG APT_PACKAGES=""
RUN if [ -n "$APT_PACKAGES" ]; then \
        apt-get update \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $APT_PACKAGES \
        && rm -rf /var/lib/apt/lists/*; \
    fi
COPY deps /tmp/clipper-deps
RUN python3 -m venv /opt/clipper \
 && /opt/clipper/bin/python -m pip install --no-cache-dir --no-index --no-deps /tmp/clipper-deps/*.whl \
 && rm -rf /tmp/clipper-deps
COPY wheels /tmp/clipper-wheels
RUN /opt/clipper/bin/python -m pip install --no-cache-dir --no-index --no-deps \
        /tmp/clipper-wheels/*.whl \
 && /opt/clipper/bin/python -m pip check \
 && rm -rf /tmp/clipper-wheels
ENV PATH=/opt/clipper/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONUNBUFFERED=1 \
    LANG=C.UTF-8 \
    CLIPPER_MODEL_PATH=/model
RUN mkdir -p /model
ARG IMAGE_COMMANDS=""
RUN if [ -n "$IMAGE_COMMANDS" ]; then sh -ec "$IMAGE_COMMANDS"; fi
CMD ["python", "-m", "clipper_core.runtime"]
