package jsontext

import "testing"

func TestHasControl(t *testing.T) {
	t.Parallel()
	for s, want := range map[string]bool{
		"": false, "orders-mailer": false, "é ü 日本": false, "a b": false,
		"a\tb": true, "a\nb": true, "a\x00b": true, "a\x7fb": true, "a\u0085b": true, "a\u009fb": true,
	} {
		if got := HasControl(s); got != want {
			t.Errorf("HasControl(%q) = %v, want %v", s, got, want)
		}
	}
}
