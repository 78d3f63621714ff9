package auth

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/nats-io/nats-server/v2/server"
)

// WriteServerConfig writes the set's users and permissions as an accounts
// block of a nats-server configuration file, for running the ledger against
// an existing cluster with the same least-privilege model as the embedded
// server. The users go into account (for example "LEDGER"), which gets
// JetStream; the server's own configuration must enable JetStream. Only
// public keys are written: the seeds stay in the credentials directory.
func (s *Set) WriteServerConfig(w io.Writer, account string) error {
	if account == "" || strings.ContainsAny(account, " \t\r\n{}[]:=\"'#") {
		return fmt.Errorf("auth: account name %q: use letters, digits, '-' or '_'", account)
	}
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "# The ledger's NATS users: one nkey user per role, least privilege.\n")
	fmt.Fprintf(bw, "# Include from the server configuration; the seeds are in DATA/%s/<role>%s.\n", Dir, SeedExt)
	fmt.Fprintf(bw, "accounts {\n  %s {\n    jetstream: enabled\n    users: [\n", account)
	for _, u := range s.users {
		name := u.Role
		if u.Team != "" {
			name += " " + u.Team
		}
		fmt.Fprintf(bw, "      # %s\n      {\n        nkey: %s\n", name, quote(u.Nkey))
		if p := u.Permissions; p != nil {
			bw.WriteString("        permissions: {\n")
			writeSubjects(bw, "publish", p.Publish)
			writeSubjects(bw, "subscribe", p.Subscribe)
			if p.Response != nil {
				fmt.Fprintf(bw, "          allow_responses: { max: %d, expires: %s }\n", p.Response.MaxMsgs, quote(p.Response.Expires.String()))
			}
			bw.WriteString("        }\n")
		}
		bw.WriteString("      }\n")
	}
	bw.WriteString("    ]\n  }\n}\n")
	return bw.Flush()
}

func writeSubjects(w *bufio.Writer, name string, p *server.SubjectPermission) {
	if p == nil {
		return
	}
	fmt.Fprintf(w, "          %s: {\n", name)
	list := func(key string, subjects []string) {
		if len(subjects) == 0 {
			return
		}
		fmt.Fprintf(w, "            %s: [\n", key)
		for _, s := range subjects {
			fmt.Fprintf(w, "              %s\n", quote(s))
		}
		w.WriteString("            ]\n")
	}
	list("allow", p.Allow)
	list("deny", p.Deny)
	w.WriteString("          }\n")
}

// quote writes a string the configuration parser takes literally: quoted,
// so that "$JS.API..." is not read as a variable reference.
func quote(s string) string {
	return strconv.Quote(s)
}
