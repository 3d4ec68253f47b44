package aggregate

import (
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/cases"
	"golang.org/x/text/unicode/norm"
)

// MaxNameLength is the longest tenant name, in characters.
const MaxNameLength = 200

// NormalizeName is the form of a name used for uniqueness: Unicode NFKC,
// case-folded, white space trimmed and collapsed to single spaces. "Acme  Corp",
// "ACME CORP" and "Ａｃｍｅ Corp" all normalize to "acme corp".
func NormalizeName(name string) string {
	s := norm.NFKC.String(name)
	s = cases.Fold().String(s)
	s = norm.NFKC.String(s)
	return strings.Join(strings.Fields(s), " ")
}

// ValidateName checks a tenant name and returns it trimmed.
func ValidateName(field, name string) (string, error) {
	name = strings.TrimSpace(name)
	switch {
	case name == "":
		return "", Invalid(field, "required", "name is required")
	case !utf8.ValidString(name):
		return "", Invalid(field, "utf8", "name must be valid UTF-8")
	case utf8.RuneCountInString(name) > MaxNameLength:
		return "", Invalid(field, "max_length", "name must be at most %d characters", MaxNameLength)
	case strings.IndexFunc(name, unicode.IsControl) >= 0:
		return "", Invalid(field, "no_control_characters", "name must not contain control characters")
	case NormalizeName(name) == "":
		return "", Invalid(field, "required", "name must contain visible characters")
	}
	return name, nil
}

var externalIDPattern = regexp.MustCompile(`^ORG-[0-9A-F]{8}$`)

// IsExternalID reports whether s has the external id's form: "ORG-" and 8
// upper-case hex digits, as the original service issued them.
func IsExternalID(s string) bool { return externalIDPattern.MatchString(s) }
