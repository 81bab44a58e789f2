package redact

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// confusables folds the look-alike letters NFKC leaves alone (Cyrillic,
// Greek, Armenian and a few Latin variants) to the Latin letters they
// imitate. Fullwidth forms and mathematical alphanumerics are folded by
// NFKC itself.
var confusables = map[rune]rune{
	// Cyrillic.
	'а': 'a', 'в': 'b', 'г': 'r', 'е': 'e', 'ё': 'e', 'к': 'k', 'м': 'm', 'н': 'h', 'о': 'o', 'п': 'n', 'р': 'p',
	'с': 'c', 'т': 't', 'у': 'y', 'х': 'x', 'ь': 'b', 'і': 'i', 'ї': 'i', 'ј': 'j', 'ѕ': 's', 'ԁ': 'd', 'ԛ': 'q',
	'ԝ': 'w', 'ӏ': 'l', 'һ': 'h', 'ɡ': 'g', 'ց': 'g',
	'А': 'A', 'В': 'B', 'Е': 'E', 'К': 'K', 'М': 'M', 'Н': 'H', 'О': 'O', 'Р': 'P', 'С': 'C', 'Т': 'T', 'Х': 'X',
	'У': 'Y', 'І': 'I', 'Ј': 'J', 'Ѕ': 'S', 'Ԁ': 'D', 'Ԛ': 'Q', 'Ԝ': 'W', 'Ӏ': 'I',
	// Greek.
	'α': 'a', 'β': 'b', 'γ': 'y', 'δ': 'd', 'ε': 'e', 'η': 'n', 'ι': 'i', 'κ': 'k', 'μ': 'u', 'ν': 'v', 'ο': 'o',
	'ρ': 'p', 'σ': 'o', 'τ': 't', 'υ': 'u', 'χ': 'x', 'ω': 'w', 'ϲ': 'c', 'ϳ': 'j',
	'Α': 'A', 'Β': 'B', 'Ε': 'E', 'Ζ': 'Z', 'Η': 'H', 'Ι': 'I', 'Κ': 'K', 'Μ': 'M', 'Ν': 'N', 'Ο': 'O', 'Ρ': 'P',
	'Τ': 'T', 'Υ': 'Y', 'Χ': 'X',
	// Armenian and Latin variants.
	'օ': 'o', 'ս': 'u', 'ı': 'i', 'ȷ': 'j', 'ſ': 's', 'ℓ': 'l', 'ɑ': 'a', 'ʀ': 'R', 'ʏ': 'Y', 'ᴀ': 'A', 'ᴄ': 'C',
	'ᴅ': 'D', 'ᴇ': 'E', 'ᴋ': 'K', 'ᴍ': 'M', 'ᴏ': 'O', 'ᴘ': 'P', 'ᴛ': 'T', 'ᴜ': 'U', 'ᴠ': 'V', 'ᴡ': 'W', 'ᴢ': 'Z',
}

// keyWords folds k (NFKC, then look-alikes to Latin) and returns its words
// lower-cased — split at anything but letters and digits and at
// lower-to-upper case changes — and all its letters and digits joined.
// Invisible characters (format characters, combining marks) are dropped
// without splitting a word.
func keyWords(k string) ([]string, string) {
	ascii := true
	for i := 0; i < len(k); i++ {
		if k[i] >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if ascii {
		return asciiWords(k)
	}
	k = norm.NFKC.String(k)
	var words []string
	var all, cur strings.Builder
	prevLower := false
	flush := func() {
		if cur.Len() > 0 {
			words = append(words, cur.String())
			cur.Reset()
		}
	}
	for _, c := range k {
		if c >= utf8.RuneSelf {
			if f, ok := confusables[c]; ok {
				c = f
			} else if unicode.Is(unicode.Cf, c) || unicode.Is(unicode.Mn, c) {
				continue
			}
		}
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
			cur.WriteRune(c)
			all.WriteRune(c)
			prevLower = c >= 'a'
		case c >= 'A' && c <= 'Z':
			if prevLower {
				flush()
			}
			cur.WriteRune(c + 'a' - 'A')
			all.WriteRune(c + 'a' - 'A')
			prevLower = false
		default:
			flush()
			prevLower = false
		}
	}
	flush()
	return words, all.String()
}

// isKeyRune reports whether c may be part of a name in text: letters,
// digits, marks, invisible format characters and _ - . %.
func isKeyRune(c rune) bool {
	if c < utf8.RuneSelf {
		return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.' || c == '%'
	}
	return unicode.IsLetter(c) || unicode.IsDigit(c) || unicode.Is(unicode.Mn, c) || unicode.Is(unicode.Cf, c) ||
		unicode.Is(unicode.Nl, c) || unicode.Is(unicode.No, c)
}

// asciiWords is keyWords for an ASCII name, with fewer allocations.
func asciiWords(k string) ([]string, string) {
	var buf [64]byte
	all := buf[:0]
	var words []string
	var wordsBuf [8]string
	words = wordsBuf[:0]
	start := 0 // where the current word starts in all
	prevLower := false
	for i := 0; i < len(k); i++ {
		c := k[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
			all = append(all, c)
			prevLower = c >= 'a'
		case c >= 'A' && c <= 'Z':
			if prevLower && len(all) > start {
				words = append(words, string(all[start:]))
				start = len(all)
			}
			all = append(all, c+'a'-'A')
			prevLower = false
		default:
			if len(all) > start {
				words = append(words, string(all[start:]))
				start = len(all)
			}
			prevLower = false
		}
	}
	if len(all) > start {
		words = append(words, string(all[start:]))
	}
	return words, string(all)
}
