# Builds both binaries and ships them in a small runtime image.
#   docker build -t leaderboard .
#   docker run leaderboard leaderboard-web      (or dblistener)
# The cluster's driver TLS files, made once by docker-compose.cluster.yml's
# `certs` service: openssl and scripts/cluster-certs, nothing of the app.
# First, so that building it builds nothing else.
FROM debian:bookworm-slim AS cluster-certs
RUN apt-get update \
    && apt-get install -y --no-install-recommends openssl \
    && rm -rf /var/lib/apt/lists/*
COPY scripts/cluster-certs /usr/local/bin/cluster-certs
ENTRYPOINT ["cluster-certs"]

FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin leaderboard-web --bin dblistener \
    && strip target/release/leaderboard-web target/release/dblistener

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 leaderboard
COPY --from=build /src/target/release/leaderboard-web /src/target/release/dblistener /usr/local/bin/
USER leaderboard
ENV PORT=5000 RUST_LOG=info
EXPOSE 5000
CMD ["leaderboard-web"]
