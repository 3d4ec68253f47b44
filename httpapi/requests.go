package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

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
// the command).
func decodeBody(c echo.Context, v any) error {
	req := c.Request()
	body, err := io.ReadAll(io.LimitReader(req.Body, maxBody+1))
	if err != nil {
		var mbe *echo.HTTPError
		if errors.As(err, &mbe) {
			return mbe
		}
		return newProblem(400, typeMalformed, "Unreadable body", "The request body could not be read.")
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
	if bytes.Contains(body, []byte(`\u0000`)) {
		if field, ok := nulField(body); ok {
			return invalidField(field, "no_nul_characters", field+" must not contain NUL characters (U+0000).")
		}
	}
	return nil
}

// nulField finds the first string (member name or value) of a JSON document
// that holds a NUL character, which no field may: PostgreSQL text and jsonb
// cannot store it, so it would fail as an internal error far from here. It
// names the field as validation errors do ("contacts[0].name").
func nulField(body []byte) (string, bool) {
	dec := json.NewDecoder(bytes.NewReader(body))
	type level struct {
		object bool
		key    string
		index  int
	}
	var stack []level
	path := func() string {
		var b strings.Builder
		for _, l := range stack {
			if l.object {
				if b.Len() > 0 {
					b.WriteByte('.')
				}
				b.WriteString(l.key)
			} else {
				fmt.Fprintf(&b, "[%d]", l.index)
			}
		}
		if b.Len() == 0 {
			return "body"
		}
		return b.String()
	}
	// expectKey: the next string in an object is a member name.
	expectKey := false
	for {
		tok, err := dec.Token()
		if err != nil {
			return "", false
		}
		// A value ends an element: the next token of an object is a name,
		// of an array the next index.
		endValue := func() {
			if n := len(stack); n > 0 {
				if stack[n-1].object {
					expectKey = true
				} else {
					stack[n-1].index++
				}
			}
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
		case string:
			if expectKey {
				stack[len(stack)-1].key = strings.ReplaceAll(v, "\x00", "")
				expectKey = false
				if strings.ContainsRune(v, 0) {
					return path(), true
				}
				continue
			}
			if strings.ContainsRune(v, 0) {
				return path(), true
			}
			endValue()
		default:
			endValue()
		}
	}
}
