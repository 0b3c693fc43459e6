package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/dhtd/dhtd/gateway"
	"github.com/dhtd/dhtd/krpc"
	"github.com/dhtd/dhtd/node"
	"github.com/dhtd/dhtd/storage"
)

// gatewayFlag is the --gateway flag of get, put and peers: ask a running
// daemon's HTTP gateway instead of bootstrapping a short-lived node.
func gatewayFlag() cli.Flag {
	return &cli.StringFlag{
		Name:    "gateway",
		Usage:   "HOST:PORT (or URL) of a running 'dhtd run --http' gateway to ask instead of starting a node",
		EnvVars: []string{"DHTD_GATEWAY"},
	}
}

// gatewayClient talks to a dhtd HTTP gateway.
type gatewayClient struct {
	base   string // http://host:port
	client *http.Client
}

func newGatewayClient(c *cli.Context) *gatewayClient {
	base := strings.TrimSuffix(c.String("gateway"), "/")
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	return &gatewayClient{base: base, client: &http.Client{Timeout: c.Duration("timeout")}}
}

// gatewayStatusError is a non-2xx answer of the gateway. It unwraps to the
// error its reason stands for (gateway.ReasonError: node.ErrNotFound,
// node.ErrNoNodes, node.ErrNoAnswer, node.ErrRefused, or
// context.DeadlineExceeded), so errors.Is matches a failure through the
// gateway as it matches one of a local node.
type gatewayStatusError struct {
	Status int
	Msg    string
	Reason string // the answer's reason, "" if none
}

func (e *gatewayStatusError) Error() string {
	return fmt.Sprintf("gateway: %d %s: %s", e.Status, http.StatusText(e.Status), e.Msg)
}

// Unwrap returns the error the answer's reason stands for (node's
// sentinels, context.DeadlineExceeded for a timeout), so errors.Is works as
// without --gateway; without a reason, the statuses that have an exit code
// of their own: 404 is nothing found, 504 a timeout.
func (e *gatewayStatusError) Unwrap() error {
	if err := gateway.ReasonError(e.Reason); err != nil {
		return err
	}
	switch e.Status {
	case http.StatusNotFound:
		return errNothingFound
	case http.StatusGatewayTimeout:
		return context.DeadlineExceeded
	}
	return nil
}

// statusError reads a non-2xx answer's JSON body ({error: {message},
// status, reason}).
func statusError(code int, body []byte) *gatewayStatusError {
	var e struct {
		Reason string `json:"reason"`
	}
	_ = json.Unmarshal(body, &e)
	return &gatewayStatusError{Status: code, Msg: gatewayErrorMessage(body), Reason: e.Reason}
}

// do sends one request; a 2xx answer is decoded into out, anything else
// returned as a *gatewayStatusError.
func (g *gatewayClient) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, g.base+path, rd)
	if err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := g.client.Do(req)
	if err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("gateway: %s %s: reading the answer: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		return statusError(resp.StatusCode, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("gateway: %s %s: %w", method, path, err)
		}
	}
	return nil
}

// gatewayErrorMessage is the message of a gateway's error answer body,
// else the body itself.
func gatewayErrorMessage(b []byte) string {
	var e struct {
		Error struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(b, &e) != nil || e.Error.Message == "" {
		return strings.TrimSpace(string(b))
	}
	return e.Error.Message
}

// gatewayItem is the gateway's answer to a get.
type gatewayItem struct {
	Target  string `json:"target"`
	V       string `json:"v"`
	PubKey  string `json:"pubkey"`
	Seq     *int64 `json:"seq"`
	Sig     string `json:"sig"`
	Count   int    `json:"count"`
	Queried int    `json:"queried"`
}

// getViaGateway is `dhtd get --gateway`: the same output as a local get.
func getViaGateway(c *cli.Context, target krpc.ID) error {
	g := newGatewayClient(c)
	path := "/v1/immutable/" + target.String()
	if pk := c.String("pubkey"); pk != "" {
		path = "/v1/mutable/" + pk + "?salt=" + url.QueryEscape(c.String("salt"))
	}
	var it gatewayItem
	err := g.do(c.Context, http.MethodGet, path, nil, &it)
	var v []byte
	if err == nil {
		if v, err = hex.DecodeString(it.V); err != nil {
			err = fmt.Errorf("gateway: v: %w", err)
		}
	}
	found := err == nil
	if c.Bool("json") {
		out := map[string]any{"target": target.String(), "found": found, "queried": it.Queried}
		if found {
			out["value"] = displayValue(v)
			out["v"] = hex.EncodeToString(v)
			out["count"] = it.Count
			if it.Seq != nil {
				out["seq"] = *it.Seq
				out["pubkey"] = it.PubKey
				out["sig"] = it.Sig
			}
		}
		if err != nil {
			out["error"] = errorJSON(err)
		}
		if perr := printJSON(c.App.Writer, out); perr != nil {
			return perr
		}
	} else if found {
		fmt.Fprintf(c.App.Writer, "%s\n", displayValue(v))
		if it.Seq != nil {
			fmt.Fprintf(c.App.ErrWriter, "seq %d, returned by %d nodes\n", *it.Seq, it.Count)
		}
	}
	return err
}

// putViaGateway is `dhtd put --gateway`. A mutable item is signed here
// with the key file's key; only the signature travels. Without --seq the
// seq is one above the gateway's current one (1 if it has none).
func putViaGateway(c *cli.Context, v []byte, priv ed25519.PrivateKey, opts node.PutOptions) error {
	g := newGatewayClient(c)
	var res struct {
		Target   string `json:"target"`
		Seq      *int64 `json:"seq"`
		StoredAt []struct {
			ID   string `json:"id"`
			Addr string `json:"addr"`
		} `json:"stored_at"`
		Sent int `json:"sent"`
	}
	var err error
	mutable := priv != nil
	if !mutable {
		res.Target = storage.ImmutableTarget(v).String()
		err = g.do(c.Context, http.MethodPost, "/v1/immutable", map[string]string{"v": hex.EncodeToString(v)}, &res)
	} else {
		pub := priv.Public().(ed25519.PublicKey)
		res.Target = storage.MutableTarget(pub, opts.Salt).String()
		path := "/v1/mutable/" + hex.EncodeToString(pub) + "?salt=" + url.QueryEscape(string(opts.Salt))
		var seq int64 = 1
		if opts.Seq != nil {
			seq = *opts.Seq
		} else {
			var cur gatewayItem
			gerr := g.do(c.Context, http.MethodGet, path, nil, &cur)
			var se *gatewayStatusError
			switch {
			case gerr == nil && cur.Seq != nil:
				seq = *cur.Seq + 1
			case errors.As(gerr, &se) && se.Status == http.StatusNotFound:
			case gerr != nil:
				return fmt.Errorf("current seq: %w", gerr)
			}
		}
		body := map[string]any{
			"v": hex.EncodeToString(v), "seq": seq,
			"sig": hex.EncodeToString(storage.SignMutable(priv, opts.Salt, seq, v)),
		}
		if opts.Cas != nil {
			body["cas"] = *opts.Cas
		}
		res.Seq = &seq
		err = g.do(c.Context, http.MethodPut, path, body, &res)
	}
	if c.Bool("json") {
		out := map[string]any{"target": res.Target, "stored": len(res.StoredAt), "sent": res.Sent}
		if mutable && res.Seq != nil {
			out["seq"] = *res.Seq
		}
		if err != nil {
			out["error"] = errorJSON(err)
		}
		if perr := printJSON(c.App.Writer, out); perr != nil {
			return perr
		}
	} else if err == nil {
		fmt.Fprintf(c.App.Writer, "target: %s\n", res.Target)
		if mutable && res.Seq != nil {
			fmt.Fprintf(c.App.Writer, "seq:    %d\n", *res.Seq)
		}
		fmt.Fprintf(c.App.Writer, "stored on %d of %d nodes\n", len(res.StoredAt), res.Sent)
	}
	return err
}

// peersViaGateway is `dhtd peers --gateway`: it reads the gateway's
// stream, printing each peer as it arrives (unless --json).
func peersViaGateway(c *cli.Context, ih krpc.ID) error {
	g := newGatewayClient(c)
	start := time.Now()
	req, err := http.NewRequestWithContext(c.Context, http.MethodGet, g.base+"/v1/peers/"+ih.String()+"?stream=1", nil)
	if err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	resp, err := g.client.Do(req)
	if err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return statusError(resp.StatusCode, b)
	}
	asJSON := c.Bool("json")
	peers := []string{}
	var end struct {
		Done    bool `json:"done"`
		Queried int  `json:"queried"`
		Error   *struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		var line struct {
			Peer string `json:"peer"`
			Done bool   `json:"done"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			return fmt.Errorf("gateway: stream line %q: %w", sc.Text(), err)
		}
		if line.Done {
			_ = json.Unmarshal(sc.Bytes(), &end)
			break
		}
		peers = append(peers, line.Peer)
		if !asJSON {
			fmt.Fprintln(c.App.Writer, line.Peer)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("gateway: reading the stream: %w", err)
	}
	if !end.Done {
		err = errors.New("gateway: the stream ended without its last line")
	} else if end.Error != nil {
		err = errors.New("gateway: " + end.Error.Message)
	}
	if err == nil && len(peers) == 0 {
		err = fmt.Errorf("peers %s: %w (%d nodes queried)", ih, errNothingFound, end.Queried)
	}
	elapsed := time.Since(start)
	if asJSON {
		out := map[string]any{"info_hash": ih.String(), "peers": peers, "queried": end.Queried, "elapsed_ms": elapsed.Milliseconds()}
		if err != nil {
			out["error"] = errorJSON(err)
		}
		if perr := printJSON(c.App.Writer, out); perr != nil {
			return perr
		}
	} else if err == nil {
		fmt.Fprintf(c.App.ErrWriter, "%d peers found, %d nodes queried, %v\n", len(peers), end.Queried, elapsed.Round(time.Millisecond))
	}
	return err
}
