package outbox

import (
	"testing"

	"github.com/outboxkit/outbox/subconfig"
)

// TestMigrateSealsClearSecrets: the first start with a key seals the
// secrets written in clear before it, without a separate rotation call,
// and a second Migrate finds nothing left to seal.
func TestMigrateSealsClearSecrets(t *testing.T) {
	t.Parallel()
	b := setup(t, &Config{AllowPlaintextSecrets: true})
	ctx := ctxT(t)
	secret := newSecret(t)
	b.subscribeWebhook(t, "legacy", "order.*", "http://127.0.0.1:1/legacy", subconfig.Config{
		Secrets: []string{secret}, Headers: map[string]string{"Authorization": "Bearer legacy-token", "X-Tenant": "acme"}})
	if got := b.storedConfig(t, "legacy"); got["secrets"] == nil {
		t.Fatalf("plaintext opt-in did not store in clear: %v", got)
	}

	withKey, err := New(b.db, Config{Schema: b.schema, Keys: mustKeys(t, newTestKey(t, "k1")), WebhookAllowedNetworks: loopbackNetworks})
	if err != nil {
		t.Fatal(err)
	}
	if err := withKey.Migrate(ctx); err != nil {
		t.Fatalf("Migrate with a key: %v", err)
	}
	kb := &bundle{db: b.db, ob: withKey, schema: b.schema}
	kb.assertNowhere(t, append(secretForms(t, secret), "legacy-token"))
	sec, err := withKey.GetSubscriptionSecrets(ctx, "legacy")
	if err != nil || len(sec.Secrets) != 1 || sec.Secrets[0] != secret || sec.Headers["Authorization"] != "Bearer legacy-token" {
		t.Fatalf("sealed secrets do not read back: %+v, %v", sec, err)
	}
	if got := kb.storedConfig(t, "legacy"); got["headers"] == nil {
		t.Fatalf("the non-secret header was lost: %v", got)
	}
	res, err := withKey.reseal(ctx, true)
	if err != nil || res.Sealed != 0 || res.Rotated != 0 || res.Current != 1 {
		t.Fatalf("second pass = %+v, %v; want nothing left to seal", res, err)
	}
}
