package redact_test

import (
	"fmt"
	"regexp"

	"github.com/outboxkit/outbox/redact"
)

// A Redactor with one extra sensitive name and one extra pattern.
func ExampleNew() {
	r, err := redact.New(redact.Rules{
		Keys:     []string{"national_id"},
		Patterns: []*regexp.Regexp{regexp.MustCompile(`acct_[0-9A-Za-z]+`)},
	})
	if err != nil {
		panic(err)
	}
	b, _ := r.JSON([]byte(`{"user":"bob","password":"hunter2","card":{"number":"4242 4242 4242 4242"},"national_id":"X1","ref":"acct_9f"}`))
	fmt.Println(string(b))
	fmt.Println(r.URL("https://api.example.com/v1/charges?api_key=sk_live_1&limit=10"))
	fmt.Println(r.String("retrying with Authorization: Bearer eyJhbGciOi"))
	// Output:
	// {"user":"bob","password":"[REDACTED]","card":{"number":"[REDACTED]"},"national_id":"[REDACTED]","ref":"[REDACTED]"}
	// https://api.example.com/v1/charges?api_key=[REDACTED]&limit=10
	// retrying with Authorization: [REDACTED]
}
