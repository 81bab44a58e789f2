package redact

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"unicode"
)

// A nameList is a list of sensitive names kept by a scrubber people
// already trust. The names are facts typed in from the source named; no
// code or data file of those projects is part of this repository.
type nameList struct {
	source string // project, file and list
	url    string
	rev    string // release or commit the names were read from
	names  []string
	// pii: personal data, redacted unless Rules.KeepPII.
	pii bool
}

// trustedLists are the lists redaction by name is measured against
// (issue 25). Every name of every list must be redacted in every place a
// name appears, in every casing and separator style and behind look-alike
// letters.
var trustedLists = []nameList{
	{
		source: "Sentry Python SDK, sentry_sdk/scrubber.py, DEFAULT_DENYLIST",
		url:    "https://github.com/getsentry/sentry-python/blob/2.68.0/sentry_sdk/scrubber.py",
		rev:    "2.68.0",
		names: []string{"password", "passwd", "secret", "api_key", "apikey", "auth", "credentials", "mysql_pwd",
			"privatekey", "private_key", "token", "session", "csrftoken", "sessionid", "x_csrftoken", "x_forwarded_for",
			"set_cookie", "cookie", "authorization", "proxy-authorization", "x_api_key", "aiohttp_session",
			"connect.sid", "csrf_token", "csrf", "_csrf", "_csrf_token", "PHPSESSID", "_session", "symfony",
			"user_session", "_xsrf", "XSRF-TOKEN"},
	},
	{
		source: "Sentry Python SDK, sentry_sdk/scrubber.py, DEFAULT_PII_DENYLIST",
		url:    "https://github.com/getsentry/sentry-python/blob/2.68.0/sentry_sdk/scrubber.py",
		rev:    "2.68.0",
		names:  []string{"x_forwarded_for", "x_real_ip", "ip_address", "remote_addr"},
		pii:    true,
	},
	{
		// Sentry's server-side data scrubber is Relay's "@password" rule:
		// PASSWORD_KEY_REGEX (password|secret|passwd|api[-_]key|apikey|
		// auth|credentials|mysql_pwd|privatekey|private[-_]key|token…|
		// ^otp$|^two[-_]factor$), TOKEN_KEY_REGEX (token) and the Bearer
		// rule, whose name is the last entry.
		source: "Sentry server-side data scrubbing (Relay), relay-pii/src/regexes.rs, PASSWORD_KEY_REGEX and BEARER_TOKEN_REGEX",
		url:    "https://github.com/getsentry/relay/blob/0e8be5e016e1ba8ef0e9349ccaab1929f869ab58/relay-pii/src/regexes.rs",
		rev:    "commit 0e8be5e016e1ba8ef0e9349ccaab1929f869ab58",
		names: []string{"password", "secret", "passwd", "api-key", "api_key", "apikey", "auth", "credentials",
			"mysql_pwd", "privatekey", "private-key", "private_key", "token", "otp", "two-factor", "two_factor", "bearer"},
	},
	{
		// The keywords of gitleaks' generic-api-key rule. gitleaks flags
		// them with a value of high entropy; so are they tested here.
		source: "gitleaks, config/gitleaks.toml, rule generic-api-key, keywords",
		url:    "https://github.com/gitleaks/gitleaks/blob/v8.30.1/config/gitleaks.toml",
		rev:    "v8.30.1",
		names:  []string{"access", "api", "auth", "key", "credential", "creds", "passwd", "password", "secret", "token"},
	},
	{
		// The provider names that gitleaks' keyword rules look for before
		// an assignment (adafruit-api-key: adafruit, …), with the rule ids.
		source: "gitleaks, config/gitleaks.toml, keywords of the keyword-and-value rules",
		url:    "https://github.com/gitleaks/gitleaks/blob/v8.30.1/config/gitleaks.toml",
		rev:    "v8.30.1",
		names: []string{
			"adafruit",                        // adafruit-api-key
			"adobe",                           // adobe-client-id
			"airtable",                        // airtable-api-key
			"algolia",                         // algolia-api-key
			"alibaba",                         // alibaba-secret-key
			"asana",                           // asana-client-id, asana-client-secret
			"atlassian", "confluence", "jira", // atlassian-api-token
			"beamer",               // beamer-api-token
			"bitbucket",            // bitbucket-client-id, bitbucket-client-secret
			"bittrex",              // bittrex-access-key, bittrex-secret-key
			"meraki",               // cisco-meraki-api-key
			"cloudflare",           // cloudflare-api-key, cloudflare-global-api-key
			"codecov",              // codecov-access-token
			"cohere", "co_api_key", // cohere-api-token
			"coinbase",                                // coinbase-access-token
			"confluent",                               // confluent-access-token, confluent-secret-key
			"contentful",                              // contentful-delivery-api-token
			"datadog",                                 // datadog-access-token
			"dnkey",                                   // defined-networking-api-token
			"discord",                                 // discord-api-token, discord-client-id, discord-client-secret
			"droneci",                                 // droneci-access-token
			"dropbox",                                 // dropbox-api-token and its long- and short-lived tokens
			"etsy",                                    // etsy-access-token
			"facebook",                                // facebook-secret, facebook-access-token
			"fastly",                                  // fastly-api-token
			"finicity",                                // finicity-api-token, finicity-client-secret
			"finnhub",                                 // finnhub-access-token
			"flickr",                                  // flickr-access-token
			"freshbooks",                              // freshbooks-access-token
			"gitter",                                  // gitter-access-token
			"gocardless",                              // gocardless-api-token
			"heroku",                                  // heroku-api-key
			"hubspot",                                 // hubspot-api-key
			"intercom",                                // intercom-api-key
			"jfrog", "artifactory", "bintray", "xray", // jfrog-api-key, jfrog-identity-token
			"kraken",                             // kraken-access-token
			"kucoin",                             // kucoin-access-token, kucoin-secret-key
			"launchdarkly",                       // launchdarkly-access-token
			"linear",                             // linear-client-secret
			"linkedin", "linked_in", "linked-in", // linkedin-client-id, linkedin-client-secret
			"lob",                                         // lob-api-key, lob-pub-api-key
			"looker",                                      // looker-client-id, looker-client-secret
			"mailchimp",                                   // mailchimp-api-key
			"mailgun",                                     // mailgun-private-api-token, mailgun-pub-key, mailgun-signing-key
			"mapbox",                                      // mapbox-api-token
			"mattermost",                                  // mattermost-access-token
			"messagebird", "message-bird", "message_bird", // messagebird-api-token, messagebird-client-id
			"netlify",                            // netlify-access-token
			"new-relic", "newrelic", "new_relic", // new-relic-user-api-id and the other new-relic rules
			"nytimes", "new-york-times", "newyorktimes", // nytimes-access-token
			"okta",                                  // okta-access-token
			"plaid",                                 // plaid-client-id, plaid-secret-key, plaid-api-token
			"privateai", "private_ai", "private-ai", // privateai-api-token
			"rapidapi",                                                           // rapidapi-access-token
			"sendbird",                                                           // sendbird-access-id, sendbird-access-token
			"sentry",                                                             // sentry-access-token
			"BUNDLE_ENTERPRISE__CONTRIBSYS__COM", "BUNDLE_GEMS__CONTRIBSYS__COM", // sidekiq-secret
			"snyk",                         // snyk-api-token
			"sonar",                        // sonar-api-token
			"squarespace",                  // squarespace-access-token
			"sumo",                         // sumologic-access-id, sumologic-access-token
			"telegr",                       // telegram-bot-api-token
			"travis",                       // travisci-access-token
			"twitch",                       // twitch-api-token
			"twitter",                      // twitter-api-key, -api-secret, -access-token, -access-secret, -bearer-token
			"typeform",                     // typeform-api-token
			"yandex",                       // yandex-api-key, yandex-access-token, yandex-aws-access-token
			"zendesk",                      // zendesk-secret-key
			"administrator_login_password", // hashicorp-tf-password
		},
	},
	{
		// DENYLIST entries are regular expressions; "api_?key" is both
		// apikey and api_key.
		source: "detect-secrets, detect_secrets/plugins/keyword.py, DENYLIST",
		url:    "https://github.com/Yelp/detect-secrets/blob/v1.5.0/detect_secrets/plugins/keyword.py",
		rev:    "v1.5.0",
		names: []string{"apikey", "api_key", "authkey", "auth_key", "servicekey", "service_key", "accountkey",
			"account_key", "dbkey", "db_key", "databasekey", "database_key", "privkey", "priv_key", "privatekey",
			"private_key", "clientkey", "client_key", "dbpass", "db_pass", "databasepass", "database_pass", "keypass",
			"key_pass", "password", "passwd", "pwd", "secret", "contraseña", "contrasena"},
	},
	{
		// "Data to exclude": the list names kinds of data, not fields;
		// these are the field names of each kind that are not personal data.
		source: "OWASP Logging Cheat Sheet, Data to exclude (session identification values, access tokens, " +
			"authentication passwords, database connection strings, encryption keys and other master secrets, " +
			"bank account or payment card holder data)",
		url: "https://github.com/OWASP/CheatSheetSeries/blob/09385011c5da6998852049c89264bbd8e6603244/cheatsheets/Logging_Cheat_Sheet.md",
		rev: "commit 09385011c5da6998852049c89264bbd8e6603244",
		names: []string{"session_id", "sessionid", "session", "access_token", "refresh_token", "id_token", "password",
			"connection_string", "database_url", "dsn", "encryption_key", "master_key", "master_secret", "bank_account",
			"bank_account_number", "account_number", "iban", "routing_number", "card_number", "pan", "cvv", "cvc"},
	},
	{
		// The same section's "sensitive personal data and some forms of
		// personally identifiable information (PII) e.g. … government
		// identifiers", and the card holder's name of "payment card holder
		// data"; dates of birth and passports as issue 25 names them.
		source: "OWASP Logging Cheat Sheet, Data to exclude (personal data: government identifiers, card holder)",
		url:    "https://github.com/OWASP/CheatSheetSeries/blob/09385011c5da6998852049c89264bbd8e6603244/cheatsheets/Logging_Cheat_Sheet.md",
		rev:    "commit 09385011c5da6998852049c89264bbd8e6603244",
		names: []string{"ssn", "social_security_number", "national_id", "national_insurance_number", "tax_id",
			"passport_number", "passport", "drivers_license", "driving_licence", "date_of_birth", "dob", "birthdate",
			"cardholder_name"},
		pii: true,
	},
}

// nameWords splits a list's name into its words, as the styles below
// rebuild it.
func nameWords(n string) []string {
	var words []string
	var cur []rune
	prevLower := false
	for _, c := range n {
		switch {
		case unicode.IsLower(c) || unicode.IsDigit(c):
			cur = append(cur, c)
			prevLower = unicode.IsLower(c)
		case unicode.IsUpper(c):
			if prevLower && len(cur) > 0 {
				words = append(words, string(cur))
				cur = nil
			}
			cur = append(cur, unicode.ToLower(c))
			prevLower = false
		default:
			if len(cur) > 0 {
				words = append(words, string(cur))
				cur = nil
			}
			prevLower = false
		}
	}
	if len(cur) > 0 {
		words = append(words, string(cur))
	}
	return words
}

// nameStyles returns n as written (api-key, api_key, apiKey, ApiKey,
// API_KEY, API KEY, api.key; joined forms such as apikey are names of the
// lists themselves) and behind look-alike letters (Cyrillic,
// fullwidth, a diacritic).
func nameStyles(n string) []string {
	w := nameWords(n)
	title := func(s string) string { return strings.ToUpper(s[:1]) + s[1:] }
	camel := w[0]
	pascal := title(w[0])
	for _, x := range w[1:] {
		camel += title(x)
		pascal += title(x)
	}
	snake := strings.Join(w, "_")
	styles := []string{n, snake, strings.Join(w, "-"), camel, pascal, strings.ToUpper(snake),
		strings.ToUpper(strings.Join(w, " ")), strings.Join(w, ".")}
	// Look-alikes: the first letter with a Cyrillic twin, the whole name in
	// fullwidth forms, the first vowel with a diacritic.
	cyr := map[rune]rune{'a': 'а', 'e': 'е', 'o': 'о', 'p': 'р', 'c': 'с', 'x': 'х'}
	for i, c := range snake {
		if t, ok := cyr[c]; ok {
			styles = append(styles, snake[:i]+string(t)+snake[i+1:])
			break
		}
	}
	styles = append(styles, strings.Map(func(c rune) rune {
		if c >= 'a' && c <= 'z' {
			return c - 'a' + 'ａ'
		}
		return c
	}, snake))
	marked := map[rune]string{'a': "á", 'e': "é", 'i': "í", 'o': "ö", 'u': "ü"}
	for i, c := range snake {
		if t, ok := marked[c]; ok {
			styles = append(styles, snake[:i]+t+snake[i+1:])
			break
		}
	}
	return styles
}

// namePlaces redacts value under name in every place a name appears and
// returns what would be stored, one entry a place.
func namePlaces(r *Redactor, name, value string) map[string]string {
	out := map[string]string{}
	if !strings.ContainsAny(name, " .") || strings.Contains(name, "-") {
		h := r.Headers(http.Header{name: {value}}, nil)
		b, _ := json.Marshal(h)
		out["header"] = string(b)
	}
	doc, _ := json.Marshal(map[string]any{name: value, "a": []any{map[string]any{"b": map[string]any{name: value}}}})
	b, _ := r.Body(doc, "application/json")
	out["JSON key"] = string(b)
	b, _ = r.Body([]byte("a=1&"+url.QueryEscape(name)+"="+url.QueryEscape(value)), "application/x-www-form-urlencoded")
	out["form field"] = string(b)
	out["query parameter"] = r.URL("https://api.example.com/v1/x?limit=10&" + url.QueryEscape(name) + "=" + value + "&z=1")
	mp := "--b\r\nContent-Disposition: form-data; name=\"" + name + "\"\r\n\r\n" + value + "\r\n--b--\r\n"
	b, _ = r.Body([]byte(mp), "multipart/form-data; boundary=b")
	out["multipart part"] = string(b)
	if !strings.ContainsAny(name, " ") {
		b, _ = r.Body([]byte("<req><"+name+">"+value+"</"+name+"></req>"), "application/xml")
		out["XML element"] = string(b)
		b, _ = r.Body([]byte(`<req `+name+`="`+value+`"/>`), "application/xml")
		out["XML attribute"] = string(b)
	}
	out["text name: value"] = r.String("request failed, " + name + ": " + value + "\nnext line")
	out["text name=value"] = r.String("retrying with " + name + "=" + value + " in 3s")
	out["text name is value"] = r.String("your new " + name + " is " + value + ", keep it safe")
	return out
}

// TestRedactTrustedLists checks every name of every trusted list in every
// style and every place.
func TestRedactTrustedLists(t *testing.T) {
	t.Parallel()
	r := Default()
	keep := mustRedactor(Rules{KeepPII: true})
	checked := 0
	secret := map[string]bool{} // names also on a list of secrets
	for _, l := range trustedLists {
		for _, n := range l.names {
			if !l.pii {
				secret[strings.Join(nameWords(n), "")] = true
			}
		}
	}
	for _, l := range trustedLists {
		t.Logf("%3d names: %s (%s)", len(l.names), l.source, l.rev)
		for i, n := range l.names {
			for j, style := range nameStyles(n) {
				// A value that looks like a credential and has no known
				// shape: only the name can redact it.
				value := fmt.Sprintf("zq%02dXk9mP2vL4wR8tY3nB%03d", j, i)
				for place, got := range namePlaces(r, style, value) {
					checked++
					if strings.Contains(got, value) {
						t.Errorf("%s: %q (from %q) as %s stored: %s", l.source, style, n, place, got)
					}
				}
				if l.pii && !secret[strings.Join(nameWords(n), "")] {
					if got := keep.String(style + "=" + value); !strings.Contains(got, value) {
						t.Errorf("KeepPII: %q redacted: %s", style, got)
					}
				}
			}
		}
	}
	t.Logf("%d name, style and place combinations checked", checked)
}

// TestRedactIssue25Classes pins one example of every class of issue 25.
func TestRedactIssue25Classes(t *testing.T) {
	t.Parallel()
	r := Default()
	const m = "zq7Kx9mP2vL4wR8tY3nB"
	h := r.Headers(http.Header{"X-Session": {m}, "Authorisation": {m}, "Location": {"https://app.example.com/cb?code=" + m + "&state=s"},
		"Content-Location": {"/cb?code=" + m}, "Link": {"</items?page=2&access_token=" + m + `>; rel="next"`}}, nil)
	hb, _ := json.Marshal(h)
	doc := `{"privkey":"` + m + `","session":"` + m + `","bearer":"` + m + `","social_security_number":"` + m + `","passwörd":"` + m + `"}`
	body, _ := r.Body([]byte(doc), "application/json")
	for _, got := range []string{string(hb), string(body),
		r.String("pq: connection refused for bob:" + m + "@db.example:5432"),
		r.String("Your new password is " + m + "."),
		r.String("redirect to https://app.example.com/cb#access_token=" + m + "&token_type=bearer"),
		r.URL("https://app.example.com/callback?code=" + m + "&state=abc"),
	} {
		if strings.Contains(got, m) {
			t.Errorf("stored: %s", got)
		}
	}
	for _, s := range []string{"the password is incorrect", "mailto:bob@example.com", "user bob@example.com logged in",
		"at 10:30 the token was refreshed", `{"api_version":"2024-06-20","error":{"code":"card_declined"}}`} {
		if got := r.String(s); got != s {
			t.Errorf("%q redacted: %q", s, got)
		}
	}
}
