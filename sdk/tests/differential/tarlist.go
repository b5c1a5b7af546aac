// tarlist lists tar archives the way a container runtime reads them: with Go's archive/tar
// (what containerd, Docker and BuildKit use to extract layers) and containerd's path rule.
//
// Usage: tarlist [-max-entry-bytes N] DIR
//
// Every regular file in DIR is read (sorted by name) as one uncompressed tar archive and one JSON
// line is printed per archive:
//
//	{"name": "...", "entries": [...], "error": null | "...", "over_limit": false}
//
// Each entry is {"path", "path_hex", "type", "size", "sha256", "link", "link_hex"}:
//   - path_hex: hex of the raw bytes of filepath.Join("/", hdr.Name) (the comparison key; Go's
//     JSON encoder would replace invalid UTF-8, so raw bytes travel as hex), path: a display form.
//   - type: hdr.Typeflag as a one-character string when it is printable ASCII, else its number.
//   - size: hdr.Size (after PAX and sparse headers; header-only types keep the header's value).
//   - sha256: hex of every byte tr.Read yields for the entry, read to the end with io.Copy.
//   - link/link_hex: the raw Linkname of a symlink, filepath.Join("/", Linkname) of a hard link,
//     null for other types.
//
// Reading stops at the first error of Next or Read; that error is "error". An entry whose data
// exceeds -max-entry-bytes is not read further: "over_limit" is true and reading stops (a
// sparse header can declare terabytes of holes).
//
// Standard library only; build with `GO111MODULE=off go build -o BIN tarlist.go`.
package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// entry is one header Next returned.
type entry struct {
	Path    string      `json:"path"`
	PathHex string      `json:"path_hex"`
	Type    interface{} `json:"type"`
	Size    int64       `json:"size"`
	Sha256  string      `json:"sha256"`
	Read    int64       `json:"read"`
	Link    *string     `json:"link"`
	LinkHex *string     `json:"link_hex"`
}

// listing is the result for one archive.
type listing struct {
	Name      string  `json:"name"`
	Entries   []entry `json:"entries"`
	Error     *string `json:"error"`
	OverLimit bool    `json:"over_limit"`
}

// errOverLimit marks an entry whose data exceeds -max-entry-bytes.
var errOverLimit = errors.New("tarlist: entry data over the limit, not read")

// display is a printable form of raw bytes (for people; comparisons use the hex).
func display(s string) string {
	return strings.ToValidUTF8(s, "\uFFFD")
}

// typeValue is the typeflag as a one-character string, or its number when not printable.
func typeValue(t byte) interface{} {
	if t > 0x20 && t < 0x7f {
		return string([]byte{t})
	}
	return int(t)
}

// list reads one archive from r.
func list(name string, r io.Reader, maxEntry int64) listing {
	out := listing{Name: name, Entries: []entry{}}
	fail := func(err error) listing {
		msg := err.Error()
		out.Error = &msg
		return out
	}
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			return fail(err)
		}
		p := filepath.Join("/", hdr.Name)
		e := entry{
			Path:    display(p),
			PathHex: hex.EncodeToString([]byte(p)),
			Type:    typeValue(hdr.Typeflag),
			Size:    hdr.Size,
		}
		var link string
		switch hdr.Typeflag {
		case tar.TypeSymlink:
			link = hdr.Linkname
		case tar.TypeLink:
			link = filepath.Join("/", hdr.Linkname)
		}
		if hdr.Typeflag == tar.TypeSymlink || hdr.Typeflag == tar.TypeLink {
			d, h := display(link), hex.EncodeToString([]byte(link))
			e.Link, e.LinkHex = &d, &h
		}
		sum := sha256.New()
		n, err := io.Copy(sum, io.LimitReader(tr, maxEntry+1))
		e.Read = n
		e.Sha256 = hex.EncodeToString(sum.Sum(nil))
		out.Entries = append(out.Entries, e)
		if err != nil {
			return fail(err)
		}
		if n > maxEntry {
			out.OverLimit = true
			return fail(errOverLimit)
		}
	}
}

func main() {
	maxEntry := flag.Int64("max-entry-bytes", 64<<20, "stop at an entry with more data than this")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: tarlist [-max-entry-bytes N] DIR")
		os.Exit(2)
	}
	dir := flag.Arg(0)
	files, err := os.ReadDir(dir) // sorted by name
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	w := bufio.NewWriter(os.Stdout)
	enc := json.NewEncoder(w)
	for _, f := range files {
		if !f.Type().IsRegular() {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, f.Name()))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		// A bare io.Reader, as a decompressor stream is: no io.Seeker shortcuts in discard.
		r := struct{ io.Reader }{bytes.NewReader(data)}
		if err := enc.Encode(list(f.Name(), r, *maxEntry)); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	if err := w.Flush(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
