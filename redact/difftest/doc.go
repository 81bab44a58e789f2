// Package difftest runs outboxkit's redaction beside gitleaks, a secret
// scanner it did not write, over the same generated inputs, and reports
// every value gitleaks flags that the redaction stores. It is a module of
// its own so that the core module's go.mod and go.sum never gain gitleaks
// and its dependencies. docs/redaction.md lists the accepted exceptions.
package difftest
