# syntax=docker/dockerfile:1
# Multi-stage: build with the Rust toolchain, ship the binary alone on a distroless base
# (glibc, CA certificates, a non-root user, no shell).
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin phonecheck \
 && cp target/release/phonecheck /phonecheck

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /phonecheck /usr/local/bin/phonecheck
USER 65532:65532
EXPOSE 50051 9464
ENTRYPOINT ["/usr/local/bin/phonecheck"]
CMD ["serve", "--listen", "0.0.0.0:50051", "--admin-listen", "0.0.0.0:9464"]
