package gateway

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/dhtd/dhtd/krpc"
	"github.com/dhtd/dhtd/node"
)

// maxAnswer bounds the body of one answer the Client reads.
const maxAnswer = 1 << 20

// ErrStreamCut is the error of a peers stream that ended without its
// last line.
var ErrStreamCut = errors.New("gateway: the stream ended without its last line")

// Client is a small typed client of a Gateway's HTTP API. Its answers are
// the types the Gateway writes (Item, PutResult, StreamEnd); a non-2xx
// answer is a *StatusError, which errors.Is matches with node's sentinels.
type Client struct {
	base string // http://host:port
	http *http.Client
}

// NewClient returns a Client of the gateway at base: a URL, or HOST:PORT
// (then http:// is assumed). hc nil means http.DefaultClient.
func NewClient(base string, hc *http.Client) *Client {
	base = strings.TrimSuffix(base, "/")
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	if hc == nil {
		hc = http.DefaultClient
	}
	return &Client{base: base, http: hc}
}

// StatusError is a non-2xx answer of the gateway. It unwraps to the error
// its reason stands for (ReasonError: node.ErrNotFound, node.ErrNoNodes,
// node.ErrNoAnswer, node.ErrRefused, or context.DeadlineExceeded), so
// errors.Is matches a failure through the gateway as it matches one of a
// local node.
type StatusError struct {
	Status int
	Msg    string
	Reason string // the answer's reason, "" if none
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("gateway: %d %s: %s", e.Status, http.StatusText(e.Status), e.Msg)
}

// Unwrap returns the error the answer's reason stands for; without a
// reason, node.ErrNotFound for a 404 and context.DeadlineExceeded for a
// 504, else nil.
func (e *StatusError) Unwrap() error {
	if err := ReasonError(e.Reason); err != nil {
		return err
	}
	switch e.Status {
	case http.StatusNotFound:
		return node.ErrNotFound
	case http.StatusGatewayTimeout:
		return context.DeadlineExceeded
	}
	return nil
}

// statusError reads a non-2xx answer's JSON body (APIError), or takes the
// body as the message if it is not one.
func statusError(code int, body []byte) *StatusError {
	var e APIError
	if json.Unmarshal(body, &e) != nil || e.Error.Message == "" {
		e.Error.Message = strings.TrimSpace(string(body))
	}
	return &StatusError{Status: code, Msg: e.Error.Message, Reason: e.Reason}
}

// Do sends one request to path (with its query), body as JSON if not nil;
// a 2xx answer is decoded into out (if not nil), anything else returned as
// a *StatusError.
func (c *Client) Do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
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

func mutablePath(pub, salt []byte) string {
	return "/v1/mutable/" + hex.EncodeToString(pub) + "?salt=" + url.QueryEscape(string(salt))
}

// GetImmutable gets the immutable item stored under target (BEP 44).
func (c *Client) GetImmutable(ctx context.Context, target krpc.ID) (Item, error) {
	var it Item
	err := c.Do(ctx, http.MethodGet, "/v1/immutable/"+target.String(), nil, &it)
	return it, err
}

// GetMutable gets the mutable item of the public key pub and salt (BEP 44).
func (c *Client) GetMutable(ctx context.Context, pub, salt []byte) (Item, error) {
	var it Item
	err := c.Do(ctx, http.MethodGet, mutablePath(pub, salt), nil, &it)
	return it, err
}

// PutImmutable stores the bencoded value v as an immutable item.
func (c *Client) PutImmutable(ctx context.Context, v []byte) (PutResult, error) {
	var res PutResult
	err := c.Do(ctx, http.MethodPost, "/v1/immutable", map[string]string{"v": hex.EncodeToString(v)}, &res)
	return res, err
}

// MutablePut is a signed mutable item for PutMutable: the signature is
// made by the caller (BEP 44, Mutable items), so the key stays with it.
type MutablePut struct {
	PubKey []byte
	Salt   []byte
	V      []byte // bencoded
	Seq    int64
	Sig    []byte
	Cas    *int64 // optional: the seq the item must have now
}

// PutMutable stores a signed mutable item.
func (c *Client) PutMutable(ctx context.Context, p MutablePut) (PutResult, error) {
	body := map[string]any{"v": hex.EncodeToString(p.V), "seq": p.Seq, "sig": hex.EncodeToString(p.Sig)}
	if p.Cas != nil {
		body["cas"] = *p.Cas
	}
	var res PutResult
	err := c.Do(ctx, http.MethodPut, mutablePath(p.PubKey, p.Salt), body, &res)
	return res, err
}

// StreamPeers asks for the peers of infohash ih as a stream, calling
// onPeer (if not nil) with each peer ("ip:port") as it arrives, and
// returns the stream's last line. A stream that ends in an error, or
// without its last line, is an error.
func (c *Client) StreamPeers(ctx context.Context, ih krpc.ID, onPeer func(string)) (StreamEnd, error) {
	var end StreamEnd
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/v1/peers/"+ih.String()+"?stream=1", nil)
	if err != nil {
		return end, fmt.Errorf("gateway: %w", err)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return end, fmt.Errorf("gateway: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return end, statusError(resp.StatusCode, b)
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		var line struct {
			Peer string `json:"peer"`
			Done bool   `json:"done"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			return end, fmt.Errorf("gateway: stream line %q: %w", sc.Text(), err)
		}
		if line.Done {
			_ = json.Unmarshal(sc.Bytes(), &end)
			break
		}
		if onPeer != nil {
			onPeer(line.Peer)
		}
	}
	if err := sc.Err(); err != nil {
		return end, fmt.Errorf("gateway: reading the stream: %w", err)
	}
	if !end.Done {
		return end, ErrStreamCut
	}
	if end.Error != nil {
		return end, errors.New("gateway: " + end.Error.Message)
	}
	return end, nil
}
