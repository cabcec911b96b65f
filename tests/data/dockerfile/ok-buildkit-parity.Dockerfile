# Each line below once imported differently from what BuildKit builds (issue 12).
FROM busybox AS base
# 12: triggers are kept in the image config, as Dockerfile text.
ONBUILD COPY . /app/
ONBUILD RUN echo "built on ${HOSTNAME:-base}"

FROM base
# 7: a name nothing declares expands to nothing, unless the base image sets it.
ENV VERSION=$VERSION HOME_DIR=${HOME}/x
# 3: an ARG after an ENV of the same name wins for later steps.
ENV MODE=env
ARG MODE=arg
# 4: a range is three ports.
EXPOSE 7000-7002/udp
# 11: an absolute WORKDIR keeps its trailing slash.
WORKDIR /app/
# 8: an empty RUN runs an empty shell command.
RUN
# 9: whitespace-only continuation lines keep their spaces.
RUN echo 'hi \
 \
 world'
# 1: braced variables in config commands reach the config as written.
HEALTHCHECK CMD wget -q http://localhost:${PORT-8080}/
ENTRYPOINT ["sh", "-c", "exec ${0} \"$@\""]
CMD echo ${HOME:-x} $HOME
SHELL ["/bin/sh", "-c"]
# 10: an empty list leaves the field absent.
CMD []
