# wxpay-checkout in one container. The build step is the README's own:
#   cargo build --release --locked
FROM rust:1-slim-bookworm AS builder
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY migrations ./migrations
COPY templates ./templates
COPY static ./static
COPY benches ./benches
COPY examples ./examples
RUN cargo build --release --locked \
 && strip target/release/wxpay-checkout \
 && mkdir -p /data

# Only what the binary needs: glibc and CA certificates (TLS is rustls; SQLite is built in).
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /src/target/release/wxpay-checkout /usr/local/bin/wxpay-checkout
COPY --from=builder --chown=nonroot:nonroot /data /data
USER nonroot
WORKDIR /data
VOLUME ["/data"]
ENV LISTEN_ADDR=0.0.0.0:8080 \
    SANDBOX_LISTEN_ADDR=0.0.0.0:8090 \
    DATABASE_URL=sqlite:///data/checkout.db
EXPOSE 8080 8090
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/wxpay-checkout", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/wxpay-checkout"]
CMD ["serve"]
