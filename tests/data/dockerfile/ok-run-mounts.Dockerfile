FROM rust:1.80 AS build
ARG CARGO_HOME=/usr/local/cargo
RUN --mount=type=cache,target=$CARGO_HOME/registry,id=cargo-registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=private,mode=0755,uid=1000,gid=1000 \
    --mount=type=bind,source=Cargo.toml,target=/src/Cargo.toml \
    --mount=type=bind,src=.,dst=/src,rw \
    cargo build --release
RUN --mount=type=secret,id=npmrc,target=/root/.npmrc,required=true,mode=0400,uid=0,gid=0 npm ci
RUN --mount=type=secret,id=token,env=GITHUB_TOKEN gh release list
RUN --mount=type=secret,target=/run/secrets/aws cat /run/secrets/aws
RUN --mount=type=tmpfs,target=/tmp,size=64m --network=none make test
RUN --mount=type=cache,target=/cache,from=build,source=/root/.cache,ro true
RUN --mount=type=bind,from=busybox,source=/bin,target=/in,readonly=false ls /in
RUN --network=host curl https://example.com
RUN --network=default true
RUN --security=sandbox true
RUN --security=insecure --mount=type=ssh,id=default git clone git@github.com:o/r.git
RUN --mount=type=ssh ssh -T git@github.com
RUN --mount=type=ssh,id=github,target=/ssh/agent,required,mode=0666,uid=1000,gid=1000 git ls-remote git@github.com:o/private.git
RUN --mount=destination=/x,type=cache,readwrite=true,sharing=shared echo ok
