FROM debian:12
# Comments and empty lines inside a continuation are dropped, as BuildKit does.
RUN apt-get update \
# install the tools
    && apt-get install -y --no-install-recommends \
        ca-certificates \
        curl \

    && rm -rf /var/lib/apt/lists/*
run echo lower-case instruction \
  continued at EOF \
