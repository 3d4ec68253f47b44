package queries_test

import (
	"strings"
	"testing"

	"github.com/tenancyhq/tenancy/queries"
)

func TestPrefixSuccessorBoundsExactlyTheStringsWithThePrefix(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		prefix, want string
		ok           bool
	}{
		{"a", "b", true},
		{"acme ", "acme!", true},
		{"100%", "100&", true},
		{"é", "ê", true},
		{"\u007f", "\u0080", true}, // one byte to two
		{"\ud7ff", "\ue000", true}, // over the surrogates
		{"z\U0010FFFF", "{", true},
		{"\U0010FFFF\U0010FFFF", "", false},
	} {
		got, ok := queries.PrefixSuccessor(c.prefix)
		if got != c.want || ok != c.ok {
			t.Errorf("PrefixSuccessor(%q) = %q, %v; want %q, %v", c.prefix, got, ok, c.want, c.ok)
			continue
		}
		// Every string with the prefix lies in [prefix, successor); a few
		// without it lie outside.
		for _, suffix := range []string{"", "\x01", "a", "~", "é", "\U0010FFFF", "\U0010FFFFz"} {
			s := c.prefix + suffix
			if s < c.prefix || (ok && s >= got) {
				t.Errorf("%q with prefix %q is outside [%q, %q)", s, c.prefix, c.prefix, got)
			}
		}
		if ok && !strings.HasPrefix(got, c.prefix) && got <= c.prefix {
			t.Errorf("successor %q of %q is not above it", got, c.prefix)
		}
	}
}
