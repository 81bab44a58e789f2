package jsontext

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"unicode/utf8"
)

// Check reports why b is not JSON that jsonb stores: invalid syntax or
// UTF-8, nesting deeper than MaxDepth, a \u0000 escape or a lone UTF-16
// surrogate escape, or a number out of numeric's range (PostgreSQL rejects
// the last three).
func Check(b []byte) error {
	_, err := CheckPrinted(b)
	return err
}

// CheckPrinted is Check that also returns the size of b with its
// numbers written out as PostgreSQL prints them.
func CheckPrinted(b []byte) (int, error) {
	n, _, err := Scan(b, true)
	return n, err
}

// Scan is CheckPrinted; with checkSyntax false it trusts b to be
// valid JSON syntax (encoding/json's output) and skips that pass. UTF-8 is
// checked either way: a MarshalJSON method may return invalid UTF-8, which
// encoding/json passes through. replaced reports a \ufffd escape in a
// string, which is what encoding/json writes for invalid UTF-8.
func Scan(b []byte, checkSyntax bool) (printed int, replaced bool, err error) {
	if !utf8.Valid(b) {
		return 0, false, fmt.Errorf("is not valid UTF-8")
	}
	if checkSyntax && !json.Valid(b) {
		return 0, false, fmt.Errorf("is not valid JSON")
	}
	depth := 0
	printed = len(b)
	for i := 0; i < len(b); i++ {
		switch c := b[i]; {
		case c == '[' || c == '{':
			depth++
			if depth > MaxDepth {
				return 0, false, DepthError()
			}
		case c == ']' || c == '}':
			depth--
		case c == '"':
			end, fffd, err := scanString(b, i+1)
			if err != nil {
				return 0, false, err
			}
			replaced = replaced || fffd
			i = end
		case c == '-' || c >= '0' && c <= '9':
			end := i
			for end < len(b) && strings.IndexByte("0123456789+-.eE", b[end]) >= 0 {
				end++
			}
			n, err := numericTextLen(b[i:end])
			if err != nil {
				return 0, false, err
			}
			printed += n - (end - i)
			i = end - 1
		}
	}
	return printed, replaced, nil
}

func leadingZeros(digits []byte) int {
	n := 0
	for n < len(digits) && digits[n] == '0' {
		n++
	}
	return n
}

// PostgreSQL numeric limits: digits before and after the decimal point.
const (
	numericMaxIntDigits = 131072
	numericMaxScale     = 16383
)

// numericTextLen returns the length of the valid JSON number tok as
// PostgreSQL's numeric prints it, or an error when numeric cannot hold it.
func numericTextLen(tok []byte) (int, error) {
	neg := tok[0] == '-'
	if neg {
		tok = tok[1:]
	}
	mant, exp := tok, 0
	if k := bytes.IndexAny(tok, "eE"); k >= 0 {
		mant = tok[:k]
		e := tok[k+1:]
		sign := 1
		if len(e) > 0 && (e[0] == '+' || e[0] == '-') {
			if e[0] == '-' {
				sign = -1
			}
			e = e[1:]
		}
		for _, d := range e {
			if exp < 1<<30 {
				exp = exp*10 + int(d-'0')
			}
		}
		if exp >= math.MaxInt32/2 {
			// numeric_in refuses such exponents even on a zero.
			return 0, fmt.Errorf("holds a number whose exponent is out of numeric's range")
		}
		exp *= sign
	}
	intPart, frac := mant, []byte(nil)
	if k := bytes.IndexByte(mant, '.'); k >= 0 {
		intPart, frac = mant[:k], mant[k+1:]
	}
	scale := max(len(frac)-exp, 0)
	if scale > numericMaxScale {
		return 0, fmt.Errorf("holds a number with more than %d digits after the decimal point", numericMaxScale)
	}
	zeros := leadingZeros(intPart) // leading zeros of the digit string intPart+frac
	if zeros == len(intPart) {
		zeros += leadingZeros(frac)
	}
	n := 1                              // the integer part: at least "0"
	if zeros < len(intPart)+len(frac) { // not zero
		if pos := len(intPart) + exp - zeros; pos > 1 {
			if pos > numericMaxIntDigits {
				return 0, fmt.Errorf("holds a number with more than %d digits before the decimal point", numericMaxIntDigits)
			}
			n = pos
		}
		if neg {
			n++
		}
	}
	if scale > 0 {
		n += 1 + scale
	}
	return n, nil
}

// scanString checks the escapes of the JSON string starting at b[i] (after
// its opening quote) and returns the index of its closing quote. b is
// already known to be valid JSON.
func scanString(b []byte, i int) (end int, fffd bool, err error) {
	pendingHigh := false
	for ; i < len(b); i++ {
		c := b[i]
		if c == '"' {
			if pendingHigh {
				return 0, false, fmt.Errorf("holds a lone UTF-16 surrogate escape")
			}
			return i, fffd, nil
		}
		if c != '\\' {
			if pendingHigh {
				return 0, false, fmt.Errorf("holds a lone UTF-16 surrogate escape")
			}
			continue
		}
		i++
		if b[i] != 'u' {
			if pendingHigh {
				return 0, false, fmt.Errorf("holds a lone UTF-16 surrogate escape")
			}
			continue
		}
		r := hex4(b[i+1 : i+5])
		i += 4
		switch {
		case r == 0xFFFD:
			fffd = true
			if pendingHigh {
				return 0, false, fmt.Errorf("holds a lone UTF-16 surrogate escape")
			}
		case r == 0:
			return 0, false, fmt.Errorf("holds a \\u0000 escape, which PostgreSQL's jsonb rejects")
		case r >= 0xD800 && r < 0xDC00:
			if pendingHigh {
				return 0, false, fmt.Errorf("holds a lone UTF-16 surrogate escape")
			}
			pendingHigh = true
		case r >= 0xDC00 && r < 0xE000:
			if !pendingHigh {
				return 0, false, fmt.Errorf("holds a lone UTF-16 surrogate escape")
			}
			pendingHigh = false
		default:
			if pendingHigh {
				return 0, false, fmt.Errorf("holds a lone UTF-16 surrogate escape")
			}
		}
	}
	return i, fffd, nil
}

func hex4(h []byte) rune {
	var r rune
	for _, c := range h {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c - 'a' + 10)
		case c >= 'A' && c <= 'F':
			r |= rune(c - 'A' + 10)
		}
	}
	return r
}
