FROM busybox
ENV MODE=lockd
RUN --mount=type=cache,target=/c,sharing=$MODE true
ARG GOOD=Locked
RUN --mount=type=cache,target=/d,sharing=$GOOD true
