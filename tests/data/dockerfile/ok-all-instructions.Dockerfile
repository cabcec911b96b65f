# syntax=docker/dockerfile:1.7
# check=skip=JSONArgsRecommended

# A stage using every instruction.
FROM debian:12-slim AS base
maintainer Jane Doe <jane@example.com>
LABEL org.opencontainers.image.title="demo app" version=1.0 "quoted key"='single $quoted'
ENV LANG=C.UTF-8 PATH=/opt/bin:$PATH
ENV LEGACY value with  spaces
EXPOSE 80 443/udp 8080/tcp
VOLUME ["/data", "/logs"]
VOLUME /cache /tmp/x
USER app:app
WORKDIR /srv/$LANG
STOPSIGNAL SIGTERM
SHELL ["/bin/bash", "-eo", "pipefail", "-c"]
RUN echo "$LANG" | tee /tmp/lang
RUN ["/bin/echo", "exec", "${HOME}"]
CMD echo hello "${LANG}"
ENTRYPOINT ["/docker-entrypoint.sh"]
HEALTHCHECK --interval=30s --timeout=5s --start-period=0s --start-interval=5s --retries=3 CMD ["curl", "-f", "http://localhost/"]
ONBUILD COPY . /app/src
ADD --checksum=sha256:24454f830cdb571e2c4ad15481119c43b3cafd48dd869a9b2945d1036d1dc68d https://example.com/a.tar.gz /opt/
COPY --chown=app:app --chmod=0755 --link bin/ /usr/local/bin/
