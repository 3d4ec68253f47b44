package httpapi

import (
	"bytes"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/tenancyhq/tenancy/aggregate"
)

// Clients of the original service, and people typing by hand, spell the
// enumerations their own way: "PROFESSIONAL", "US_EAST_1", "Past-Due". The
// API accepts any case, and '_' and '-' for each other, and turns what it
// recognises into the canonical spelling before anything else sees it, so
// every response and event holds only the canonical one. What it does not
// recognise is left as sent, for the validation to name.

// fold is the key two spellings of one value share.
func fold(s string) string {
	return strings.ReplaceAll(strings.ToLower(strings.TrimSpace(s)), "_", "-")
}

// canonical returns the allowed value v spells, or v unchanged.
func canonical[T ~string](v T, allowed []T) T {
	if v == "" {
		return v
	}
	for _, a := range allowed {
		if a == v {
			return a
		}
	}
	k := fold(string(v))
	for _, a := range allowed {
		if fold(string(a)) == k {
			return a
		}
	}
	return v
}

// legacySuspendReasons maps the original service's suspension reasons to
// this service's (README: Coming from the original service).
var legacySuspendReasons = map[string]aggregate.SuspensionReason{
	"billing":        aggregate.ReasonPaymentFailed,
	"security":       aggregate.ReasonSecurityThreat,
	"abuse":          aggregate.ReasonAbuseDetected,
	"legal":          aggregate.ReasonLegalRequest,
	"administrative": aggregate.ReasonAdminAction,
	"voluntary":      aggregate.ReasonAdminAction,
	"scheduled":      aggregate.ReasonAdminAction,
}

// canonicalizeRequest rewrites, in the request's JSON body and query, each
// string the operation's schema limits to an enumeration but which spells
// one of its values another way (canonical), and reports whether it
// changed anything. It runs only after a request failed validation, so a
// request in the canonical spelling costs nothing more. The body was read
// by the validator, which left a copy of it in req.Body.
func canonicalizeRequest(req *http.Request, op *openapi3.Operation) bool {
	changed := false
	q := req.URL.Query()
	for _, pr := range op.Parameters {
		p := pr.Value
		if p == nil || p.In != openapi3.ParameterInQuery || p.Schema == nil || p.Schema.Value == nil {
			continue
		}
		sc := p.Schema.Value
		list := sc.Items != nil && sc.Items.Value != nil
		vals := q[p.Name]
		for i, v := range vals {
			if !list {
				if c, ok := canonicalValue(v, sc); ok {
					vals[i], changed = c, true
				}
				continue
			}
			// A list (style form, explode false): comma-separated items.
			parts := strings.Split(v, ",")
			for j, part := range parts {
				if c, ok := canonicalValue(strings.TrimSpace(part), sc.Items.Value); ok {
					parts[j], changed = c, true
				}
			}
			vals[i] = strings.Join(parts, ",")
		}
	}
	if changed {
		req.URL.RawQuery = q.Encode()
	}
	if op.RequestBody == nil || op.RequestBody.Value == nil || req.Body == nil {
		return changed
	}
	mt := op.RequestBody.Value.Content.Get("application/json")
	if mt == nil || mt.Schema == nil || mt.Schema.Value == nil {
		return changed
	}
	raw, err := io.ReadAll(req.Body)
	req.Body = io.NopCloser(bytes.NewReader(raw))
	if err != nil {
		return changed
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var body any
	if dec.Decode(&body) != nil {
		return changed
	}
	if !canonicalizeJSON(&body, mt.Schema.Value) {
		return changed
	}
	out, err := json.Marshal(body)
	if err != nil {
		return changed
	}
	// The validator reads the body through GetBody when there is one.
	req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(out)), nil }
	req.Body, _ = req.GetBody()
	req.ContentLength = int64(len(out))
	return true
}

// canonicalizeJSON walks v along its schema, rewriting enumeration values.
func canonicalizeJSON(v *any, sc *openapi3.Schema) bool {
	changed := false
	switch x := (*v).(type) {
	case string:
		if c, ok := canonicalValue(x, sc); ok {
			*v, changed = c, true
		}
	case map[string]any:
		for k, member := range x {
			ref := sc.Properties[k]
			if ref == nil || ref.Value == nil {
				continue
			}
			if canonicalizeJSON(&member, ref.Value) {
				x[k], changed = member, true
			}
		}
	case []any:
		if sc.Items == nil || sc.Items.Value == nil {
			break
		}
		for i := range x {
			if canonicalizeJSON(&x[i], sc.Items.Value) {
				changed = true
			}
		}
	}
	return changed
}

// canonicalValue is the enumeration value s spells, when sc is a string
// enumeration that does not hold s as it is.
func canonicalValue(s string, sc *openapi3.Schema) (string, bool) {
	if len(sc.Enum) == 0 {
		return "", false
	}
	allowed := make([]string, 0, len(sc.Enum))
	for _, e := range sc.Enum {
		if es, ok := e.(string); ok {
			allowed = append(allowed, es)
		}
	}
	c := canonical(s, allowed)
	return c, c != s
}

// legacyReasonWords are the reasons the original's suspend route takes:
// this service's and the original's words.
func legacyReasonWords() []string {
	out := make([]string, 0, len(legacySuspendReasons)+8)
	for _, r := range aggregate.SuspensionReasons() {
		out = append(out, string(r))
	}
	return append(out, slices.Sorted(maps.Keys(legacySuspendReasons))...)
}
