package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/redis/rueidis"

	"github.com/sluice-flow/sluice/dataplane/template/redistier"
)

// pullPipeline puts in force the pipeline the frontend keeps in Redis
// under sluice:pipeline:<Redis.Pipeline> (the layout the split pod's
// controller reads too), within StartWait. Redis away or nothing stored:
// the configured pipeline stays and the frontend pushes its version once
// it sees the pod.
func (n *Node) pullPipeline() {
	ctx, cancel := context.WithTimeout(context.Background(), n.cfg.Redis.StartWait)
	defer cancel()
	key := "sluice:pipeline:" + n.cfg.Redis.Pipeline
	file, stored, err := n.readStoredPipeline(ctx, key)
	switch {
	case err != nil:
		n.log.Warn("stored pipeline not read; the configured one stays", "key", key, "err", err)
	case file == nil:
		n.log.Info("no stored pipeline; the configured one stays", "key", key)
	default:
		v, err := n.SetPipeline(ctx, file)
		if err != nil {
			n.log.Warn("stored pipeline refused; the configured one stays", "key", key, "stored_version", stored, "err", err)
			return
		}
		n.log.Info("stored pipeline put in force", "key", key, "stored_version", stored, "version", v)
	}
}

func (n *Node) readStoredPipeline(ctx context.Context, key string) ([]byte, uint64, error) {
	r := n.cfg.Redis
	opt := rueidis.ClientOption{InitAddress: r.Addrs, Username: r.Username, Password: r.Password, SelectDB: r.DB,
		ClientName: "sluice", DisableCache: true, ForceSingleClient: len(r.Addrs) == 1}
	if r.TLS {
		tc, err := redistier.ClientTLS(r.CAFile, r.ServerName)
		if err != nil {
			return nil, 0, err
		}
		opt.TLSConfig = tc
	}
	c, err := rueidis.NewClient(opt)
	if err != nil {
		return nil, 0, err
	}
	defer c.Close()
	b, err := c.Do(ctx, c.B().Get().Key(key).Build()).AsBytes()
	if rueidis.IsRedisNil(err) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, err
	}
	var sp struct {
		Version  uint64 `json:"version"`
		Pipeline string `json:"pipeline"`
	}
	if err := json.Unmarshal(b, &sp); err != nil {
		return nil, 0, fmt.Errorf("%s: %w", key, err)
	}
	if sp.Pipeline == "" {
		return nil, 0, errors.New(key + ": no pipeline in it")
	}
	return []byte(sp.Pipeline), sp.Version, nil
}
