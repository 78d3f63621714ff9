package console

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/projections/bundle"
)

// Bounds on the bundles the console reads.
const (
	bundlesMax    = 50       // listed and verified per page
	bundleMaxSize = 64 << 20 // read for verification
)

// bundleName is the file names the console serves: no path, no surprises.
var bundleName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]{0,200}\.zip$`)

// BundleRow is one bundle and the result of verifying it against the log.
type BundleRow struct {
	Name       string
	Size       int64
	Modified   string
	AsOf       string
	Clock      string
	Position   uint64
	MerkleRoot string
	Verified   bool
	Trusted    bool
	Failed     []string // the checks that failed, with their detail
	Error      string   // why the bundle could not be verified at all
}

// bundleCache keeps verification results by file and size and time: a
// verification refolds the log from its first event.
type bundleCache struct {
	mu   sync.Mutex
	rows map[string]BundleRow
}

func newBundleCache() *bundleCache { return &bundleCache{rows: map[string]BundleRow{}} }

// ListBundles verifies every bundle in dir against store (cached).
func (c *Console) listBundles(ctx context.Context) ([]BundleRow, error) {
	if c.cfg.BundleDir == "" {
		return nil, nil
	}
	entries, err := os.ReadDir(c.cfg.BundleDir)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var rows []BundleRow
	for _, e := range entries {
		if len(rows) == bundlesMax {
			break
		}
		if e.IsDir() || !bundleName.MatchString(e.Name()) {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		rows = append(rows, c.verifyBundle(ctx, e.Name(), info))
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].Name < rows[j].Name })
	return rows, nil
}

func (c *Console) verifyBundle(ctx context.Context, name string, info os.FileInfo) BundleRow {
	key := name + "\x00" + info.ModTime().String() + "\x00" + strconv.FormatInt(info.Size(), 10)
	c.bundles.mu.Lock()
	row, ok := c.bundles.rows[key]
	c.bundles.mu.Unlock()
	if ok {
		return row
	}
	row = BundleRow{Name: name, Size: info.Size(), Modified: info.ModTime().In(c.cfg.Zone).Format(time.RFC3339)}
	if info.Size() > bundleMaxSize {
		row.Error = "larger than the console verifies; use 'ledger verify --against'"
		return row
	}
	data, err := os.ReadFile(filepath.Join(c.cfg.BundleDir, name))
	if err != nil {
		row.Error = err.Error()
		return row
	}
	rep, err := bundle.VerifyAgainst(ctx, c.cfg.Store, bytes.NewReader(data), int64(len(data)), c.cfg.TrustedKey)
	row.AsOf, row.Clock, row.Position, row.MerkleRoot = rep.Manifest.AsOf, string(rep.Manifest.Clock), rep.Manifest.Position, rep.Manifest.MerkleRoot
	row.Trusted = rep.Trusted
	row.Verified = err == nil && rep.OK() && rep.Trusted
	for _, ch := range rep.Checks {
		if !ch.OK {
			row.Failed = append(row.Failed, ch.Name+": "+ch.Detail)
		}
	}
	if err != nil && len(row.Failed) == 0 {
		row.Error = oneLine(err.Error())
	}
	if ctx.Err() == nil {
		c.bundles.mu.Lock()
		c.bundles.rows[key] = row
		c.bundles.mu.Unlock()
	}
	return row
}

func (c *Console) bundlesPage(w http.ResponseWriter, r *http.Request) {
	rows, err := c.listBundles(r.Context())
	if err != nil {
		c.failErr(w, r, "", err)
		return
	}
	c.render(w, r, http.StatusOK, "bundles", page{Title: "Bundles", Nav: "bundles", Data: struct {
		Rows []BundleRow
		Dir  string
	}{rows, c.cfg.BundleDir}})
}

func (c *Console) bundleDownload(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if !bundleName.MatchString(name) || c.cfg.BundleDir == "" {
		c.failErr(w, r, "name", &events.Error{Kind: events.KindInvalid, Field: "name", Rule: "a bundle is a .zip file name listed on the bundles page"})
		return
	}
	f, err := os.Open(filepath.Join(c.cfg.BundleDir, name))
	if err != nil {
		c.fail(w, r, http.StatusNotFound, "name", "no bundle "+name)
		return
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		c.failErr(w, r, "name", err)
		return
	}
	w.Header().Set("Content-Type", "application/zip")
	w.Header().Set("Content-Disposition", `attachment; filename="`+name+`"`)
	http.ServeContent(w, r, name, info.ModTime(), f)
}
