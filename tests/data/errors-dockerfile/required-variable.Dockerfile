FROM scratch
ARG VERSION
LABEL version="${VERSION:?pass --build-arg VERSION}"
