package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/tenancyhq/tenancy/aggregate"
)

// The request bodies. Each is decoded strictly (unknown fields are refused)
// and turned into an aggregate command, whose own validation names the field
// and rule of anything wrong.

type createRequest struct {
	ID                  *uuid.UUID          `json:"id"`
	Name                string              `json:"name"`
	Edition             aggregate.Edition   `json:"edition"`
	Region              aggregate.Region    `json:"region"`
	Trial               *bool               `json:"trial"`
	TrialDays           int                 `json:"trial_days"`
	Contacts            []aggregate.Contact `json:"contacts"`
	Metadata            map[string]string   `json:"metadata"`
	Labels              map[string]string   `json:"labels"`
	ComplianceStandards []string            `json:"compliance_standards"`
}

func (r createRequest) command() aggregate.Create {
	c := aggregate.Create{Name: r.Name, Edition: r.Edition, Region: r.Region, Trial: r.Trial, TrialDays: r.TrialDays,
		Contacts: r.Contacts, Metadata: r.Metadata, Labels: r.Labels, ComplianceStandards: r.ComplianceStandards}
	if r.ID != nil {
		c.TenantID = *r.ID
	}
	return c
}

// legacyCreateRequest is the original service's POST /organizations body.
type legacyCreateRequest struct {
	Name    string            `json:"name"`
	Edition aggregate.Edition `json:"edition"`
	Region  aggregate.Region  `json:"region"`
}

type patchRequest struct {
	Name                *string              `json:"name"`
	Contacts            *[]aggregate.Contact `json:"contacts"`
	Metadata            *map[string]string   `json:"metadata"`
	Labels              *map[string]string   `json:"labels"`
	ComplianceStandards *[]string            `json:"compliance_standards"`
}

type completeProvisioningRequest struct {
	Steps []string `json:"steps"`
}

type reasonRequest struct {
	Reason string `json:"reason"`
}

type suspendRequest struct {
	Reason       aggregate.SuspensionReason `json:"reason"`
	Severity     aggregate.Severity         `json:"severity"`
	Note         string                     `json:"note"`
	AutoResumeAt *time.Time                 `json:"auto_resume_at"`
}

type noteRequest struct {
	Note string `json:"note"`
}

type extendTrialRequest struct {
	Days int `json:"days"`
}

type cancelRequest struct {
	EffectiveAt *time.Time `json:"effective_at"`
	Reason      string     `json:"reason"`
}

type migrateRequest struct {
	TargetRegion aggregate.Region `json:"target_region"`
}

type terminateRequest struct {
	Reason        string `json:"reason"`
	RetentionDays int    `json:"retention_days"`
}

type changeEditionRequest struct {
	Edition aggregate.Edition `json:"edition"`
}

type billingStatusRequest struct {
	Status          aggregate.BillingStatus `json:"status"`
	Provider        string                  `json:"provider"`
	ProviderEventID string                  `json:"provider_event_id"`
	OccurredAt      *time.Time              `json:"occurred_at"`
}

type policyRequest struct {
	Enforced *bool           `json:"enforced"`
	Settings json.RawMessage `json:"settings"`
}

type overrideRequest struct {
	Enabled *bool  `json:"enabled"`
	Value   *int64 `json:"value"`
}

type renameRequest struct {
	Name string `json:"name"`
}

type keyRequest struct {
	Key string `json:"key"`
}

type keyedOverrideRequest struct {
	Key     string `json:"key"`
	Enabled *bool  `json:"enabled"`
	Value   *int64 `json:"value"`
}

type typeRequest struct {
	Type aggregate.PolicyType `json:"type"`
}

type typedPolicyRequest struct {
	Type     aggregate.PolicyType `json:"type"`
	Enforced *bool                `json:"enforced"`
	Settings json.RawMessage      `json:"settings"`
}

type emptyRequest struct{}

// maxBody is the largest request body accepted (1 MiB).
const maxBody = 1 << 20

// decodeBody decodes the request's JSON body into v, strictly: unknown
// fields, trailing data and wrong types are refused with the field named. An
// empty body decodes as {} (every command body is optional or validated by
// the command). Invalid UTF-8, duplicate member names and NUL characters
// were refused before (strictBody, which every route with a body passes).
func decodeBody(c echo.Context, v any) error {
	req := c.Request()
	body, err := io.ReadAll(io.LimitReader(req.Body, maxBody+1))
	if err != nil {
		return bodyReadProblem(err)
	}
	if len(body) > maxBody {
		return echo.NewHTTPError(413)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		body = []byte("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fieldFromJSONError(err)
	}
	if dec.More() {
		return invalidField("body", "single_value", "The body must hold exactly one JSON object.")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return invalidField("body", "single_value", "The body must hold exactly one JSON object.")
	}
	return nil
}

// bodyReadProblem is the answer to a body that could not be read: Echo's
// own error (the body limit: 413), 408 when the client was too slow to send
// it (the body deadline, Options.BodyTimeout), else 400.
func bodyReadProblem(err error) error {
	var mbe *echo.HTTPError
	if errors.As(err, &mbe) {
		return mbe
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return newProblem(http.StatusRequestTimeout, typeBodyTimeout, "Request body too slow",
			"The request body did not arrive in time; send it at once, then retry.")
	}
	return newProblem(400, typeMalformed, "Unreadable body", "The request body could not be read.")
}

// checkJSON refuses what encoding/json would accept silently but store
// wrongly: invalid UTF-8 (decoded as U+FFFD, also from a lone surrogate
// escape such as "\udc00"), a member name given twice in one object (the
// last would win) and NUL characters (PostgreSQL text and jsonb cannot
// store them, so they would fail as an internal error far from here). It
// names the field as validation errors do ("contacts[0].name"). A body that
// is not valid JSON passes: the decoder names its syntax error.
func checkJSON(body []byte) *Problem {
	// bad is the offset of the first byte that is not UTF-8 (-1: none).
	bad := -1
	if !utf8.Valid(body) {
		for i := 0; i < len(body); {
			r, n := utf8.DecodeRune(body[i:])
			if r == utf8.RuneError && n <= 1 {
				bad = i
				break
			}
			i += n
		}
	}
	hasNUL := bytes.Contains(body, []byte(`\u0000`))
	dec := json.NewDecoder(bytes.NewReader(body))
	type level struct {
		object bool
		key    string
		index  int
		seen   map[string]struct{}
	}
	var stack []level
	path := func() string {
		var b strings.Builder
		for _, l := range stack {
			if l.object {
				if b.Len() > 0 {
					b.WriteByte('.')
				}
				b.WriteString(strings.ReplaceAll(strings.ReplaceAll(l.key, "\x00", ""), "\uFFFD", "?"))
			} else {
				fmt.Fprintf(&b, "[%d]", l.index)
			}
		}
		if b.Len() == 0 {
			return "body"
		}
		return b.String()
	}
	// endValue ends an element: the next token of an object is a name, of
	// an array the next index.
	expectKey := false
	endValue := func() {
		if n := len(stack); n > 0 {
			if stack[n-1].object {
				expectKey = true
			} else {
				stack[n-1].index++
			}
		}
	}
	for {
		start := dec.InputOffset()
		tok, err := dec.Token()
		if err != nil {
			return nil
		}
		switch v := tok.(type) {
		case json.Delim:
			switch v {
			case '{':
				stack = append(stack, level{object: true})
				expectKey = true
			case '[':
				stack = append(stack, level{})
				expectKey = false
			default:
				stack = stack[:len(stack)-1]
				endValue()
			}
			continue
		case string:
			raw := body[start:dec.InputOffset()]
			isKey := expectKey
			if isKey {
				top := &stack[len(stack)-1]
				top.key = v
				expectKey = false
				if top.seen == nil {
					top.seen = map[string]struct{}{}
				}
				if _, dup := top.seen[v]; dup {
					f := path()
					return invalidField(f, "duplicate_key", f+" is given more than once; send each member once.")
				}
				top.seen[v] = struct{}{}
			}
			if (bad >= 0 && int(start) <= bad && bad < int(start)+len(raw)) || (strings.ContainsRune(v, utf8.RuneError) && !literalReplacement(raw)) {
				f := path()
				return invalidField(f, "utf8", f+" is not valid UTF-8 (send text as UTF-8, surrogates in pairs).")
			}
			if hasNUL && strings.ContainsRune(v, 0) {
				f := path()
				return invalidField(f, "no_nul_characters", f+" must not contain NUL characters (U+0000).")
			}
			if !isKey {
				endValue()
			}
		default:
			endValue()
		}
	}
}

// literalReplacement reports whether a raw JSON string holds U+FFFD itself
// (as UTF-8 or as an escape): then a U+FFFD in its decoded value is the
// client's, not the decoder's replacement of something invalid.
func literalReplacement(raw []byte) bool {
	return bytes.Contains(raw, []byte("\uFFFD")) || bytes.Contains(bytes.ToLower(raw), []byte(`\ufffd`))
}
