# syntax=docker/dockerfile:1
FROM alpine
ARG NAME=world
ENV GREETING=hello
RUN <<EOF
set -eu
echo "hello $NAME"
  indented line
EOF
RUN <<-EOT
	apk add --no-cache curl
	echo done
	EOT
RUN <<'QUOTED' sh
echo "$HOME stays for the shell"
QUOTED
RUN python3 <<PY
print("a\tb")
PY
RUN cat <<A > /a.txt && cat <<B > /b.txt
first $GREETING
A
second
B
RUN <<EOF
#!/usr/bin/env python3
print("shebang")
EOF
COPY <<EOF /etc/motd
$GREETING, ${NAME:-nobody}! cost: \$5 ${MISSING:-none}
EOF
COPY --chmod=0755 <<'EOF' /usr/local/bin/hello
#!/bin/sh
echo "${1:-hi} $PATH"
EOF
COPY <<-"CONF" <<NGINX /etc/conf.d/
	tabbed = yes
	CONF
server { listen 80; }
NGINX
ADD <<EOF /opt/added.txt
added
EOF
