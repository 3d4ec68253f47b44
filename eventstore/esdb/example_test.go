package esdb_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/tenancyhq/tenancy/eventstore/esdb"
)

// New needs only the connection string; it connects on first use.
func ExampleNew() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	s, err := esdb.New(context.Background(), "esdb://127.0.0.1:2113?tls=false", esdb.Options{Logger: log, BatchSize: 2000})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.Close()
	// s is an eventstore.Store: commands append and read streams with it,
	// projection runners read and follow its feed.
}
