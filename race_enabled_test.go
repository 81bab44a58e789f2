//go:build race

package outbox

// raceBuild reports a test binary built with -race: the previous release's
// worker is built with it too, so that its dependencies come from the
// build cache the test binary filled.
const raceBuild = true
