# syntax=docker/dockerfile:1
#
# The example services and tools as a container image: user-service,
# email-service, register-users, natsgw-gen, the natsgw command-line tool and
# the natsgw-edge HTTP/JSON gateway in /usr/local/bin, the schemas/*.fbs wire
# contract in /usr/share/natsgw/schemas (where the tools' --schema finds it),
# run as uid/gid 65532, fit for a read-only root filesystem.
#
#   docker build -t natsgw/natsgw-examples:0.1.0 .
#   docker run --rm --read-only -p 9090:9090 -e NATS_URL=nats://nats:4222 \
#     natsgw/natsgw-examples:0.1.0 user-service --metrics_port=9090
#   docker run --rm --read-only -v natsgw-mail:/var/spool/natsgw-mail \
#     -e NATS_URL=nats://nats:4222 natsgw/natsgw-examples:0.1.0 \
#     email-service --metrics_port=9090 --mail_dir=/var/spool/natsgw-mail
#   docker run --rm --read-only -p 8080:8080 -e NATS_URL=nats://nats:4222 \
#     natsgw/natsgw-examples:0.1.0 natsgw-edge --schema=/usr/share/natsgw/schemas \
#     --allow_call=users.RegisterUser --allow_unauthenticated
#   docker run --rm -e NATS_URL=nats://nats:4222 natsgw/natsgw-examples:0.1.0 \
#     natsgw services ls
#
# Both stages take their Debian packages from scripts/lib/setup.sh, the file
# scripts/test and scripts/demo source: the build stage installs
# NATSGW_PACKAGES and builds with natsgw_build, the runtime stage installs
# NATSGW_RUNTIME_PACKAGES. No package is named here, so the image cannot
# drift from the scripts.
#
# The test suite does not build this image (that needs a container engine).
# The test packaging.dockerfile (tests/packaging/docker) checks it instead:
# the stages' base images; that packages are installed only through
# setup.sh's functions; a numeric non-root USER; exec-form CMD; the version
# label; that every binary copied here is built; that the schemas are
# shipped; and, with ldd and dpkg on the built binaries, that
# NATSGW_RUNTIME_PACKAGES names exactly the Debian packages they load.

FROM debian:bookworm AS build
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /src
# setup.sh alone first: the toolchain layer is then rebuilt only when the
# package list changes, not on every source change. On a fresh image apt has
# no package lists: natsgw_apt_install's first attempt fails and it runs
# apt-get update and retries.
COPY scripts/lib/setup.sh scripts/lib/setup.sh
RUN source scripts/lib/setup.sh \
 && natsgw_install_packages \
 && rm -rf /var/lib/apt/lists/*
COPY . .
# The build scripts/test does, less the tests and the benchmark; only the
# image's binaries are built. Their stripped copies go to /out.
RUN source scripts/lib/setup.sh \
 && export NATSGW_CMAKE_ARGS="-DNATSGW_BUILD_TESTS=OFF -DNATSGW_BUILD_BENCH=OFF" \
 && natsgw_build user-service email-service register-users natsgw-gen \
      natsgw natsgw-edge \
 && install -d /out \
 && install -m 0755 --strip build/bin/user-service build/bin/email-service \
      build/bin/register-users build/bin/natsgw-gen build/bin/natsgw \
      build/bin/natsgw-edge /out/

FROM debian:bookworm-slim AS runtime
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# Add org.opencontainers.image.source with the repository you publish from
# (docker build --label ...).
LABEL org.opencontainers.image.title="natsgw-examples" \
      org.opencontainers.image.description="natsgw example services (user-service, email-service), register-users, natsgw-gen, the natsgw CLI and the natsgw-edge HTTP/JSON gateway" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="Apache-2.0"
# setup.sh is mounted from the build context for this step only, so it does
# not stay in the image. The e-mail spool belongs to the runtime user: it is
# the one place the services write to (a volume; the root filesystem can be
# read-only).
RUN --mount=type=bind,source=scripts/lib,target=/tmp/natsgw/scripts/lib \
    source /tmp/natsgw/scripts/lib/setup.sh \
 && natsgw_install_runtime_packages \
 && rm -rf /var/lib/apt/lists/* \
 && install -d -m 0750 -o 65532 -g 65532 /var/spool/natsgw-mail
COPY --from=build /out/user-service /out/email-service /out/register-users \
     /out/natsgw-gen /out/natsgw /out/natsgw-edge /usr/local/bin/
# The wire contract, for natsgw and natsgw-edge (--schema, or
# NATSGW_SCHEMA_PATH): the same files `cmake --install` puts in
# <prefix>/share/natsgw/schemas. Readable by everyone, owned by root.
COPY schemas/*.fbs /usr/share/natsgw/schemas/
ENV NATSGW_SCHEMA_PATH=/usr/share/natsgw/schemas
VOLUME ["/var/spool/natsgw-mail"]
# Numeric, so that Kubernetes' runAsNonRoot can verify it without an
# /etc/passwd entry.
USER 65532:65532
# --metrics_port: /metrics, /healthz, /readyz, /drainz. natsgw-edge's API
# (--port): 8080.
EXPOSE 9090 8080
# Exec form: the binaries run as PID 1 without a shell and get SIGTERM
# themselves (they drain and exit 0). Run another one by naming it:
# `docker run ... natsgw/natsgw-examples:0.1.0 email-service ...`.
CMD ["user-service"]
