package redact

import (
	"strings"
	"testing"
)

// shapeExamples tests each secret shape with the example of the gitleaks
// rule it follows (gitleaks v8.30.1, cmd/generate/config/rules/*.go: the
// literal true positives of each rule, typed in here as facts), or, where
// the rule gives none, with a token built from the rule's regular
// expression (config/gitleaks.toml). The tokens are published test values,
// not credentials.
var shapeExamples = []struct {
	rule, token string
	built       bool // built from the regular expression: the rule gives no literal example
}{
	// Payment.
	{"stripe-access-token", "sk_test_51OuEMLAlTWGaDypq4P5cuDHbuKeG4tAGPYHJpEXQ7zE8mKK3jkhTFPvCxnSSK5zB5EQZrJsYdsatNmAHGgb0vSKD00GTMSWRHs", false},
	{"stripe-access-token", "rk_prod_51OuEMLAlTWGaDypquDn9aZigaJOsa9NR1w1BxZXs9JlYsVVkv5XDu6aLmAxwt5Tgun5WcSwQMKzQyqV16c9iD4sx00BRijuoon", false},
	{"square-access-token", "EAAAlsBxkkVgvmr7FasTFbM6VUGZ31EJ4jZKTJZySgElBDJ_wyafHuBFquFexY7E", false},
	{"square-access-token", "sq0atp-812erere3wewew45678901", false},
	{"square-secret", "sq0csp-0p9h7g6f4s3s3s3-4a3ardgwa6ADRDJDDKUFYDYDYDY", false},
	{"shippo-api-token", "shippo_live_" + strings.Repeat("0a1b2c3d4e", 4), true},
	{"flutterwave-secret-key", "FLWSECK_TEST-" + strings.Repeat("a1b2c3d4", 4) + "-X", true},
	{"duffel-api-token", "duffel_test_" + strings.Repeat("Ab3dE_f9h-K", 4), true},
	{"easypost-api-token", "EZAK" + strings.Repeat("a1B2c3D4e5", 6)[:54], true},
	{"plaid-api-token", "access-production-3fa85f64-5717-4562-b3fc-2c963f66afa6", true},
	// Cloud.
	{"aws-access-token", "AKIALALEMEL33243OLIB", false},
	{"aws-amazon-bedrock-api-key-long-lived", "ABSK" + strings.Repeat("QmVkcm9ja0FQSUtleS", 7), true},
	{"gcp-api-key", "AIzaSyAnLA7NfeLquW1tJFpx_eQCxoX-oo6YyIs", false},
	{"azure-ad-client-secret", "bP88Q~rcBcYjzzOhg1Hnn76Wm3jGgakZiZ.8vMgR", false},
	{"azure-ad-client-secret", ".IQ8Q~79R7TOWOspFnWcEG-dYt4KXqFqxK16cxr", false},
	{"alibaba-access-key-id", "LTAI" + "5tRx9AbCdEfGh1JkLmNo", true},
	{"digitalocean-pat", "dop_v1_" + strings.Repeat("0123456789abcdef", 4), true},
	{"digitalocean-refresh-token", "dor_v1_" + strings.Repeat("fedcba9876543210", 4), true},
	{"heroku-api-key-v2", "HRKU-AAlQ1aVoHDujJ9QsDHdHlHO0hbzhoERRSO45ZQusSYHg_____w4_hLrAym_u", false},
	{"cloudflare-origin-ca-key", "v1.0-aaa334dc886f30631ba0a610-0d98ef66290d7e50aac7c27b5986c99e6f3f1084c881d8ac0eae5de1d1aa0644076ff57022069b3237d19afe60ad045f207ef2b16387ee37b749441b2ae2e9ebe5b4606e846475d4a5", false},
	{"flyio-access-token", "fo1_8rz-j7r2eqJ2U7affEOO3HJN0j63DInyog3eV-glQSc", false},
	{"vault-service-token", "s.ZC9Ecf4M5g9o34Q6RkzGsj0z", false},
	{"vault-batch-token", "hvb.AAAAAQJgxDgqsGNorpoOR7hPZ5SU-ynBvCl764jyRP_fnX7WvkdkDzGjbLNGdPdtlY33Als2P36yDZueqzfdGw9RsaTeaYXSH7E4RYSWuRoQ9YRKIw8o7mDDY2ZcT3KOB7RwtW1w1FN2eDqcy_sbCjXPaM1iBVH-mqMSYRmRd2nb5D1SJPeBzIYRqSglLc31wUGN7xEzyrKUczqOKsIcybQA", false},
	{"hashicorp-tf-api-token", "hE1hlYILrSqpqh.atlasv1.ARjZuyzl33F71WR55s6ln5GQ1HWIwTDDH3MiRjz7OnpCfaCb1RCF5zGaSncCWmJdcYA", false},
	{"databricks-api-token", "dapif13ac4b49d1cb31f69f678e39602e381", false},
	{"clickhouse-cloud-api-secret-key", "4b1dbRdW3rOcB7xLthrM4BTBGK1qPLkHigpN1bXD6z", false},
	{"1password-secret-key", "A3-ASWWYB-798JRYLJVD4-23DC2-86TVM-H43EB", false},
	{"age-secret-key", "AGE-SECRET-KEY-1" + strings.Repeat("Q", 58), false},
	{"openshift-user-token", "sha256~kV46hPnEYhCWFnB85r5NrprAxggzgb6GOeLbgcKNsH0", false},
	{"scalingo-api-token", "tk-us-loys7ib9yrxcys_ta2sq85mjar6lgcsspkd9x61s7h5epf_-", false},
	{"octopus-deploy-api-key", "API-ZNRMR7SL6L3ATMOIK7GKJDKLPY", false},
	{"infracost-api-token", "ico-mlCr1Mn3SRcRiZMObUZOTHLcgtH2Lpgt", false},
	{"intra42-client-secret", "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", false},
	{"maxmind-license-key", "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", false},
	{"grafana-service-account-token", "glsa_pITqMOBIfNH2KL4PkXJqmTyQl0D9QGxF_486f63e1", false},
	{"new-relic-user-api-key", "NRAK-" + "A1B2C3D4E5F6G7H8I9J0K1L2M3N", true},
	{"sentry-user-token", "sntryu_" + strings.Repeat("0123456789abcdef", 4), true},
	{"pulumi-api-token", "pul-" + strings.Repeat("0a1b2c3d4e", 4), true},
	// Source hosting and package registries.
	{"github-pat", "ghp_" + "R2h0dWJQQVRleGFtcGxlMDEyMzQ1Njc4OWFi", true},
	{"github-fine-grained-pat", "github_pat_" + strings.Repeat("11ABCDEFG0", 8) + "ab", true},
	{"gitlab-pat", "glpat-" + "xK9mP2vL4wR8tY3nB5qZ", true},
	{"gitlab-runner-authentication-token", "glrt-" + "t1_xK9mP2vL4wR8tY3nB5qZ", true},
	{"atlassian-api-token", "ATATT3xFfGF0K3irG5tKKi-6u-wwaXQFeGwZ-IHR-hQ3CulkKtMSuteRQFfLZ6jihHThzZCg_UjnDt-4Wl_gIRf4zrZJs5JqaeuBhsfJ4W5GD6yGg3W7903gbvaxZPBjxIQQ7BgFDSkPS8oPispw4KLz56mdK-G6CIvLO6hHRrZHY0Q3tvJ6JxE=C63992E6", false},
	{"npm-access-token", "npm_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8", true},
	{"pypi-upload-token", "pypi-AgEIcHlwaS5vcmc" + strings.Repeat("Ab3_", 13), true},
	{"rubygems-api-token", "rubygems_" + strings.Repeat("0a1b2c3d", 6), true},
	{"sourcegraph-access-token", "sgp_AaD80dc6E02eCAE1_d3cba16CC0F18fA14A2EFB61CbDFceEBf9fAD16b", false},
	{"notion-api-token", "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", false},
	{"shopify-access-token", "shpat_" + strings.Repeat("0a1b2c3d", 4), true},
	// Chat.
	{"slack-bot-token", "xoxb-781236542736-2364535789652-GkwFDQoHqzXDVsC6GzqYUypD", false},
	{"slack-user-token", "xoxp-41684372915-1320496754-45609968301-e708ba56e1517a99f6b5fb07349476ef", false},
	{"slack-app-token", "xapp-1-A052FGTS2DL-5171572773297-610b6a11f4b7eb819e87b767d80e6575a3634791acb9a9ead051da879eb5b55e", false},
	{"slack-config-refresh-token", "xoxe-1-My0xLTMxNzcwMjQ0MTcxMy01MTU4MTUyNjkxNzE0LTUxODE4NDI0MDY3MzYtMjA5MGFkOTFlZThkZWE2OGFlZDYwYWJjODNhYzAxYjA5ZjVmODBhYjgzN2QyNDdjOTNlOGY5NTg2YWM1OGM4Mg", false},
	{"slack-legacy-bot-token", "xoxb-263594206564-FGqddMF8t08v8N7Oq4i57vs1", false},
	{"slack-legacy-workspace-token", "xoxa-2-511111111-31111111111-3111111111111-e039d02840a0b9379c", false},
	{"slack-legacy-token", "xoxs-416843729158-132049654-5609968301-e708ba56e1", false},
	{"facebook-page-access-token", "EAAM9GOnCB9kBO2frzOAWGN2zMnZClQshlWydZCrBNdodesbwimx1mfVJgqZBP5RSpMfUzWhtjTTXHG5I1UlvlwRZCgjm3ZBVGeTYiqAAoxyED6HaUdhpGVNoPUwAuAWWFsi9OvyYBQt22DGLqMIgD7VktuCTTZCWKasz81Q822FPhMTB9VFFyClNzQ0NLZClt9zxpsMMrUZCo1VU1rL3CKavir5QTfBjfCEzHNlWAUDUV2YZD", false},
	{"twitter-bearer-token", strings.Repeat("A", 22) + "MLheAAAAAAA0%2BuSeid%2BULvsea4JtiGRiSDSJSI%3DEUifiRBkKG5E2XzMDjRfl76ZC9Ub0wnz4XsNiRVBChTYbJcE3F", true},
	// Mail and messaging.
	{"sendgrid-api-token", "SG." + "ngeVfQFYQlKU0ufo8x5d1A.TwL2iGABf9DHoTf-09kqeF8tAmbihYzrnopKc-1s5cr", true},
	{"sendinblue-api-token", "xkeysib-" + strings.Repeat("0a1b2c3d", 8) + "-A1b2C3d4E5f6G7h8", true},
	{"mailgun-private-api-token", "key-" + strings.Repeat("0a1b2c3d", 4), true},
	{"mailchimp-api-key", "cefa780880ba5f5696192a34f6292c35-us18", false},
	{"twilio-api-key", "SK" + strings.Repeat("0a1B2c3D", 4), true},
	// AI APIs.
	{"anthropic-api-key", "sk-ant-api03-abc123xyz-456def789ghij-klmnopqrstuvwx-3456yza789bcde-1234fghijklmnopby56aaaogaopaaaabc123xyzAA", false},
	{"anthropic-admin-api-key", "sk-ant-admin01-abc12fake-456def789ghij-klmnopqrstuvwx-3456yza789bcde-12fakehijklmnopby56aaaogaopaaaabc123xyzAA", false},
	{"openai-api-key", "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", false},
	{"openai-api-key", "sk-" + "abcdefghij0123456789" + "T3BlbkFJ" + "0123456789abcdefghij", true},
	{"huggingface-access-token", "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", false},
	{"huggingface-organization-api-token", "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", false},
	{"perplexity-api-key", "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", false},
	// Everywhere.
	{"jwt", "eyJhbGciOieeeiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwic3ViZSI6IjEyMzQ1Njc4OTAiLCJuYW1lZWEiOiJKb2huIERvZSIsInN1ZmV3YWZiIjoiMTIzNDU2Nzg5MCIsIm5hbWVmZWF3ZnciOiJKb2huIERvZSIsIm5hbWVhZmV3ZmEiOiJKb2huIERvZSIsInN1ZndhZndlYWIiOiIxMjM0NTY3ODkwIiwibmFtZWZ3YWYiOiJKb2huIERvZSIsInN1YmZ3YWYiOiIxMjM0NTY3ODkwIiwibmFtZndhZSI6IkpvaG4gRG9lIiwiaWZ3YWZhYXQiOjE1MTYyMzkwMjJ9.a_5icKBDo-8EjUlrfvz2k2k-FYaindQ0DEYNrlsnRG0", false},
	{"private-key", "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQDAC4AWkdwKYSd8\nKs14IReLcYgADhoXk56ZzXI=\n-----END PRIVATE KEY-----", false},
}

// TestRedactShapeExamples: each example is redacted wherever it stands —
// alone in text, inside a sentence, as a JSON value under an ordinary
// name, in a header value — and the text around it is kept.
func TestRedactShapeExamples(t *testing.T) {
	t.Parallel()
	r := Default()
	rules := map[string]bool{}
	for _, ex := range shapeExamples {
		rules[ex.rule] = true
		// Any 12-character window of the token must be gone.
		leaks := func(out string) bool {
			for i := 0; i+12 <= len(ex.token); i += 6 {
				if w := ex.token[i : i+12]; strings.Contains(out, w) && strings.Trim(w, "Q") != "" {
					return true
				}
			}
			return false
		}
		body, _ := r.Body([]byte(`{"note":"`+strings.ReplaceAll(ex.token, "\n", `\n`)+`"}`), "application/json")
		hdr := r.Headers(map[string][]string{"X-Note": {strings.ReplaceAll(ex.token, "\n", " ")}}, nil)
		for place, out := range map[string]string{
			"alone":    r.String(ex.token),
			"sentence": r.String("upstream said " + ex.token + " and stopped"),
			"JSON":     string(body),
			"header":   hdr["X-Note"],
		} {
			if leaks(out) {
				t.Errorf("%s (%s): stored %s: %q", ex.rule, place, map[bool]string{true: "built", false: "rule's example"}[ex.built], out)
			}
		}
		if out := r.String("upstream said " + ex.token + " and stopped"); !strings.HasPrefix(out, "upstream said ") || !strings.HasSuffix(out, " and stopped") {
			t.Errorf("%s: surroundings lost: %q", ex.rule, out)
		}
	}
	t.Logf("%d examples of %d rules", len(shapeExamples), len(rules))
}
