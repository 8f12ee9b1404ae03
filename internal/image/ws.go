package image

import (
	"fmt"
	"path/filepath"

	"github.com/catalyzer/catalyzer/internal/atomicfile"
	"github.com/catalyzer/catalyzer/internal/procfs"
)

// RecordWorkingSet records which pages of pages.img the restored process
// pid has touched so far (run it after the first invocation of an instance
// restored from img without prefetch): a page of an anonymous VMA mapped
// from pages.img is touched when /proc/PID/pagemap shows it present or
// swapped — read (page-cache page mapped) or written (private copy). The
// ranges go to ws.bin and the manifest is rewritten; img.WorkingSet is set.
func RecordWorkingSet(pid int, img *Image) ([]Range, error) {
	pm, err := procfs.OpenPagemap(pid)
	if err != nil {
		return nil, err
	}
	defer pm.Close()
	var rs []Range
	add := func(off uint64) {
		if n := len(rs); n > 0 && rs[n-1].Off+rs[n-1].Len == off {
			rs[n-1].Len += pageSize
			return
		}
		rs = append(rs, Range{off, pageSize})
	}
	for _, v := range img.VMAs {
		if v.Kind != VMAAnon || v.PagesOff == noPages {
			continue
		}
		ents, err := pm.Read(v.Start, v.End)
		if err != nil {
			return nil, fmt.Errorf("working set: %w", err)
		}
		for p, e := range ents {
			if e.Present() || e.Swapped() {
				add(v.PagesOff + uint64(p)*pageSize)
			}
		}
	}
	// VMAs are sorted by address and their regions were laid out in that
	// order, so rs is sorted by offset.
	if err := atomicfile.WriteFile(filepath.Join(img.Dir, WSFile), encodeWS(rs), 0o644); err != nil {
		return nil, err
	}
	if err := writeManifest(img.Dir, []string{MetaFile, PlanFile, ObjectsFile, PagesFile, WSFile}); err != nil {
		return nil, err
	}
	img.WorkingSet = rs
	return rs, nil
}
