package ofprovider_test

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/open-feature/go-sdk/openfeature"

	"github.com/tenancyhq/tenancy/aggregate"
	"github.com/tenancyhq/tenancy/sdk"
	"github.com/tenancyhq/tenancy/sdk/internal/sdktest"
	"github.com/tenancyhq/tenancy/sdk/ofprovider"
)

// gate is the README's example (section "Entitlements in other Go
// services"), line for line: a downstream service gating a feature.
func gate(ctx context.Context, tenancyURL, natsURL, token, tenantID string, offerSSO func()) error {
	client, err := sdk.NewClient(tenancyURL, sdk.ClientOptions{Token: token}) // scope tenancy:read
	if err != nil {
		return err
	}
	cache, err := sdk.Open(ctx, sdk.Options{Client: client, NATSURL: natsURL})
	if err != nil {
		return err
	}
	defer cache.Close()
	if err := openfeature.SetProviderAndWait(ofprovider.New(cache, ofprovider.Options{})); err != nil {
		return err
	}
	defer openfeature.Shutdown()
	flags := openfeature.NewDefaultClient()

	// On every request: may this tenant use single sign-on?
	if flags.Boolean(ctx, "sso", false, openfeature.NewEvaluationContext(tenantID, nil)) {
		offerSSO()
	}
	return nil
}

func TestReadmeExampleGatesAFeature(t *testing.T) {
	svc := sdktest.Start(t)
	pro := svc.CreateActive("Readme Pro", aggregate.EditionProfessional, "us-east-1")
	free := svc.CreateActive("Readme Free", aggregate.EditionFree, "us-east-1")
	for id, want := range map[string]bool{pro.String(): true, free.String(): false} {
		offered := false
		err := gate(context.Background(), svc.BaseURL, svc.NATSURL, svc.ReadToken, id, func() { offered = true })
		if err != nil || offered != want {
			t.Errorf("tenant %s: SSO offered %v (%v), want %v", id, offered, err, want)
		}
	}
}

// TestReadmeShowsTheExample keeps the README's snippet and gate alike:
// every line of the snippet is a line of this file.
func TestReadmeShowsTheExample(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	self, err := os.ReadFile("readme_test.go")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "## Entitlements in other Go services")
	_, snippet, ok2 := strings.Cut(section, "```go\n")
	snippet, _, ok3 := strings.Cut(snippet, "```")
	if !ok || !ok2 || !ok3 {
		t.Fatal("README.md has no Go snippet in its section \"Entitlements in other Go services\"")
	}
	lines := map[string]bool{}
	for _, l := range strings.Split(string(self), "\n") {
		lines[strings.TrimSpace(l)] = true
	}
	n := 0
	for _, l := range strings.Split(snippet, "\n") {
		if l = strings.TrimSpace(l); l == "" {
			continue
		}
		n++
		if !lines[l] {
			t.Errorf("README line %q is not in gate", l)
		}
	}
	if n == 0 {
		t.Error("empty snippet")
	}
}
