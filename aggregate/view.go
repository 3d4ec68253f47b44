package aggregate

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
)

// View is a tenant as the API shows it: its state and the commands it
// accepts next.
type View struct {
	*Tenant
	AllowedCommands []CommandName `json:"allowed_commands"`
}

// ViewOf returns t's view.
func ViewOf(t *Tenant) View {
	allowed := AllowedCommands(t.Status)
	if allowed == nil {
		allowed = []CommandName{}
	}
	return View{Tenant: t, AllowedCommands: allowed}
}

// EntitlementsView is a tenant's entitlements as the API shows them: the
// effective features and limits, and the overrides they come from.
type EntitlementsView struct {
	Entitlements
	Overrides Overrides `json:"overrides"`
}

// EntitlementsViewOf returns t's entitlements view under catalog c.
func (c *Catalog) EntitlementsViewOf(t *Tenant) EntitlementsView {
	return EntitlementsView{Entitlements: t.Entitlements(c), Overrides: t.Overrides}
}

// RenderView is t's view as JSON, as the API sends it (without the
// encoder's trailing newline). The read-model projection renders it once
// per change, so a read of the tenant sends bytes instead of decoding and
// encoding its state.
func RenderView(t *Tenant) ([]byte, error) {
	b, err := json.Marshal(ViewOf(t))
	if err != nil {
		return nil, fmt.Errorf("render view of %s: %w", t.ID, err)
	}
	return b, nil
}

// RenderEntitlements is t's entitlements view under catalog c as JSON, as
// the API sends it (without the trailing newline).
func (c *Catalog) RenderEntitlements(t *Tenant) ([]byte, error) {
	b, err := json.Marshal(c.EntitlementsViewOf(t))
	if err != nil {
		return nil, fmt.Errorf("render entitlements of %s: %w", t.ID, err)
	}
	return b, nil
}

// RenderFormat names what RenderView and RenderEntitlements produce with
// catalog c: the catalog's version and a digest of the catalog's content,
// of the views' types (field names, JSON tags and types, all the way down)
// and of the commands each status accepts. A rendering stored under
// another format (by another release, or with another catalog) is not sent
// as is: the reader renders the state itself. Deriving it from the types
// means no one has to remember to bump a number when the wire form changes.
// It costs a walk of the types: compute it once.
func (c *Catalog) RenderFormat() string {
	h := sha256.New()
	for _, t := range []reflect.Type{reflect.TypeFor[View](), reflect.TypeFor[EntitlementsView]()} {
		writeShape(h, t, map[reflect.Type]bool{})
	}
	for _, s := range statuses {
		fmt.Fprintf(h, "%s:%v;", s, AllowedCommands(s))
	}
	fmt.Fprintf(h, "%v;%v;", c.features, c.limits)
	for _, e := range editions {
		spec, _ := c.Edition(e)
		b, _ := json.Marshal(spec)
		h.Write(b)
	}
	return c.version + "/" + hex.EncodeToString(h.Sum(nil))[:16]
}

// writeShape writes what of type t decides its JSON encoding.
func writeShape(w interface{ Write([]byte) (int, error) }, t reflect.Type, seen map[reflect.Type]bool) {
	name := t.PkgPath() + "." + t.Name()
	fmt.Fprintf(w, "%s %s(", name, t.Kind())
	defer w.Write([]byte(")"))
	if seen[t] {
		return
	}
	seen[t] = true
	if t.Implements(reflect.TypeFor[json.Marshaler]()) || reflect.PointerTo(t).Implements(reflect.TypeFor[json.Marshaler]()) ||
		t.Implements(reflect.TypeFor[interface{ MarshalText() ([]byte, error) }]()) {
		// Its own encoding (time.Time, uuid.UUID, json.RawMessage): named above.
		return
	}
	switch t.Kind() {
	case reflect.Pointer, reflect.Slice, reflect.Array:
		writeShape(w, t.Elem(), seen)
	case reflect.Map:
		writeShape(w, t.Key(), seen)
		writeShape(w, t.Elem(), seen)
	case reflect.Struct:
		for i := range t.NumField() {
			f := t.Field(i)
			if !f.IsExported() && !f.Anonymous {
				continue
			}
			fmt.Fprintf(w, "%s %q ", f.Name, strings.TrimSpace(f.Tag.Get("json")))
			writeShape(w, f.Type, seen)
		}
	}
}
