package tokenstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strings"
	"time"

	"go.uber.org/zap"
)

const ackWait = 250 * time.Millisecond

// expectAcks prepares a revocation about to be published: the nonce goes into
// the message, and wait(ctx, told) blocks until the told subscribers (every
// watching instance, this one included) have acknowledged it, or ackWait has
// passed. Without a live subscription of its own the store cannot hear acks
// and does not wait.
func (s *RedisStore) expectAcks() (string, func(context.Context, int64)) {
	if s.listening.Load() == 0 {
		return "-", func(context.Context, int64) {}
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	nonce := "#" + hex.EncodeToString(b[:])
	w := &ackWaiter{done: make(chan struct{})}
	s.ackMu.Lock()
	s.acks[nonce] = w
	s.ackMu.Unlock()
	return nonce, func(ctx context.Context, told int64) {
		defer func() {
			s.ackMu.Lock()
			delete(s.acks, nonce)
			s.ackMu.Unlock()
		}()
		if told <= 0 {
			return
		}
		s.ackMu.Lock()
		w.need = told
		ready := w.got >= told
		s.ackMu.Unlock()
		if ready {
			return
		}
		t := time.NewTimer(ackWait)
		defer t.Stop()
		select {
		case <-w.done:
		case <-ctx.Done():
		case <-t.C:
			s.logger.Warn("redis store: not every instance acknowledged a revocation in time; their caches drop the token within cache ttl",
				zap.Int64("subscribers", told), zap.Duration("waited", ackWait))
		}
	}
}

func (s *RedisStore) ackArrived(nonce string) {
	s.ackMu.Lock()
	if w, ok := s.acks[nonce]; ok {
		w.got++
		if w.need > 0 && w.got == w.need {
			close(w.done)
		}
	}
	s.ackMu.Unlock()
}

// parseRevoked reads a revocation message: access hashes, space-separated
// (fields that are not hashes, such as the ack nonce, are skipped).
func parseRevoked(msg string) Revoked {
	var rev Revoked
	for _, f := range strings.Fields(msg) {
		if h, ok := parseHash(f); ok {
			rev.Access = append(rev.Access, h)
		}
	}
	return rev
}
