# syntax=docker/dockerfile:1.7
ARG GO_VERSION=1.23
FROM golang:${GO_VERSION}-alpine AS base
WORKDIR /src
RUN --mount=type=bind,target=. --mount=type=cache,target=/root/.cache \
    go vet ./...
RUN --mount=type=bind \
    --mount=target=/root/.cache,type=cache \
    go build -o /usr/bin/tool .
