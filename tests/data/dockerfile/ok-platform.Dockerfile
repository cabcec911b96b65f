FROM --platform=$BUILDPLATFORM golang:1.22 AS build
ARG TARGETOS TARGETARCH
RUN GOOS=$TARGETOS GOARCH=$TARGETARCH go build -o /out/app .
FROM --platform=${TARGETPLATFORM} alpine AS mid
FROM --platform=linux/arm64 alpine
COPY --from=build /out/app /app
