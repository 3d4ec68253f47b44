// Package tracing sets up OpenTelemetry for the service and carries W3C
// trace context through events: the command handler stores the request's
// traceparent in each event's metadata, and whoever handles the event later
// (a projection, the NATS publisher, a subscriber) continues that trace.
package tracing

import (
	"context"
	"fmt"
	"os"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// propagator is W3C trace context.
var propagator = propagation.TraceContext{}

// Setup returns the service's tracer provider: an OTLP/HTTP exporter when
// OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is set,
// configured by the standard OTEL_* variables; a no-op provider otherwise. It
// also installs it, and the W3C propagator, as OpenTelemetry's globals, which
// instrumentation libraries read. Call shutdown to flush on exit.
func Setup(ctx context.Context, service, version string) (tp trace.TracerProvider, shutdown func(context.Context) error, err error) {
	if os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") == "" && os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == "" {
		return noop.NewTracerProvider(), func(context.Context) error { return nil }, nil
	}
	exp, err := otlptracehttp.New(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("tracing: OTLP exporter: %w", err)
	}
	sdk := NewProvider(sdktrace.NewBatchSpanProcessor(exp), service, version)
	Install(sdk)
	return sdk, sdk.Shutdown, nil
}

// NewProvider returns an SDK provider sending spans to proc (tests pass a
// span recorder).
func NewProvider(proc sdktrace.SpanProcessor, service, version string) *sdktrace.TracerProvider {
	res := resource.NewSchemaless(semconv.ServiceName(service), semconv.ServiceVersion(version))
	return sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(proc), sdktrace.WithResource(res))
}

// Install makes tp and the W3C propagator OpenTelemetry's globals.
func Install(tp trace.TracerProvider) {
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagator)
}

// TraceParent returns the W3C traceparent of the span in ctx ("" without one).
func TraceParent(ctx context.Context) string {
	carrier := propagation.MapCarrier{}
	propagator.Inject(ctx, carrier)
	return carrier["traceparent"]
}

// WithTraceParent returns ctx carrying the remote span a traceparent names,
// so spans started from it join that trace.
func WithTraceParent(ctx context.Context, traceparent string) context.Context {
	if traceparent == "" {
		return ctx
	}
	return propagator.Extract(ctx, propagation.MapCarrier{"traceparent": traceparent})
}
