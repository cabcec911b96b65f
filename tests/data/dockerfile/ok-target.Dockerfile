FROM alpine AS Build
RUN echo build
FROM build AS test
RUN echo test
FROM scratch
COPY --from=build /bin/busybox /
