package sdk_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"

	"github.com/tenancyhq/tenancy/aggregate"
	"github.com/tenancyhq/tenancy/sdk"
	"github.com/tenancyhq/tenancy/sdk/internal/sdktest"
)

// version names one state of a tenant; sent is when a command's response
// with that version reached the client.
type version struct {
	tenant  uuid.UUID
	version uint64
}

type sent struct {
	version
	answered time.Time
}

// BenchmarkPropagation measures how long a command's effect takes to reach
// the cache: from the moment the client has the command's response to the
// moment the cache holds the new version, for commands sent at 500/s
// (feature overrides switched on and off across 50 tenants, 16 at a time).
// It reports the 50th and 99th percentiles and the rate achieved.
func BenchmarkPropagation(b *testing.B) {
	const (
		tenants  = 50
		rate     = 500 // commands per second
		commands = 2000
		workers  = 16
	)
	svc := sdktest.Start(b)
	c := openCache(b, svc, sdk.Options{})
	ids := make([]uuid.UUID, tenants)
	for i := range ids {
		ids[i] = svc.CreateActive(fmt.Sprintf("Propagation %d", i), aggregate.EditionProfessional, "us-east-1")
		if _, err := c.Tenant(context.Background(), ids[i]); err != nil {
			b.Fatal(err)
		}
	}
	var mu sync.Mutex
	seen := map[version]time.Time{}
	c.Subscribe(func(n sdk.Notice) {
		if n.Kind == sdk.NoticeChanged {
			at := time.Now()
			mu.Lock()
			seen[version{n.Tenant, n.Version}] = at
			mu.Unlock()
		}
	})
	// A plain NATS subscription sees each event when the service publishes
	// it: the latency splits into the service's share (command response to
	// publication) and the cache's (publication to the cache holding it).
	nc, err := nats.Connect(svc.NATSURL)
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	published := map[version]time.Time{}
	if _, err := nc.Subscribe(sdk.DefaultSubjectPrefix+".>", func(m *nats.Msg) {
		at := time.Now()
		var ce struct {
			Subject       uuid.UUID `json:"subject"`
			StreamVersion uint64    `json:"streamversion"`
		}
		if json.Unmarshal(m.Data, &ce) == nil {
			mu.Lock()
			published[version{ce.Subject, ce.StreamVersion}] = at
			mu.Unlock()
		}
	}); err != nil {
		b.Fatal(err)
	}
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: workers}}

	// A b.N loop: Go 1.26.8's compiler panics on this body inside b.Loop.
	for range b.N {
		results := make(chan sent, commands)
		jobs := make(chan int)
		errs := make(chan error, commands)
		var wg sync.WaitGroup
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for n := range jobs {
					id := ids[n%tenants]
					body := fmt.Sprintf(`{"enabled":%v}`, (n/tenants)%2 == 0)
					req, _ := http.NewRequest(http.MethodPut, svc.BaseURL+"/api/v1/tenants/"+id.String()+"/overrides/sso", bytes.NewBufferString(body))
					req.Header.Set("Content-Type", "application/json")
					req.Header.Set("Authorization", "Bearer "+svc.WriteToken)
					res, err := client.Do(req)
					if err != nil {
						errs <- err
						continue
					}
					_, _ = io.Copy(io.Discard, res.Body)
					res.Body.Close()
					at := time.Now()
					if res.StatusCode != http.StatusOK {
						errs <- fmt.Errorf("status %d", res.StatusCode)
						continue
					}
					v, _ := strconv.ParseUint(strings.Trim(strings.TrimPrefix(res.Header.Get("ETag"), "W/"), `"`), 10, 64)
					results <- sent{version{id, v}, at}
				}
			}()
		}
		start := time.Now()
		tick := time.NewTicker(time.Second / rate)
		for n := range commands {
			<-tick.C
			jobs <- n
		}
		tick.Stop()
		close(jobs)
		wg.Wait()
		elapsed := time.Since(start)
		close(results)
		close(errs)
		for err := range errs {
			b.Fatalf("command: %v", err)
		}
		var all []sent
		for r := range results {
			all = append(all, r)
		}
		// Every version must reach the cache; give the stragglers time.
		deadline := time.Now().Add(10 * time.Second)
		// since is at - from, or 0 when at came first (the cache had the
		// event before the client had the command's response).
		since := func(at, from time.Time) time.Duration { return max(at.Sub(from), 0) }
		var lat, cacheShare []time.Duration
		for {
			missing := 0
			lat, cacheShare = lat[:0], cacheShare[:0]
			mu.Lock()
			for _, r := range all {
				at, ok := seen[r.version]
				if !ok {
					missing++
					continue
				}
				lat = append(lat, since(at, r.answered))
				if pub, ok := published[r.version]; ok {
					cacheShare = append(cacheShare, since(at, pub))
				}
			}
			mu.Unlock()
			if missing == 0 {
				b.ReportMetric(percentile(lat, 0.50), "p50-ms")
				b.ReportMetric(percentile(lat, 0.99), "p99-ms")
				b.ReportMetric(percentile(lat, 1), "max-ms")
				b.ReportMetric(percentile(cacheShare, 0.50), "nats-to-cache-p50-ms")
				b.ReportMetric(percentile(cacheShare, 0.99), "nats-to-cache-p99-ms")
				b.ReportMetric(float64(len(all))/elapsed.Seconds(), "commands/s")
				b.Logf("cache: %+v", c.Status())
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("%d of %d versions never reached the cache", missing, len(all))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// percentile returns the q-th quantile of ds in milliseconds (ds is sorted).
func percentile(ds []time.Duration, q float64) float64 {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	return float64(ds[int(q*float64(len(ds)-1))].Microseconds()) / 1000
}
