package httpapi

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"slices"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// TestTheDocumentIsTheCommittedOne keeps testdata/openapi.json, the
// document client generators and the API linters read
// (scripts/check-api-clients.sh), the one the server serves: a change to a
// route or a wire type shows in the diff. go test ./httpapi -run
// TestTheDocumentIsTheCommittedOne -update rewrites it.
func TestTheDocumentIsTheCommittedOne(t *testing.T) {
	t.Parallel()
	s, err := New(Deps{}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var doc bytes.Buffer
	if err := json.Indent(&doc, s.openapi.json, "", "  "); err != nil {
		t.Fatal(err)
	}
	doc.WriteByte('\n')
	const golden = "testdata/openapi.json"
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, doc.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (go test ./httpapi -run TestTheDocumentIsTheCommittedOne -update writes it)", err)
	}
	if !bytes.Equal(doc.Bytes(), want) {
		t.Errorf("the served document differs from %s; run go test ./httpapi -run TestTheDocumentIsTheCommittedOne -update and review the diff", golden)
	}
}

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
				case "anyOf":
					for i, sub := range v.([]any) {
						check(fmt.Sprintf("%s/anyOf/%d", at, i), sub)
					}
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
