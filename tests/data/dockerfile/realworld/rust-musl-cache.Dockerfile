FROM rust:1-alpine AS build
RUN apk add --no-cache musl-dev
WORKDIR /build
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/build/target,id=target-musl \
    cargo build --release && cp target/release/svc /svc

FROM alpine:3.20
COPY --from=build /svc /usr/bin/svc
HEALTHCHECK --interval=10s --timeout=3s CMD ["/usr/bin/svc", "health"]
CMD ["/usr/bin/svc"]
