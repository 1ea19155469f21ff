# syntax=docker/dockerfile:1

# Build a static sotto binary.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/sotto ./cmd/sotto

# Run it as an unprivileged user on a minimal base.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/sotto /usr/local/bin/sotto
USER nonroot:nonroot
# HTTP (signaling, browser client, metrics)
EXPOSE 7880/tcp
# ICE-TCP fallback and the single ICE UDP port
EXPOSE 7881/tcp 7882/udp
# TURN over UDP and TCP, TURN over TLS, and a small relay port range
EXPOSE 3478/udp 3478/tcp 5349/tcp 50000-50199/udp
# Listen on all interfaces inside the container. Run it with SOTTO_SECRET
# and SOTTO_PUBLIC_IP (the address callers reach the host on); without a
# public IP the media relay and TURN have nothing to advertise and serve
# refuses to start.
ENV SOTTO_HTTP=0.0.0.0:7880 \
    SOTTO_TURN_RELAY_PORTS=50000-50199
ENTRYPOINT ["/usr/local/bin/sotto"]
CMD ["serve"]
