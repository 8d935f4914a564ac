# clipper/<deployer>-closure: the closure image plus a framework deployer's needs:
# Deployer.image_apt_packages (apt, inside the build) and the deployer plugin with
# Deployer.image_requirements (wheels resolved on the host, in wheels/ + requirements.txt),
# then Deployer.image_commands.
ARG CLOSURE_IMAGE
FROM ${CLOSURE_IMAGE}
ARG APT_PACKAGES=""
ARG IMAGE_COMMANDS=""
RUN if [ -n "$APT_PACKAGES" ]; then \
        apt-get update \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $APT_PACKAGES \
        && rm -rf /var/lib/apt/lists/*; \
    fi
COPY wheels /tmp/clipper-wheels
COPY requirements.txt /tmp/clipper-requirements.txt
RUN python -m pip install --no-cache-dir --no-index --find-links /tmp/clipper-wheels \
        -r /tmp/clipper-requirements.txt \
 && rm -rf /tmp/clipper-wheels /tmp/clipper-requirements.txt
RUN if [ -n "$IMAGE_COMMANDS" ]; then sh -ec "$IMAGE_COMMANDS"; fi
