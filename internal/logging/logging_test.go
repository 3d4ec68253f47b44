package logging_test

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/tenancyhq/tenancy/aggregate"
	"github.com/tenancyhq/tenancy/internal/logging"
)

func TestPersonalDataNeverReachesTheLog(t *testing.T) {
	t.Parallel()
	for _, format := range []string{"json", "text"} {
		var buf bytes.Buffer
		log, err := logging.New(&buf, format, slog.LevelDebug)
		if err != nil {
			t.Fatal(err)
		}
		contact := aggregate.Contact{Role: "primary", Name: "Grace Hopper", Email: "grace@navy.example"}
		log = log.With("who", "grace@navy.example")
		log.Info("created for grace@navy.example",
			"email", "grace@navy.example",
			"err", errors.New(`duplicate key value (email)=(grace@navy.example)`),
			"event", aggregate.TenantCreated{Name: "Navy", Contacts: []aggregate.Contact{contact}},
			"contact", contact,
			"contacts", []aggregate.Contact{contact},
			"raw", []byte(`{"email":"grace@navy.example"}`),
			slog.Group("nested", "deep", "mail grace@navy.example now"),
		)
		out := buf.String()
		for _, secret := range []string{"grace@navy.example", "Grace Hopper"} {
			if strings.Contains(out, secret) {
				t.Errorf("%s log holds %q: %s", format, secret, out)
			}
		}
		if !strings.Contains(out, "g***@***") || !strings.Contains(out, "Navy") {
			t.Errorf("%s log lost what is not personal: %s", format, out)
		}
	}
}
