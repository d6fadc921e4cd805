package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

// runDrain is `sluice drain`: POST /api/v1/drain to a controller (or to
// `sluice run`'s admin API) and wait for the answer. The deployment's
// preStop hooks run it so that no container of the pod gets SIGTERM before
// the collector has stopped reading and the mediator has flushed.
func runDrain(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("drain", "[flags]", "Drains a pod through its controller API: the collector stops reading, the mediator empties the rings and flushes.", stderr)
	api := fs.String("api", "http://127.0.0.1:8080", "the controller API's base URL")
	tokenFile := fs.String("token-file", "", "file holding the API token (or set SLUICE_ADMIN_TOKEN)")
	timeout := fs.Duration("timeout", 60*time.Second, "how long the drain may take")
	if err := parseFlags(fs, args, 0, stdout); err != nil {
		return err
	}
	token := os.Getenv("SLUICE_ADMIN_TOKEN")
	if *tokenFile != "" {
		b, err := os.ReadFile(*tokenFile)
		if err != nil {
			return usageError{fmt.Errorf("--token-file: %w", err)}
		}
		token = strings.TrimSpace(string(b))
	}
	if token == "" {
		return usageError{fmt.Errorf("no token: --token-file or SLUICE_ADMIN_TOKEN")}
	}
	if *timeout <= 0 {
		return usageError{fmt.Errorf("--timeout: must be positive")}
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout+5*time.Second)
	defer cancel()
	body := fmt.Sprintf(`{"timeout_ms": %d}`, timeout.Milliseconds())
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(*api, "/")+"/api/v1/drain", strings.NewReader(body))
	if err != nil {
		return usageError{fmt.Errorf("--api: %w", err)}
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(b))
	}
	fmt.Fprintf(stdout, "%s\n", bytes.TrimSpace(b))
	return nil
}
