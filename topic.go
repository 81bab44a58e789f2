package outbox

import "strings"

// maxTopicLength is the longest topic or pattern, in bytes (the column is
// varchar(100) and topics are ASCII).
const maxTopicLength = 100

// ValidTopic reports whether topic is 1 to 100 characters of dot-separated,
// non-empty segments of [A-Za-z0-9_-].
func ValidTopic(topic string) bool { return checkTopic(topic, false) == "" }

// ValidPattern reports whether pattern is a valid subscription pattern: a
// topic in which a segment may also be * (exactly one segment) or # (zero or
// more segments).
func ValidPattern(pattern string) bool { return checkTopic(pattern, true) == "" }

// MatchTopic reports whether topic matches pattern with AMQP topic-exchange
// semantics. It returns false when either is invalid. The database applies
// the same rule (function topic_matches); a fuzz test keeps the two equal.
func MatchTopic(pattern, topic string) bool {
	if !ValidPattern(pattern) || !ValidTopic(topic) {
		return false
	}
	p := strings.Split(pattern, ".")
	t := strings.Split(topic, ".")
	// Glob matching over segments: '#' is the star, '*' the single wildcard.
	pi, ti := 0, 0
	star, mark := -1, 0
	for ti < len(t) {
		switch {
		case pi < len(p) && (p[pi] == "*" || p[pi] == t[ti]):
			pi++
			ti++
		case pi < len(p) && p[pi] == "#":
			star, mark = pi, ti
			pi++
		case star >= 0:
			pi = star + 1
			mark++
			ti = mark
		default:
			return false
		}
	}
	for pi < len(p) && p[pi] == "#" {
		pi++
	}
	return pi == len(p)
}

// checkTopic returns why s is not a valid topic (or pattern, if wildcards are
// allowed), or "" when it is valid.
func checkTopic(s string, wildcards bool) string {
	if s == "" {
		return "is empty"
	}
	if len(s) > maxTopicLength {
		return "is longer than 100 characters"
	}
	segStart := 0
	for i := 0; i <= len(s); i++ {
		if i < len(s) && s[i] != '.' {
			c := s[i]
			if c == '*' || c == '#' {
				if !wildcards {
					return "wildcards * and # are allowed in patterns only"
				}
				continue
			}
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
				return "segments may hold only A-Z, a-z, 0-9, _ and -"
			}
			continue
		}
		seg := s[segStart:i]
		if seg == "" {
			return "has an empty segment"
		}
		if strings.ContainsAny(seg, "*#") && len(seg) != 1 {
			return "a wildcard must be a whole segment"
		}
		segStart = i + 1
	}
	return ""
}
