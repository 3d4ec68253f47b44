package sdk

import "github.com/google/uuid"

// Drop modes for LoseEvents.
const (
	KeepMessage = keepMessage
	DropEvent   = dropEvent
	DropMessage = dropMessage
)

// LoseEvents makes c lose the messages f chooses: DropEvent loses an event
// but not its place in the stream (a version gap of its tenant),
// DropMessage loses the message as the stream would (a sequence gap).
func LoseEvents(c *Cache, f func(tenant uuid.UUID, version uint64) dropMode) {
	c.testDrop.Store(&f)
}

// DropModeForTest is what LoseEvents' function answers.
type DropModeForTest = dropMode
