# syntax=docker/dockerfile:1
ARG GO_VERSION=1.23
ARG XX_VERSION=1.6.1
FROM --platform=$BUILDPLATFORM tonistiigi/xx:${XX_VERSION} AS xx
FROM --platform=$BUILDPLATFORM golang:${GO_VERSION}-alpine AS build
COPY --from=xx / /
RUN apk add --no-cache file
ARG TARGETPLATFORM
WORKDIR /src
RUN --mount=target=. --mount=target=/root/.cache,type=cache \
    --mount=target=/go/pkg/mod,type=cache \
    xx-go build -o /out/app . && xx-verify /out/app

FROM scratch AS binaries
COPY --from=build /out /
