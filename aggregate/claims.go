package aggregate

// Kinds of values that only one tenant may hold at a time. The event log
// enforces them in the same write as the events that take them.
const (
	ClaimName       = "tenant_name"
	ClaimExternalID = "external_id"
)

// UniqueClaim is a value an event takes for its tenant or, with Release,
// gives back.
type UniqueClaim struct {
	Kind    string
	Value   string
	Release bool
}

// Claimer is an event that takes or gives back unique values: it declares
// its own constraints (as ZITADEL's events do), and the log enforces them
// generically, so no command handler special-cases names.
type Claimer interface {
	UniqueClaims() []UniqueClaim
}

// UniqueClaims implements Claimer: a new tenant takes its name and external id.
func (e TenantCreated) UniqueClaims() []UniqueClaim {
	return []UniqueClaim{{Kind: ClaimName, Value: e.NormalizedName}, {Kind: ClaimExternalID, Value: e.ExternalID}}
}

// UniqueClaims implements Claimer: a rename gives the old name back and
// takes the new one (nothing when only the spelling changed).
func (e TenantRenamed) UniqueClaims() []UniqueClaim {
	old := NormalizeName(e.From)
	if old == e.NormalizedName {
		return nil
	}
	return []UniqueClaim{{Kind: ClaimName, Value: old, Release: true}, {Kind: ClaimName, Value: e.NormalizedName}}
}

// UniqueClaims implements Claimer: a purge gives the name back (the
// external id stays taken, so it never names another tenant).
func (e TenantPurged) UniqueClaims() []UniqueClaim {
	return []UniqueClaim{{Kind: ClaimName, Value: e.NormalizedName, Release: true}}
}

// ClaimsOf lists the unique values a sequence of events takes and gives
// back, in order.
func ClaimsOf(events []Event) []UniqueClaim {
	var out []UniqueClaim
	for _, e := range events {
		if c, ok := e.(Claimer); ok {
			out = append(out, c.UniqueClaims()...)
		}
	}
	return out
}
