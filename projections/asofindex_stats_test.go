package projections

import (
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// printBuckets prints each top-level bucket's keys, the bytes its leaf
// pages use and the bytes they take.
func (ix *Index) printBuckets() {
	_ = ix.db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, bk *bolt.Bucket) error {
			s := bk.Stats()
			fmt.Printf("  %-28s keys %9d  leaf in use %7.1f MiB of %7.1f MiB (%3.0f%%), branch %6.1f MiB\n", name, s.KeyN,
				float64(s.LeafInuse)/(1<<20), float64(s.LeafAlloc)/(1<<20), 100*float64(s.LeafInuse)/float64(max(s.LeafAlloc, 1)),
				float64(s.BranchAlloc)/(1<<20))
			return nil
		})
	})
}
