# syntax=docker/dockerfile:1
# A static tenancy binary on a distroless base, running as a non-root user.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/tenancy ./cmd/tenancy \
 && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/tenancy /usr/local/bin/tenancy
# The data folder (development keys and token, the embedded NATS store),
# owned by the user the service runs as.
COPY --from=build --chown=nonroot:nonroot /out/data /data
USER nonroot:nonroot
ENV DATA_DIR=/data
EXPOSE 8000
ENV HTTP_ADDR=:8000
ENTRYPOINT ["/usr/local/bin/tenancy"]
# No shell or curl here: the binary checks /health/ready on the address
# HTTP_ADDR names (so the check follows it). An admin token without a shell:
#   docker exec <container> tenancy token --scope tenancy:admin
HEALTHCHECK --interval=10s --timeout=3s CMD ["/usr/local/bin/tenancy", "healthcheck"]
CMD ["serve"]
