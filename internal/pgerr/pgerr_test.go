package pgerr_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tenancyhq/tenancy/internal/pgerr"
)

// TestARecoveryConflictIsToldApart: a standby's cancellation for replay is
// a recovery conflict (wrapped or not); a serialization failure on the
// primary is not, nor is it "unavailable".
func TestARecoveryConflictIsToldApart(t *testing.T) {
	t.Parallel()
	conflict := &pgconn.PgError{Code: "40001", Message: "canceling statement due to conflict with recovery"}
	serialization := &pgconn.PgError{Code: "40001", Message: "could not serialize access due to concurrent update"}
	for _, tc := range []struct {
		err         error
		conflict    bool
		unavailable bool
	}{
		{conflict, true, false},
		{fmt.Errorf("get tenant: %w", conflict), true, false},
		{serialization, false, false},
		{errors.New("other"), false, false},
		{&pgconn.PgError{Code: "57P01"}, false, true},
	} {
		if got := pgerr.IsRecoveryConflict(tc.err); got != tc.conflict {
			t.Errorf("IsRecoveryConflict(%v) = %v, want %v", tc.err, got, tc.conflict)
		}
		if got := pgerr.IsUnavailable(tc.err); got != tc.unavailable {
			t.Errorf("IsUnavailable(%v) = %v, want %v", tc.err, got, tc.unavailable)
		}
	}
}
