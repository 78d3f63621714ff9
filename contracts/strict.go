package contracts

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"
)

// strictJSON refuses what a JSON parser would otherwise quietly rewrite, so
// that a command is taken exactly as sent or refused: text that is not
// UTF-8, a \u escape of half a surrogate pair (decoded as U+FFFD), U+0000 in
// a string, and an object that names a key twice (the last would win). The
// error names the JSON pointer where it was found.
func strictJSON(op string, data []byte) error {
	if !utf8.Valid(data) {
		return invalidAt(op, "", "the body must be UTF-8 text")
	}
	if i := loneSurrogate(data); i >= 0 {
		return invalidAt(op, "", fmt.Sprintf("a \\u escape at byte %d is half a surrogate pair, which is no character", i))
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	err := walk(dec, "")
	if errors.Is(err, io.EOF) {
		return nil // the schema reports a body that is not one JSON value
	}
	return err
}

// strictError is what walk finds: where, and which rule.
type strictError struct{ pointer, rule string }

func (e *strictError) Error() string { return e.pointer + ": " + e.rule }

// walk reads one JSON value at pointer from dec, refusing duplicate keys and
// U+0000 in strings. Syntax errors are left to the schema validator, which
// names them better: walk returns nil on them.
func walk(dec *json.Decoder, pointer string) error {
	tok, err := dec.Token()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return err
		}
		return nil
	}
	switch v := tok.(type) {
	case string:
		if strings.ContainsRune(v, 0) {
			return &strictError{pointer, "a string must not contain U+0000"}
		}
	case json.Delim:
		switch v {
		case '{':
			seen := map[string]bool{}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil
				}
				k, _ := kt.(string)
				p := pointer + "/" + strings.NewReplacer("~", "~0", "/", "~1").Replace(k)
				if seen[k] {
					return &strictError{p, "a key may appear once in an object"}
				}
				if strings.ContainsRune(k, 0) {
					return &strictError{p, "a key must not contain U+0000"}
				}
				seen[k] = true
				if err := walk(dec, p); err != nil {
					return err
				}
			}
			_, _ = dec.Token()
		case '[':
			for i := 0; dec.More(); i++ {
				if err := walk(dec, pointer+"/"+strconv.Itoa(i)); err != nil {
					return err
				}
			}
			_, _ = dec.Token()
		}
	}
	return nil
}

// loneSurrogate returns the byte offset of the first \u escape in data that
// is half of a UTF-16 surrogate pair without its other half, or -1.
func loneSurrogate(data []byte) int {
	hex := func(i int) (rune, bool) {
		if i+6 > len(data) || data[i] != '\\' || data[i+1] != 'u' {
			return 0, false
		}
		n, err := strconv.ParseUint(string(data[i+2:i+6]), 16, 16)
		return rune(n), err == nil
	}
	for i := 0; i < len(data); i++ {
		if data[i] != '\\' {
			continue
		}
		if i+1 < len(data) && data[i+1] != 'u' {
			i++ // another escape: skip its character (an escaped backslash included)
			continue
		}
		r, ok := hex(i)
		switch {
		case !ok:
		case r >= 0xD800 && r <= 0xDBFF:
			if lo, ok := hex(i + 6); ok && lo >= 0xDC00 && lo <= 0xDFFF {
				i += 11
				continue
			}
			return i
		case r >= 0xDC00 && r <= 0xDFFF:
			return i
		}
		if ok {
			i += 5
		}
	}
	return -1
}
