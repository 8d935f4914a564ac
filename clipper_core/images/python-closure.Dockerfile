# clipper/python-closure: runs a model bundle copied to /model (spec §5.1 environment).
ARG CORE_IMAGE
FROM ${CORE_IMAGE}
ENV CLIPPER_MODEL_PATH=/model
RUN mkdir -p /model
CMD ["python", "-m", "clipper_core.runtime"]
