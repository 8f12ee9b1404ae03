package sandbox

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/catalyzer/catalyzer/internal/errdefs"
	"github.com/catalyzer/catalyzer/internal/timing"
)

// maxReports bounds what the daemon keeps of a helper's status stream:
// a dozen phase marks, one ready or error report.
const maxReports = 64

// readReports reads a helper's status stream (one JSON report a line, see
// report) to EOF: its phase marks, whether it reported ready, or the
// error it reported (an *InitError). A line that is not a report, or more
// than maxReports of them, is ErrInvalid.
func readReports(r io.Reader) (marks []mark, ready bool, err error) {
	sc := bufio.NewScanner(r)
	n := 0
	for sc.Scan() {
		if n++; n > maxReports {
			return nil, false, fmt.Errorf("more than %d status reports: %w", maxReports, errdefs.ErrInvalid)
		}
		var rep report
		if err := json.Unmarshal(sc.Bytes(), &rep); err != nil {
			return nil, false, fmt.Errorf("bad status report %q: %v: %w", sc.Text(), err, errdefs.ErrInvalid)
		}
		switch {
		case rep.Error != nil:
			return nil, false, rep.Error
		case rep.Mark != nil:
			marks = append(marks, *rep.Mark)
		case rep.Ready:
			ready = true
		}
	}
	if err := sc.Err(); err != nil {
		return nil, false, fmt.Errorf("read status: %w", err)
	}
	return marks, ready, nil
}

// phasesOf turns marks (CLOCK_MONOTONIC ns, the daemon's and the helper's)
// into consecutive phases from t0, in time order.
func phasesOf(t0 int64, marks []mark) []timing.Phase {
	sort.SliceStable(marks, func(i, j int) bool { return marks[i].T < marks[j].T })
	out := make([]timing.Phase, 0, len(marks))
	prev := t0
	for _, m := range marks {
		out = append(out, timing.Phase{Name: m.Phase, D: time.Duration(m.T - prev)})
		prev = m.T
	}
	return out
}
