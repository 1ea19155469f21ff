package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/sotto-voice/sotto/api"
)

// maxResponseBytes bounds how much of a response body the client reads.
const maxResponseBytes = 1 << 20

// apiClient speaks the HTTP half of the v1 API relative to a base URL, which
// may carry a path prefix when the server is mounted below the root.
type apiClient struct {
	base *url.URL
	http *http.Client
}

func newAPIClient(serverURL string, hc *http.Client) (*apiClient, error) {
	u, err := url.Parse(serverURL)
	if err != nil {
		return nil, fmt.Errorf("server URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("server URL %q: scheme must be http or https", serverURL)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("server URL %q: no host", serverURL)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawPath = ""
	u.RawQuery = ""
	u.Fragment = ""
	if hc == nil {
		hc = http.DefaultClient
	}
	return &apiClient{base: u, http: hc}, nil
}

// url returns the absolute URL of an API path such as "/v1/ice-servers",
// which may end with a query ("/v1/knocks/k_x?wait=25").
func (a *apiClient) url(path string) string {
	u := *a.base
	p, query, _ := strings.Cut(path, "?")
	u.Path += p
	u.RawQuery = query
	return u.String()
}

// eventsURL returns the WebSocket URL of an event stream: the server's
// events path (relative to the base URL, or absolute) with the session in
// the query and the scheme turned into ws or wss.
func (a *apiClient) eventsURL(eventsPath, session string) (string, error) {
	ref, err := url.Parse(eventsPath)
	if err != nil {
		return "", fmt.Errorf("events URL %q: %w", eventsPath, err)
	}
	var u url.URL
	if ref.IsAbs() {
		u = *ref
	} else {
		u = *a.base
		u.Path += ref.Path
	}
	switch u.Scheme {
	case "http", "ws":
		u.Scheme = "ws"
	case "https", "wss":
		u.Scheme = "wss"
	default:
		return "", fmt.Errorf("events URL %q: unsupported scheme", eventsPath)
	}
	q := ref.Query()
	q.Set("session", session)
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// do sends one API request with the given Authorization header value and
// decodes a 2xx JSON response into out (if not nil). A non-2xx response
// with an API error body is returned as a wrapped *api.Error.
func (a *apiClient) do(ctx context.Context, method, path, auth string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.url(path), body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		return fmt.Errorf("%s %s: read response: %w", method, path, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("%s %s: %w", method, path, responseError(resp.StatusCode, data))
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s %s: decode response: %w", method, path, err)
	}
	return nil
}

// StatusError is returned for a non-2xx HTTP response that carries no API
// error body, such as a proxy's error page.
type StatusError struct {
	StatusCode int
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("HTTP status %d %s", e.StatusCode, http.StatusText(e.StatusCode))
}

// responseError turns an error response into *api.Error when its body is
// the API's error object, and into *StatusError otherwise.
func responseError(status int, body []byte) error {
	var eb api.ErrorBody
	if err := json.Unmarshal(body, &eb); err == nil && eb.Error != nil && eb.Error.Code != "" {
		return eb.Error
	}
	return &StatusError{StatusCode: status}
}

// isAPIError reports whether err wraps an *api.Error with code.
func isAPIError(err error, code api.ErrorCode) bool {
	var ae *api.Error
	return errors.As(err, &ae) && ae.Code == code
}

// maxNodeHops bounds the wrong_node answers a join follows: the node asked
// first names the one that runs the room, which answers itself; a second
// hop covers a room that moved in between.
const maxNodeHops = 2

// postJoin sends a join to path, following wrong_node answers (a cluster
// node that does not run the room names the one that does) with the same
// request, and returns the client of the node that runs the call, as its
// answer names it (JoinResponse.NodeURL) or else the one that answered:
// the event stream, leave and prekey fetches go there. a itself is left
// as it is, so that a later join starts again from the URL the
// application gave.
func (a *apiClient) postJoin(ctx context.Context, path, auth string, in any, out *api.JoinResponse) (*apiClient, error) {
	a, err := a.follow(ctx, http.MethodPost, path, auth, in, out)
	if err == nil && out.NodeURL != "" {
		return a.at(out.NodeURL)
	}
	return a, err
}

// follow sends a request and, while a node of a cluster answers that
// another runs the room (wrong_node), sends it again there, a bounded
// number of times; it returns the client of the node that answered.
func (a *apiClient) follow(ctx context.Context, method, path, auth string, in, out any) (*apiClient, error) {
	for hops := 0; ; hops++ {
		err := a.do(ctx, method, path, auth, in, out)
		var ae *api.Error
		if !errors.As(err, &ae) || ae.Code != api.CodeWrongNode || hops == maxNodeHops {
			return a, err
		}
		next, nerr := a.at(ae.NodeURL)
		if nerr != nil {
			return a, fmt.Errorf("%w (cannot follow: %v)", err, nerr)
		}
		a = next
	}
}

// at returns a client for the base URL of another node of the same
// cluster, over the same HTTP client. A move from https to http is
// refused: the token would travel in the clear.
func (a *apiClient) at(nodeURL string) (*apiClient, error) {
	next, err := newAPIClient(nodeURL, a.http)
	if err != nil {
		return nil, fmt.Errorf("node URL: %w", err)
	}
	if a.base.Scheme == "https" && next.base.Scheme != "https" {
		return nil, fmt.Errorf("node URL %q: not https", nodeURL)
	}
	return next, nil
}
