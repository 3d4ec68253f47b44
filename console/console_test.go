package console_test

import (
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/tenancyhq/tenancy/console"
)

func get(t *testing.T, h http.Handler, method, path string) *http.Response {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
	return rec.Result()
}

// TestConsoleIsServedWithAStrictPolicy: the page and its assets, each with
// the security headers; other methods and paths refused.
func TestConsoleIsServedWithAStrictPolicy(t *testing.T) {
	t.Parallel()
	h := console.Handler()
	tests := []struct {
		method, path string
		status       int
		contentType  string
	}{
		{"GET", "/console/", 200, "text/html; charset=utf-8"},
		{"HEAD", "/console/", 200, "text/html; charset=utf-8"},
		{"GET", "/console/console.css", 200, "text/css; charset=utf-8"},
		{"GET", "/console/js/app.js", 200, "text/javascript; charset=utf-8"},
		{"GET", "/console/favicon.svg", 200, "image/svg+xml"},
		{"GET", "/console/nothing.js", 404, ""},
		{"GET", "/console/js/", 404, ""},
		{"POST", "/console/", 405, ""},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			t.Parallel()
			res := get(t, h, tt.method, tt.path)
			if res.StatusCode != tt.status {
				t.Fatalf("status %d, want %d", res.StatusCode, tt.status)
			}
			if csp := res.Header.Get("Content-Security-Policy"); csp != console.ContentSecurityPolicy {
				t.Errorf("Content-Security-Policy %q", csp)
			}
			for _, name := range []string{"X-Content-Type-Options", "X-Frame-Options", "Referrer-Policy"} {
				if res.Header.Get(name) == "" {
					t.Errorf("no %s", name)
				}
			}
			if tt.contentType != "" && res.Header.Get("Content-Type") != tt.contentType {
				t.Errorf("Content-Type %q, want %q", res.Header.Get("Content-Type"), tt.contentType)
			}
		})
	}
	for _, directive := range []string{"default-src 'self'", "script-src 'self'", "frame-ancestors 'none'", "object-src 'none'", "base-uri 'none'"} {
		if !strings.Contains(console.ContentSecurityPolicy, directive) {
			t.Errorf("the policy lacks %s", directive)
		}
	}
	if strings.Contains(console.ContentSecurityPolicy, "unsafe") {
		t.Errorf("the policy allows something unsafe: %s", console.ContentSecurityPolicy)
	}
}

// TestConsoleAssetsRevalidate: an unchanged asset answers 304 to its ETag.
func TestConsoleAssetsRevalidate(t *testing.T) {
	t.Parallel()
	h := console.Handler()
	res := get(t, h, "GET", "/console/js/api.js")
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/console/js/api.js", nil)
	req.Header.Set("If-None-Match", res.Header.Get("ETag"))
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusNotModified {
		t.Errorf("If-None-Match %s: %d", res.Header.Get("ETag"), rec.Code)
	}
}

var (
	// What would load from elsewhere, or run inline.
	externalURL  = regexp.MustCompile(`(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}`)
	inlineScript = regexp.MustCompile(`(?is)<script(?:\s[^>]*)?>\s*[^<\s]`)
	inlineEvent  = regexp.MustCompile(`(?i)<[^>]+\son[a-z]+\s*=`)
	styleAttr    = regexp.MustCompile(`(?i)<[^>]+\sstyle\s*=`)
	jsImport     = regexp.MustCompile(`(?m)^import .* from "\./([a-z]+\.js)";$`)
	htmlRef      = regexp.MustCompile(`(?:src|href)="(/console/[^"]+)"`)
)

// TestConsoleAssetsLoadNothingFromElsewhere: no asset names another host,
// the page has no inline script, handler attribute or style attribute
// (the policy would refuse them), and every file the page and the modules
// reference is embedded.
func TestConsoleAssetsLoadNothingFromElsewhere(t *testing.T) {
	t.Parallel()
	h := console.Handler()
	root := "assets"
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		text := string(b)
		for _, m := range externalURL.FindAllString(text, -1) {
			// The SVG's namespace is a name, not a load.
			if m != "http://www.w3.org" {
				t.Errorf("%s names another host: %s", path, m)
			}
		}
		if strings.HasSuffix(path, ".html") {
			for _, re := range []*regexp.Regexp{inlineScript, inlineEvent, styleAttr} {
				if m := re.FindString(text); m != "" {
					t.Errorf("%s has inline code or style the policy refuses: %s", path, m)
				}
			}
			for _, m := range htmlRef.FindAllStringSubmatch(text, -1) {
				if res := get(t, h, "GET", m[1]); res.StatusCode != 200 {
					t.Errorf("%s references %s: %d", path, m[1], res.StatusCode)
				}
			}
		}
		if strings.HasSuffix(path, ".js") {
			if strings.Contains(text, "innerHTML") || strings.Contains(text, "eval(") || strings.Contains(text, "new Function") {
				t.Errorf("%s builds markup or code from strings", path)
			}
			for _, m := range jsImport.FindAllStringSubmatch(text, -1) {
				url := "/console/js/" + m[1]
				if res := get(t, h, "GET", url); res.StatusCode != 200 {
					t.Errorf("%s imports %s: %d", path, url, res.StatusCode)
				} else {
					io.Copy(io.Discard, res.Body)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
