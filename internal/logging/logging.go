// Package logging builds the service's slog loggers. Every logger it makes
// masks personal data by construction: e-mail addresses anywhere in a
// message, an attribute or an error, and the personal fields of any tenant
// event or contact logged as a value. Nobody has to remember to mask.
package logging

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"regexp"
	"slices"
	"strings"

	"github.com/tenancyhq/tenancy/aggregate"
)

// New returns a logger writing format ("json" or "text") at level to w.
func New(w io.Writer, format string, level slog.Level) (*slog.Logger, error) {
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler
	switch format {
	case "json":
		h = slog.NewJSONHandler(w, opts)
	case "text":
		h = slog.NewTextHandler(w, opts)
	default:
		return nil, fmt.Errorf("log format %q: want json or text", format)
	}
	return slog.New(NewMasking(h)), nil
}

// Masking is a slog.Handler that masks personal data before the inner
// handler sees a record.
type Masking struct{ inner slog.Handler }

// NewMasking wraps inner.
func NewMasking(inner slog.Handler) *Masking { return &Masking{inner: inner} }

// Enabled implements slog.Handler.
func (m *Masking) Enabled(ctx context.Context, l slog.Level) bool { return m.inner.Enabled(ctx, l) }

// Handle implements slog.Handler.
func (m *Masking) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, MaskString(r.Message), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(maskAttr(a))
		return true
	})
	return m.inner.Handle(ctx, out)
}

// WithAttrs implements slog.Handler.
func (m *Masking) WithAttrs(as []slog.Attr) slog.Handler {
	masked := make([]slog.Attr, len(as))
	for i, a := range as {
		masked[i] = maskAttr(a)
	}
	return &Masking{inner: m.inner.WithAttrs(masked)}
}

// WithGroup implements slog.Handler.
func (m *Masking) WithGroup(name string) slog.Handler {
	return &Masking{inner: m.inner.WithGroup(name)}
}

var emailPattern = regexp.MustCompile(`[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}`)

// MaskString replaces every e-mail address in s: "ada@example.com" reads
// "a***@***".
func MaskString(s string) string {
	if !strings.Contains(s, "@") {
		return s
	}
	return emailPattern.ReplaceAllStringFunc(s, func(e string) string { return e[:1] + "***@***" })
}

func maskAttr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return slog.String(a.Key, MaskString(v.String()))
	case slog.KindGroup:
		as := v.Group()
		masked := make([]slog.Attr, len(as))
		for i, x := range as {
			masked[i] = maskAttr(x)
		}
		return slog.Attr{Key: a.Key, Value: slog.GroupValue(masked...)}
	case slog.KindAny:
		switch x := v.Any().(type) {
		case aggregate.Event:
			return slog.Any(a.Key, aggregate.RedactPersonal(x))
		case aggregate.Contact:
			return slog.Any(a.Key, aggregate.RedactPersonal(aggregate.ContactsUpdated{Contacts: []aggregate.Contact{x}}).(aggregate.ContactsUpdated).Contacts[0])
		case []aggregate.Contact:
			return slog.Any(a.Key, aggregate.RedactPersonal(aggregate.ContactsUpdated{Contacts: x}).(aggregate.ContactsUpdated).Contacts)
		case error:
			return slog.String(a.Key, MaskString(x.Error()))
		case []byte:
			return slog.String(a.Key, MaskString(string(x)))
		case fmt.Stringer:
			return slog.String(a.Key, MaskString(redact(x.String(), x)))
		default:
			return slog.String(a.Key, MaskString(redact(fmt.Sprintf("%+v", x), x)))
		}
	}
	return slog.Attr{Key: a.Key, Value: v}
}

// redact replaces in s, the text of x, every personal value x holds
// anywhere: a contact behind a pointer, in an envelope, a tenant's state or
// a command, all show their fields in %+v.
func redact(s string, x any) string {
	found := personalValues(reflect.ValueOf(x), nil, 0)
	// Longest first, so a value inside another is not replaced half.
	slices.SortFunc(found, func(a, b string) int { return len(b) - len(a) })
	for _, p := range found {
		s = strings.ReplaceAll(s, p, aggregate.Redacted)
	}
	return s
}

// personalValues appends the non-empty string fields tagged
// `personal:"true"` found in v, through pointers, interfaces, structs,
// slices, arrays and maps.
func personalValues(v reflect.Value, out []string, depth int) []string {
	if depth > 32 || !v.IsValid() {
		return out
	}
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			out = personalValues(v.Elem(), out, depth+1)
		}
	case reflect.Struct:
		t := v.Type()
		for i := range t.NumField() {
			f := v.Field(i)
			if t.Field(i).Tag.Get("personal") == "true" && f.Kind() == reflect.String {
				if p := f.String(); p != "" && p != aggregate.Redacted {
					out = append(out, p)
				}
				continue
			}
			out = personalValues(f, out, depth+1)
		}
	case reflect.Slice, reflect.Array:
		if !mayHoldPersonal(v.Type().Elem()) {
			return out
		}
		for i := range v.Len() {
			out = personalValues(v.Index(i), out, depth+1)
		}
	case reflect.Map:
		if !mayHoldPersonal(v.Type().Elem()) {
			return out
		}
		for it := v.MapRange(); it.Next(); {
			out = personalValues(it.Value(), out, depth+1)
		}
	}
	return out
}

// mayHoldPersonal reports whether a value of type t can hold a personal
// field: anything but a scalar.
func mayHoldPersonal(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Pointer, reflect.Interface, reflect.Struct, reflect.Slice, reflect.Array, reflect.Map:
		return true
	}
	return false
}
