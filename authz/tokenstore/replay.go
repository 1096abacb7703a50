package tokenstore

import (
	"sync/atomic"
	"time"
)

// DefaultReplayWindow is the replay window when none is given: the default
// refresh token lifetime.
const DefaultReplayWindow = 720 * time.Hour

// replayWindow is how long a used code or rotated-out refresh token is
// remembered, changeable while the store is open (a reload that changes the
// refresh token lifetime keeps the store open).
type replayWindow struct{ d atomic.Int64 }

func newReplayWindow(d time.Duration) *replayWindow {
	w := &replayWindow{}
	w.set(d)
	return w
}

func (w *replayWindow) set(d time.Duration) {
	if d <= 0 {
		d = DefaultReplayWindow
	}
	w.d.Store(int64(d))
}

func (w *replayWindow) get() time.Duration { return time.Duration(w.d.Load()) }
