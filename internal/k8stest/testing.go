package k8stest

import (
	"context"
	"errors"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/sluice-flow/sluice/internal/testenv"
)

// StartTimeout bounds a server's start; the first start on a busy machine
// takes several seconds.
const StartTimeout = 2 * time.Minute

var shared struct {
	once sync.Once
	srv  *Server
	err  error
}

// Shared is the test package's one server, started by the first caller.
// A package that uses it stops it with Main from its TestMain; without that
// the processes die with the test binary (SIGKILL on parent death).
func Shared(t testing.TB) *Server {
	t.Helper()
	shared.once.Do(func() {
		shared.srv, shared.err = StartServer(context.Background(), StartTimeout)
		if shared.err == nil {
			t.Logf("k8stest: shared kube-apiserver %s ready in %v", shared.srv.URL, shared.srv.StartTime.Round(time.Millisecond))
		}
	})
	check(t, shared.err)
	return shared.srv
}

// Start gives the test its own server, stopped at the test's cleanup.
func Start(t testing.TB) *Server {
	t.Helper()
	s, err := StartServer(context.Background(), StartTimeout)
	check(t, err)
	t.Logf("k8stest: kube-apiserver %s ready in %v", s.URL, s.StartTime.Round(time.Millisecond))
	t.Cleanup(s.Stop)
	return s
}

// Main runs the package's tests and stops the shared server:
//
//	func TestMain(m *testing.M) { k8stest.Main(m) }
func Main(m *testing.M) {
	code := m.Run()
	StopShared()
	os.Exit(code)
}

// StopShared stops the shared server, if one was started; for a TestMain
// that has more to clean up than Main does.
func StopShared() {
	if shared.srv != nil {
		shared.srv.Stop()
	}
}

func check(t testing.TB, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if errors.Is(err, ErrNoBinary) {
		testenv.SkipOrFail(t, "%v", err)
	}
	t.Fatal(err)
}
