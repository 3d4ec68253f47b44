package logging_test

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/tenancyhq/tenancy/aggregate"
	"github.com/tenancyhq/tenancy/internal/logging"
)

// TestPersonalFieldsOfAnyValueAreMasked: a value that holds a contact
// anywhere (behind a pointer, in an envelope, a tenant's state, a command,
// a map) is logged without its personal fields, and what is not personal
// stays readable.
func TestPersonalFieldsOfAnyValueAreMasked(t *testing.T) {
	t.Parallel()
	c := aggregate.Contact{Role: "billing", Name: "Ada Lovelace", Email: "ada@engine.example", Phone: "+44 20 7946 0018"}
	cs := []aggregate.Contact{c}
	id := uuid.New()
	values := map[string]any{
		"pointer":  &c,
		"envelope": aggregate.Envelope{Type: "ContactsUpdated", Data: aggregate.ContactsUpdated{Contacts: cs}},
		"tenant":   &aggregate.Tenant{ID: id, Name: "Engine Ltd", Contacts: cs},
		"command":  aggregate.UpdateProfile{Contacts: &cs},
		"create":   aggregate.Create{Name: "Engine Ltd", Contacts: cs},
		"map":      map[string][]aggregate.Contact{"owners": cs},
		"stringer": stringer{c},
	}
	for _, format := range []string{"json", "text"} {
		var buf bytes.Buffer
		log, err := logging.New(&buf, format, slog.LevelDebug)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range values {
			log.Info("value", k, v, "id", id, "err", errors.New("plain"))
		}
		out := buf.String()
		for _, secret := range []string{c.Name, c.Email, c.Phone} {
			if strings.Contains(out, secret) {
				t.Errorf("%s log holds %q:\n%s", format, secret, out)
			}
		}
		for _, kept := range []string{"billing", "Engine Ltd", id.String(), aggregate.Redacted} {
			if !strings.Contains(out, kept) {
				t.Errorf("%s log lost %q:\n%s", format, kept, out)
			}
		}
	}
}

type stringer struct{ c aggregate.Contact }

func (s stringer) String() string {
	return fmt.Sprintf("contact %s <%s> %s", s.c.Name, s.c.Email, s.c.Phone)
}
