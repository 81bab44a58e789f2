package redact

import "strings"

// A card number is 13 to 19 digits that start with an issuer prefix of a
// card network, have a length that network issues, and pass the Luhn
// check. In text its digits may be grouped by one or two spaces, dashes or
// dots (groups of 3 to 6 digits); alone it may be signed or written as a
// float or with an exponent.

// IsCard reports whether digits (only digits) is a card number.
func IsCard(digits string) bool {
	n := len(digits)
	if n < 13 || n > 19 {
		return false
	}
	for i := 0; i < n; i++ {
		if digits[i] < '0' || digits[i] > '9' {
			return false
		}
	}
	return issuer(digits) && Luhn(digits)
}

// issuer reports whether the number's prefix and length fit a card network.
func issuer(d string) bool {
	n := len(d)
	p2 := int(d[0]-'0')*10 + int(d[1]-'0')
	p3 := p2*10 + int(d[2]-'0')
	p4 := p3*10 + int(d[3]-'0')
	switch {
	case d[0] == '4': // Visa (13, 16 and 19 issued; any length accepted)
		return true
	case p2 >= 51 && p2 <= 55, p4 >= 2221 && p4 <= 2720: // Mastercard
		return n == 16
	case p2 == 34 || p2 == 37: // American Express
		return n == 15
	case p4 >= 2200 && p4 <= 2204: // Mir
		return n >= 16
	case p3 >= 300 && p3 <= 305, p2 == 36, p2 == 38, p2 == 39: // Diners Club
		return n >= 14
	case p4 >= 3528 && p4 <= 3589: // JCB
		return n >= 16
	case p2 == 50, p2 >= 56 && p2 <= 69: // Discover, UnionPay, Maestro, RuPay, ...
		return n >= 13
	}
	return false
}

// Luhn reports whether the digits pass the Luhn checksum.
func Luhn(digits string) bool {
	sum := 0
	double := false
	for i := len(digits) - 1; i >= 0; i-- {
		d := int(digits[i] - '0')
		if double {
			if d *= 2; d > 9 {
				d -= 9
			}
		}
		sum += d
		double = !double
	}
	return sum%10 == 0
}

// IsCardNumber reports whether a JSON number literal is a card number:
// its integer part, its mantissa's digits (an exponent form), or its
// integer value.
func IsCardNumber(lit string) bool {
	lit = strings.TrimPrefix(lit, "-")
	mant, exp, hasExp := strings.Cut(strings.ToLower(lit), "e")
	ip, fp, _ := strings.Cut(mant, ".")
	if IsCard(ip) {
		return true
	}
	if !hasExp && strings.Trim(fp, "0") == "" {
		return false
	}
	digits := strings.TrimLeft(ip+fp, "0")
	if IsCard(strings.TrimRight(digits, "0")) || IsCard(digits) {
		return true
	}
	if hasExp {
		e := 0
		for _, c := range strings.TrimPrefix(exp, "+") {
			if c < '0' || c > '9' || e > 100 {
				return false
			}
			e = e*10 + int(c-'0')
		}
		if z := e - len(fp); z >= 0 && z < 20 {
			return IsCard(strings.TrimLeft(ip+fp+strings.Repeat("0", z), "0"))
		}
	}
	return false
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// hasLongDigitRun reports whether s may hold a card number: 13 digits
// with at most separators between them.
func hasLongDigitRun(s string) bool {
	n := 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case isDigit(c):
			if n++; n >= 13 {
				return true
			}
		case (c == ' ' || c == '-' || c == '.') && n > 0:
		default:
			n = 0
		}
	}
	return false
}

// cardSpans returns the byte ranges of card numbers in s.
func cardSpans(s string, spans []span) []span {
	if !hasLongDigitRun(s) {
		return spans
	}
	type group struct{ start, end int }
	var groups []group
	var buf [24]byte
	i := 0
	for i < len(s) {
		if !isDigit(s[i]) || (i > 0 && isDigit(s[i-1])) {
			i++
			continue
		}
		// The groups of one run: digits separated by one or two of
		// space, dash, dot.
		groups = groups[:0]
		j := i
		for {
			k := j
			for k < len(s) && isDigit(s[k]) {
				k++
			}
			groups = append(groups, group{j, k})
			sep := k
			for sep < len(s) && sep-k < 2 && (s[sep] == ' ' || s[sep] == '-' || s[sep] == '.') {
				sep++
			}
			if sep > k && sep < len(s) && isDigit(s[sep]) {
				j = sep
				continue
			}
			j = k
			break
		}
		for g := 0; g < len(groups); {
			found := -1
			// A whole group alone.
			if l := groups[g].end - groups[g].start; l >= 13 && l <= 19 && IsCard(s[groups[g].start:groups[g].end]) {
				found = g
			}
			if found < 0 && groups[g].end-groups[g].start <= 6 {
				// Consecutive groups of 1 to 6 digits (the first at least 3),
				// longest first.
				n := 0
				cand := -1
				for h := g; h < len(groups); h++ {
					l := groups[h].end - groups[h].start
					if l > 6 || (h == g && l < 3) || n+l > 19 {
						break
					}
					copy(buf[n:], s[groups[h].start:groups[h].end])
					n += l
					if h > g && n >= 13 && IsCard(string(buf[:n])) {
						cand = h
					}
				}
				// Two groups joined by one dot: a decimal mantissa.
				if cand < 0 && g+1 < len(groups) && s[groups[g].end] == '.' && groups[g+1].start == groups[g].end+1 {
					a, b := s[groups[g].start:groups[g].end], s[groups[g+1].start:groups[g+1].end]
					if len(a)+len(b) <= 19 && IsCard(strings.TrimLeft(a+b, "0")) {
						cand = g + 1
					}
				}
				found = cand
			}
			if found < 0 {
				g++
				continue
			}
			start := groups[g].start
			if start > 0 && s[start-1] == '-' {
				start--
			}
			spans = append(spans, span{start, groups[found].end, ""})
			g = found + 1
		}
		i = j
	}
	return spans
}
