package aggregate

import (
	"reflect"
	"strings"
	"testing"
)

// TestRenderFormatNamesTheCatalogAndTheViewsShape: the same catalog and
// types always give the same format, and a change of the catalog's content
// (even under the same version) or of a view type's shape gives another, so
// renderings stored by another release or catalog are never sent as current.
func TestRenderFormatNamesTheCatalogAndTheViewsShape(t *testing.T) {
	t.Parallel()
	c := DefaultCatalog()
	f := c.RenderFormat()
	if f != c.RenderFormat() || !strings.HasPrefix(f, c.Version()+"/") {
		t.Fatalf("RenderFormat %q: not stable, or not prefixed by the catalog version %q", f, c.Version())
	}
	edited, err := parseCatalog([]byte(strings.Replace(string(catalogJSON), `"max_users": 5`, `"max_users": 6`, 1)))
	if err != nil {
		t.Fatal(err)
	}
	if edited.Version() != c.Version() || edited.RenderFormat() == f {
		t.Errorf("a catalog edited under the same version renders as %q, like the original %q", edited.RenderFormat(), f)
	}

	shape := func(v any) string {
		var b strings.Builder
		writeShape(&b, reflect.TypeOf(v), map[reflect.Type]bool{})
		return b.String()
	}
	// Anonymous types: their names cannot tell them apart.
	base := shape(struct {
		Name string `json:"name"`
	}{})
	for _, other := range []any{
		struct {
			Name string `json:"title"`
		}{},
		struct {
			Name  string `json:"name"`
			Extra int    `json:"extra,omitempty"`
		}{},
		struct {
			Name int `json:"name"`
		}{},
	} {
		if shape(other) == base {
			t.Errorf("shape of %T equals the shape of the original: %s", other, base)
		}
	}
}
