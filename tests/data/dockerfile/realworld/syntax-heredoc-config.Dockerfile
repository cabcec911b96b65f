# syntax=docker/dockerfile:1.7
ARG ALPINE=3.20
FROM alpine:${ALPINE}
ARG LISTEN=8080
RUN apk add --no-cache nginx
COPY <<EOF /etc/nginx/http.d/default.conf
server {
    listen ${LISTEN};
    location / { root /srv; }
}
EOF
COPY <<-"SCRIPT" /usr/local/bin/healthcheck
	#!/bin/sh
	wget -q -O /dev/null "http://localhost:${LISTEN:-8080}/" || exit 1
	SCRIPT
RUN chmod +x /usr/local/bin/healthcheck
RUN --mount=type=bind,source=site,target=/tmp/site \
    cp -r /tmp/site/. /srv/
HEALTHCHECK --interval=30s CMD /usr/local/bin/healthcheck
EXPOSE 8080-8081
CMD ["nginx", "-g", "daemon off;"]
