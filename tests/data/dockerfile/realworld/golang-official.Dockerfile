FROM buildpack-deps:bookworm-scm AS build
ENV PATH /usr/local/go/bin:$PATH
ENV GOLANG_VERSION 1.23.4
RUN set -eux; \
	arch="$(dpkg --print-architecture)"; arch="${arch##*-}"; \
	case "$arch" in \
		'amd64') url='https://dl.google.com/go/go1.23.4.linux-amd64.tar.gz' ;; \
		'arm64') url='https://dl.google.com/go/go1.23.4.linux-arm64.tar.gz' ;; \
		*) echo >&2 "error: unsupported architecture '$arch'"; exit 1 ;; \
	esac; \
	wget -O go.tgz.asc "$url.asc"; \
	wget -O go.tgz "$url" --progress=dot:giga; \
	tar -C /usr/local -xzf go.tgz; rm go.tgz

FROM buildpack-deps:bookworm-scm
ENV GOLANG_VERSION 1.23.4
ENV GOTOOLCHAIN=local
ENV GOPATH /go
ENV PATH $GOPATH/bin:/usr/local/go/bin:$PATH
COPY --from=build --link /usr/local/go/ /usr/local/go/
RUN mkdir -p "$GOPATH/src" "$GOPATH/bin" && chmod -R 1777 "$GOPATH"
WORKDIR $GOPATH
