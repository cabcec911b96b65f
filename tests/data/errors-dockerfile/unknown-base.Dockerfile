# The base is in no layout.
FROM oci:missing-layout:base AS build
RUN make

FROM build
CMD ["/app"]
