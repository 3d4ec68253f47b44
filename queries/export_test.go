package queries

import "github.com/google/uuid"

// ListSQL exposes the query List runs, for the plan tests.
func ListSQL(f ListFilter) (string, []any, error) {
	q, err := buildList(f)
	if err != nil {
		return "", nil, err
	}
	return q.sql, q.args, nil
}

// EventsSQL exposes the query Events runs, for the plan tests.
func EventsSQL(tenantID uuid.UUID, f EventFilter) (string, []any, error) {
	q, err := buildEvents(tenantID, f)
	if err != nil {
		return "", nil, err
	}
	return q.sql, q.args, nil
}

// PrefixSuccessor exposes prefixSuccessor.
var PrefixSuccessor = prefixSuccessor
