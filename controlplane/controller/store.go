package controller

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/redis/rueidis"
)

// PipelineStore keeps the pipeline in force across restarts of the pod's
// processes. Safe for concurrent use.
type PipelineStore interface {
	// Load returns the stored pipeline file; nil when none is stored.
	Load(ctx context.Context) ([]byte, error)
	// Save stores file, which the mediator put in force as version.
	Save(ctx context.Context, file []byte, version uint64) error
}

// storedPipeline is what the stores hold.
type storedPipeline struct {
	Version  uint64    `json:"version"`
	Saved    time.Time `json:"saved"`
	Pipeline string    `json:"pipeline"`
}

// FileStore keeps the pipeline in a file of the controller's volume,
// replaced atomically.
type FileStore struct{ Path string }

func (s FileStore) Load(context.Context) ([]byte, error) {
	b, err := os.ReadFile(s.Path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var sp storedPipeline
	if err := json.Unmarshal(b, &sp); err != nil {
		return nil, fmt.Errorf("controller: %s: %w", s.Path, err)
	}
	return []byte(sp.Pipeline), nil
}

func (s FileStore) Save(_ context.Context, file []byte, version uint64) error {
	b, err := json.Marshal(storedPipeline{Version: version, Saved: time.Now().UTC(), Pipeline: string(file)})
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(s.Path), 0o750); err != nil {
		return err
	}
	tmp := s.Path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, s.Path)
}

// RedisStore keeps the pipeline under sluice:pipeline:<name> and announces
// each change on the channel sluice:pipeline (the message is the name).
type RedisStore struct {
	Client rueidis.Client
	Name   string
}

// PipelineChannel is the channel RedisStore announces changes on.
const PipelineChannel = "sluice:pipeline"

func (s RedisStore) key() string { return "sluice:pipeline:" + s.Name }

func (s RedisStore) Load(ctx context.Context) ([]byte, error) {
	b, err := s.Client.Do(ctx, s.Client.B().Get().Key(s.key()).Build()).AsBytes()
	if rueidis.IsRedisNil(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("controller: redis: %w", err)
	}
	var sp storedPipeline
	if err := json.Unmarshal(b, &sp); err != nil {
		return nil, fmt.Errorf("controller: redis %s: %w", s.key(), err)
	}
	return []byte(sp.Pipeline), nil
}

func (s RedisStore) Save(ctx context.Context, file []byte, version uint64) error {
	b, err := json.Marshal(storedPipeline{Version: version, Saved: time.Now().UTC(), Pipeline: string(file)})
	if err != nil {
		return err
	}
	if err := s.Client.Do(ctx, s.Client.B().Set().Key(s.key()).Value(string(b)).Build()).Error(); err != nil {
		return fmt.Errorf("controller: redis: %w", err)
	}
	// The announcement is best effort: the key is what counts.
	_ = s.Client.Do(ctx, s.Client.B().Publish().Channel(PipelineChannel).Message(s.Name).Build()).Error()
	return nil
}

// NewRedisStore connects to Redis (one node, or any nodes of a cluster)
// for a RedisStore, over TLS when tc is not nil. rueidis dials at once:
// Redis must answer at start.
func NewRedisStore(addrs []string, username, password, name string, tc *tls.Config) (RedisStore, error) {
	if name == "" {
		name = "default"
	}
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: addrs, Username: username, Password: password,
		DisableCache: true, ForceSingleClient: len(addrs) == 1, TLSConfig: tc})
	if err != nil {
		return RedisStore{}, fmt.Errorf("controller: redis: %w", err)
	}
	return RedisStore{Client: c, Name: name}, nil
}
