package signaling

import (
	"errors"

	"github.com/sotto-voice/sotto/api"
	"github.com/sotto-voice/sotto/store"
)

// storeError maps a failure of the state store to its API error, and logs
// it: 503 store_unavailable while the store cannot be reached (calls in
// progress go on; what needs the store waits for it), 500 otherwise.
func (s *Server) storeError(err error) *api.Error {
	if errors.Is(err, store.ErrUnavailable) {
		s.log.Warn("state store unavailable", "err", err)
		return errorf(api.CodeStoreUnavailable, "the server's state store is unavailable; retry shortly")
	}
	s.log.Error("state store failed", "err", err)
	return errorf(api.CodeInternal, "the server's state store failed")
}
