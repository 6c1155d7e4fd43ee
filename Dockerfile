# wxpay-checkout in one container. The build steps are the README's own:
#   cargo build --release --locked
FROM rust:1-slim-bookworm AS builder
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY migrations ./migrations
COPY templates ./templates
COPY static ./static
COPY benches ./benches
RUN cargo build --release --locked && strip target/release/wxpay-checkout

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin checkout \
 && mkdir -p /data && chown checkout:checkout /data
COPY --from=builder /src/target/release/wxpay-checkout /usr/local/bin/wxpay-checkout
USER checkout
WORKDIR /data
VOLUME ["/data"]
ENV LISTEN_ADDR=0.0.0.0:8080 \
    DATABASE_URL=sqlite:///data/checkout.db
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/wxpay-checkout"]
CMD ["serve"]
