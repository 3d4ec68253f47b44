package sdk_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tenancyhq/tenancy/aggregate"
	"github.com/tenancyhq/tenancy/sdk"
	"github.com/tenancyhq/tenancy/sdk/internal/sdktest"
)

// TestCacheEvaluatesAsTheServerDoes is a property test: over random
// tenants (editions, overrides, policies, statuses, billing standings) and
// random requests (actions, regions, source addresses, usage, times), the
// cache's Evaluate and the server's POST …/policy/evaluate give the same
// decision, byte for byte, or both refuse the request.
func TestCacheEvaluatesAsTheServerDoes(t *testing.T) {
	t.Parallel()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 17))
	svc := sdktest.Start(t)
	c := openCache(t, svc, sdk.Options{})
	client, err := sdk.NewClient(svc.BaseURL, sdk.ClientOptions{Token: svc.ReadToken})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	pick := func(n int) int { return r.IntN(n) }
	editions := aggregate.Editions()
	regions := aggregate.Regions()
	features := aggregate.DefaultCatalog().Features()
	limits := aggregate.DefaultCatalog().Limits()

	// The tenants, each asked about once early (so the cache folds the
	// rest from the stream), then changed at random.
	const tenants = 10
	ids := make([]uuid.UUID, tenants)
	versions := make([]uint64, tenants)
	var token string
	record := func(i int, res sdktest.Response) {
		if res.Status >= 200 && res.Status < 300 {
			versions[i], token = res.Version(), res.Header.Get("X-Consistency-Token")
		}
	}
	for i := range ids {
		body := map[string]any{"name": fmt.Sprintf("Prop %d %d", seed%1000, i), "edition": editions[pick(len(editions))],
			"region": regions[pick(len(regions))], "trial": pick(3) == 0,
			"compliance_standards": [][]string{{}, {"GDPR"}, {"HIPAA", "SOC2"}, {"GDPR", "PCI_DSS"}}[pick(4)]}
		res := svc.Must(http.MethodPost, "/api/v1/tenants", body)
		var created struct {
			ID uuid.UUID `json:"id"`
		}
		if err := json.Unmarshal(res.Body, &created); err != nil {
			t.Fatal(err)
		}
		ids[i] = created.ID
		record(i, res)
		svc.ReadYourWrite(res)
		if _, err := c.Tenant(ctx, ids[i]); err != nil {
			t.Fatal(err)
		}
		if pick(6) > 0 {
			record(i, svc.Command(ids[i], aggregate.CmdCompleteProvisioning, nil))
		}
	}
	base := func(i int) string { return "/api/v1/tenants/" + ids[i].String() }
	for range 60 {
		i := pick(tenants)
		var res sdktest.Response
		switch pick(9) {
		case 0:
			res = svc.Do(http.MethodPut, base(i)+"/overrides/"+string(features[pick(len(features))]), map[string]any{"enabled": pick(2) == 0})
		case 1:
			res = svc.Do(http.MethodPut, base(i)+"/overrides/"+string(limits[pick(len(limits))]), map[string]any{"value": pick(4) * 10})
		case 2:
			svc.Do(http.MethodPut, base(i)+"/overrides/ip_allowlist", map[string]any{"enabled": true})
			res = svc.Do(http.MethodPut, base(i)+"/policies/ip_allowlist", map[string]any{"enforced": pick(3) > 0,
				"settings": map[string]any{"cidrs": [][]string{{"10.0.0.0/8"}, {"203.0.113.0/24", "2001:db8::/32"}}[pick(2)]}})
		case 3:
			svc.Do(http.MethodPut, base(i)+"/overrides/data_residency", map[string]any{"enabled": true})
			res = svc.Do(http.MethodPut, base(i)+"/policies/data_residency", map[string]any{"enforced": pick(3) > 0,
				"settings": map[string]any{"allowed_regions": []aggregate.Region{regions[pick(len(regions))], regions[pick(len(regions))]}}})
		case 4:
			res = svc.Do(http.MethodPut, base(i)+"/policies/access_hours", map[string]any{"enforced": pick(2) == 0,
				"settings": map[string]any{"start_hour": pick(24), "end_hour": pick(24), "days": [][]string{{"sun", "mon", "tue", "wed", "thu", "fri", "sat"}, {"mon", "tue", "wed"}, {"sat"}}[pick(3)]}})
		case 5:
			body := map[string]any{"reason": aggregate.SuspensionReasons()[pick(len(aggregate.SuspensionReasons()))]}
			if pick(2) == 0 {
				body["auto_resume_at"] = time.Now().Add(time.Duration(1+pick(72)) * time.Hour).UTC().Format(time.RFC3339)
			}
			res = svc.Do(http.MethodPost, base(i)+"/suspend", body)
		case 6:
			cmd := []aggregate.CommandName{aggregate.CmdResume, aggregate.CmdCancel, aggregate.CmdRevertCancellation, aggregate.CmdActivate, aggregate.CmdTerminate}[pick(5)]
			res = svc.Do(http.MethodPost, base(i)+"/"+string(cmd), map[string]any{})
		case 7:
			res = svc.Do(http.MethodPost, base(i)+"/migrate-region", map[string]any{"target_region": regions[pick(len(regions))]})
		case 8:
			res = svc.Do(http.MethodPost, base(i)+"/billing-status", map[string]any{"status": aggregate.BillingStatuses()[pick(len(aggregate.BillingStatuses()))],
				"provider_event_id": uuid.NewString()})
		}
		record(i, res)
	}
	statuses := map[aggregate.Status]int{}
	for i, id := range ids {
		caughtUp(t, c, id, versions[i])
		ti, _ := c.Tenant(ctx, id)
		statuses[ti.Status]++
	}
	t.Logf("tenants: %v; cache %+v", statuses, c.Status())

	actions := []string{"bogus.action"}
	for _, a := range aggregate.Actions() {
		actions = append(actions, a.Name)
	}
	ips := []string{"", "", "10.1.2.3", "203.0.113.9", "198.51.100.7", "2001:db8::1", "not-an-ip"}
	now := time.Now().UTC()
	compared, refused := 0, 0
	outcomes := map[string]int{}
	for n := range 400 {
		i := pick(tenants)
		action := actions[pick(len(actions))]
		at := now.Add(time.Duration(pick(30*24)-15*24)*time.Hour + time.Duration(pick(3600))*time.Second)
		pctx := aggregate.PolicyContext{SourceIP: ips[pick(len(ips))], Time: &at}
		if pick(2) == 0 {
			pctx.Region = regions[pick(len(regions))]
		}
		if pick(3) > 0 {
			pctx.Usage = map[aggregate.Limit]int64{}
			for range 1 + pick(3) {
				pctx.Usage[limits[pick(len(limits))]] = int64(pick(1200))
			}
		}
		local, localErr := c.Evaluate(ctx, ids[i], action, pctx)
		remote, remoteErr := client.EvaluatePolicy(ctx, ids[i].String(), aggregate.PolicyRequest{Action: action, Context: pctx}, sdk.ReadOptions{ConsistentWith: token})
		var apiErr *sdk.APIError
		var domainErr *aggregate.Error
		switch {
		case errors.As(remoteErr, &apiErr) && apiErr.Status == http.StatusBadRequest:
			if !errors.As(localErr, &domainErr) || local.Allowed() {
				t.Fatalf("request %d (%s on tenant %d, %+v): the server refuses it (%v), the cache answered %s, %v", n, action, i, pctx, remoteErr, local.Decision, localErr)
			}
			refused++
			continue
		case remoteErr != nil:
			t.Fatalf("request %d: server: %v", n, remoteErr)
		case localErr != nil:
			t.Fatalf("request %d (%s on tenant %d, %+v): the server answered %s, the cache failed: %v", n, action, i, pctx, remote.Decision, localErr)
		}
		lj, _ := json.Marshal(local)
		rj, _ := json.Marshal(remote)
		if !bytes.Equal(lj, rj) {
			t.Fatalf("request %d (%s on tenant %d, %+v) decided differently:\ncache  %s\nserver %s", n, action, i, pctx, lj, rj)
		}
		compared++
		outcomes[local.Decision+"/"+local.Reason]++
	}
	t.Logf("%d decisions equal (%v), %d requests refused by both", compared, outcomes, refused)
	if compared < 200 {
		t.Errorf("only %d decisions compared", compared)
	}
}
