# clipper/noop-container: the original's no-op model, answering "1.0" to every input of any type.
# It serves the bundle /noop (whatever is copied to /model is ignored), so it runs as an image
# (deploy_model) and as the base of model images (build_and_deploy_model(..., base_image=...)).
ARG CORE_IMAGE
FROM ${CORE_IMAGE}
RUN python -c "from pathlib import Path; \
from clipper_core.deployers.api import write_bundle; \
from clipper_core.deployers.python import PythonDeployer; \
write_bundle(PythonDeployer(), Path('/noop'), 'strings', lambda inputs: ['1.0'] * len(inputs))"
ENV CLIPPER_MODEL_PATH=/noop
CMD ["python", "-m", "clipper_core.runtime"]
