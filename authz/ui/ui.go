// Package ui holds the login, consent and error pages, embedded in the binary.
package ui

import "embed"

// FS holds the page templates.
//
//go:embed *.html
var FS embed.FS
