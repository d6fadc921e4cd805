package controller

import (
	"strings"
	"testing"

	"github.com/sluice-flow/sluice/dataplane/promtext/promtexttest"
)

// Families two processes both write appear once, with every series; a
// series both report counts once.
func TestMergeExpositions(t *testing.T) {
	a := "# HELP sluice_dbus_up Up.\n# TYPE sluice_dbus_up gauge\nsluice_dbus_up{component=\"collector\"} 1\n" +
		"# HELP sluice_records_total Records.\n# TYPE sluice_records_total counter\nsluice_records_total 5\n"
	b := "# HELP sluice_dbus_up Up.\n# TYPE sluice_dbus_up gauge\nsluice_dbus_up{component=\"mediator\"} 1\n" +
		"# HELP sluice_records_total Records.\n# TYPE sluice_records_total counter\nsluice_records_total 5\n" +
		"# HELP h A histogram.\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 3\nh_count 2\n"
	out := MergeExpositions(nil, []byte(a), []byte(b), nil)
	fams := promtexttest.Parse(t, out)
	if n := len(fams["sluice_dbus_up"].GetMetric()); n != 2 {
		t.Errorf("sluice_dbus_up: %d series\n%s", n, out)
	}
	if n := len(fams["sluice_records_total"].GetMetric()); n != 1 {
		t.Errorf("sluice_records_total: %d series\n%s", n, out)
	}
	if fams["h"].GetMetric()[0].GetHistogram().GetSampleCount() != 2 {
		t.Errorf("histogram:\n%s", out)
	}
	if strings.Count(string(out), "# TYPE sluice_dbus_up") != 1 {
		t.Errorf("header twice:\n%s", out)
	}
}
