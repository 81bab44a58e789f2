//go:build !race

package outbox

// raceBuild reports a test binary built with -race (see race_enabled_test.go).
const raceBuild = false
