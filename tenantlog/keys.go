package tenantlog

// Crypto-shredding (GDPR erasure). Personal fields of tenant events (those
// the aggregate tags `personal:"true"`) are encrypted with a per-tenant data
// key before they reach the event store, and decrypted when read. Purging a
// tenant destroys its key: every copy of its events, backups included, then
// holds only ciphertext, and reads show the fields as aggregate.Redacted.
// Keys live in Postgres (table tenant_keys), wrapped with a master key.

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ErrKeyDestroyed: the tenant was purged; its personal data is gone.
var ErrKeyDestroyed = errors.New("tenant data key destroyed")

// MasterKey wraps and unwraps the tenants' data keys (AES-256-GCM).
type MasterKey struct{ aead cipher.AEAD }

// ParseMasterKey reads a base64-encoded 32-byte key (TENANCY_MASTER_KEY).
func ParseMasterKey(b64 string) (*MasterKey, error) {
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(b64))
	if err != nil {
		return nil, fmt.Errorf("master key: not base64: %w", err)
	}
	if len(raw) != 32 {
		return nil, fmt.Errorf("master key: %d bytes, want 32 (generate one with: head -c 32 /dev/urandom | base64)", len(raw))
	}
	return newMasterKey(raw)
}

func newMasterKey(raw []byte) (*MasterKey, error) {
	block, err := aes.NewCipher(raw)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &MasterKey{aead: aead}, nil
}

// LoadOrCreateMasterKey reads the master key file at path, or creates one
// (mode 0600) for development. It reports whether it created it.
func LoadOrCreateMasterKey(path string) (*MasterKey, bool, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		k, err := ParseMasterKey(string(b))
		return k, false, err
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, false, fmt.Errorf("master key: %w", err)
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return nil, false, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, false, fmt.Errorf("master key: %w", err)
	}
	if err := os.WriteFile(path, []byte(base64.StdEncoding.EncodeToString(raw)+"\n"), 0o600); err != nil {
		return nil, false, fmt.Errorf("master key: %w", err)
	}
	k, err := newMasterKey(raw)
	return k, true, err
}

func (m *MasterKey) wrap(key []byte, tenant uuid.UUID) []byte {
	nonce := make([]byte, m.aead.NonceSize())
	_, _ = rand.Read(nonce)
	return m.aead.Seal(nonce, nonce, key, tenant[:])
}

func (m *MasterKey) unwrap(wrapped []byte, tenant uuid.UUID) ([]byte, error) {
	n := m.aead.NonceSize()
	if len(wrapped) < n {
		return nil, errors.New("wrapped key too short")
	}
	return m.aead.Open(nil, wrapped[:n], wrapped[n:], tenant[:])
}

// Keys keeps the tenants' data keys in Postgres, with a short in-memory cache.
type Keys struct {
	pool   *pgxpool.Pool
	master *MasterKey
	ttl    time.Duration

	mu    sync.Mutex
	cache map[uuid.UUID]cachedKey
}

type cachedKey struct {
	aead    cipher.AEAD // nil: destroyed
	expires time.Time
}

// NewKeys returns the key store. Unwrapped keys are cached for ttl (default
// 30 s): after a purge, another replica may decrypt for at most that long.
func NewKeys(pool *pgxpool.Pool, master *MasterKey, ttl time.Duration) *Keys {
	if ttl <= 0 {
		ttl = 30 * time.Second
	}
	return &Keys{pool: pool, master: master, ttl: ttl, cache: map[uuid.UUID]cachedKey{}}
}

// ForSeal returns the tenant's key, creating it on first use.
func (k *Keys) ForSeal(ctx context.Context, tenant uuid.UUID) (cipher.AEAD, error) {
	if a, ok, err := k.cached(tenant); ok {
		return a, err
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return nil, err
	}
	// Insert if absent; either way read back the key that won.
	var wrapped []byte
	err := k.pool.QueryRow(ctx, `WITH ins AS (
			INSERT INTO tenant_keys (tenant_id, wrapped_key) VALUES ($1, $2) ON CONFLICT (tenant_id) DO NOTHING RETURNING wrapped_key)
		SELECT wrapped_key FROM ins UNION ALL SELECT wrapped_key FROM tenant_keys WHERE tenant_id = $1 LIMIT 1`,
		tenant, k.master.wrap(raw, tenant)).Scan(&wrapped)
	if err != nil {
		return nil, fmt.Errorf("tenant key %s: %w", tenant, err)
	}
	return k.remember(tenant, wrapped)
}

// ForOpen returns the tenant's key, or ErrKeyDestroyed when it has none.
func (k *Keys) ForOpen(ctx context.Context, tenant uuid.UUID) (cipher.AEAD, error) {
	if a, ok, err := k.cached(tenant); ok {
		return a, err
	}
	var wrapped []byte
	err := k.pool.QueryRow(ctx, `SELECT wrapped_key FROM tenant_keys WHERE tenant_id = $1`, tenant).Scan(&wrapped)
	if errors.Is(err, pgx.ErrNoRows) {
		k.store(tenant, nil)
		return nil, ErrKeyDestroyed
	}
	if err != nil {
		return nil, fmt.Errorf("tenant key %s: %w", tenant, err)
	}
	return k.remember(tenant, wrapped)
}

// Destroy deletes the tenant's key for ever. Safe to call more than once.
func (k *Keys) Destroy(ctx context.Context, tenant uuid.UUID) error {
	if _, err := k.pool.Exec(ctx, `DELETE FROM tenant_keys WHERE tenant_id = $1`, tenant); err != nil {
		return fmt.Errorf("destroy key of %s: %w", tenant, err)
	}
	k.store(tenant, nil)
	return nil
}

func (k *Keys) remember(tenant uuid.UUID, wrapped []byte) (cipher.AEAD, error) {
	raw, err := k.master.unwrap(wrapped, tenant)
	if err != nil {
		return nil, fmt.Errorf("tenant key %s: unwrap (wrong TENANCY_MASTER_KEY?): %w", tenant, err)
	}
	block, err := aes.NewCipher(raw)
	if err != nil {
		return nil, err
	}
	a, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	k.store(tenant, a)
	return a, nil
}

func (k *Keys) cached(tenant uuid.UUID) (cipher.AEAD, bool, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	c, ok := k.cache[tenant]
	if !ok || time.Now().After(c.expires) {
		return nil, false, nil
	}
	if c.aead == nil {
		return nil, true, ErrKeyDestroyed
	}
	return c.aead, true, nil
}

func (k *Keys) store(tenant uuid.UUID, a cipher.AEAD) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.cache) > 100_000 {
		clear(k.cache)
	}
	k.cache[tenant] = cachedKey{aead: a, expires: time.Now().Add(k.ttl)}
}

// ForCommit returns the tenant's key for sealing a write on a store that
// keeps keys in the write's own transaction (eventstore.Committer
// KeepsSecrets). When the tenant has no key yet it makes one, and returns
// it wrapped as well: the write keeps it (eventstore.Write.Secrets), and
// Adopt caches it once the write has committed, so a key never exists
// without the events it seals, nor those events without it. newStream
// says the write starts the tenant's stream: no key can exist then, and
// none is looked up.
func (k *Keys) ForCommit(ctx context.Context, tenant uuid.UUID, newStream bool) (aead cipher.AEAD, wrapped []byte, err error) {
	if a, ok, err := k.cached(tenant); ok {
		return a, nil, err
	}
	if !newStream {
		var stored []byte
		err := k.pool.QueryRow(ctx, `SELECT wrapped_key FROM tenant_keys WHERE tenant_id = $1`, tenant).Scan(&stored)
		if err == nil {
			a, err := k.remember(tenant, stored)
			return a, nil, err
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return nil, nil, fmt.Errorf("tenant key %s: %w", tenant, err)
		}
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return nil, nil, err
	}
	block, err := aes.NewCipher(raw)
	if err != nil {
		return nil, nil, err
	}
	a, err := cipher.NewGCM(block)
	if err != nil {
		return nil, nil, err
	}
	return a, k.master.wrap(raw, tenant), nil
}

// Adopt caches a key ForCommit made, once the write that kept it committed.
func (k *Keys) Adopt(tenant uuid.UUID, a cipher.AEAD) { k.store(tenant, a) }

// Forget marks the tenant's key destroyed in the cache, once a write that
// destroyed it committed.
func (k *Keys) Forget(tenant uuid.UUID) { k.store(tenant, nil) }
