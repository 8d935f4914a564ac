# clipper/server: the query and/or management frontend, configured by CLIPPER_* variables
# (ClusterConfig.from_env), e.g. CLIPPER_ROLES=query CLIPPER_STORE_URL=redis://redis:6379/0.
ARG CORE_IMAGE
FROM ${CORE_IMAGE}
ENV CLIPPER_BIND_HOST=0.0.0.0 \
    CLIPPER_MANAGEMENT_HOST=0.0.0.0
EXPOSE 1337 1338 7000
CMD ["python", "-m", "clipper_core.server", "--from-env"]
