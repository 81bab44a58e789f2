package redact

import (
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// confusables folds the look-alike letters NFKD leaves alone (Cyrillic,
// Greek, Armenian and a few Latin variants, Latin letters with a stroke) to
// the Latin letters they imitate. Fullwidth forms and mathematical
// alphanumerics are folded by NFKD itself, and Latin letters with marks
// (ö, é, ñ) become their base letter once the marks NFKD splits off are
// dropped.
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
	// Latin letters with a stroke, which NFKD does not decompose.
	'ø': 'o', 'Ø': 'O', 'ł': 'l', 'Ł': 'L', 'đ': 'd', 'Đ': 'D', 'ħ': 'h', 'Ħ': 'H', 'ŧ': 't', 'Ŧ': 'T', 'ƀ': 'b',
	'ɨ': 'i', 'ʉ': 'u',
}

// folded is a name as it is matched: its letters and digits, folded and
// lower-cased, joined (n), and where its words end in n.
type folded struct {
	n    string
	ends [maxWords]uint16
	cnt  int
}

// maxWords is the most words a name is split into; later words are part
// of the last one.
const maxWords = 16

// word returns the i-th word of f.
func (f *folded) word(i int) string {
	start := 0
	if i > 0 {
		start = int(f.ends[i-1])
	}
	return f.n[start:f.ends[i]]
}

// keyWords folds k (NFKD, then look-alikes to Latin) and returns its
// letters and digits lower-cased and joined, split into words at anything
// but letters and digits and at lower-to-upper case changes. Invisible
// characters (format characters, combining marks, so also the marks NFKD
// splits off ö or é) are dropped without splitting a word.
func keyWords(k string) folded {
	ascii := true
	for i := 0; i < len(k); i++ {
		if k[i] >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if !ascii {
		k = norm.NFKD.String(k)
	}
	var f folded
	var buf [64]byte
	all := buf[:0]
	same := ascii // all == k so far
	start := 0    // where the current word starts in all
	prevLower := false
	flush := func() {
		if len(all) > start {
			if f.cnt < maxWords {
				f.cnt++
			}
			f.ends[f.cnt-1] = uint16(min(len(all), 1<<16-1))
			start = len(all)
		}
	}
	for i := 0; i < len(k); {
		c := rune(k[i])
		w := 1
		if c >= utf8.RuneSelf {
			c, w = utf8.DecodeRuneInString(k[i:])
			if fc, ok := confusables[c]; ok {
				c = fc
			} else if unicode.Is(unicode.Cf, c) || unicode.Is(unicode.Mn, c) {
				i += w
				continue
			}
		}
		i += w
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
			all = append(all, byte(c))
			prevLower = c >= 'a'
		case c >= 'A' && c <= 'Z':
			if prevLower {
				flush()
			}
			all = append(all, byte(c+'a'-'A'))
			prevLower = false
			same = false
		default:
			flush()
			prevLower = false
			same = false
		}
	}
	flush()
	if same {
		f.n = k
	} else {
		f.n = string(all)
	}
	return f
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
