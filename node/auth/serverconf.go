package auth

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
)

// WriteServerConfig writes the trust a nats-server needs to admit the
// set's users, for running the ledger against a cluster with the same
// least-privilege model as the embedded server: the operator's JWT, the
// system account, and a memory resolver preloaded with the ledger's
// account (JetStream on) and the system account. Every server of the
// cluster includes the same text; its own configuration must enable
// JetStream. Only public keys and JWTs are written: the keys stay in the
// credentials directory. The users are not listed in it: the server
// admits any user JWT the account signed, with the permissions it carries,
// and refuses those the account JWT revokes.
func (s *Set) WriteServerConfig(w io.Writer) error {
	t := s.trust
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "# The ledger's NATS trust, operator mode (docs/adr/0022-operator-mode.md).\n")
	fmt.Fprintf(bw, "# Include from every server's configuration. Clients connect with the\n")
	fmt.Fprintf(bw, "# .creds files in DATA/%s; the keys stay there.\n", Dir)
	fmt.Fprintf(bw, "# A client sends its user JWT, which carries its permissions, in its\n")
	fmt.Fprintf(bw, "# CONNECT line: longer than the default 4096 bytes allow.\n")
	fmt.Fprintf(bw, "max_control_line: %d\n", MaxControlLine)
	fmt.Fprintf(bw, "operator: %s\n", strconv.Quote(t.operatorJWT))
	fmt.Fprintf(bw, "system_account: %s\n", strconv.Quote(t.system))
	fmt.Fprintf(bw, "resolver: MEMORY\n")
	fmt.Fprintf(bw, "resolver_preload: {\n")
	fmt.Fprintf(bw, "  # %s: the ledger's account (its users: %s)\n", AccountName, s.userList())
	fmt.Fprintf(bw, "  %s: %s\n", t.account, strconv.Quote(t.accountJWT))
	fmt.Fprintf(bw, "  # %s: the system account\n", systemName)
	fmt.Fprintf(bw, "  %s: %s\n", t.system, strconv.Quote(t.systemJWT))
	fmt.Fprintf(bw, "}\n")
	return bw.Flush()
}

// userList names the set's users for a comment.
func (s *Set) userList() string {
	out := ""
	for i, u := range s.users {
		if i > 0 {
			out += ", "
		}
		out += userName(u)
	}
	return out
}
