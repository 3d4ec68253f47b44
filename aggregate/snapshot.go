package aggregate

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"
)

// snapshot is the tenant's whole state, the private parts included.
type snapshot struct {
	Tenant
	BillingSeen []string   `json:"billing_seen,omitempty"`
	BillingAt   *time.Time `json:"billing_at,omitempty"`
}

// MarshalSnapshot encodes the tenant's whole state, so a projection can fold
// the next event into it without reading the stream again.
func MarshalSnapshot(t *Tenant) ([]byte, error) {
	s := snapshot{Tenant: *t, BillingAt: t.billingAt}
	for id := range t.billingSeen {
		s.BillingSeen = append(s.BillingSeen, id)
	}
	slices.Sort(s.BillingSeen)
	b, err := json.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("marshal snapshot of %s: %w", t.ID, err)
	}
	return b, nil
}

// UnmarshalSnapshot decodes what MarshalSnapshot wrote.
func UnmarshalSnapshot(b []byte) (*Tenant, error) {
	var s snapshot
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("unmarshal tenant snapshot: %w", err)
	}
	t := s.Tenant
	t.billingAt = s.BillingAt
	for _, id := range s.BillingSeen {
		t.billingSeen = setKey(t.billingSeen, id, true)
	}
	return &t, nil
}
