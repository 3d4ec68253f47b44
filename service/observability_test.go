package service_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/tenancyhq/tenancy/eventstore"
	"github.com/tenancyhq/tenancy/internal/auth"
	"github.com/tenancyhq/tenancy/internal/tracing"
	"github.com/tenancyhq/tenancy/projections/natspub"
	"github.com/tenancyhq/tenancy/projections/readmodel"
)

func TestLogsHoldNoPersonalData(t *testing.T) {
	t.Parallel()
	s := startService(t, serviceOptions{auth: true})
	admin := token(t, "ops", nil, auth.ScopeAdmin)
	u := uuid.NewString()
	email, person := "leak-check-"+u+"@example.test", "Person Name-"+u
	billing := "leak-check-billing-" + u + "@example.test"
	secrets := []string{email, person, billing, strings.TrimPrefix(email, "leak-check-")}

	contacts := []map[string]string{{"role": "primary", "name": person, "email": email, "phone": "+44 20 7946 0000"}}
	created := s.must(http.StatusCreated, admin, "POST", "/api/v1/tenants", map[string]any{
		"name": "Leak Check " + u[:8], "edition": "professional", "region": "eu-west-1", "trial": false, "contacts": contacts},
		"Idempotency-Key", "create-"+u).json(t)
	id := created["id"].(string)
	path := "/api/v1/tenants/" + id
	s.must(http.StatusOK, admin, "POST", path+"/complete-provisioning", nil)
	s.must(http.StatusOK, admin, "PATCH", path, map[string]any{"contacts": append(contacts,
		map[string]string{"role": "billing", "name": person, "email": billing})}, "Idempotency-Key", "patch-"+u)
	// Failing commands, each carrying the personal values: a refused
	// profile (a role that does not exist), a malformed e-mail, a duplicate
	// create, a command the status does not allow.
	for _, bad := range []map[string]any{
		{"contacts": []map[string]string{{"role": "owner", "name": person, "email": email}}},
		{"contacts": []map[string]string{{"role": "primary", "name": person, "email": person + " <" + email + ">"}}},
		{"contacts": []map[string]string{{"role": "primary", "name": person + "\u0000", "email": email}}},
	} {
		if r := s.do(admin, "PATCH", path, bad); r.status != http.StatusBadRequest && r.status != http.StatusUnprocessableEntity {
			t.Fatalf("PATCH %v: %d %s", bad, r.status, r.body)
		}
	}
	if r := s.do(admin, "POST", "/api/v1/tenants", map[string]any{"name": "Leak Check " + u[:8], "edition": "free", "region": "eu-west-1",
		"contacts": contacts}); r.status != http.StatusConflict {
		t.Fatalf("duplicate create: %d %s", r.status, r.body)
	}
	s.must(http.StatusConflict, admin, "POST", path+"/resume", nil)
	s.must(http.StatusOK, admin, "GET", path+"/export", nil)
	s.must(http.StatusOK, admin, "POST", path+"/terminate", map[string]any{"reason": "closing"})
	s.read(s.must(http.StatusOK, admin, "POST", path+"/purge", nil))
	s.must(http.StatusOK, admin, "GET", path+"/history", nil)
	s.caughtUp()

	logs := s.logs.String()
	for _, secret := range secrets {
		if i := strings.Index(logs, secret); i >= 0 {
			t.Errorf("the log holds %q: …%s…", secret, logs[max(0, i-300):min(len(logs), i+200)])
		}
	}
	// The log is not empty: it has what it should (commands, requests, audit, projection batches).
	var commands, audits, batches int
	for _, rec := range s.logs.records(t) {
		switch {
		case rec["msg"] == "command" && rec["tenant"] == id:
			commands++
		case rec["logger"] == "audit" && rec["tenant"] == id:
			audits++
		case rec["msg"] == "projection batch":
			batches++
		}
	}
	if commands < 7 || audits < 9 || batches == 0 {
		t.Errorf("the log has %d command, %d audit and %d projection batch lines for the tenant; too few to prove anything:\n%s", commands, audits, batches, logs)
	}
}

func TestMetricsAfterAScriptedRun(t *testing.T) {
	t.Parallel()
	s := startService(t, serviceOptions{})
	ctx := context.Background()

	// Three tenants, ACTIVE: two professional, one enterprise.
	var ids []string
	var bodies []map[string]any
	for i, edition := range []string{"professional", "professional", "enterprise"} {
		body := map[string]any{"name": fmt.Sprintf("Metrics %d %s", i, uuid.NewString()[:8]), "edition": edition, "region": "us-east-1", "trial": false}
		r := s.must(http.StatusCreated, "", "POST", "/api/v1/tenants", body, "Idempotency-Key", fmt.Sprintf("metrics-create-%d", i))
		ids, bodies = append(ids, r.json(t)["id"].(string)), append(bodies, body)
		s.must(http.StatusOK, "", "POST", "/api/v1/tenants/"+ids[i]+"/complete-provisioning", nil)
	}
	// An idempotent replay: the same create, the same key.
	if r := s.must(http.StatusCreated, "", "POST", "/api/v1/tenants", bodies[0], "Idempotency-Key", "metrics-create-0"); r.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("not replayed: %v", r.header)
	}
	last := s.must(http.StatusOK, "", "POST", "/api/v1/tenants/"+ids[1]+"/suspend", map[string]any{"reason": "payment_failed"})
	s.must(http.StatusConflict, "", "POST", "/api/v1/tenants/"+ids[0]+"/resume", nil)                                                                      // refused
	s.must(http.StatusPreconditionFailed, "", "POST", "/api/v1/tenants/"+ids[2]+"/suspend", map[string]any{"reason": "admin_action"}, "If-Match", `W/"0"`) // conflict
	s.read(last)
	for i := range 5 {
		s.must(http.StatusOK, "", "GET", "/api/v1/tenants/"+ids[i%len(ids)], nil)
	}
	s.must(http.StatusOK, "", "GET", "/api/v1/tenants?limit=10", nil)
	s.caughtUp()

	// Every tenant event reached NATS.
	var tenantEvents uint64
	if err := s.app.Pool().QueryRow(ctx, `SELECT count(*) FROM events WHERE stream LIKE 'tenant-%'`).Scan(&tenantEvents); err != nil {
		t.Fatal(err)
	}
	stream, err := jetStream(t, s).Stream(ctx, natspub.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	if info, err := stream.Info(ctx); err != nil || info.State.Msgs != tenantEvents || tenantEvents != 3*3+1 {
		t.Fatalf("NATS stream holds %v messages (%v), the store %d tenant events, want 10", info.State.Msgs, err, tenantEvents)
	}

	fams := scrape(t, s)
	check := func(name string, labels map[string]string, typ dto.MetricType, ok func(v float64) bool, what string) {
		t.Helper()
		f := fams[name]
		if f == nil {
			t.Errorf("%s: missing", name)
			return
		}
		if f.GetType() != typ {
			t.Errorf("%s: type %v, want %v", name, f.GetType(), typ)
		}
		m := sample(fams, name, labels)
		if m == nil {
			t.Errorf("%s%v: no such series", name, labels)
			return
		}
		var v float64
		switch typ {
		case dto.MetricType_COUNTER:
			v = m.GetCounter().GetValue()
		case dto.MetricType_GAUGE:
			v = m.GetGauge().GetValue()
		case dto.MetricType_HISTOGRAM:
			h := m.GetHistogram()
			v = float64(h.GetSampleCount())
			if h.GetSampleSum() <= 0 || h.GetSampleSum() > 60*v {
				t.Errorf("%s%v: sum %v s over %v observations", name, labels, h.GetSampleSum(), v)
			}
		}
		if !ok(v) {
			t.Errorf("%s%v = %v, want %s", name, labels, v, what)
		}
	}
	eq := func(want float64) (func(float64) bool, string) {
		return func(v float64) bool { return v == want }, fmt.Sprint(want)
	}
	atLeast := func(want float64) (func(float64) bool, string) {
		return func(v float64) bool { return v >= want }, fmt.Sprintf(">= %v", want)
	}
	type L = map[string]string
	const (
		counter   = dto.MetricType_COUNTER
		gauge     = dto.MetricType_GAUGE
		histogram = dto.MetricType_HISTOGRAM
	)
	for _, c := range []struct {
		name   string
		labels L
		typ    dto.MetricType
		want   string // "n" or ">=n"
	}{
		{"tenancy_http_requests_total", L{"route": "/api/v1/tenants", "method": "POST", "status": "201"}, counter, "4"},
		{"tenancy_http_requests_total", L{"route": "/api/v1/tenants/:id", "method": "GET", "status": "200"}, counter, "5"},
		{"tenancy_http_requests_total", L{"route": "/api/v1/tenants/:id/resume", "method": "POST", "status": "409"}, counter, "1"},
		{"tenancy_http_requests_total", L{"route": "/api/v1/tenants/:id/suspend", "method": "POST", "status": "412"}, counter, "1"},
		{"tenancy_http_request_duration_seconds", L{"route": "/api/v1/tenants/:id", "method": "GET"}, histogram, "5"},
		{"tenancy_http_request_duration_seconds", L{"route": "/api/v1/tenants/:id/complete-provisioning", "method": "POST"}, histogram, "3"},
		{"tenancy_commands_total", L{"command": "create", "outcome": "accepted"}, counter, "3"},
		{"tenancy_commands_total", L{"command": "complete-provisioning", "outcome": "accepted"}, counter, "3"},
		{"tenancy_commands_total", L{"command": "suspend", "outcome": "accepted"}, counter, "1"},
		{"tenancy_commands_total", L{"command": "resume", "outcome": "refused"}, counter, "1"},
		{"tenancy_commands_total", L{"command": "suspend", "outcome": "conflict"}, counter, "1"},
		{"tenancy_command_duration_seconds", L{"command": "suspend"}, histogram, "2"},
		{"tenancy_commands_total", L{"command": "create", "outcome": "replayed"}, counter, "1"},
		{"tenancy_command_duration_seconds", L{"command": "create"}, histogram, "4"}, // the replay is answered by the command handler too
		{"tenancy_eventstore_append_duration_seconds", L{}, histogram, ">=7"},
		{"tenancy_idempotency_replays_total", L{}, counter, "1"},
		{"tenancy_nats_publish_duration_seconds", L{}, histogram, ">=1"},
		{"tenancy_tenants", L{"status": "ACTIVE", "edition": "professional"}, gauge, "1"},
		{"tenancy_tenants", L{"status": "SUSPENDED", "edition": "professional"}, gauge, "1"},
		{"tenancy_tenants", L{"status": "ACTIVE", "edition": "enterprise"}, gauge, "1"},
	} {
		var n float64
		rest, orMore := strings.CutPrefix(c.want, ">=")
		fmt.Sscan(rest, &n)
		ok, what := eq(n)
		if orMore {
			ok, what = atLeast(n)
		}
		check(c.name, c.labels, c.typ, ok, what)
	}
	for _, p := range []string{readmodel.Name, "scheduler", natspub.Name} {
		check("tenancy_projection_position", L{"projection": p}, gauge, func(v float64) bool { return v > 0 }, "> 0")
		check("tenancy_projection_lag_events", L{"projection": p}, gauge, func(v float64) bool { return v == 0 }, "0 (caught up)")
		check("tenancy_projection_lag_seconds", L{"projection": p}, gauge, func(v float64) bool { return v == 0 }, "0 (caught up)")
		check("tenancy_projection_failures", L{"projection": p}, gauge, func(v float64) bool { return v == 0 }, "0")
		check("tenancy_projection_batch_duration_seconds", L{"projection": p}, histogram, func(v float64) bool { return v >= 1 }, ">= 1 batch")
		check("tenancy_projection_events_total", L{"projection": p}, counter, func(v float64) bool { return v == float64(tenantEvents) }, fmt.Sprint(tenantEvents))
	}
	// The publish histogram counts the publisher's batches.
	if pub, batches := sample(fams, "tenancy_nats_publish_duration_seconds", nil), sample(fams, "tenancy_projection_batch_duration_seconds", L{"projection": natspub.Name}); pub != nil && batches != nil &&
		pub.GetHistogram().GetSampleCount() != batches.GetHistogram().GetSampleCount() {
		t.Errorf("NATS publish observations %d, publisher batches %d", pub.GetHistogram().GetSampleCount(), batches.GetHistogram().GetSampleCount())
	}
	// No other tenancy_tenants series: the three tenants, nothing else.
	var total float64
	for _, m := range fams["tenancy_tenants"].GetMetric() {
		total += m.GetGauge().GetValue()
	}
	if total != 3 {
		t.Errorf("tenancy_tenants adds up to %v, want 3", total)
	}
}

// scrape reads /metrics and parses the exposition.
func scrape(t *testing.T, s *testService) map[string]*dto.MetricFamily {
	t.Helper()
	r := s.must(http.StatusOK, "", "GET", "/metrics", nil)
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(r.body))
	if err != nil {
		t.Fatalf("parse /metrics: %v\n%s", err, r.body)
	}
	return fams
}

// sample finds the metric of family name whose labels include want.
func sample(fams map[string]*dto.MetricFamily, name string, want map[string]string) *dto.Metric {
	f := fams[name]
	if f == nil {
		return nil
	}
	for _, m := range f.Metric {
		ok := true
		for k, v := range want {
			found := false
			for _, l := range m.Label {
				if l.GetName() == k && l.GetValue() == v {
					found = true
				}
			}
			ok = ok && found
		}
		if ok {
			return m
		}
	}
	return nil
}

func TestOneTraceFromRequestToNATS(t *testing.T) {
	t.Parallel()
	rec := tracetest.NewSpanRecorder()
	tp := tracing.NewProvider(rec, "tenancy", "test")
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) }) // after the service stops
	s := startService(t, serviceOptions{tracer: tp})

	created := s.must(http.StatusCreated, "", "POST", "/api/v1/tenants", map[string]any{"name": "Traced " + uuid.NewString()[:8],
		"edition": "professional", "region": "us-east-1", "trial": false}).json(t)
	id := created["id"].(string)
	s.read(s.must(http.StatusOK, "", "POST", "/api/v1/tenants/"+id+"/complete-provisioning", nil))
	s.caughtUp()

	traceID, parent := trace.TraceID(uuid.New()), uuid.New()
	remoteParent := trace.SpanID(parent[:8])
	corr := "trace-" + uuid.NewString()
	s.must(http.StatusOK, "", "POST", "/api/v1/tenants/"+id+"/suspend", map[string]any{"reason": "admin_action"},
		"traceparent", fmt.Sprintf("00-%s-%s-01", traceID, remoteParent), "X-Correlation-ID", corr)
	s.caughtUp()

	// The spans of the trace, once every projection has applied the event.
	var spans []sdktrace.ReadOnlySpan
	byName := map[string][]sdktrace.ReadOnlySpan{}
	deadline := time.Now().Add(10 * time.Second)
	for {
		spans, byName = nil, map[string][]sdktrace.ReadOnlySpan{}
		for _, sp := range rec.Ended() {
			if sp.SpanContext().TraceID() == traceID {
				spans = append(spans, sp)
				byName[sp.Name()] = append(byName[sp.Name()], sp)
			}
		}
		if len(byName["project read-model"]) > 0 && len(byName["project nats-publisher"]) > 0 && len(byName["project scheduler"]) > 0 ||
			time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	one := func(name string) sdktrace.ReadOnlySpan {
		t.Helper()
		if len(byName[name]) != 1 {
			var names []string
			for _, sp := range spans {
				names = append(names, sp.Name())
			}
			t.Fatalf("trace %s has %d spans %q, want 1; it has %q", traceID, len(byName[name]), name, names)
		}
		return byName[name][0]
	}
	server := one("POST /api/v1/tenants/:id/suspend")
	command := one("command suspend")
	if server.SpanKind() != trace.SpanKindServer || server.Parent().SpanID() != remoteParent || !server.Parent().IsRemote() {
		t.Errorf("HTTP span: kind %v, parent %v (remote %v); want a server span, child of the caller's %v",
			server.SpanKind(), server.Parent().SpanID(), server.Parent().IsRemote(), remoteParent)
	}
	if command.Parent().SpanID() != server.SpanContext().SpanID() {
		t.Errorf("command span's parent %v, want the HTTP span %v", command.Parent().SpanID(), server.SpanContext().SpanID())
	}
	for _, name := range []string{"project read-model", "project nats-publisher", "project scheduler"} {
		sp := one(name)
		if sp.Parent().SpanID() != command.SpanContext().SpanID() || sp.SpanKind() != trace.SpanKindConsumer {
			t.Errorf("%s: parent %v kind %v, want a consumer span, child of the command span %v", name, sp.Parent().SpanID(), sp.SpanKind(), command.SpanContext().SpanID())
		}
		if !slices.ContainsFunc(sp.Attributes(), func(a attribute.KeyValue) bool {
			return a.Key == "tenancy.event_type" && a.Value.AsString() == "TenantSuspended"
		}) {
			t.Errorf("%s: attributes %v lack the event type", name, sp.Attributes())
		}
	}
	// Nothing of this request or its event went to another trace.
	evs, err := s.app.RawStore().ReadStream(context.Background(), "tenant-"+id, eventstore.Backward, -1, 1)
	if err != nil || len(evs) != 1 || evs[0].Type != "TenantSuspended" {
		t.Fatalf("last event: %v %v", evs, err)
	}
	eventID := evs[0].ID.String()
	for _, sp := range rec.Ended() {
		for _, a := range sp.Attributes() {
			if (a.Key == "tenancy.correlation_id" && a.Value.AsString() == corr || a.Key == "tenancy.event_id" && a.Value.AsString() == eventID) &&
				sp.SpanContext().TraceID() != traceID {
				t.Errorf("span %q of this request is in trace %s, not %s", sp.Name(), sp.SpanContext().TraceID(), traceID)
			}
		}
	}

	// The NATS message carries the trace on: the command span's context.
	want := fmt.Sprintf("00-%s-%s-01", traceID, command.SpanContext().SpanID())
	msgs := natsMessages(t, s, natspub.Subject("TenantSuspended", id))
	if len(msgs) != 1 {
		t.Fatalf("%d TenantSuspended messages on NATS", len(msgs))
	}
	var ce natspub.CloudEvent
	if err := json.Unmarshal(msgs[0].data, &ce); err != nil {
		t.Fatal(err)
	}
	if ce.TraceParent != want || msgs[0].header.Get("traceparent") != want {
		t.Errorf("NATS message: CloudEvent traceparent %q, header traceparent %q; want %q", ce.TraceParent, msgs[0].header.Get("traceparent"), want)
	}
}
