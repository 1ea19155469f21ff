package client

import (
	"context"
	"testing"
	"time"

	"github.com/sotto-voice/sotto/internal/testserver"
)

// BenchmarkWriteFrame measures publishing one frame on a live call: RTP
// packetizing, the interceptors, SRTP and the UDP write. Packetizing itself
// reuses its buffers; see allocs/op for the whole path.
func BenchmarkWriteFrame(b *testing.B) {
	for _, level := range []bool{false, true} {
		name := "plain"
		if level {
			name = "level"
		}
		b.Run(name, func(b *testing.B) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			srv := testserver.Start(b, nil)
			call, err := Join(ctx, srv.URL, srv.Token("bench", "alice"), &Options{IPFilter: loopback})
			if err != nil {
				b.Fatal(err)
			}
			defer call.Leave()
			frame := make([]byte, 120)
			lvl := AudioLevel{Level: 30, Voice: true}
			b.ReportAllocs()
			b.SetBytes(int64(len(frame)))
			for b.Loop() {
				if level {
					err = call.WriteFrameLevel(frame, 20*time.Millisecond, lvl)
				} else {
					err = call.WriteFrame(frame, 20*time.Millisecond)
				}
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
