FROM golang:1.22 AS build
WORKDIR /src
COPY go.mod go.sum ./
COPY --parents ./cmd/*/main.go ./pkg/ /src/
COPY --exclude=*.md --exclude=docs/ . .
RUN go build -o /out/app ./cmd/app

FROM alpine:3.20
COPY --from=build /out/app /usr/local/bin/app
COPY --from=0 /src/go.mod /
COPY --from=nginx:1.27 /etc/nginx/nginx.conf /etc/nginx/
COPY ["file with space.txt", "/dest dir/"]
ADD --chown=1000:1000 --chmod=644 --link archive.tar.gz /opt/
ADD --keep-git-dir=true https://github.com/moby/buildkit.git#v0.14.0 /buildkit
ADD git@github.com:user/repo.git /repo
ADD --exclude=*.tmp --unpack=false files.tar /files/
