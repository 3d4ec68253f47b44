package tenantlog

import (
	"context"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/google/uuid"

	"github.com/tenancyhq/tenancy/aggregate"
	"github.com/tenancyhq/tenancy/eventstore"
)

// sealedPrefix marks an encrypted field value inside an event's JSON.
const sealedPrefix = "enc:v1:"

// KeyStore is what Store needs of the key store.
type KeyStore interface {
	ForSeal(ctx context.Context, tenant uuid.UUID) (cipher.AEAD, error)
	ForOpen(ctx context.Context, tenant uuid.UUID) (cipher.AEAD, error)
	Destroy(ctx context.Context, tenant uuid.UUID) error
	ForCommit(ctx context.Context, tenant uuid.UUID, newStream bool) (cipher.AEAD, []byte, error)
	Adopt(tenant uuid.UUID, a cipher.AEAD)
	Forget(tenant uuid.UUID)
}

// Store is an eventstore.Store that encrypts the personal fields of tenant
// events on the way in and decrypts them on the way out; once a tenant's key
// is destroyed they read as aggregate.Redacted. Appending TenantPurged
// destroys the key.
type Store struct {
	inner eventstore.Store
	keys  KeyStore
	log   *slog.Logger
}

var _ eventstore.Store = (*Store)(nil)

// NewStore wraps inner.
func NewStore(inner eventstore.Store, keys KeyStore, logger *slog.Logger) *Store {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Store{inner: inner, keys: keys, log: logger}
}

// Inner is the wrapped store, whose events hold personal fields sealed (for
// the NATS publisher: subscribers get them only as the event holds them).
func (s *Store) Inner() eventstore.Store { return s.inner }

// Append implements eventstore.Appender.
func (s *Store) Append(ctx context.Context, stream string, expected eventstore.ExpectedVersion, events []eventstore.EventData) (eventstore.AppendResult, error) {
	tenant, isTenant := tenantOf(stream)
	purged := false
	if isTenant {
		sealed := make([]eventstore.EventData, len(events))
		for i, e := range events {
			data, err := s.transform(ctx, tenant, e.Type, e.Data, true)
			if err != nil {
				return eventstore.AppendResult{}, fmt.Errorf("append to %s: seal personal data: %w", stream, err)
			}
			e.Data = data
			sealed[i] = e
			purged = purged || e.Type == aggregate.TenantPurged{}.EventType()
		}
		events = sealed
	}
	res, err := s.inner.Append(ctx, stream, expected, events)
	if err == nil && purged {
		// The read-model projection destroys the key too, transactionally,
		// should this process die right here.
		if derr := s.keys.Destroy(context.WithoutCancel(ctx), tenant); derr != nil {
			s.log.ErrorContext(ctx, "destroy the purged tenant's key (the read-model projection will retry)", "tenant", tenant, "err", derr)
		}
	}
	return res, err
}

// KeepsSecrets implements eventstore.Committer; the keys this store makes
// are its own business, not its callers'.
func (s *Store) KeepsSecrets() bool { return false }

// Commit implements eventstore.Committer: the write's personal fields are
// sealed with the tenant's key. On a store that keeps secrets (Postgres) a
// new key is kept, and a purge destroys the key, in the write itself: one
// transaction. On others the key is made before the write in the key store
// (an orphaned key seals nothing and is harmless) and destroyed after it.
func (s *Store) Commit(ctx context.Context, w eventstore.Write) (eventstore.AppendResult, error) {
	tenant, isTenant := tenantOf(w.Stream)
	if !isTenant {
		return s.inner.Commit(ctx, w)
	}
	inWrite := s.inner.KeepsSecrets()
	var (
		made   cipher.AEAD // a key ForCommit made for this write
		purged bool
	)
	key := func(ctx context.Context, tenant uuid.UUID) (cipher.AEAD, error) {
		if !inWrite {
			return s.keys.ForSeal(ctx, tenant)
		}
		if made != nil {
			return made, nil
		}
		a, wrapped, err := s.keys.ForCommit(ctx, tenant, w.Expected == eventstore.NoStream)
		if err == nil && wrapped != nil {
			made = a
			w.Secrets = append(w.Secrets, eventstore.Secret{Owner: tenant, Key: wrapped})
		}
		return a, err
	}
	sealed := make([]eventstore.EventData, len(w.Events))
	for i, e := range w.Events {
		data, err := s.transformWith(ctx, tenant, e.Type, e.Data, true, key)
		if err != nil {
			return eventstore.AppendResult{}, fmt.Errorf("commit to %s: seal personal data: %w", w.Stream, err)
		}
		e.Data = data
		sealed[i] = e
		purged = purged || e.Type == aggregate.TenantPurged{}.EventType()
	}
	w.Events = sealed
	if purged && inWrite {
		w.Secrets = append(w.Secrets, eventstore.Secret{Owner: tenant, Destroy: true})
	}
	res, err := s.inner.Commit(ctx, w)
	if err != nil {
		return res, err
	}
	switch {
	case purged && inWrite:
		s.keys.Forget(tenant)
	case purged:
		if derr := s.keys.Destroy(context.WithoutCancel(ctx), tenant); derr != nil {
			s.log.ErrorContext(ctx, "destroy the purged tenant's key (the read-model projection will retry)", "tenant", tenant, "err", derr)
		}
	case made != nil:
		s.keys.Adopt(tenant, made)
	}
	return res, nil
}

// ClaimHolder implements eventstore.ClaimReader.
func (s *Store) ClaimHolder(ctx context.Context, kind, value string) (string, error) {
	return s.inner.ClaimHolder(ctx, kind, value)
}

// Locate implements eventstore.Locator.
func (s *Store) Locate(ctx context.Context, id uuid.UUID) (string, uint64, error) {
	return s.inner.Locate(ctx, id)
}

// ReadStream implements eventstore.StreamReader.
func (s *Store) ReadStream(ctx context.Context, stream string, d eventstore.Direction, from int64, limit int) ([]eventstore.RecordedEvent, error) {
	evs, err := s.inner.ReadStream(ctx, stream, d, from, limit)
	if err != nil {
		return nil, err
	}
	return s.openAll(ctx, evs)
}

// ReadAll implements eventstore.FeedReader.
func (s *Store) ReadAll(ctx context.Context, after eventstore.Position, f eventstore.Filter, limit int) ([]eventstore.RecordedEvent, error) {
	evs, err := s.inner.ReadAll(ctx, after, f, limit)
	if err != nil {
		return nil, err
	}
	return s.openAll(ctx, evs)
}

// Head implements eventstore.FeedReader.
func (s *Store) Head(ctx context.Context) (eventstore.Position, error) { return s.inner.Head(ctx) }

// Identity implements eventstore.Identifier: the wrapped store's identity
// (opening personal fields does not make another history).
func (s *Store) Identity(ctx context.Context) (eventstore.Identity, error) {
	idf, ok := s.inner.(eventstore.Identifier)
	if !ok {
		return eventstore.Identity{}, fmt.Errorf("event store %T has no identity", s.inner)
	}
	return idf.Identity(ctx)
}

// CountAfter passes through to the inner store (eventstore.CountAfter).
func (s *Store) CountAfter(ctx context.Context, after eventstore.Position, f eventstore.Filter) (int64, error) {
	return eventstore.CountAfter(ctx, s.inner, after, f)
}

// SubscribeAll implements eventstore.Subscriber.
func (s *Store) SubscribeAll(ctx context.Context, after eventstore.Position, f eventstore.Filter) (eventstore.Subscription, error) {
	sub, err := s.inner.SubscribeAll(ctx, after, f)
	if err != nil {
		return nil, err
	}
	return &subscription{inner: sub, s: s}, nil
}

type subscription struct {
	inner eventstore.Subscription
	s     *Store
}

func (sub *subscription) Next(ctx context.Context) ([]eventstore.RecordedEvent, error) {
	evs, err := sub.inner.Next(ctx)
	if err != nil {
		return nil, err
	}
	return sub.s.openAll(ctx, evs)
}

func (sub *subscription) Close() error { return sub.inner.Close() }

func (s *Store) openAll(ctx context.Context, evs []eventstore.RecordedEvent) ([]eventstore.RecordedEvent, error) {
	out := evs
	copied := false
	for i, e := range evs {
		tenant, ok := tenantOf(e.Stream)
		if !ok || !aggregate.HasPersonalFields(e.Type) {
			continue
		}
		data, err := s.transform(ctx, tenant, e.Type, e.Data, false)
		if err != nil {
			return nil, fmt.Errorf("%s@%d: open personal data: %w", e.Stream, e.Version, err)
		}
		if !copied {
			out = append([]eventstore.RecordedEvent(nil), evs...)
			copied = true
		}
		out[i].Data = data
	}
	return out, nil
}

func tenantOf(stream string) (uuid.UUID, bool) {
	rest, ok := strings.CutPrefix(stream, aggregate.StreamPrefix)
	if !ok {
		return uuid.Nil, false
	}
	id, err := uuid.Parse(rest)
	return id, err == nil
}

// transform seals (sealing) or opens every personal field of the event's
// JSON. The tenant's key is fetched only if a field needs it; sealing
// creates it, opening never does.
func (s *Store) transform(ctx context.Context, tenant uuid.UUID, eventType string, data []byte, sealing bool) ([]byte, error) {
	get := s.keys.ForOpen
	if sealing {
		get = s.keys.ForSeal
	}
	return s.transformWith(ctx, tenant, eventType, data, sealing, get)
}

// transformWith is transform with the key fetched by get.
func (s *Store) transformWith(ctx context.Context, tenant uuid.UUID, eventType string, data []byte, sealing bool, get func(context.Context, uuid.UUID) (cipher.AEAD, error)) ([]byte, error) {
	paths := aggregate.PersonalFields(eventType)
	if len(paths) == 0 {
		return data, nil
	}
	var doc any
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, err
	}
	var aead cipher.AEAD
	var keyErr error
	fetched := false
	key := func() (cipher.AEAD, error) {
		if !fetched {
			fetched = true
			aead, keyErr = get(ctx, tenant)
		}
		return aead, keyErr
	}
	fn := open
	if sealing {
		fn = seal
	}
	changed := false
	for _, p := range paths {
		var err error
		doc, err = walk(doc, strings.Split(p, "."), p, func(path, v string) (string, error) {
			nv, err := fn(tenant, path, v, key)
			changed = changed || nv != v
			return nv, err
		})
		if err != nil {
			return nil, err
		}
	}
	if !changed {
		return data, nil
	}
	return json.Marshal(doc)
}

// walk visits the string values at a path like "contacts[].email".
func walk(node any, parts []string, path string, fn func(path, v string) (string, error)) (any, error) {
	if len(parts) == 0 {
		v, ok := node.(string)
		if !ok || v == "" {
			return node, nil
		}
		return fn(path, v)
	}
	name, isList := strings.CutSuffix(parts[0], "[]")
	obj, ok := node.(map[string]any)
	if !ok {
		return node, nil
	}
	child, ok := obj[name]
	if !ok {
		return node, nil
	}
	if isList {
		list, ok := child.([]any)
		if !ok {
			return node, nil
		}
		for i := range list {
			nv, err := walk(list[i], parts[1:], path, fn)
			if err != nil {
				return nil, err
			}
			list[i] = nv
		}
		return node, nil
	}
	nv, err := walk(child, parts[1:], path, fn)
	if err != nil {
		return nil, err
	}
	obj[name] = nv
	return node, nil
}

func seal(tenant uuid.UUID, path, v string, key func() (cipher.AEAD, error)) (string, error) {
	if strings.HasPrefix(v, sealedPrefix) || v == aggregate.Redacted {
		return v, nil
	}
	aead, err := key()
	if err != nil {
		return "", err
	}
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	ct := aead.Seal(nonce, nonce, []byte(v), aad(tenant, path))
	return sealedPrefix + base64.RawStdEncoding.EncodeToString(ct), nil
}

func open(tenant uuid.UUID, path, v string, key func() (cipher.AEAD, error)) (string, error) {
	enc, ok := strings.CutPrefix(v, sealedPrefix)
	if !ok {
		return v, nil
	}
	aead, err := key()
	if errors.Is(err, ErrKeyDestroyed) {
		return aggregate.Redacted, nil
	}
	if err != nil {
		return "", err
	}
	raw, err := base64.RawStdEncoding.DecodeString(enc)
	if err != nil || len(raw) < aead.NonceSize() {
		return "", fmt.Errorf("field %s: malformed ciphertext", path)
	}
	pt, err := aead.Open(nil, raw[:aead.NonceSize()], raw[aead.NonceSize():], aad(tenant, path))
	if err != nil {
		return "", fmt.Errorf("field %s: %w", path, err)
	}
	return string(pt), nil
}

// aad binds a ciphertext to its tenant and field, so it cannot be moved.
func aad(tenant uuid.UUID, path string) []byte { return append(tenant[:], path...) }
