package auth

import "time"

// SetClock makes v read the time from now (tests).
func SetClock(v *Verifier, now func() time.Time) { v.now = now }
