package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/marketledger/ledger/services/policy"
)

// issuersFile is where a data directory says who may issue policy.
const issuersFile = "policy-issuers.json"

// defaultIssuers hold the policy_issuer role when no issuers file exists:
// the demo's issuer, the Ministry of Trade. A deployment names its own in
// DATA/policy-issuers.json (or --policy-issuers).
var defaultIssuers = []string{"kemendag"}

// issuersConfig is the issuers file: each issuer named holds the
// policy_issuer role.
type issuersConfig struct {
	PolicyIssuers []string `json:"policy_issuers"`
}

// fileIssuers is a policy.Authorizer read from an issuers file on every
// policy command (they are rare), so that an edit is in force at once,
// without a restart. A missing file means defaultIssuers.
type fileIssuers struct {
	path string
	// explicit: the file was named with --policy-issuers and must exist.
	explicit bool
}

// issuersFrom returns the authorizer of a data directory, or of the file
// named by flag when it is not empty, after checking the file once.
func issuersFrom(dataDir, flag string) (*fileIssuers, error) {
	f := &fileIssuers{path: filepath.Join(dataDir, issuersFile)}
	if flag != "" {
		f = &fileIssuers{path: flag, explicit: true}
	}
	if _, err := f.load(); err != nil {
		return nil, usagef("%v", err)
	}
	return f, nil
}

func (f *fileIssuers) load() ([]string, error) {
	b, err := os.ReadFile(f.path)
	if errors.Is(err, os.ErrNotExist) && !f.explicit {
		return defaultIssuers, nil
	}
	if err != nil {
		return nil, fmt.Errorf("--policy-issuers %s: %v", f.path, err)
	}
	var c issuersConfig
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("--policy-issuers %s: want {\"policy_issuers\": [\"name\", ...]}: %v", f.path, err)
	}
	for i, name := range c.PolicyIssuers {
		if name == "" {
			return nil, fmt.Errorf("--policy-issuers %s: policy_issuers[%d] is empty", f.path, i)
		}
	}
	return c.PolicyIssuers, nil
}

// Roles implements policy.Authorizer.
func (f *fileIssuers) Roles(_ context.Context, issuer string) ([]string, error) {
	names, err := f.load()
	if err != nil {
		return nil, err
	}
	if slices.Contains(names, issuer) {
		return []string{policy.RolePolicyIssuer}, nil
	}
	return nil, nil
}

// staticIssuers gives every name the policy_issuer role.
func staticIssuers(names []string) policy.StaticRoles {
	m := policy.StaticRoles{}
	for _, n := range names {
		m[n] = []string{policy.RolePolicyIssuer}
	}
	return m
}
