// Package metrics defines the service's Prometheus metrics and the
// scrape-time collectors of projection lag and of tenants by status and
// edition. The decorators that record command and append metrics without
// the measured packages knowing live in the composition root (service),
// which knows both sides.
//
// Names follow Prometheus conventions: the tenancy_ prefix, base units
// (_seconds), _total for counters.
package metrics

import (
	"context"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/tenancyhq/tenancy/aggregate"
	"github.com/tenancyhq/tenancy/eventstore"
)

// Metrics holds the registry and every metric the service records.
type Metrics struct {
	Registry *prometheus.Registry

	HTTPRequests       *prometheus.CounterVec
	HTTPDuration       *prometheus.HistogramVec
	Commands           *prometheus.CounterVec
	CommandDuration    *prometheus.HistogramVec
	AppendDuration     prometheus.Histogram
	BatchDuration      *prometheus.HistogramVec
	BatchEvents        *prometheus.CounterVec
	NATSPublish        prometheus.Histogram
	IdempotencyReplays prometheus.Counter
}

// New registers every metric on a new registry (with the Go and process
// collectors).
func New() *Metrics {
	r := prometheus.NewRegistry()
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := &Metrics{
		Registry: r,
		HTTPRequests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tenancy_http_requests_total",
			Help: "HTTP requests by route, method and status."}, []string{"route", "method", "status"}),
		HTTPDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "tenancy_http_request_duration_seconds",
			Help: "HTTP request latency by route and method.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 15)}, []string{"route", "method"}),
		Commands: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tenancy_commands_total",
			Help: "Commands by type and outcome: accepted, refused (a domain rule), conflict (If-Match or too many races), retried (accepted after a conflict), error."},
			[]string{"command", "outcome"}),
		CommandDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "tenancy_command_duration_seconds",
			Help: "Command handling latency (load, decide, append).", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 15)}, []string{"command"}),
		AppendDuration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "tenancy_eventstore_append_duration_seconds",
			Help: "Event store append latency.", Buckets: prometheus.ExponentialBuckets(0.0002, 2, 15)}),
		BatchDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "tenancy_projection_batch_duration_seconds",
			Help: "Projection batch latency (apply and checkpoint, one transaction).", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 15)}, []string{"projection"}),
		BatchEvents: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tenancy_projection_events_total",
			Help: "Events applied by each projection."}, []string{"projection"}),
		NATSPublish: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "tenancy_nats_publish_duration_seconds",
			Help: "Time to publish a batch of events to JetStream and get every ack.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 15)}),
		IdempotencyReplays: prometheus.NewCounter(prometheus.CounterOpts{Name: "tenancy_idempotency_replays_total",
			Help: "Requests answered from a stored response (same Idempotency-Key and body)."}),
	}
	r.MustRegister(m.HTTPRequests, m.HTTPDuration, m.Commands, m.CommandDuration, m.AppendDuration, m.BatchDuration, m.BatchEvents, m.NATSPublish, m.IdempotencyReplays)
	return m
}

// ObserveBatch records one projection batch (the runner's OnBatch hook).
func (m *Metrics) ObserveBatch(projection string, events int, d time.Duration) {
	m.BatchDuration.WithLabelValues(projection).Observe(d.Seconds())
	m.BatchEvents.WithLabelValues(projection).Add(float64(events))
}

// ---- scrape-time collectors ----

// ProjectionStat is a projection's standing, as the collector reports it.
type ProjectionStat struct {
	Name       string
	Position   eventstore.Position
	LagEvents  int64
	LagSeconds float64
	Failures   int64
	Halted     bool
}

// ProjectionsCollector reports projection position, lag and failures at scrape time.
type ProjectionsCollector struct {
	stats                                   func(ctx context.Context) ([]ProjectionStat, error)
	position, lagEvents, lagSeconds, failed *prometheus.Desc
	halted                                  *prometheus.Desc
}

// NewProjectionsCollector reads stats at each scrape.
func NewProjectionsCollector(stats func(ctx context.Context) ([]ProjectionStat, error)) *ProjectionsCollector {
	l := []string{"projection"}
	return &ProjectionsCollector{
		stats:      stats,
		position:   prometheus.NewDesc("tenancy_projection_position", "The projection's checkpoint (prepare half of the global position).", l, nil),
		lagEvents:  prometheus.NewDesc("tenancy_projection_lag_events", "Events in the feed the projection has not applied yet.", l, nil),
		lagSeconds: prometheus.NewDesc("tenancy_projection_lag_seconds", "Age of the oldest event the projection has not applied yet.", l, nil),
		failed:     prometheus.NewDesc("tenancy_projection_failures", "Events recorded in projection_failures and not resolved.", l, nil),
		halted:     prometheus.NewDesc("tenancy_projection_halted", "1 when the projection is halted on an event it cannot apply.", l, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *ProjectionsCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.position
	ch <- c.lagEvents
	ch <- c.lagSeconds
	ch <- c.failed
	ch <- c.halted
}

// Collect implements prometheus.Collector.
func (c *ProjectionsCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	stats, err := c.stats(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.lagEvents, err)
		return
	}
	for _, s := range stats {
		halted := 0.0
		if s.Halted {
			halted = 1
		}
		ch <- prometheus.MustNewConstMetric(c.position, prometheus.GaugeValue, float64(s.Position.Prepare), s.Name)
		ch <- prometheus.MustNewConstMetric(c.lagEvents, prometheus.GaugeValue, float64(s.LagEvents), s.Name)
		ch <- prometheus.MustNewConstMetric(c.lagSeconds, prometheus.GaugeValue, s.LagSeconds, s.Name)
		ch <- prometheus.MustNewConstMetric(c.failed, prometheus.GaugeValue, float64(s.Failures), s.Name)
		ch <- prometheus.MustNewConstMetric(c.halted, prometheus.GaugeValue, halted, s.Name)
	}
}

// TenantsCollector reports tenants by status and edition, from the read model.
type TenantsCollector struct {
	count func(ctx context.Context) (map[aggregate.Status]map[aggregate.Edition]int64, error)
	desc  *prometheus.Desc
}

// NewTenantsCollector reads the counts at each scrape.
func NewTenantsCollector(count func(ctx context.Context) (map[aggregate.Status]map[aggregate.Edition]int64, error)) *TenantsCollector {
	return &TenantsCollector{count: count, desc: prometheus.NewDesc("tenancy_tenants", "Tenants by status and edition (read model).", []string{"status", "edition"}, nil)}
}

// Describe implements prometheus.Collector.
func (c *TenantsCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect implements prometheus.Collector.
func (c *TenantsCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	counts, err := c.count(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.desc, err)
		return
	}
	for st, byEdition := range counts {
		for ed, n := range byEdition {
			ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n), string(st), string(ed))
		}
	}
}

// ObserveRequest records one HTTP request (httpapi's Observer).
func (m *Metrics) ObserveRequest(route, method string, status int, took time.Duration) {
	m.HTTPRequests.WithLabelValues(route, method, strconv.Itoa(status)).Inc()
	m.HTTPDuration.WithLabelValues(route, method).Observe(took.Seconds())
}

// IdempotencyReplay counts a response served from an Idempotency-Key.
func (m *Metrics) IdempotencyReplay() { m.IdempotencyReplays.Inc() }
