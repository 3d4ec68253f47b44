package httpapi

import (
	"fmt"
	"testing"

	"github.com/google/uuid"
)

// TestSubjectsStayBounded: however many tenants are evaluated, the server
// keeps at most maxSubjects of them, and the one it kept last.
func TestSubjectsStayBounded(t *testing.T) {
	t.Parallel()
	c := newSubjects()
	var last string
	for i := range maxSubjects + 50 {
		last = fmt.Sprint("ref-", i)
		c.put(last, heldSubject{id: uuid.New(), version: uint64(i)})
	}
	if n := len(c.m); n > maxSubjects {
		t.Fatalf("%d subjects kept, want at most %d", n, maxSubjects)
	}
	if h, ok := c.get(last); !ok || h.version != maxSubjects+49 {
		t.Fatalf("the last subject put: %+v, %v", h, ok)
	}
	// Replacing a kept one evicts nothing.
	n := len(c.m)
	c.put(last, heldSubject{version: 1})
	if len(c.m) != n {
		t.Fatalf("replacing a subject changed the count from %d to %d", n, len(c.m))
	}
}
