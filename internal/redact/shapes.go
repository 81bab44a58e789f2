package redact

import "strings"

// Secret shapes: credentials recognised by their form wherever they stand,
// under any name or none. Each follows the rule of gitleaks (v8.30.1,
// config/gitleaks.toml) named by its rule field, for the providers a
// service talks to: payment, cloud, source hosting, chat, mail and AI APIs;
// redact/shapes_test.go tests each with its rule's own example. A match
// covers the whole token (a longer token than the rule's is redacted
// whole).
type shape struct {
	prefix  string
	charset uint8 // which bytes continue the token
	min     int   // fewest bytes after the prefix
	rule    string
	// exact: the token after the prefix is exactly min bytes long.
	exact bool
	// infix must occur in the token (".acc" of an Authress key).
	infix string
	// back is how many token bytes before the prefix belong to the
	// secret (Terraform's 14 before .atlasv1., MaxMind's 36 before _mmk):
	// the token is then found around the prefix.
	back int
	// fold: the prefix matches in any case, as the rule's (?i) does.
	fold bool
}

// indexedShape is a shape with whether its prefix is distinctive enough
// (it has punctuation) to be found inside a word, as in "0sk_live_…";
// other shapes start a word.
type indexedShape struct {
	shape
	glued bool
}

// Character sets of token bodies.
const (
	csAlnum    uint8 = iota // A-Z a-z 0-9
	csB64URL                // A-Z a-z 0-9 _ -
	csB64                   // A-Z a-z 0-9 + / = _ -
	csAWS                   // A-Z 2-7 (exactly 16)
	csToken                 // A-Z a-z 0-9 _ - . / = ~ +
	csHex                   // 0-9 a-f A-F
	csB64Esc                // csB64 and \ (base64 with JSON-escaped slashes)
	csTokenEsc              // csToken and \
	csB64Pct                // csB64 and % (URL-encoded base64)
)

var shapes = []shape{
	// Payment.
	{prefix: "sk_live_", charset: csAlnum, min: 10, rule: "stripe-access-token"},
	{prefix: "sk_test_", charset: csAlnum, min: 10, rule: "stripe-access-token"},
	{prefix: "sk_prod_", charset: csAlnum, min: 10, rule: "stripe-access-token"},
	{prefix: "rk_live_", charset: csAlnum, min: 10, rule: "stripe-access-token"},
	{prefix: "rk_test_", charset: csAlnum, min: 10, rule: "stripe-access-token"},
	{prefix: "rk_prod_", charset: csAlnum, min: 10, rule: "stripe-access-token"},
	{prefix: "whsec_", charset: csB64, min: 10, rule: "stripe webhook secret (Stripe's documented format)"},
	{prefix: "whsk_", charset: csB64, min: 10, rule: "webhook secret (Standard Webhooks' documented format)"},
	{prefix: "sq0atp-", charset: csB64URL, min: 20, rule: "square-access-token"},
	{prefix: "EAAA", charset: csB64URL, min: 22, rule: "square-access-token"},
	{prefix: "sq0csp-", charset: csB64URL, min: 20, rule: "square secret (Square's documented format)"},
	{prefix: "shippo_live_", charset: csHex, min: 40, rule: "shippo-api-token"},
	{prefix: "shippo_test_", charset: csHex, min: 40, rule: "shippo-api-token"},
	{prefix: "FLWSECK_TEST-", charset: csB64URL, min: 12, rule: "flutterwave-secret-key"},
	{prefix: "FLWPUBK_TEST-", charset: csB64URL, min: 32, rule: "flutterwave-public-key"},
	{prefix: "duffel_test_", charset: csB64, min: 43, rule: "duffel-api-token"},
	{prefix: "duffel_live_", charset: csB64, min: 43, rule: "duffel-api-token"},
	{prefix: "EZAK", charset: csAlnum, min: 54, rule: "easypost-api-token"},
	{prefix: "EZTK", charset: csAlnum, min: 54, rule: "easypost-test-api-token"},
	{prefix: "access-production-", charset: csB64URL, min: 36, fold: true, rule: "plaid-api-token"},
	{prefix: "access-development-", charset: csB64URL, min: 36, fold: true, rule: "plaid-api-token"},
	{prefix: "access-sandbox-", charset: csB64URL, min: 36, fold: true, rule: "plaid-api-token"},
	// Cloud.
	{prefix: "AKIA", charset: csAWS, min: 16, rule: "aws-access-token"},
	{prefix: "ASIA", charset: csAWS, min: 16, rule: "aws-access-token"},
	{prefix: "ABIA", charset: csAWS, min: 16, rule: "aws-access-token"},
	{prefix: "ACCA", charset: csAWS, min: 16, rule: "aws-access-token"},
	{prefix: "A3T", charset: csAWS, min: 17, rule: "aws-access-token"},
	{prefix: "AGPA", charset: csAWS, min: 16, rule: "aws access key id (AWS's documented prefixes)"},
	{prefix: "AIDA", charset: csAWS, min: 16, rule: "aws access key id (AWS's documented prefixes)"},
	{prefix: "AROA", charset: csAWS, min: 16, rule: "aws access key id (AWS's documented prefixes)"},
	{prefix: "AIPA", charset: csAWS, min: 16, rule: "aws access key id (AWS's documented prefixes)"},
	{prefix: "ANPA", charset: csAWS, min: 16, rule: "aws access key id (AWS's documented prefixes)"},
	{prefix: "ANVA", charset: csAWS, min: 16, rule: "aws access key id (AWS's documented prefixes)"},
	{prefix: "APKA", charset: csAWS, min: 16, rule: "aws access key id (AWS's documented prefixes)"},
	{prefix: "ABSK", charset: csB64, min: 109, rule: "aws-amazon-bedrock-api-key-long-lived"},
	{prefix: "bedrock-api-key-", charset: csB64, min: 20, rule: "aws-amazon-bedrock-api-key-short-lived"},
	{prefix: "AIza", charset: csB64URL, min: 30, rule: "gcp-api-key"},
	{prefix: "ya29.", charset: csB64URL, min: 20, rule: "google oauth access token (Google's documented format)"},
	{prefix: "GOCSPX-", charset: csB64URL, min: 20, rule: "google oauth client secret (Google's documented format)"},
	{prefix: "LTAI", charset: csAlnum, min: 20, rule: "alibaba-access-key-id"},
	{prefix: "Q~", charset: csToken, min: 31, back: 4, rule: "azure-ad-client-secret"},
	{prefix: "dop_v1_", charset: csHex, min: 40, rule: "digitalocean-pat"},
	{prefix: "doo_v1_", charset: csHex, min: 40, rule: "digitalocean-access-token"},
	{prefix: "dor_v1_", charset: csHex, min: 40, fold: true, rule: "digitalocean-refresh-token"},
	{prefix: "HRKU-AA", charset: csB64URL, min: 58, rule: "heroku-api-key-v2"},
	{prefix: "v1.0-", charset: csB64URL, min: 150, rule: "cloudflare-origin-ca-key"},
	{prefix: "fo1_", charset: csB64URL, min: 43, rule: "flyio-access-token"},
	{prefix: "fm1a_", charset: csB64, min: 100, rule: "flyio-access-token"},
	{prefix: "fm1r_", charset: csB64, min: 100, rule: "flyio-access-token"},
	{prefix: "fm2_", charset: csB64, min: 100, rule: "flyio-access-token"},
	{prefix: "hvs.", charset: csB64URL, min: 90, rule: "vault-service-token"},
	{prefix: "hvb.", charset: csB64URL, min: 138, rule: "vault-batch-token"},
	{prefix: "s.", charset: csAlnum, min: 24, exact: true, rule: "vault-service-token"}, // with a digit: checked below
	{prefix: ".atlasv1.", charset: csB64, min: 60, back: 14, rule: "hashicorp-tf-api-token"},
	{prefix: "dapi", charset: csHex, min: 32, exact: true, rule: "databricks-api-token"},
	{prefix: "dp.pt.", charset: csAlnum, min: 43, rule: "doppler-api-token"},
	{prefix: "pscale_tkn_", charset: csToken, min: 32, rule: "planetscale-api-token"},
	{prefix: "pscale_oauth_", charset: csToken, min: 32, rule: "planetscale-oauth-token"},
	{prefix: "pscale_pw_", charset: csToken, min: 32, fold: true, rule: "planetscale-password"},
	{prefix: "pul-", charset: csHex, min: 40, rule: "pulumi-api-token"},
	{prefix: "sha256~", charset: csB64URL, min: 43, rule: "openshift-user-token"},
	{prefix: "ops_eyJ", charset: csB64, min: 250, rule: "1password-service-account-token"},
	{prefix: "A3-", charset: csB64URL, min: 30, rule: "1password-secret-key"},
	{prefix: "AGE-SECRET-KEY-1", charset: csAlnum, min: 58, rule: "age-secret-key"},
	{prefix: "AKCp", charset: csAlnum, min: 69, rule: "artifactory-api-key"},
	{prefix: "cmVmd", charset: csAlnum, min: 59, rule: "artifactory-reference-token"},
	{prefix: "dt0c01.", charset: csToken, min: 80, rule: "dynatrace-api-token"},
	{prefix: "glc_", charset: csB64, min: 32, fold: true, rule: "grafana-cloud-api-token"},
	{prefix: "glsa_", charset: csB64URL, min: 41, fold: true, rule: "grafana-service-account-token"},
	{prefix: "eyJrIjoi", charset: csB64, min: 70, fold: true, rule: "grafana-api-key"},
	{prefix: "NRAK-", charset: csAlnum, min: 27, fold: true, rule: "new-relic-user-api-key"},
	{prefix: "NRII-", charset: csB64URL, min: 32, fold: true, rule: "new-relic-insert-key"},
	{prefix: "NRJS-", charset: csHex, min: 19, fold: true, rule: "new-relic-browser-api-token"},
	{prefix: "sntrys_", charset: csB64, min: 50, rule: "sentry-org-token"},
	{prefix: "sntryu_", charset: csHex, min: 64, rule: "sentry-user-token"},
	{prefix: "pnu_", charset: csAlnum, min: 36, rule: "prefect-api-token"},
	{prefix: "ico-", charset: csAlnum, min: 32, rule: "infracost-api-token"},
	{prefix: "API-", charset: csAlnum, min: 26, exact: true, rule: "octopus-deploy-api-key"},
	{prefix: "tk-us-", charset: csB64URL, min: 48, rule: "scalingo-api-token"},
	{prefix: "sm_aat_", charset: csAlnum, min: 16, rule: "settlemint-application-access-token"},
	{prefix: "sm_pat_", charset: csAlnum, min: 16, rule: "settlemint-personal-access-token"},
	{prefix: "sm_sat_", charset: csAlnum, min: 16, rule: "settlemint-service-access-token"},
	{prefix: "dnkey-", charset: csB64URL, min: 70, rule: "defined-networking-api-token"},
	{prefix: "4b1d", charset: csAlnum, min: 38, exact: true, rule: "clickhouse-cloud-api-secret-key"},
	{prefix: "p8e-", charset: csAlnum, min: 32, rule: "adobe-client-secret"},
	{prefix: "s-s4t2ud-", charset: csHex, min: 64, rule: "intra42-client-secret"},
	{prefix: "s-s4t2af-", charset: csHex, min: 64, rule: "intra42-client-secret"},
	{prefix: "sc_", charset: csToken, min: 40, infix: ".acc", rule: "authress-service-client-access-key"},
	{prefix: "ext_", charset: csToken, min: 40, infix: ".acc", rule: "authress-service-client-access-key"},
	{prefix: "scauth_", charset: csToken, min: 40, infix: ".acc", rule: "authress-service-client-access-key"},
	{prefix: "authress_", charset: csToken, min: 40, infix: ".acc", rule: "authress-service-client-access-key"},
	{prefix: "_mmk", charset: csAlnum, min: 0, back: 36, rule: "maxmind-license-key"},
	// Source hosting and package registries.
	{prefix: "ghp_", charset: csAlnum, min: 30, rule: "github-pat"},
	{prefix: "gho_", charset: csAlnum, min: 30, rule: "github-oauth"},
	{prefix: "ghu_", charset: csAlnum, min: 30, rule: "github-app-token"},
	{prefix: "ghs_", charset: csAlnum, min: 30, rule: "github-app-token"},
	{prefix: "ghr_", charset: csAlnum, min: 30, rule: "github-refresh-token"},
	{prefix: "github_pat_", charset: csB64URL, min: 30, rule: "github-fine-grained-pat"},
	{prefix: "glpat-", charset: csToken, min: 20, rule: "gitlab-pat"},
	{prefix: "gldt-", charset: csB64URL, min: 20, rule: "gitlab-deploy-token"},
	{prefix: "glptt-", charset: csB64URL, min: 20, rule: "gitlab-ptt"},
	{prefix: "GR1348941", charset: csB64URL, min: 20, rule: "gitlab-rrt"},
	{prefix: "glcbt-", charset: csB64URL, min: 20, rule: "gitlab-cicd-job-token"},
	{prefix: "glffct-", charset: csB64URL, min: 20, rule: "gitlab-feature-flag-client-token"},
	{prefix: "glft-", charset: csB64URL, min: 20, rule: "gitlab-feed-token"},
	{prefix: "glimt-", charset: csB64URL, min: 25, rule: "gitlab-incoming-mail-token"},
	{prefix: "glagent-", charset: csB64URL, min: 50, rule: "gitlab-kubernetes-agent-token"},
	{prefix: "gloas-", charset: csB64URL, min: 64, rule: "gitlab-oauth-app-secret"},
	{prefix: "glrt-", charset: csToken, min: 20, rule: "gitlab-runner-authentication-token"},
	{prefix: "glsoat-", charset: csB64URL, min: 20, rule: "gitlab-scim-token"},
	{prefix: "ATATT3", charset: csB64, min: 150, fold: true, rule: "atlassian-api-token"},
	{prefix: "npm_", charset: csAlnum, min: 30, fold: true, rule: "npm-access-token"},
	{prefix: "pypi-AgE", charset: csB64URL, min: 50, rule: "pypi-upload-token"},
	{prefix: "rubygems_", charset: csHex, min: 48, rule: "rubygems-api-token"},
	{prefix: "CLOJARS_", charset: csAlnum, min: 60, fold: true, rule: "clojars-api-token"},
	{prefix: "rdme_", charset: csAlnum, min: 70, rule: "readme-api-token"},
	{prefix: "PMAK-", charset: csB64URL, min: 59, rule: "postman-api-token"},
	{prefix: "sgp_", charset: csB64URL, min: 40, fold: true, rule: "sourcegraph-access-token"},
	{prefix: "squ_", charset: csAlnum, min: 40, fold: true, rule: "sonar-api-token"},
	{prefix: "sqp_", charset: csAlnum, min: 40, fold: true, rule: "sonar-api-token"},
	{prefix: "sqa_", charset: csAlnum, min: 40, fold: true, rule: "sonar-api-token"},
	{prefix: "lin_api_", charset: csAlnum, min: 40, rule: "linear-api-key"},
	{prefix: "ntn_", charset: csAlnum, min: 46, rule: "notion-api-token"},
	{prefix: "fio-u-", charset: csB64, min: 64, rule: "frameio-api-token"},
	{prefix: "pat.", charset: csToken, min: 60, rule: "harness-api-key"},
	{prefix: "sat.", charset: csToken, min: 60, rule: "harness-api-key"},
	{prefix: "tfp_", charset: csToken, min: 59, fold: true, rule: "typeform-api-token"},
	{prefix: "shpat_", charset: csAlnum, min: 30, rule: "shopify-access-token"},
	{prefix: "shpca_", charset: csAlnum, min: 30, rule: "shopify-custom-access-token"},
	{prefix: "shppa_", charset: csAlnum, min: 30, rule: "shopify-private-app-access-token"},
	{prefix: "shpss_", charset: csAlnum, min: 30, rule: "shopify-shared-secret"},
	{prefix: "_gitlab_session=", charset: csAlnum, min: 32, rule: "gitlab-session-cookie"},
	// Chat.
	{prefix: "xoxb-", charset: csB64URL, min: 10, rule: "slack-bot-token"},
	{prefix: "xoxp-", charset: csB64URL, min: 10, rule: "slack-user-token"},
	{prefix: "xoxa-", charset: csB64URL, min: 8, rule: "slack-legacy-workspace-token"},
	{prefix: "xoxr-", charset: csB64URL, min: 8, rule: "slack-legacy-workspace-token"},
	{prefix: "xoxo-", charset: csB64URL, min: 6, rule: "slack-legacy-token"},
	{prefix: "xoxs-", charset: csB64URL, min: 6, rule: "slack-legacy-token"},
	{prefix: "xoxe-", charset: csB64URL, min: 10, fold: true, rule: "slack-config-refresh-token"},
	{prefix: "xoxe.", charset: csB64URL, min: 10, fold: true, rule: "slack-config-access-token"},
	{prefix: "xapp-", charset: csB64URL, min: 6, fold: true, rule: "slack-app-token"},
	{prefix: "hooks.slack.com/services/", charset: csToken, min: 20, rule: "slack-webhook-url"},
	{prefix: "hooks.slack.com/workflows/", charset: csToken, min: 20, rule: "slack-webhook-url"},
	{prefix: "hooks.slack.com/triggers/", charset: csToken, min: 20, rule: "slack-webhook-url"},
	{prefix: "discord.com/api/webhooks/", charset: csToken, min: 20, rule: "discord webhook url (Discord's documented format)"},
	{prefix: "discordapp.com/api/webhooks/", charset: csToken, min: 20, rule: "discord webhook url (Discord's documented format)"},
	{prefix: "outlook.office.com/webhook/", charset: csToken, min: 20, rule: "microsoft-teams-webhook"},
	{prefix: "webhook.office.com/webhookb2/", charset: csToken, min: 20, rule: "microsoft-teams-webhook"},
	{prefix: "EAAM", charset: csAlnum, min: 100, rule: "facebook-page-access-token"},
	{prefix: "EAAC", charset: csAlnum, min: 100, rule: "facebook-page-access-token"},
	{prefix: "AAAAAAAAAAAAAAAAAAAAA", charset: csB64Pct, min: 60, rule: "twitter-bearer-token"}, // case-sensitive: the token starts with upper-case A (a run of a is text)
	// Mail and messaging.
	{prefix: "SG.", charset: csToken, min: 40, rule: "sendgrid-api-token"},
	{prefix: "xkeysib-", charset: csB64URL, min: 64, rule: "sendinblue-api-token"},
	{prefix: "key-", charset: csAlnum, min: 32, fold: true, rule: "mailgun-private-api-token"},
	{prefix: "pubkey-", charset: csAlnum, min: 32, fold: true, rule: "mailgun-pub-key"},
	{prefix: "-us", charset: csAlnum, min: 1, back: 32, fold: true, rule: "mailchimp-api-key"},
	{prefix: "SK", charset: csHex, min: 32, exact: true, rule: "twilio-api-key"},
	// AI APIs.
	{prefix: "sk-ant-", charset: csB64URL, min: 30, rule: "anthropic-api-key"},
	{prefix: "sk-proj-", charset: csB64URL, min: 30, rule: "openai-api-key"},
	{prefix: "sk-svcacct-", charset: csB64URL, min: 30, rule: "openai-api-key"},
	{prefix: "sk-admin-", charset: csB64URL, min: 30, rule: "openai-api-key"},
	{prefix: "sk-", charset: csB64URL, min: 32, rule: "openai-api-key (legacy sk-…T3BlbkFJ…, and the sk- keys of other AI APIs)"},
	{prefix: "hf_", charset: csAlnum, min: 30, rule: "huggingface-access-token"},
	{prefix: "api_org_", charset: csAlnum, min: 34, rule: "huggingface-organization-api-token"},
	{prefix: "pplx-", charset: csAlnum, min: 48, rule: "perplexity-api-key"},
	{prefix: "pat", charset: csAlnum, min: 0, rule: "airtable-personnal-access-token"}, // checked below
	// Everywhere.
	{prefix: "eyJ", charset: csToken, min: 20, rule: "jwt"},   // checked below
	{prefix: "ey", charset: csTokenEsc, min: 38, rule: "jwt"}, // ey + 17 alnum . ey: checked below
	{prefix: "ZXlK", charset: csB64Esc, min: 40, rule: "jwt-base64"},
	{prefix: "AccountKey=", charset: csB64, min: 20, rule: "azure storage connection string (Azure's documented format)"},
	{prefix: "SharedAccessKey=", charset: csB64, min: 20, rule: "azure connection string (Azure's documented format)"},
	{prefix: "SharedAccessSignature=", charset: csB64, min: 20, rule: "azure connection string (Azure's documented format)"},
}

// shapeFirst marks the bytes that start a shape, for a cheap prefilter;
// shapesBy lists the shapes by their first byte.
var (
	shapeFirst [256]bool
	shapesBy   [256][]indexedShape
	// gluedPair marks the first two bytes of the glued shapes.
	gluedPair [256][256]bool
	// pairStart marks the first two bytes of every shape, as bits.
	pairStart [256][4]uint64
)

func markPair(a, b byte) { pairStart[a][b>>6] |= 1 << (b & 63) }

// wordStart are prefixes with punctuation that are still too short or too
// common to be looked for inside a word: they must start one.
var wordStart = map[string]bool{"key-": true, "SG.": true, "sk-": true, "API-": true, "pul-": true, "ico-": true,
	"A3-": true, "pat.": true, "sat.": true, "sc_": true, "ext_": true, "hf_": true, "tk-us-": true, "v1.0-": true,
	"fo1_": true, "fm2_": true, "glc_": true, "pnu_": true, "sgp_": true, "squ_": true, "sqp_": true, "sqa_": true,
	"ntn_": true, "tfp_": true, "p8e-": true, "api_org_": true, "glsa_": true, "ops_eyJ": true, "s.": true}

func init() {
	for _, s := range shapes {
		glued := s.back > 0 || strings.ContainsAny(s.prefix, "_-./=~") && !wordStart[s.prefix]
		firsts, seconds := []byte{s.prefix[0]}, []byte{s.prefix[1]}
		if s.fold {
			firsts = cases(s.prefix[0])
			seconds = cases(s.prefix[1])
		}
		for _, a := range firsts {
			shapeFirst[a] = true
			shapesBy[a] = append(shapesBy[a], indexedShape{s, glued})
			for _, b := range seconds {
				markPair(a, b)
				if glued {
					gluedPair[a][b] = true
				}
			}
		}
	}
	shapeFirst['-'] = true // PEM, anywhere
	gluedPair['-']['-'] = true
	markPair('-', '-')
}

// cases returns the byte c in both cases (once when it has none).
func cases(c byte) []byte {
	switch {
	case c >= 'a' && c <= 'z':
		return []byte{c, c - 'a' + 'A'}
	case c >= 'A' && c <= 'Z':
		return []byte{c, c - 'A' + 'a'}
	}
	return []byte{c}
}

func inCharset(c byte, cs uint8) bool {
	alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
	switch cs {
	case csAlnum:
		return alnum
	case csB64URL:
		return alnum || c == '_' || c == '-'
	case csB64:
		return alnum || c == '+' || c == '/' || c == '=' || c == '_' || c == '-'
	case csAWS:
		return c >= 'A' && c <= 'Z' || c >= '2' && c <= '7'
	case csHex:
		return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
	case csB64Esc:
		return alnum || c == '+' || c == '/' || c == '=' || c == '_' || c == '-' || c == '\\'
	case csB64Pct:
		return alnum || c == '+' || c == '/' || c == '=' || c == '_' || c == '-' || c == '%'
	case csTokenEsc:
		return alnum || c == '_' || c == '-' || c == '.' || c == '/' || c == '=' || c == '~' || c == '+' || c == '\\'
	default:
		return alnum || c == '_' || c == '-' || c == '.' || c == '/' || c == '=' || c == '~' || c == '+'
	}
}

func isWordByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_'
}

// shapeSpans returns the byte ranges of secret-shaped tokens in s.
func shapeSpans(s string, spans []span) []span {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !shapeFirst[c] || i+1 >= len(s) || pairStart[c][s[i+1]>>6]&(1<<(s[i+1]&63)) == 0 {
			continue
		}
		inWord := i > 0 && isWordByte(s[i-1])
		if inWord && (i+1 >= len(s) || !gluedPair[c][s[i+1]]) {
			continue
		}
		if c == '-' {
			if end, ok := pemEnd(s, i); ok {
				spans = append(spans, span{i, end, ""})
				i = end - 1
				continue
			}
		}
		for _, sh := range shapesBy[c] {
			if inWord && !sh.glued || !(strings.HasPrefix(s[i:], sh.prefix) ||
				sh.fold && len(s)-i >= len(sh.prefix) && strings.EqualFold(s[i:i+len(sh.prefix)], sh.prefix)) {
				continue
			}
			j := i + len(sh.prefix)
			for j < len(s) && inCharset(s[j], sh.charset) {
				j++
			}
			n := j - i - len(sh.prefix)
			from := i
			switch {
			case sh.back > 0:
				for from > 0 && (isWordByte(s[from-1]) || s[from-1] == '-' || s[from-1] == '.' || s[from-1] == '~') {
					from--
				}
				if i-from < sh.back || n < sh.min {
					continue
				}
			case sh.prefix == "pat":
				// Airtable: pat + 14 alnum + . + 64 hex.
				if n != 14 || j >= len(s) || s[j] != '.' {
					continue
				}
				k := j + 1
				for k < len(s) && inCharset(s[k], csAlnum) {
					k++
				}
				if k-j-1 < 60 {
					continue
				}
				j = k
			case sh.prefix == "eyJ":
				// A JWT has two dots; tolerate a cut token with one.
				if strings.Count(s[i:j], ".") < 1 {
					continue
				}
			case sh.prefix == "s.":
				if !strings.ContainsAny(s[i+2:j], "0123456789") {
					continue
				}
			case sh.prefix == "ey":
				// ey, 17 or more letters and digits, a dot, ey: a JWT
				// whose header does not start with {" (gitleaks' jwt).
				k := i + 2
				for k < j && inCharset(s[k], csAlnum) {
					k++
				}
				if k-i-2 < 17 || k+2 >= j || s[k] != '.' || s[k+1] != 'e' || s[k+2] != 'y' {
					continue
				}
			case sh.charset == csAWS:
				if sh.prefix == "A3T" && n < sh.min && len(s)-i > 3 && isDigit(s[i+3]) {
					// A3T, a digit or letter, 16 of A-Z2-7.
					j = i + 4
					for j < len(s) && inCharset(s[j], csAWS) {
						j++
					}
					n = j - i - 3
				}
				if n < sh.min || (j < len(s) && isWordByte(s[j])) {
					continue
				}
				spans = append(spans, span{i, i + len(sh.prefix) + sh.min, ""})
				i = j - 1
				goto next
			}
			if n < sh.min || sh.exact && (n != sh.min || j < len(s) && isWordByte(s[j])) ||
				sh.infix != "" && !strings.Contains(s[i:j], sh.infix) {
				continue
			}
			if strings.Contains(sh.prefix, "/") || strings.HasSuffix(sh.prefix, "=") {
				i += len(sh.prefix) // keep the host or the name
				spans = append(spans, span{i, j, ""})
			} else {
				spans = append(spans, span{from, j, ""})
			}
			i = j - 1
			goto next
		}
	next:
	}
	return spans
}

// pemEnd reports whether a PEM private key block begins at s[i:] and
// returns where it ends: after its END line, or at the end of s when cut.
func pemEnd(s string, i int) (int, bool) {
	const begin = "-----BEGIN"
	u := asciiUpper(s[i:min(len(s), i+len(begin)+120)])
	if !strings.HasPrefix(u, begin) {
		return 0, false
	}
	rest := u[len(begin):]
	left := len(s) - i - len(begin) // what s has after BEGIN
	eol := strings.Index(rest, "-----")
	if eol < 0 || eol > 110 || !strings.Contains(rest[:eol], "PRIVATE KEY") && !strings.Contains(rest[:eol], "PGP PRIVATE") &&
		!strings.Contains(rest[:eol], "ENCRYPTED") {
		if eol < 0 && left < 60 && strings.HasPrefix("PRIVATE KEY", strings.TrimLeft(strings.TrimPrefix(strings.TrimLeft(rest, " "), "RSA "), " ")) {
			return len(s), true // a header cut short
		}
		if eol >= 0 || left >= 60 || !strings.Contains(rest, "PRIVATE") {
			return 0, false
		}
		return len(s), true
	}
	body := i + len(begin) + eol + 5
	endAt := -1
	for k := body; k+8 <= len(s); {
		d := strings.Index(s[k:], "-----")
		if d < 0 {
			break
		}
		k += d
		if k+8 <= len(s) && strings.EqualFold(s[k+5:k+8], "END") {
			endAt = k + 8
			break
		}
		k += 5
	}
	if endAt < 0 {
		return len(s), true
	}
	if e := strings.Index(s[endAt:], "-----"); e >= 0 && e < 60 {
		return endAt + e + 5, true
	}
	return len(s), true
}

// asciiUpper upper-cases the ASCII letters of s, keeping its length.
func asciiUpper(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'a' && c <= 'z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if b[j] >= 'a' && b[j] <= 'z' {
					b[j] -= 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}
