package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/cobra"

	"github.com/tenancyhq/tenancy/internal/auth"
)

// authSettings are the token settings, from the environment.
type authSettings struct {
	secret   string
	jwksURL  string
	issuer   string
	audience string
}

func authFromEnv() authSettings {
	return authSettings{secret: os.Getenv("JWT_SECRET"), jwksURL: os.Getenv("JWT_JWKS_URL"),
		issuer: os.Getenv("JWT_ISSUER"), audience: os.Getenv("JWT_AUDIENCE")}
}

// secretPath is where a development secret is kept when JWT_SECRET is unset.
func secretPath(o *options) string { return filepath.Join(o.dataDir, "jwt.secret") }

// adminTokenPath is where serve writes a ready admin token for development.
func adminTokenPath(o *options) string { return filepath.Join(o.dataDir, "admin.token") }

// verifier builds the API's token verifier. With neither JWT_SECRET nor
// JWT_JWKS_URL it generates a secret into the data folder and writes a ready
// admin token beside it, saying where.
func verifier(ctx context.Context, o *options, log *slog.Logger) (*auth.Verifier, error) {
	s := o.auth
	cfg := auth.Config{JWKSURL: s.jwksURL, Issuer: s.issuer, Audience: s.audience}
	switch {
	case s.secret != "":
		cfg.Secret = []byte(s.secret)
	case s.jwksURL == "":
		secret, created, err := auth.LoadOrCreateSecret(secretPath(o))
		if err != nil {
			return nil, fmt.Errorf("development JWT secret: %w", err)
		}
		cfg.Secret = secret
		tok, err := auth.Mint(secret, "admin", []string{auth.ScopeAdmin}, nil, 30*24*time.Hour, s.issuer, s.audience)
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(adminTokenPath(o), []byte(tok+"\n"), 0o600); err != nil {
			return nil, fmt.Errorf("write admin token: %w", err)
		}
		if created {
			log.Warn("no JWT_SECRET: generated a development secret; set JWT_SECRET or JWT_JWKS_URL in production", "secret_file", secretPath(o))
		}
		log.Info("a ready admin token (30 days) is in the data folder: send it as Authorization: Bearer", "token_file", adminTokenPath(o))
	}
	return auth.NewVerifier(ctx, cfg)
}

func newTokenCmd(o *options) *cobra.Command {
	var scopes []string
	var tenant, subject string
	var ttl time.Duration
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Mint a bearer token from the configured secret (development and scripts)",
		Long: `token prints a JWT signed with JWT_SECRET (or the development secret serve
generated in the data folder). Scopes: tenancy:read, tenancy:write,
tenancy:admin (each includes the ones before it). --tenant binds the token to
one tenant: it sees only that tenant and cannot create tenants or use admin
routes.`,
		Example: `  curl -H "Authorization: Bearer $(tenancy token --scope tenancy:read)" localhost:8000/api/v1/tenants`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if ttl <= 0 {
				return &exitError{code: 2, msg: fmt.Sprintf("--ttl %s: must be positive (a token valid for no time is expired when minted)", ttl)}
			}
			s := o.auth
			secret := []byte(s.secret)
			if s.secret == "" {
				b, err := os.ReadFile(secretPath(o))
				if err != nil {
					return fmt.Errorf("no JWT_SECRET and no development secret at %s (run tenancy serve once, or set JWT_SECRET): %w", secretPath(o), err)
				}
				secret = []byte(strings.TrimSpace(string(b)))
			}
			var bound *uuid.UUID
			if tenant != "" {
				id, err := uuid.Parse(tenant)
				if err != nil {
					return fmt.Errorf("--tenant %q: want a tenant id (UUID)", tenant)
				}
				bound = &id
			}
			tok, err := auth.Mint(secret, subject, scopes, bound, ttl, s.issuer, s.audience)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), tok)
			return nil
		},
	}
	cmd.Flags().StringSliceVar(&scopes, "scope", []string{auth.ScopeRead}, "scopes (repeat or comma-separate): tenancy:read, tenancy:write, tenancy:admin")
	cmd.Flags().StringVar(&tenant, "tenant", "", "bind the token to this tenant id")
	cmd.Flags().StringVar(&subject, "subject", "cli", "the token's sub: the actor recorded in events and audit logs")
	cmd.Flags().DurationVar(&ttl, "ttl", time.Hour, "how long the token is valid")
	return cmd
}
