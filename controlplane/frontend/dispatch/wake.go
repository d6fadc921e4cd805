package dispatch

import (
	"strconv"
	"sync/atomic"

	zmq "github.com/pebbe/zmq4"
)

var wakeSeq atomic.Uint64

// waker lets other goroutines wake a socket goroutine blocked in Poll. The
// PULL end belongs to the socket goroutine that polls it; the PUSH end
// belongs to the waker's forwarding goroutine, which turns signals on a Go
// channel into one-frame messages. Wake-ups coalesce: a wake-up is a hint
// to look at the shared state, not a message.
type waker struct {
	pull *zmq.Socket
	sig  chan struct{}
	stop chan struct{}
	done chan struct{}
}

// newWaker must be called on the goroutine that will poll w.pull; inproc
// needs both ends in one ZeroMQ context.
func newWaker(zctx *zmq.Context) (*waker, error) {
	addr := "inproc://sluice-dispatch-wake-" + strconv.FormatUint(wakeSeq.Add(1), 10)
	pull, err := zctx.NewSocket(zmq.PULL)
	if err != nil {
		return nil, err
	}
	_ = pull.SetLinger(0)
	if err := pull.Bind(addr); err != nil {
		pull.Close()
		return nil, err
	}
	w := &waker{pull: pull, sig: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	ready := make(chan error, 1)
	go w.forward(zctx, addr, ready)
	if err := <-ready; err != nil {
		pull.Close()
		return nil, err
	}
	return w, nil
}

func (w *waker) forward(zctx *zmq.Context, addr string, ready chan<- error) {
	defer close(w.done)
	push, err := zctx.NewSocket(zmq.PUSH)
	if err == nil {
		_ = push.SetLinger(0)
		_ = push.SetSndhwm(4)
		err = push.Connect(addr)
	}
	ready <- err
	if err != nil {
		return
	}
	defer push.Close()
	for {
		select {
		case <-w.stop:
			return
		case <-w.sig:
			// A full pipe already holds a wake-up: dropping this one is fine.
			_, _ = push.Send("", zmq.DONTWAIT)
		}
	}
}

// Wake is safe for concurrent use and never blocks.
func (w *waker) Wake() {
	select {
	case w.sig <- struct{}{}:
	default:
	}
}

// drain reads the pending wake-ups (socket goroutine only).
func (w *waker) drain() {
	for {
		if _, err := w.pull.Recv(zmq.DONTWAIT); err != nil {
			return
		}
	}
}

// close stops the forwarder and closes the PULL end (socket goroutine only).
func (w *waker) close() {
	close(w.stop)
	<-w.done
	w.pull.Close()
}
