package tenancy_test

import (
	"bufio"
	"bytes"
	"os/exec"
	"strings"
	"testing"
)

// module is this module's path.
const module = "github.com/tenancyhq/tenancy/"

// mayImport is the house's layout: for each room, the rooms of ours its
// production code may import. A room is a package path under the module,
// matched by prefix ("eventstore" covers its adapters). Nothing imports a
// room above it: the aggregate knows nobody, the ports and leaves know the
// aggregate at most, commands and projections know the log, the API knows
// commands and queries, and only the composition root (service) and
// the binary see everything.
var mayImport = map[string][]string{
	"aggregate":            nil,
	"migrations":           nil,
	"console":              nil,
	"eventstore":           {"eventstore", "internal/pgerr"},
	"internal/auth":        nil,
	"internal/logging":     {"aggregate"},
	"internal/tracing":     nil,
	"internal/natsserver":  nil,
	"internal/pgerr":       nil,
	"internal/contract":    nil,
	"internal/pgtest":      {"migrations"},
	"internal/metrics":     {"aggregate", "eventstore"},
	"tenantlog":            {"aggregate", "eventstore"},
	"commands":             {"aggregate", "eventstore", "tenantlog", "internal/tracing"},
	"projections":          {"aggregate", "eventstore", "tenantlog", "projections", "internal/tracing"},
	"process":              {"aggregate", "eventstore", "tenantlog", "commands", "projections"},
	"queries":              {"aggregate", "eventstore", "tenantlog"},
	"httpapi":              {"aggregate", "eventstore", "commands", "queries", "internal/auth", "internal/pgerr", "internal/tracing"},
	"sdk":                  {"aggregate", "sdk"},
	"loadgen":              {"aggregate"},
	"sdk/internal/sdktest": {"*"}, // the SDK tests' harness: a whole service
	"chaos":                {"*"}, // the fault harness: whole processes
	"service":              {"*"},
	"cmd":                  {"*"},
}

// TestNoImportRunsUpward fails on an import of ours that the layout does
// not allow, and on a package that has no room in it.
func TestNoImportRunsUpward(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, "./...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		pkg, ok := strings.CutPrefix(fields[0], module)
		if !ok {
			continue // the module root's tests
		}
		allowed, room := roomOf(pkg)
		if room == "" {
			t.Errorf("%s has no room in the layout (add it to mayImport)", pkg)
			continue
		}
		for _, imp := range fields[1:] {
			dep, ours := strings.CutPrefix(imp, module)
			if !ours || strings.HasPrefix(dep, pkg+"/") || dep == pkg {
				continue
			}
			if !permitted(allowed, dep) {
				t.Errorf("%s imports %s: %s may import only %v", pkg, dep, room, allowed)
			}
		}
	}
}

// roomOf finds the most specific room of pkg.
func roomOf(pkg string) (allowed []string, room string) {
	for r, a := range mayImport {
		if (pkg == r || strings.HasPrefix(pkg, r+"/")) && len(r) > len(room) {
			allowed, room = a, r
		}
	}
	return allowed, room
}

func permitted(allowed []string, dep string) bool {
	for _, a := range allowed {
		if a == "*" || dep == a || strings.HasPrefix(dep, a+"/") {
			return true
		}
	}
	return false
}
