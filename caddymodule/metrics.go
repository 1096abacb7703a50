package caddymodule

import (
	"fmt"

	"github.com/caddyserver/caddy/v2"

	"github.com/oauth2gate/oauth2gate/authz/metrics"
)

// registerMetrics puts oauth2gate's collectors in the registry of the
// config being loaded (Caddy makes one per config): they appear at the admin
// endpoint's /metrics and through the `metrics` handler beside Caddy's own.
// The collectors are process-wide, so counts go on across reloads, and a
// registry that has them already is left alone (no duplicate-registration
// panic on a reload or a second provisioning).
func registerMetrics(ctx caddy.Context) error {
	reg := ctx.GetMetricsRegistry()
	if reg == nil {
		return nil
	}
	if err := metrics.Default.Register(reg); err != nil {
		return fmt.Errorf("oauth2: registering metrics: %v", err)
	}
	return nil
}
