package esdb

import (
	"fmt"
	"regexp"
	"strconv"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"

	"github.com/tenancyhq/tenancy/eventstore"
)

// AppendSize is how the server counts an append against its maximum
// append size: each event's data and metadata, and its type.
func AppendSize(events []esdb.EventData) int {
	n := 0
	for _, e := range events {
		n += len(e.Data) + len(e.Metadata) + len(e.EventType)
	}
	return n
}

// checkSize encodes events as Append would and refuses them when they are
// over Options.MaxAppendSize.
func (s *Store) checkSize(stream string, events []eventstore.EventData) error {
	data := make([]esdb.EventData, len(events))
	for i, e := range events {
		d, err := encodeEvent(e)
		if err != nil {
			return fmt.Errorf("commit to %s: %w", stream, err)
		}
		data[i] = d
	}
	if AppendSize(data) > s.opts.MaxAppendSize {
		return tooLarge(stream, events, data, s.opts.MaxAppendSize)
	}
	return nil
}

// tooLarge is the refusal of an append over limit, naming its largest
// event and that event's largest member.
func tooLarge(stream string, events []eventstore.EventData, data []esdb.EventData, limit int) error {
	largest := 0
	for i := range data {
		if AppendSize(data[i:i+1]) > AppendSize(data[largest:largest+1]) {
			largest = i
		}
	}
	return &eventstore.TooLargeError{Stream: stream, Size: AppendSize(data), Limit: limit,
		EventType: events[largest].Type, Field: eventstore.LargestField(events[largest].Data)}
}

// appendSizeExceeded is the server's refusal of an append over its maximum
// size (gRPC InvalidArgument with the exception trailer
// maximum-append-size-exceeded), which the client passes on unclassified.
var appendSizeExceeded = regexp.MustCompile(`Maximum Append Size of (\d+) Exceeded`)

// maxAppendSizeExceeded recognises that refusal and returns the server's limit.
func maxAppendSizeExceeded(err error) (int, bool) {
	if err == nil {
		return 0, false
	}
	m := appendSizeExceeded.FindStringSubmatch(err.Error())
	if m == nil {
		return 0, false
	}
	n, perr := strconv.Atoi(m[1])
	return n, perr == nil
}
