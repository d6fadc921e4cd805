//go:build linux

// Command sink is the minimal UDP receiver perf/ceiling.sh measures the
// loopback ceiling with: N SO_REUSEPORT sockets on one address, one goroutine
// (locked to its thread) per socket reading recvmmsg batches, counting
// datagrams and bytes and nothing else. Whatever a collector does per
// datagram on top of this is its own cost.
//
// The counts are served as Prometheus text on --http (GET /metrics) and
// printed as one JSON line when the process gets SIGTERM or SIGINT.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"runtime"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
	_   [4]byte
}

// counters of one socket, padded to a cache line of its own.
type counters struct {
	datagrams atomic.Uint64
	bytes     atomic.Uint64
	calls     atomic.Uint64
	_         [40]byte
}

func main() {
	addr := flag.String("addr", "127.0.0.1:4739", "UDP address to receive on (loopback only)")
	sockets := flag.Int("sockets", runtime.NumCPU(), "SO_REUSEPORT sockets, one reading goroutine each")
	batch := flag.Int("batch", 64, "datagrams per recvmmsg call")
	maxSize := flag.Int("max-datagram", 65535, "receive buffer per datagram")
	rcvbuf := flag.Int("rcvbuf", 32<<20, "socket receive buffer to ask for (SO_RCVBUFFORCE, else SO_RCVBUF)")
	httpAddr := flag.String("http", "127.0.0.1:0", "address serving /metrics and /readyz")
	flag.Parse()
	if err := run(*addr, *sockets, *batch, *maxSize, *rcvbuf, *httpAddr); err != nil {
		fmt.Fprintln(os.Stderr, "sink:", err)
		os.Exit(1)
	}
}

func run(addr string, sockets, batch, maxSize, rcvbuf int, httpAddr string) error {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return fmt.Errorf("--addr: %v", err)
	}
	if !ap.Addr().IsLoopback() {
		return fmt.Errorf("--addr %s is not a loopback address", ap)
	}
	if sockets < 1 || batch < 1 || maxSize < 1 {
		return fmt.Errorf("--sockets, --batch and --max-datagram must be positive")
	}
	stats := make([]counters, sockets)
	fds := make([]int, sockets)
	for i := range fds {
		if fds[i], err = openSocket(ap, rcvbuf); err != nil {
			return err
		}
	}
	for i, fd := range fds {
		go receive(fd, batch, maxSize, &stats[i])
	}
	totals := func() (d, b, c uint64) {
		for i := range stats {
			d += stats[i].datagrams.Load()
			b += stats[i].bytes.Load()
			c += stats[i].calls.Load()
		}
		return
	}
	ln, err := net.Listen("tcp", httpAddr)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ready") })
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, _ *http.Request) {
		d, b, c := totals()
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		fmt.Fprintf(w, "# TYPE sink_datagrams_total counter\nsink_datagrams_total %d\n", d)
		fmt.Fprintf(w, "# TYPE sink_bytes_total counter\nsink_bytes_total %d\n", b)
		fmt.Fprintf(w, "# TYPE sink_recvmmsg_calls_total counter\nsink_recvmmsg_calls_total %d\n", c)
		for i := range stats {
			fmt.Fprintf(w, "sink_socket_datagrams_total{socket=\"%d\"} %d\n", i, stats[i].datagrams.Load())
		}
	})
	go func() { _ = http.Serve(ln, mux) }()
	fmt.Fprintf(os.Stderr, "sink: receiving on udp %s with %d sockets; metrics on http://%s/metrics\n", ap, sockets, ln.Addr())

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	d, b, c := totals()
	out, _ := json.Marshal(map[string]uint64{"datagrams": d, "bytes": b, "recvmmsg_calls": c})
	fmt.Println(string(out))
	// The readers are blocked in recvmmsg; exiting ends them.
	return nil
}

// openSocket opens a blocking UDP socket bound to ap with SO_REUSEPORT.
func openSocket(ap netip.AddrPort, rcvbuf int) (int, error) {
	family := unix.AF_INET
	if ap.Addr().Is6() {
		family = unix.AF_INET6
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
		return -1, fmt.Errorf("SO_REUSEPORT: %w", err)
	}
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rcvbuf) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, rcvbuf)
	}
	var sa unix.Sockaddr
	if family == unix.AF_INET {
		sa = &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	} else {
		sa = &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
	}
	if err := unix.Bind(fd, sa); err != nil {
		return -1, fmt.Errorf("bind %s: %w", ap, err)
	}
	return fd, nil
}

// receive reads fd forever: recvmmsg blocks until at least one datagram is
// queued (MSG_WAITFORONE) and returns up to batch of them.
func receive(fd, batch, maxSize int, st *counters) {
	runtime.LockOSThread()
	msgs := make([]mmsghdr, batch)
	iovs := make([]unix.Iovec, batch)
	mem := make([]byte, batch*maxSize)
	for i := range msgs {
		iovs[i].Base = &mem[i*maxSize]
		iovs[i].SetLen(maxSize)
		msgs[i].hdr.Iov = &iovs[i]
		msgs[i].hdr.SetIovlen(1)
	}
	for {
		n, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(fd), uintptr(unsafe.Pointer(&msgs[0])),
			uintptr(batch), unix.MSG_WAITFORONE, 0, 0)
		if errno != 0 {
			if errno == unix.EINTR || errno == unix.EAGAIN {
				continue
			}
			fmt.Fprintln(os.Stderr, "sink: recvmmsg:", errno)
			return
		}
		var b uint64
		for i := range int(n) {
			b += uint64(msgs[i].len)
		}
		st.datagrams.Add(uint64(n))
		st.bytes.Add(b)
		st.calls.Add(1)
	}
}
