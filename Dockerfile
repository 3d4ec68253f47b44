# syntax=docker/dockerfile:1
# A static tenancy binary on a distroless base, running as a non-root user.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/tenancy ./cmd/tenancy

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/tenancy /usr/local/bin/tenancy
USER nonroot:nonroot
EXPOSE 8000
ENV HTTP_ADDR=:8000
ENTRYPOINT ["/usr/local/bin/tenancy"]
CMD ["serve"]
