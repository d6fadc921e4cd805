package collector

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"
)

// Listeners added at run time. gnet opens its listeners once, at the
// engine's start, so AddListener opens the socket itself and hands the work
// to the event loops, whose goroutines stay the only writers of their
// rings:
//   - TCP: a goroutine accepts and enrolls each connection into a loop
//     (gnet's Engine.Register); from then on it is a session like any
//     other.
//   - UDP: the socket is read by one loop. A goroutine waits for it to
//     become readable (Go's poller) and asks the loop (EventLoop.Execute)
//     to read it with recvmmsg until it is empty, then waits again.
//
// To reach every loop, the collector enrolls at boot one end of a socket
// pair per loop ("control connections", on which nothing is ever sent).

var (
	// ErrNotRunning is returned by AddListener and RemoveListener when
	// the collector is not serving.
	ErrNotRunning = errors.New("collector: not running")
	// ErrListenerExists is returned by AddListener for a listener already
	// open.
	ErrListenerExists = errors.New("collector: listener already open")
	// ErrNoListener is returned by RemoveListener for a listener that is
	// not open.
	ErrNoListener = errors.New("collector: no such listener")
	// ErrStartListener is returned by RemoveListener for a listener given
	// at start: gnet cannot close one listener of a running engine.
	ErrStartListener = errors.New("collector: listener given at start; only listeners added at run time can be removed")
)

// controlConn is the context of a control connection.
type controlConn struct{}

var controlMarker = &controlConn{}

type runtimeListeners struct {
	mu      sync.Mutex
	els     []gnet.EventLoop // one per loop, from the control connections
	elsDone chan struct{}    // closed once every loop has one
	peers   []*os.File       // the other ends of the control connections
	m       map[string]*rtListener
	order   []string
	regMu   sync.Mutex // Engine.Register's round robin is not safe for concurrent use
	next    int        // the loop the next UDP listener goes to
}

type rtListener struct {
	l    Listener
	url  string
	tcp  net.Listener
	udp  *net.UDPConn
	stop chan struct{}
	done chan struct{}
}

func (r *runtimeListeners) isControl(c gnet.Conn) bool {
	_, ok := c.Context().(*controlConn)
	return ok
}

func (r *runtimeListeners) loopOpened(c *Collector, el gnet.EventLoop, fd int) {
	l := c.loopFor(el) // every loop mapped from the start
	c.steer.setControlFD(l.idx, fd)
	r.mu.Lock()
	defer r.mu.Unlock()
	if !slices.Contains(r.els, el) {
		r.els = append(r.els, el)
	}
	if len(r.els) == len(c.loops) && r.elsDone != nil {
		close(r.elsDone)
		r.elsDone = nil
		go c.fillSteering()
	}
}

// enrollControl gives every loop a control connection, so that run-time
// listeners can reach them. It runs once, from the first OnTick.
func (c *Collector) enrollControl(eng gnet.Engine) {
	r := &c.rt
	r.regMu.Lock()
	defer r.regMu.Unlock()
	ctx := gnet.NewContext(context.Background(), controlMarker)
	for range c.loops {
		fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
		if err != nil {
			c.log.Warn("run-time listeners unavailable", "err", err)
			return
		}
		mine := os.NewFile(uintptr(fds[0]), "control")
		nc, err := net.FileConn(mine)
		mine.Close()
		if err != nil {
			syscall.Close(fds[1])
			c.log.Warn("run-time listeners unavailable", "err", err)
			return
		}
		r.mu.Lock()
		r.peers = append(r.peers, os.NewFile(uintptr(fds[1]), "control-peer"))
		r.mu.Unlock()
		res, err := eng.Register(gnet.NewNetConnContext(ctx, nc))
		if err != nil {
			nc.Close()
			c.log.Warn("run-time listeners unavailable", "err", err)
			return
		}
		if rr := <-res; rr.Err != nil {
			c.log.Warn("run-time listeners unavailable", "err", rr.Err)
			return
		}
	}
}

// Listeners returns the listener URLs open now: those given at start, then
// those added at run time, in the order they were added. Safe for
// concurrent use.
func (c *Collector) Listeners() []string {
	out := make([]string, 0, len(c.listeners))
	for _, l := range c.listeners {
		out = append(out, l.URL())
	}
	c.rt.mu.Lock()
	defer c.rt.mu.Unlock()
	for _, k := range c.rt.order {
		out = append(out, c.rt.m[k].url)
	}
	return out
}

func listenerKey(l Listener) string { return l.Network + " " + l.Addr.String() }

// AddListener opens a listener (udp://host:port or tcp://host:port, as in
// Config.Listen) on the running collector. A port another process holds is
// refused unless SharePort is set, as at start. A UDP listener added this
// way is read by one event loop (those given at start by all of them). It
// returns once the listener is open. Safe for concurrent use.
func (c *Collector) AddListener(url string) error {
	ls, err := ParseListeners([]string{url})
	if err != nil {
		return err
	}
	l := ls[0]
	if l.Network == "tls" {
		return errors.New("collector: tls:// listeners are given at start")
	}
	eng := c.eng.Load()
	if eng == nil || !c.running.Load() || c.draining.Load() {
		return ErrNotRunning
	}
	if err := c.waitControl(); err != nil {
		return err
	}
	r := &c.rt
	r.mu.Lock()
	defer r.mu.Unlock()
	key := listenerKey(l)
	if r.m[key] != nil || slices.ContainsFunc(c.listeners, func(o Listener) bool { return listenerKey(o) == key }) {
		return fmt.Errorf("%w: %s", ErrListenerExists, url)
	}
	if !c.cfg.SharePort {
		if err := checkPortsFree([]Listener{l}); err != nil {
			return err
		}
	}
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			if c.cfg.SharePort {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, unix.SO_REUSEPORT, 1)
			}
			if serr == nil {
				_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, int(c.cfg.UDPReceiveBuffer))
			}
		})
		if err != nil {
			return err
		}
		return serr
	}}
	rl := &rtListener{l: l, url: l.URL(), stop: make(chan struct{}), done: make(chan struct{})}
	hostPort := net.JoinHostPort(l.Host, fmt.Sprint(l.Addr.Port()))
	switch l.Network {
	case "tcp":
		ln, err := lc.Listen(context.Background(), "tcp", hostPort)
		if err != nil {
			return fmt.Errorf("collector: cannot listen on tcp %s: %w", hostPort, err)
		}
		rl.tcp = ln
		go c.acceptTCP(*eng, rl)
	case "udp":
		if !batchSupported {
			return errors.New("collector: UDP listeners cannot be added at run time on this system")
		}
		pc, err := lc.ListenPacket(context.Background(), "udp", hostPort)
		if err != nil {
			return fmt.Errorf("collector: cannot listen on udp %s: %w", hostPort, err)
		}
		rl.udp = pc.(*net.UDPConn)
		el := r.els[r.next%len(r.els)]
		r.next++
		go c.serveUDP(el, rl)
	}
	if r.m == nil {
		r.m = map[string]*rtListener{}
	}
	r.m[key] = rl
	r.order = append(r.order, key)
	c.log.Info("listening", "network", l.Network, "addr", l.Addr.String(), "added", true)
	return nil
}

// RemoveListener closes a listener added with AddListener. TCP sessions it
// accepted stay open until they end; a UDP socket is closed once the loop
// has read what it held. Listeners given at start cannot be removed
// (ErrStartListener). Safe for concurrent use.
func (c *Collector) RemoveListener(url string) error {
	ls, err := ParseListeners([]string{url})
	if err != nil {
		return err
	}
	key := listenerKey(ls[0])
	r := &c.rt
	r.mu.Lock()
	rl := r.m[key]
	if rl != nil {
		delete(r.m, key)
		r.order = slices.DeleteFunc(r.order, func(k string) bool { return k == key })
	}
	r.mu.Unlock()
	if rl == nil {
		if slices.ContainsFunc(c.listeners, func(o Listener) bool { return listenerKey(o) == key }) {
			return fmt.Errorf("%w: %s", ErrStartListener, url)
		}
		return fmt.Errorf("%w: %s", ErrNoListener, url)
	}
	rl.close()
	c.log.Info("listener closed", "network", rl.l.Network, "addr", rl.l.Addr.String())
	return nil
}

// waitControl waits (briefly) until every loop can be reached.
func (c *Collector) waitControl() error {
	c.rt.mu.Lock()
	done := c.rt.elsDone
	ready := len(c.rt.els) == len(c.loops)
	c.rt.mu.Unlock()
	if ready {
		return nil
	}
	if done == nil {
		return ErrNotRunning
	}
	select {
	case <-done:
		return nil
	case <-time.After(5 * time.Second):
		return errors.New("collector: event loops not reachable for run-time listeners")
	}
}

func (rl *rtListener) close() {
	close(rl.stop)
	if rl.tcp != nil {
		rl.tcp.Close()
	}
	if rl.udp != nil {
		_ = rl.udp.SetReadDeadline(time.Unix(1, 0)) // wake the waiting goroutine
	}
	<-rl.done
	if rl.udp != nil {
		rl.udp.Close()
	}
}

// closePeers closes the control connections' other ends, once the loops
// are gone.
func (r *runtimeListeners) closePeers() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, f := range r.peers {
		f.Close()
	}
	r.peers = nil
}

// closeAll closes every run-time listener (at stop).
func (r *runtimeListeners) closeAll() {
	r.mu.Lock()
	all := r.m
	r.m, r.order = nil, nil
	r.mu.Unlock()
	for _, rl := range all {
		rl.close()
	}
}

func (c *Collector) acceptTCP(eng gnet.Engine, rl *rtListener) {
	defer close(rl.done)
	for {
		conn, err := rl.tcp.Accept()
		if err != nil {
			select {
			case <-rl.stop:
				return
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			c.limiter.Warn(c.log, "accept failed", "listener", rl.url, "err", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		if tc, ok := conn.(*net.TCPConn); ok {
			_ = tc.SetKeepAlivePeriod(time.Minute)
		}
		c.rt.regMu.Lock()
		res, err := eng.Register(gnet.NewNetConnContext(context.Background(), conn))
		c.rt.regMu.Unlock()
		if err != nil {
			conn.Close()
			c.limiter.Warn(c.log, "cannot hand a tcp session to a loop", "err", err)
			continue
		}
		if rr := <-res; rr.Err != nil {
			c.limiter.Warn(c.log, "cannot hand a tcp session to a loop", "err", rr.Err)
		}
	}
}

// serveUDP waits for the socket to be readable and has el's loop read it,
// until the listener is removed or the collector stops.
func (c *Collector) serveUDP(el gnet.EventLoop, rl *rtListener) {
	defer close(rl.done)
	l := c.loopFor(el)
	rc, err := rl.udp.SyscallConn()
	if err != nil {
		return
	}
	h := &handler{c: c}
	drained := make(chan bool, 1)
	var fd int
	drain := gnet.RunnableFunc(func(context.Context) error {
		l.now = time.Now().UnixNano()
		drained <- h.drainUDP(l, fd)
		return nil
	})
	for {
		err := rc.Read(func(u uintptr) bool {
			fd = int(u)
			for {
				if err := el.Execute(context.Background(), drain); err != nil {
					return true // the engine is stopping
				}
				select {
				case all := <-drained:
					if all {
						return false // wait until readable again
					}
				case <-rl.stop:
					select {
					case <-drained:
					case <-c.loopsDone:
					}
					return true
				case <-c.loopsDone:
					return true
				}
			}
		})
		select {
		case <-rl.stop:
		case <-c.loopsDone:
		default:
			if err == nil {
				continue
			}
			c.log.Error("run-time udp listener stopped", "listener", rl.url, "err", err)
		}
		break
	}
	// Forget the socket on its loop before it is closed.
	if fd != 0 && c.running.Load() {
		forgot := make(chan struct{})
		err := el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			l.udpFDs = slices.DeleteFunc(l.udpFDs, func(f int) bool { return f == fd })
			c.rcvbufOnce.Delete(fd)
			close(forgot)
			return nil
		}))
		if err == nil {
			select {
			case <-forgot:
			case <-c.loopsDone:
			}
		}
	}
}
