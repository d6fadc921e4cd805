package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os/signal"
	"syscall"
	"time"

	"github.com/sluice-flow/sluice/dataplane/loadgen"
)

// runGen is `sluice gen`: flags to a loadgen.Config, one run, the summary as
// one JSON line.
func runGen(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("gen", "[flags]", "Sends IPFIX or NetFlow v9 load and prints one JSON line with what it sent.", stderr)
	addr := fs.String("addr", loadgen.DefaultAddr.String(), "collector address")
	rate := fs.String("rate", "0", "target rate: records/s, or with a suffix 100krps, 300kpps (0 = as fast as possible)")
	duration := fs.Duration("duration", 10*time.Second, "how long to send (0 = until --count)")
	count := fs.Int("count", 0, "data messages to send in all (0 = until --duration)")
	exporters := fs.Int("exporters", loadgen.DefaultExporters, "exporters: each its own socket, source port, observation domain, templates and sequence numbers")
	records := fs.Int("records", loadgen.DefaultRecords, "data records per message")
	tcp := fs.Bool("tcp", false, "send over TCP (IPFIX only)")
	protocol := fs.String("protocol", "ipfix", "ipfix (or 10) or v9 (or 9: NetFlow v9)")
	templates := fs.String("templates", "5tuple", "data templates, comma-separated: 5tuple, ipv6, varlen; add options for an options template and record")
	tplInterval := fs.Duration("template-interval", loadgen.DefaultTemplateInterval, "template retransmit interval (UDP)")
	dataFirst := fs.Bool("data-first", false, "send the first data messages before any template")
	ports := fs.Int("ports", 1, "sockets (source ports) per exporter, each its own sequence numbers, with the exporter's address and observation domain")
	distinct := fs.Bool("distinct-addrs", false, "give each exporter its own loopback source address (127.0.1.N)")
	allowRemote := fs.Bool("allow-remote", false, "allow a destination outside loopback")
	batch := fs.Int("batch", loadgen.DefaultBatch, "messages per sendmmsg call")
	gso := fs.Bool("gso", true, "use UDP GSO when every message has the same size")
	firstDomain := fs.Uint("first-domain", 1, "observation domain of the first exporter (the others follow); also in the records' source addresses")
	reconnect := fs.Bool("reconnect", false, "TCP: dial again when a connection breaks and resend the templates (messages due meanwhile are not sent)")
	keys := fs.Int("keys", 0, "distinct 5-tuples the data records cycle through, split among the exporters (0 = each exporter cycles through 16 messages' worth)")
	if err := parseFlags(fs, args, 0, stdout); err != nil {
		return err
	}
	if *duration == 0 && *count == 0 {
		return usageError{errors.New("give --duration or --count")}
	}
	cfg := loadgen.Config{TCP: *tcp, Duration: *duration, Count: *count, Exporters: *exporters,
		Records: *records, TemplateInterval: *tplInterval, DataFirst: *dataFirst, DistinctAddrs: *distinct,
		Ports:       *ports,
		AllowRemote: *allowRemote, Batch: *batch, NoGSO: !*gso, Keys: *keys, Reconnect: *reconnect}
	if *firstDomain == 0 || *firstDomain > 1<<31 {
		return usageError{errors.New("--first-domain must be 1..2147483648")}
	}
	cfg.FirstDomain = uint32(*firstDomain)
	var err error
	if cfg.Addr, err = netip.ParseAddrPort(*addr); err != nil {
		return usageError{fmt.Errorf("--addr: %w", err)}
	}
	if cfg.Rate, err = loadgen.ParseRate(*rate); err != nil {
		return err
	}
	if cfg.Protocol, err = loadgen.ParseProtocol(*protocol); err != nil {
		return err
	}
	if cfg.Templates, err = loadgen.ParseTemplates(*templates); err != nil {
		return err
	}
	g, err := loadgen.New(cfg)
	if errors.Is(err, loadgen.ErrRemote) {
		return fmt.Errorf("%s is outside loopback; pass --allow-remote to send there", cfg.Addr)
	}
	if err != nil {
		return err
	}
	defer g.Close()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	b, err := json.Marshal(g.Run(ctx))
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s\n", b)
	return nil
}
