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
