// Package cpiotest reads newc archives back for the rootfs tests: every
// record with its content, and a one-line description of each.
package cpiotest

import (
	"bytes"
	"fmt"
	"io"
	"testing"

	ucpio "github.com/u-root/u-root/pkg/cpio"

	"github.com/qtenclave/enclave/rootfs/cpio"
)

// Record is one archive record and its content.
type Record struct {
	ucpio.Info
	Data string
}

// Read returns the records of archive by name, and the names in archive
// order.
func Read(t testing.TB, archive []byte) (map[string]Record, []string) {
	t.Helper()
	recs, err := ucpio.ReadAllRecords(ucpio.Newc.Reader(bytes.NewReader(archive)))
	if err != nil {
		t.Fatalf("read cpio: %v", err)
	}
	out := map[string]Record{}
	var order []string
	for _, r := range recs {
		b, err := io.ReadAll(io.NewSectionReader(r.ReaderAt, 0, int64(r.FileSize)))
		if err != nil {
			t.Fatal(err)
		}
		out[r.Name] = Record{r.Info, string(b)}
		order = append(order, r.Name)
	}
	return out, order
}

// Describe renders a record as "f 0644 0:0 =data", "d 0755 0:0",
// "l 0777 0:0 ->target". The content of a hard link without data (not the
// first of its inode) is taken from the record of all that has it.
func Describe(all map[string]Record, r Record) string {
	perm := r.Mode & cpio.PermMask
	switch r.Mode & cpio.TypeMask {
	case cpio.TypeDir:
		return fmt.Sprintf("d %04o %d:%d", perm, r.UID, r.GID)
	case cpio.TypeSymlink:
		return fmt.Sprintf("l %04o %d:%d ->%s", perm, r.UID, r.GID, r.Data)
	case cpio.TypeReg:
		data := r.Data
		if r.NLink > 1 && r.FileSize == 0 {
			for _, o := range all {
				if o.Ino == r.Ino && o.FileSize > 0 {
					data = o.Data
				}
			}
		}
		return fmt.Sprintf("f %04o %d:%d =%s", perm, r.UID, r.GID, data)
	}
	return fmt.Sprintf("? %o", r.Mode)
}
