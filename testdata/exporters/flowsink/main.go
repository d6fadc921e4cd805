// Command flowsink is the receiving end used by make-captures.sh while flow
// exporters run. It listens on a UDP or TCP port so that exporters neither
// get ICMP port-unreachable errors (and ECONNREFUSED on their next send) nor
// fail to connect. The packets themselves are captured separately with
// dumpcap.
//
//	flowsink -udp 127.0.0.1:19010            # receive and drop datagrams
//	flowsink -tcp 127.0.0.1:19015 -out F     # save each accepted stream to F
//
// With -tcp, the bytes of all accepted connections are appended to -out in
// the order the connections were accepted (an IPFIX exporter sends an RFC
// 5655 style stream of messages). It exits on SIGINT/SIGTERM, or with
// -exit-after-close once the first connection has been closed by the peer.
// -ready FILE is created once the socket is bound.
package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"
)

func main() {
	udpAddr := flag.String("udp", "", "UDP address to listen on")
	tcpAddr := flag.String("tcp", "", "TCP address to listen on")
	out := flag.String("out", "", "with -tcp: file the received stream is written to")
	exitAfterClose := flag.Bool("exit-after-close", false, "with -tcp: exit when the first connection is closed")
	ready := flag.String("ready", "", "file to create once listening")
	flag.Parse()
	if (*udpAddr == "") == (*tcpAddr == "") || (*tcpAddr != "" && *out == "") {
		flag.Usage()
		os.Exit(2)
	}

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)

	if *udpAddr != "" {
		pc, err := net.ListenPacket("udp", *udpAddr)
		check(err)
		markReady(*ready)
		var n, bytes int
		stopped := make(chan struct{})
		go func() {
			defer close(stopped)
			buf := make([]byte, 65536)
			for {
				m, _, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				n++
				bytes += m
			}
		}()
		<-sig
		pc.Close()
		<-stopped
		fmt.Fprintf(os.Stderr, "flowsink: udp %s: %d datagrams, %d bytes\n", *udpAddr, n, bytes)
		return
	}

	ln, err := net.Listen("tcp", *tcpAddr)
	check(err)
	f, err := os.Create(*out)
	check(err)
	markReady(*ready)

	var mu sync.Mutex // serialises writes of concurrent connections
	var total int64
	done := make(chan struct{}, 1)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 65536)
				for {
					m, err := c.Read(buf)
					if m > 0 {
						mu.Lock()
						f.Write(buf[:m])
						total += int64(m)
						mu.Unlock()
					}
					if err != nil {
						if err != io.EOF {
							fmt.Fprintln(os.Stderr, "flowsink:", err)
						}
						select {
						case done <- struct{}{}:
						default:
						}
						return
					}
				}
			}()
		}
	}()
	if *exitAfterClose {
		select {
		case <-sig:
		case <-done:
		}
	} else {
		<-sig
	}
	ln.Close()
	mu.Lock()
	defer mu.Unlock()
	check(f.Close())
	fmt.Fprintf(os.Stderr, "flowsink: tcp %s: %d bytes written to %s\n", *tcpAddr, total, *out)
}

func markReady(name string) {
	if name != "" {
		check(os.WriteFile(name, nil, 0o644))
	}
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "flowsink:", err)
		os.Exit(1)
	}
}
