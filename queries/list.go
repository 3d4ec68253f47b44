package queries

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/tenancyhq/tenancy/aggregate"
)

// Page sizes of List and Events: the size when none is asked for, and the
// largest allowed, which bounds what one request reads.
const (
	DefaultLimit = 50
	MaxLimit     = 200
)

// The sorts List offers, each backed by an index of migration 002 that ends
// with id.
const (
	SortCreatedAt = "created_at"
	SortUpdatedAt = "updated_at"
	// SortName orders by the normalized name in byte (code point) order, the
	// order of its text_pattern_ops index, not a locale's collation.
	SortName = "name"
)

// The orders of a List.
const (
	OrderAsc  = "asc"
	OrderDesc = "desc"
)

// sortColumns maps each sort to the tenants column it orders by.
var sortColumns = map[string]string{
	SortCreatedAt: "created_at",
	SortUpdatedAt: "updated_at",
	SortName:      "normalized_name",
}

// ListFilter selects and orders the tenants of a List. Within one field the
// values are alternatives (status ACTIVE or TRIAL); the fields combine with
// AND. Zero fields select everything.
type ListFilter struct {
	// Statuses, Editions, Regions and BillingStatuses keep the tenants whose
	// value is one of those given; empty keeps any. Unknown values are
	// refused, not silently matched against nothing.
	Statuses        []aggregate.Status
	Editions        []aggregate.Edition
	Regions         []aggregate.Region
	BillingStatuses []aggregate.BillingStatus
	// Labels maps a label key to the value it must have; the value "" means
	// the tenant only needs to have the key. (Key and value pairs use the
	// labels GIN index; a key alone cannot, as jsonb_path_ops indexes
	// key-value paths, so such rows are found through the sort index.)
	Labels map[string]string
	// NamePrefix selects names that start with it, compared in normalized
	// form (aggregate.NormalizeName: case-folded, spaces collapsed), so "acme"
	// finds "ACME Corp". A trailing space is kept: "acme " does not find
	// "Acmes". A prefix of only spaces selects everything.
	NamePrefix string
	// CreatedAfter and CreatedBefore bound created_at, both exclusive.
	CreatedAfter, CreatedBefore *time.Time
	// Sort is SortCreatedAt (the default), SortUpdatedAt or SortName; ties
	// are broken by id.
	Sort string
	// Order is OrderAsc (the default) or OrderDesc.
	Order string
	// Limit is the page size: DefaultLimit when 0, at most MaxLimit.
	Limit int
	// Cursor continues from the page whose NextCursor it is; it must be used
	// with the same filter, sort and order (Limit may change).
	Cursor string
}

// Page is one page of a List.
type Page struct {
	Tenants []*aggregate.Tenant
	// NextCursor fetches the next page; "" when this is the last one.
	NextCursor string
}

// List returns one page of the tenants the filter selects, in its order.
//
// Pages are cut by keyset on (sort key, id), not by offset: a client walking
// the pages while tenants are created sees every tenant that existed when it
// started exactly once, and a tenant created meanwhile at most once. (A tenant
// whose sort key changes during the walk, a rename under SortName or any
// change under SortUpdatedAt, may move across the cursor: seen twice or not at
// all. created_at never changes.)
func (r *Reader) List(ctx context.Context, f ListFilter) (Page, error) {
	q, err := buildList(f)
	if err != nil {
		return Page{}, err
	}
	rows, err := r.pool.Query(ctx, q.sql, q.args...)
	if err != nil {
		return Page{}, fmt.Errorf("list tenants: %w", err)
	}
	defer rows.Close()
	page := Page{Tenants: make([]*aggregate.Tenant, 0, q.limit)}
	var lastID uuid.UUID
	var lastKey string
	for rows.Next() {
		if len(page.Tenants) == q.limit {
			// The extra row only says that another page exists.
			c := cursor{Kind: cursorTenants, Sort: q.sort, Order: q.order, Filter: q.digest, Key: lastKey, ID: lastID.String()}
			if page.NextCursor, err = encodeCursor(c); err != nil {
				return Page{}, fmt.Errorf("list tenants: %w", err)
			}
			break
		}
		var id uuid.UUID
		var state []byte
		var at time.Time
		var name string
		key := any(&at)
		if q.byName {
			key = &name
		}
		if err := rows.Scan(&id, &state, key); err != nil {
			return Page{}, fmt.Errorf("list tenants: %w", err)
		}
		t, err := aggregate.UnmarshalSnapshot(state)
		if err != nil {
			return Page{}, fmt.Errorf("list tenants: tenant %s: %w", id, err)
		}
		page.Tenants = append(page.Tenants, t)
		lastID, lastKey = id, name
		if !q.byName {
			lastKey = strconv.FormatInt(at.UnixMicro(), 10)
		}
	}
	if err := rows.Err(); err != nil {
		return Page{}, fmt.Errorf("list tenants: %w", err)
	}
	return page, nil
}

// listQuery is a validated ListFilter as SQL.
type listQuery struct {
	sql         string
	args        []any
	sort, order string
	byName      bool // the sort key is normalized_name, else a timestamp
	limit       int
	digest      string
}

// args collects query parameters and names their placeholders.
type args []any

func (a *args) add(v any) string {
	*a = append(*a, v)
	return "$" + strconv.Itoa(len(*a))
}

// buildList validates f and writes the query that serves it.
func buildList(f ListFilter) (*listQuery, error) {
	q := &listQuery{sort: f.Sort, order: f.Order}
	if q.sort == "" {
		q.sort = SortCreatedAt
	}
	column, ok := sortColumns[q.sort]
	if !ok {
		return nil, aggregate.Invalid("sort", "one_of", "sort must be one of %s, %s, %s", SortCreatedAt, SortUpdatedAt, SortName)
	}
	q.byName = q.sort == SortName
	if q.order == "" {
		q.order = OrderAsc
	}
	if q.order != OrderAsc && q.order != OrderDesc {
		return nil, aggregate.Invalid("order", "one_of", "order must be %s or %s", OrderAsc, OrderDesc)
	}
	var err error
	if q.limit, err = pageLimit(f.Limit); err != nil {
		return nil, err
	}

	var a args
	var where []string
	digest := newFilterDigest(cursorTenants)
	digest.add("sort", q.sort, q.order)

	statuses, err := enumValues("status", f.Statuses, aggregate.Status.Valid)
	if err != nil {
		return nil, err
	}
	editions, err := enumValues("edition", f.Editions, aggregate.Edition.Valid)
	if err != nil {
		return nil, err
	}
	regions, err := enumValues("region", f.Regions, aggregate.Region.Valid)
	if err != nil {
		return nil, err
	}
	billing, err := enumValues("billing_status", f.BillingStatuses, aggregate.BillingStatus.Valid)
	if err != nil {
		return nil, err
	}
	for _, c := range []struct {
		field, column, enum string
		values              []string
	}{
		{"status", "status", "tenant_status", statuses},
		{"edition", "plan_tier", "plan_tier", editions},
		{"region", "region", "", regions},
		{"billing_status", "billing_status", "", billing},
	} {
		digest.add(c.field, c.values...)
		where = append(where, oneOf(c.column, c.enum, c.values, &a)...)
	}

	labelWhere, err := labelFilter(f.Labels, &a, digest)
	if err != nil {
		return nil, err
	}
	where = append(where, labelWhere...)

	prefixWhere, err := namePrefixFilter(f.NamePrefix, &a, digest)
	if err != nil {
		return nil, err
	}
	where = append(where, prefixWhere...)

	if err := checkTime("created_after", f.CreatedAfter); err != nil {
		return nil, err
	}
	if err := checkTime("created_before", f.CreatedBefore); err != nil {
		return nil, err
	}
	if f.CreatedAfter != nil && f.CreatedBefore != nil && !f.CreatedAfter.Before(*f.CreatedBefore) {
		return nil, aggregate.Invalid("created_after", "before_created_before", "created_after must be before created_before")
	}
	digest.add("created_after", microsOrEmpty(f.CreatedAfter))
	digest.add("created_before", microsOrEmpty(f.CreatedBefore))
	if f.CreatedAfter != nil {
		where = append(where, "created_at > "+a.add(*f.CreatedAfter))
	}
	if f.CreatedBefore != nil {
		where = append(where, "created_at < "+a.add(*f.CreatedBefore))
	}
	q.digest = digest.sum()

	if f.Cursor != "" {
		c, err := decodeCursor(f.Cursor, cursorTenants, q.sort, q.order, q.digest)
		if err != nil {
			return nil, err
		}
		seek, err := seekCondition(c, column, q.byName, q.order, &a)
		if err != nil {
			return nil, err
		}
		where = append(where, seek)
	}

	var b strings.Builder
	b.WriteString("SELECT id, state, " + column + " FROM tenants")
	if len(where) > 0 {
		b.WriteString(" WHERE " + strings.Join(where, " AND "))
	}
	// normalized_name is ordered with the operators of its text_pattern_ops
	// index (byte order), so the index serves both the prefix and the order.
	switch {
	case q.byName && q.order == OrderAsc:
		b.WriteString(" ORDER BY normalized_name USING ~<~, id ASC")
	case q.byName:
		b.WriteString(" ORDER BY normalized_name USING ~>~, id DESC")
	case q.order == OrderAsc:
		b.WriteString(" ORDER BY " + column + " ASC, id ASC")
	default:
		b.WriteString(" ORDER BY " + column + " DESC, id DESC")
	}
	// One row more than the page says whether another page follows.
	b.WriteString(" LIMIT " + a.add(q.limit+1))
	q.sql, q.args = b.String(), a
	return q, nil
}

// pageLimit applies the default and bounds of a page size.
func pageLimit(limit int) (int, error) {
	switch {
	case limit == 0:
		return DefaultLimit, nil
	case limit < 1 || limit > MaxLimit:
		return 0, aggregate.Invalid("limit", "range", "limit must be between 1 and %d", MaxLimit)
	}
	return limit, nil
}

// enumValues checks the values of a vocabulary filter and returns them sorted
// and de-duplicated, as strings for a text array parameter.
func enumValues[T ~string](field string, values []T, valid func(T) bool) ([]string, error) {
	out := make([]string, 0, len(values))
	for _, v := range values {
		if !valid(v) {
			return nil, aggregate.Invalid(field, "one_of", "unknown %s %q", field, string(v))
		}
		out = append(out, string(v))
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// oneOf writes "column is one of values". A single value is an equality, so
// the column's (column, created_at, id) index can also give the created_at
// order; several are "= ANY", read through an index and sorted. enum names
// the column's enum type; the values travel as text.
func oneOf(column, enum string, values []string, a *args) []string {
	cast := ""
	if enum != "" {
		cast = "::" + enum
	}
	switch len(values) {
	case 0:
		return nil
	case 1:
		return []string{column + " = " + a.add(values[0]) + "::text" + cast}
	}
	if cast != "" {
		cast += "[]"
	}
	return []string{column + " = ANY(" + a.add(values) + "::text[]" + cast + ")"}
}

// labelFilter writes the label conditions: one containment (labels @> {...})
// for the key-value pairs, which the jsonb_path_ops GIN index serves, and one
// key-existence test (labels ?& keys) for keys asked with "".
func labelFilter(labels map[string]string, a *args, digest *filterDigest) ([]string, error) {
	pairs := map[string]string{}
	var keys, flat []string
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		v := labels[k]
		if k == "" {
			return nil, aggregate.Invalid("label", "required", "a label filter needs a key")
		}
		if !isText(k) || !isText(v) {
			return nil, aggregate.Invalid("label", "utf8", "label filter %q must be valid UTF-8 without NUL characters", k)
		}
		flat = append(flat, k, v)
		if v == "" {
			keys = append(keys, k)
		} else {
			pairs[k] = v
		}
	}
	digest.add("labels", flat...)
	var where []string
	if len(pairs) > 0 {
		doc, err := json.Marshal(pairs)
		if err != nil {
			return nil, fmt.Errorf("list tenants: label filter: %w", err)
		}
		where = append(where, "labels @> "+a.add(string(doc))+"::jsonb")
	}
	if len(keys) > 0 {
		where = append(where, "labels ?& "+a.add(keys)+"::text[]")
	}
	return where, nil
}

// namePrefixFilter writes the name-prefix condition as the range
// prefix <= normalized_name < successor(prefix) in the operators of the
// text_pattern_ops index (byte order). It selects exactly the names that
// start with the prefix, with no wildcard to escape, and, unlike LIKE with a
// parameter, the index bounds the scan under a generic plan too (a prepared
// statement's plan after a few executions), and the planner estimates the
// range from the column's histogram.
func namePrefixFilter(prefix string, a *args, digest *filterDigest) ([]string, error) {
	if prefix != "" && !isText(prefix) {
		return nil, aggregate.Invalid("name_prefix", "utf8", "name_prefix must be valid UTF-8 without NUL characters")
	}
	if utf8.RuneCountInString(prefix) > aggregate.MaxNameLength {
		return nil, aggregate.Invalid("name_prefix", "max_length", "name_prefix must be at most %d characters", aggregate.MaxNameLength)
	}
	p := aggregate.NormalizeName(prefix)
	if p != "" {
		if last, _ := utf8.DecodeLastRuneInString(prefix); unicode.IsSpace(last) {
			p += " "
		}
	}
	digest.add("name_prefix", p)
	if p == "" {
		return nil, nil
	}
	where := []string{"normalized_name ~>=~ " + a.add(p)}
	if hi, ok := prefixSuccessor(p); ok {
		where = append(where, "normalized_name ~<~ "+a.add(hi))
	}
	// With no successor every string >= p starts with p.
	return where, nil
}

// prefixSuccessor returns the least string greater, in byte order, than every
// string that starts with p: p with its last code point incremented (UTF-8
// keeps code point order in byte order), dropping trailing code points that
// are already the largest. It reports false when there is none.
func prefixSuccessor(p string) (string, bool) {
	rs := []rune(p)
	for i := len(rs) - 1; i >= 0; i-- {
		next := rs[i] + 1
		if next >= 0xD800 && next <= 0xDFFF { // surrogates are not characters
			next = 0xE000
		}
		if next <= unicode.MaxRune {
			rs[i] = next
			return string(rs[:i+1]), true
		}
	}
	return "", false
}

// seekCondition is the keyset condition "after the cursor's row" in the
// page's order.
func seekCondition(c cursor, column string, byName bool, order string, a *args) (string, error) {
	id, err := uuid.Parse(c.ID)
	if err != nil {
		return "", malformedCursor()
	}
	if byName {
		if !isText(c.Key) {
			return "", malformedCursor()
		}
		k, i := a.add(c.Key), a.add(id)
		if order == OrderAsc {
			return fmt.Sprintf("normalized_name ~>=~ %s AND (normalized_name ~>~ %s OR id > %s)", k, k, i), nil
		}
		return fmt.Sprintf("normalized_name ~<=~ %s AND (normalized_name ~<~ %s OR id < %s)", k, k, i), nil
	}
	micros, err := strconv.ParseInt(c.Key, 10, 64)
	at := time.UnixMicro(micros).UTC()
	if err != nil || checkTime("cursor", &at) != nil {
		return "", malformedCursor()
	}
	cmp := ">"
	if order == OrderDesc {
		cmp = "<"
	}
	return fmt.Sprintf("(%s, id) %s (%s, %s)", column, cmp, a.add(at), a.add(id)), nil
}

// isText reports whether s can be a PostgreSQL text value: valid UTF-8
// without NUL.
func isText(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsRune(s, 0)
}

// checkTime refuses a time bound outside years 1 to 9999, which PostgreSQL
// could not take (or RFC 3339 write).
func checkTime(field string, t *time.Time) error {
	if t != nil && (t.Year() < 1 || t.Year() > 9999) {
		return aggregate.Invalid(field, "range", "%s must be between years 1 and 9999", field)
	}
	return nil
}

// microsOrEmpty is a bound's canonical form: microseconds since the epoch,
// PostgreSQL's precision.
func microsOrEmpty(t *time.Time) string {
	if t == nil {
		return ""
	}
	return strconv.FormatInt(t.UnixMicro(), 10)
}
