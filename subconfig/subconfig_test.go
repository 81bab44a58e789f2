package subconfig

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

// FuzzParseSubscriptionConfig checks that ParseSubscriptionConfig never
// panics, reports errors as *ValidationError, and that whatever it accepts
// survives a round trip through the JSON the library stores.
func FuzzParse(f *testing.F) {
	for _, s := range []string{``, `null`, `{}`, `{"max_retries":3}`, `{"max_retries":-1}`, `{"max_retries":1001}`,
		`{"backoff_initial":"1s","backoff_max":"1m","backoff_multiplier":2}`, `{"backoff_initial":"2m","backoff_max":"1m"}`,
		`{"retry_schedule":["1s","5s","1m"]}`, `{"timeout":1000000000}`, `{"timeout":"-1s"}`, `{"unknown":1}`,
		`{"headers":{"X-A":"b"}}`, `{"headers":{"bad name":"b"}}`, `{"headers":{"X":"a\r\nb"}}`,
		`{"secrets":["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]}`, `{"secrets":["nope"]}`, `{} {}`, `[]`,
		`{"backoff_multiplier":1e999}`, `{"skip_failed":true}`, `{"secret_headers":["X-A"],"headers":{"X-A":"b"}}`,
		`{"encrypted":{"kid":"k1","dek":"AAAA","secrets":["AAAA"],"headers":{"Authorization":"AAAA"}}}`,
		`{"encrypted":{"kid":"k1","dek":"AAAA","secrets":[],"headers":{}}}`, `{"encrypted":{"kid":"","dek":"AAAA"}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v is not an ErrInvalid *FieldError", err)
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("accepted config fails validate: %v", err)
		}
		stored, err := json.Marshal(c)
		if err != nil {
			t.Fatalf("accepted config does not marshal: %v", err)
		}
		back, err := Parse(stored)
		if err != nil {
			t.Fatalf("stored form %s does not parse back: %v", stored, err)
		}
		if !reflect.DeepEqual(normalizeConfig(c), normalizeConfig(back)) {
			t.Fatalf("round trip changed the config: %+v -> %s -> %+v", c, stored, back)
		}
	})
}

// normalizeConfig maps empty slices and maps to nil: omitempty drops them.
func normalizeConfig(c Config) Config {
	if len(c.RetrySchedule) == 0 {
		c.RetrySchedule = nil
	}
	if len(c.Secrets) == 0 {
		c.Secrets = nil
	}
	if len(c.Headers) == 0 {
		c.Headers = nil
	}
	if len(c.SecretHeaders) == 0 {
		c.SecretHeaders = nil
	}
	if e := c.Encrypted; e != nil {
		e2 := *e
		if len(e2.Secrets) == 0 {
			e2.Secrets = nil
		}
		if len(e2.Headers) == 0 {
			e2.Headers = nil
		}
		c.Encrypted = &e2
	}
	return c
}

func TestParse(t *testing.T) {
	t.Parallel()
	c, err := Parse([]byte(`{"max_retries": 4, "backoff_initial": "250ms", "timeout": 2000000000, "headers": {"X-A": "b"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if *c.MaxRetries != 4 || time.Duration(c.BackoffInitial) != 250*time.Millisecond || time.Duration(c.Timeout) != 2*time.Second {
		t.Fatalf("parsed = %+v", c)
	}
	_, err = Parse([]byte(`{"max_retries": 4, "retries": 5}`))
	var fe *FieldError
	if !errors.As(err, &fe) || !strings.Contains(err.Error(), `"retries"`) || !errors.Is(err, ErrInvalid) {
		t.Fatalf("unknown key: %v", err)
	}
	for _, bad := range []string{`{"backoff_initial": "soon"}`, `{"backoff_multiplier": 0.5}`, `[1]`, `{"max_retries": 1} {}`} {
		if _, err := Parse([]byte(bad)); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: err = %v", bad, err)
		}
	}
	if c, err := Parse(nil); err != nil || c.MaxRetries != nil {
		t.Fatalf("empty config: %+v %v", c, err)
	}
}

// TestSecretHeaderAndStoredForm: which headers are secret, and the stored
// sealed form parses and validates.
func TestSecretHeaderAndStoredForm(t *testing.T) {
	t.Parallel()
	for name, want := range map[string]bool{
		"Authorization": true, "proxy-authorization": true, "X-Api-Key": true, "Api-Key": true, "X-Auth-Token": true,
		"Cookie": true, "X-Client-Secret": true, "X-Signature": true, "X-Tenant": false, "Accept": false, "X-Request-Id": false,
	} {
		if got := SecretHeader(name, nil); got != want {
			t.Errorf("SecretHeader(%q) = %v", name, got)
		}
	}
	if !SecretHeader("X-Tenant", []string{"x-tenant"}) {
		t.Error("SecretHeaders does not mark a header secret")
	}
	// The stored form parses and validates; a bad one is refused.
	if _, err := Parse([]byte(`{"encrypted":{"kid":"k","dek":"AAAA","secrets":["AAAA"],"headers":{"Authorization":"AAAA"}},"secret_headers":["X-A"]}`)); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{`{"encrypted":{"kid":"","dek":"AAAA"}}`, `{"encrypted":{"kid":"k","dek":"!"}}`,
		`{"encrypted":{"kid":"k","dek":"AAAA","secrets":["?"]}}`, `{"secret_headers":["bad name"]}`} {
		if _, err := Parse([]byte(bad)); !errors.Is(err, ErrInvalid) {
			t.Errorf("Parse(%s) = %v", bad, err)
		}
	}
}
