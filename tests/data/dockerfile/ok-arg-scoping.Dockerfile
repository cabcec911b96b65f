# Global args are only visible in FROM lines unless a stage re-declares them.
ARG VERSION=1.2.3
ARG REGISTRY=docker.io
ARG NODEFAULT
FROM ${REGISTRY}/library/node:${VERSION} AS build
# Not re-declared here: Docker expands these to "".
RUN echo "run keeps $VERSION for the shell"
ENV SEEN=[$VERSION] DEFAULTED=${VERSION:-fallback} PLUS=${VERSION:+x}
ARG VERSION
ENV NOW=$VERSION
ARG LOCAL=${VERSION}-local
LABEL local=$LOCAL

FROM build AS child
# ENV is inherited from the parent stage, ARG is not.
ENV FROM_PARENT=$SEEN$NOW LOCAL_GONE=${LOCAL}
ARG TARGETARCH
ARG BUILDPLATFORM
RUN echo $TARGETARCH
ENV ARCH=$TARGETARCH NOT_DECLARED=${TARGETOS}
