package events

// ValidTraceparent reports whether s is a version-00 W3C traceparent
// (https://www.w3.org/TR/trace-context/#traceparent-header) with a trace id
// and a span id that are not all zeros: "00-<32 hex>-<16 hex>-<2 hex>", in
// lower case. Checked by hand because it runs for every event read.
func ValidTraceparent(s string) bool {
	if len(s) != 55 || s[0] != '0' || s[1] != '0' || s[2] != '-' || s[35] != '-' || s[52] != '-' {
		return false
	}
	return lowerHex(s[3:35]) && lowerHex(s[36:52]) && lowerHex(s[53:55]) &&
		!allZero(s[3:35]) && !allZero(s[36:52])
}

// TraceID returns the trace id of a valid traceparent, "" otherwise.
func TraceID(traceparent string) string {
	if !ValidTraceparent(traceparent) {
		return ""
	}
	return traceparent[3:35]
}

func lowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func allZero(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] != '0' {
			return false
		}
	}
	return true
}
