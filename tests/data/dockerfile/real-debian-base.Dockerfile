FROM debian:bookworm-slim

ENV DEBIAN_FRONTEND=noninteractive \
    LANG=C.UTF-8 \
    TZ=Etc/UTC

RUN set -eux; \
	apt-get update; \
	apt-get install -y --no-install-recommends \
		ca-certificates \
		curl \
		gnupg \
		tzdata \
	; \
	rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 999 app && useradd --system --uid 999 --gid app --home /home/app --create-home app
USER app
WORKDIR /home/app
CMD ["bash"]
