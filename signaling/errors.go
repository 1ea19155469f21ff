package signaling

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"

	"github.com/sotto-voice/sotto/api"
	"github.com/sotto-voice/sotto/token"
)

// httpStatus is the HTTP status each error code is answered with. Codes that
// only occur on the event stream are absent and default to 400.
var httpStatus = map[api.ErrorCode]int{
	api.CodeUnauthorized:      http.StatusUnauthorized,
	api.CodeTokenExpired:      http.StatusUnauthorized,
	api.CodeWrongRoom:         http.StatusUnauthorized,
	api.CodeInvalidName:       http.StatusBadRequest,
	api.CodeInvalidJSON:       http.StatusBadRequest,
	api.CodeBadRequest:        http.StatusBadRequest,
	api.CodeMessageTooLarge:   http.StatusRequestEntityTooLarge,
	api.CodeInvalidSDP:        http.StatusBadRequest,
	api.CodeUnsupportedCodec:  http.StatusBadRequest,
	api.CodeRoomFull:          http.StatusConflict,
	api.CodeTooManyRooms:      http.StatusServiceUnavailable,
	api.CodeNotFound:          http.StatusNotFound,
	api.CodeShuttingDown:      http.StatusServiceUnavailable,
	api.CodeInternal:          http.StatusInternalServerError,
	api.CodeRateLimited:       http.StatusTooManyRequests,
	api.CodeInviteInvalid:     http.StatusBadRequest,
	api.CodeInviteExpired:     http.StatusGone,
	api.CodeCallEnded:         http.StatusGone,
	api.CodeForbidden:         http.StatusForbidden,
	api.CodeRetry:             http.StatusServiceUnavailable,
	api.CodeRequestTimeout:    http.StatusRequestTimeout,
	api.CodeStoreUnavailable:  http.StatusServiceUnavailable,
	api.CodeWrongNode:         http.StatusConflict,
	api.CodeBlobTooLarge:      http.StatusRequestEntityTooLarge,
	api.CodeRoomQuotaExceeded: http.StatusInsufficientStorage,
	api.CodeBlobStorageFull:   http.StatusInsufficientStorage,
	api.CodeBlobNotFound:      http.StatusNotFound,
	api.CodeKnockAnswered:     http.StatusConflict,
	api.CodeTooManyKnocks:     http.StatusTooManyRequests,
}

// errorf builds an *api.Error with a formatted message.
func errorf(code api.ErrorCode, format string, args ...any) *api.Error {
	return &api.Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// writeError answers with err's status and the JSON error body.
func writeError(w http.ResponseWriter, err *api.Error) {
	status, ok := httpStatus[err.Code]
	if !ok {
		status = http.StatusBadRequest
	}
	switch {
	case status == http.StatusUnauthorized:
		w.Header().Set("WWW-Authenticate", `Bearer realm="sotto"`)
	case err.Code == api.CodeRetry:
		w.Header().Set("Retry-After", "1")
	}
	writeJSON(w, status, api.ErrorBody{Error: err})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// tokenError maps a token.Verify error to its API error.
func tokenError(err error) *api.Error {
	switch {
	case errors.Is(err, token.ErrExpired):
		return errorf(api.CodeTokenExpired, "token expired")
	case errors.Is(err, token.ErrWrongRoom):
		return errorf(api.CodeWrongRoom, "token is for another room")
	default:
		return errorf(api.CodeUnauthorized, "missing or invalid token")
	}
}

// decodeBody reads a JSON body of at most limit bytes into v.
func decodeBody(w http.ResponseWriter, r *http.Request, limit int, v any) *api.Error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, int64(limit)))
	err := dec.Decode(v)
	if err == nil {
		// Anything after the object is malformed input, not ignorable noise.
		if _, err = dec.Token(); err == io.EOF {
			return nil
		} else if err == nil {
			err = errors.New("data after the JSON object")
		}
	}
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return errorf(api.CodeMessageTooLarge, "body larger than %d bytes", limit)
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return errorf(api.CodeRequestTimeout, "body not received in time")
	}
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		return errorf(api.CodeBadRequest, "field %q: wrong type", typeErr.Field)
	}
	return errorf(api.CodeInvalidJSON, "body is not valid JSON: %v", err)
}
