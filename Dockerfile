# One image for every SKYNET service: `skynet run <service>` selects which.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p skynet-cli --bin skynet

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates git openssh-client \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/skynet /usr/local/bin/skynet
ENTRYPOINT ["skynet"]
