package main

import _ "embed"

// openAPIDoc is docs/openapi.json, embedded so the binary serves the same
// document it was built with (a test keeps the two equal).
//
//go:embed openapi/openapi.json
var openAPIDoc []byte
