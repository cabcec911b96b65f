FROM haskell:9.6 AS build
WORKDIR /opt/app
RUN cabal update
COPY ./app.cabal /opt/app/app.cabal
RUN cabal build --only-dependencies -j4
COPY . /opt/app
RUN cabal install --installdir=/opt/bin --install-method=copy

FROM debian:bookworm-slim
COPY --from=build /opt/bin/app /usr/local/bin/app
CMD ["app"]
