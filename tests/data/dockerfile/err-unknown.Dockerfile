FROM alpine
RUNN echo hi
COPY --chwon=1:1 a b
RUN --mount=type=cahce,target=/x true
RUN --mount=type=cache,tagret=/x true
WORKDIR
ONBUILD ONBUILD RUN x
HEALTHCHECK --interval=10 CMD true
HEALTHCHECK FOO bar
CMD --foo=bar
FROM alpine AS 1bad
COPY onlyone
SHELL /bin/bash -c
FROM a b
RUN --network=bridge true
LABEL novalue
