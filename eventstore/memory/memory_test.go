package memory_test

import (
	"testing"

	"github.com/tenancyhq/tenancy/eventstore"
	"github.com/tenancyhq/tenancy/eventstore/eventstoretest"
	"github.com/tenancyhq/tenancy/eventstore/memory"
)

func TestConformance(t *testing.T) {
	eventstoretest.Run(t, func(t *testing.T) eventstore.Store { return memory.New() })
	eventstoretest.RunAtomicCommit(t, func(t *testing.T) eventstore.Store { return memory.New() })
}
