package httpapi

import (
	"slices"
	"testing"
)

// TestRequestSchemasUseOnlyKeywordsOpenAPI30Shares guards the validation
// shortcut of newOpenAPI: requests are validated as OpenAPI 3.0, which is
// right only while request schemas use keywords that mean the same in 3.0
// and in JSON Schema 2020-12.
func TestRequestSchemasUseOnlyKeywordsOpenAPI30Shares(t *testing.T) {
	t.Parallel()
	s, err := New(Deps{}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range s.routes() {
		var check func(at string, sc any)
		check = func(at string, sc any) {
			m, ok := sc.(schema)
			if !ok {
				if _, isBool := sc.(bool); !isBool {
					t.Errorf("%s %s %s: schema of type %T", r.method, r.path, at, sc)
				}
				return
			}
			for k, v := range m {
				if !slices.Contains(requestKeywords, k) {
					t.Errorf("%s %s %s: keyword %q is not in requestKeywords", r.method, r.path, at, k)
				}
				switch k {
				case "properties":
					for name, p := range v.(props) {
						check(at+"."+name, p)
					}
				case "items", "additionalProperties":
					check(at+"/"+k, v)
				}
			}
		}
		if r.body != nil {
			check("body", r.body)
		}
		for _, p := range r.query {
			check("?"+p.name, p.schema)
		}
	}
}
