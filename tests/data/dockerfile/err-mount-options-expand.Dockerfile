FROM busybox
ENV MODE=lockd
RUN --mount=type=cache,target=/c,sharing=$MODE true
ARG GOOD=Locked
RUN --mount=type=cache,target=/d,sharing=$GOOD true
ARG UID=1000
RUN --mount=type=cache,target=/e,uid=$UID,mode=0755 true
