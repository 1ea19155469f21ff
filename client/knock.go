package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"sync"
	"time"

	"github.com/sotto-voice/sotto/api"
)

// The door of a private call (docs/API.md, "The door"). A guest with an
// invite knocks (Knock) and gets a room token once the host lets it in; the
// host's Call reports each knock (GuestKnock) and answers it (Admit,
// Refuse), and decides who may answer, or that the link alone lets people
// in (SetDoor).

// knockPoll is how long one wait for an answer lasts on the server; the
// guest asks again until the knock is answered or expires.
const knockPoll = 25 * time.Second

// withdrawTimeout bounds telling the server that a guest gave up.
const withdrawTimeout = 5 * time.Second

// CreateCall starts a private call on the server at serverURL (POST
// /v1/calls) for its creator, the host, named name: the answer holds the
// host's token for Join and the invite to share. hc makes the request; nil
// means http.DefaultClient.
func CreateCall(ctx context.Context, serverURL, name string, hc *http.Client) (*api.CreateCallResponse, error) {
	a, err := newAPIClient(serverURL, hc)
	if err != nil {
		return nil, fmt.Errorf("create call: %w", err)
	}
	var cr api.CreateCallResponse
	if err := a.do(ctx, http.MethodPost, api.Version+"/calls", "", api.CreateCallRequest{Name: name}, &cr); err != nil {
		return nil, fmt.Errorf("create call: %w", err)
	}
	return &cr, nil
}

// KnockOptions configure Knock. The zero value (or nil) is ready to use.
type KnockOptions struct {
	// HTTPClient makes the requests; nil means http.DefaultClient.
	HTTPClient *http.Client
	// Waiting, if set, is called once the guest waits at the door, with
	// its knock: Expires says until when it waits for an answer. It is not
	// called when the door is open.
	Waiting func(api.Knock)
}

// Admission is what a guest gets when it is let in: a token for Join.
type Admission struct {
	Room     string
	Identity string // the guest's identity in the call: its name and a random suffix
	Inviter  string
	Token    string
	// By is who let the guest in; empty when the door was open.
	By string
}

// Reasons a knock ends without admission; a *KnockError matches one.
var (
	ErrKnockRefused = errors.New("client: refused at the door")
	ErrKnockExpired = errors.New("client: nobody answered at the door in time")
	ErrKnockEnded   = errors.New("client: the call ended while knocking")
)

// KnockError is the error of a knock that did not let the guest in.
// errors.Is matches ErrKnockRefused, ErrKnockExpired or ErrKnockEnded by
// its state.
type KnockError struct {
	Knock api.Knock
}

func (e *KnockError) Error() string {
	switch e.Knock.State {
	case api.KnockRefused:
		return fmt.Sprintf("client: %s refused to let you in", e.Knock.By)
	case api.KnockExpired:
		return "client: nobody let you in before the knock expired"
	case api.KnockEnded:
		return "client: the call ended while you were knocking"
	default:
		return "client: knock " + e.Knock.State
	}
}

func (e *KnockError) Is(target error) bool {
	switch target {
	case ErrKnockRefused:
		return e.Knock.State == api.KnockRefused
	case ErrKnockExpired:
		return e.Knock.State == api.KnockExpired
	case ErrKnockEnded:
		return e.Knock.State == api.KnockEnded
	}
	return false
}

// Knock redeems invite on the server at serverURL as a guest named name
// and waits at the door until the host (or someone in the call, if the
// host allows it) admits it, then returns its Admission; join the call
// with Join(ctx, serverURL, admission.Token, ...). When the host opened
// the door, the admission comes at once.
//
// A refusal, a knock nobody answered in time and a call that ended meanwhile
// are a *KnockError. When ctx ends first, the knock is withdrawn and
// ctx's error returned. A server that refuses the invite returns an error
// wrapping *api.Error (such as api.CodeInviteExpired).
func Knock(ctx context.Context, serverURL, invite, name string, opts *KnockOptions) (*Admission, error) {
	if opts == nil {
		opts = &KnockOptions{}
	}
	a, err := newAPIClient(serverURL, opts.HTTPClient)
	if err != nil {
		return nil, fmt.Errorf("knock: %w", err)
	}
	// The answer is a Knock (202) or, at an open door, a
	// RedeemInviteResponse (200), whose fields Knock shares.
	// In a cluster the knock waits on the node that runs the call, where
	// the host is: a, from here on.
	var k api.Knock
	if a, err = a.follow(ctx, http.MethodPost, api.Version+"/invites/redeem", "", api.RedeemInviteRequest{Invite: invite, Name: name}, &k); err != nil {
		return nil, fmt.Errorf("knock: %w", err)
	}
	if k.ID == "" {
		return &Admission{Room: k.Room, Identity: k.Identity, Inviter: k.Inviter, Token: k.Token}, nil
	}
	if opts.Waiting != nil {
		opts.Waiting(k)
	}
	auth := "Knock " + k.Secret
	path := api.Version + "/knocks/" + url.PathEscape(k.ID)
	for k.State == api.KnockPending {
		var next api.Knock
		err := a.do(ctx, http.MethodGet, fmt.Sprintf("%s?wait=%d", path, int(knockPoll/time.Second)), auth, nil, &next)
		if ctx.Err() != nil {
			withdraw(a, path, auth)
			return nil, fmt.Errorf("knock: %w", ctx.Err())
		}
		if err != nil {
			return nil, fmt.Errorf("knock: wait for an answer: %w", err)
		}
		k = next
	}
	if k.State != api.KnockAdmitted {
		return nil, &KnockError{Knock: k}
	}
	return &Admission{Room: k.Room, Identity: k.Identity, Inviter: k.Inviter, Token: k.Token, By: k.By}, nil
}

// withdraw tells the server that the guest stopped waiting, so that the
// host sees it leave the door; failing that, the knock expires.
func withdraw(a *apiClient, path, auth string) {
	ctx, cancel := context.WithTimeout(context.Background(), withdrawTimeout)
	defer cancel()
	_ = a.do(ctx, http.MethodDelete, path, auth, nil, nil)
}

// GuestKnock reports a guest at the door, to a participant who may answer
// it (the host, or everyone with api.DoorCall): Knock.State is
// api.KnockPending when it knocks (Knock.Name is the name it chose), and
// another api.Knock* state once it is answered, expired or withdrawn.
// Answer with Call.Admit or Call.Refuse.
type GuestKnock struct {
	Knock api.Knock
}

// DoorChanged reports that the call's creator changed its door (an
// api.Door* value).
type DoorChanged struct {
	Door string
	By   string
}

func (GuestKnock) event()  {}
func (DoorChanged) event() {}

// doorState is what a call knows of its door.
type doorState struct {
	mu      sync.Mutex
	door    string
	pending map[string]api.Knock // by id
}

func (c *Call) doorChanged(door, by string) {
	c.door.mu.Lock()
	changed := c.door.door != "" && c.door.door != door
	c.door.door = door
	c.door.mu.Unlock()
	if by != "" && changed {
		c.event(DoorChanged{Door: door, By: by})
	}
}

// knocksWaiting takes the pending knocks of a welcome: those not listed any more
// were answered while the event stream was away.
func (c *Call) knocksWaiting(pending []api.Knock) {
	c.door.mu.Lock()
	old := c.door.pending
	c.door.pending = make(map[string]api.Knock, len(pending))
	var fresh []api.Knock
	for _, k := range pending {
		c.door.pending[k.ID] = k
		if _, ok := old[k.ID]; !ok {
			fresh = append(fresh, k)
		}
	}
	c.door.mu.Unlock()
	for _, k := range fresh {
		c.event(GuestKnock{Knock: k})
	}
}

func (c *Call) knockUpdate(k api.Knock) {
	c.door.mu.Lock()
	if c.door.pending == nil {
		c.door.pending = make(map[string]api.Knock)
	}
	if k.State == api.KnockPending {
		c.door.pending[k.ID] = k
	} else {
		delete(c.door.pending, k.ID)
	}
	c.door.mu.Unlock()
	c.event(GuestKnock{Knock: k})
}

// Door returns the call's door, an api.Door* value.
func (c *Call) Door() string {
	c.door.mu.Lock()
	defer c.door.mu.Unlock()
	return c.door.door
}

// Knocks returns the guests waiting at the door that the caller may
// answer, oldest first.
func (c *Call) Knocks() []api.Knock {
	c.door.mu.Lock()
	defer c.door.mu.Unlock()
	l := make([]api.Knock, 0, len(c.door.pending))
	for _, k := range c.door.pending {
		l = append(l, k)
	}
	sort.Slice(l, func(i, j int) bool {
		if l[i].Expires != l[j].Expires {
			return l[i].Expires < l[j].Expires
		}
		return l[i].ID < l[j].ID
	})
	return l
}

// Admit lets the guest of knock knockID in: the server mints its token.
// Only the host may, or anyone in the call with api.DoorCall (else an
// *api.Error api.CodeForbidden); a knock answered already, expired or
// withdrawn is api.CodeKnockAnswered.
func (c *Call) Admit(ctx context.Context, knockID string) error {
	return c.answer(ctx, knockID, "admit")
}

// Refuse turns the guest of knock knockID away; see Admit.
func (c *Call) Refuse(ctx context.Context, knockID string) error {
	return c.answer(ctx, knockID, "refuse")
}

func (c *Call) answer(ctx context.Context, knockID, action string) error {
	path := api.Version + "/rooms/" + url.PathEscape(c.Room()) + "/knocks/" + url.PathEscape(knockID) + "/" + action
	if err := c.api.do(ctx, http.MethodPost, path, "Bearer "+c.token, nil, nil); err != nil {
		return fmt.Errorf("client: %s knock %s: %w", action, knockID, err)
	}
	return nil
}

// SetDoor sets who lets guests in (an api.Door* value): the host alone
// (api.DoorHost, the default), anyone in the call (api.DoorCall), or the
// invite link alone, without knocking (api.DoorOpen). Only the call's
// creator may.
func (c *Call) SetDoor(ctx context.Context, door string) error {
	path := api.Version + "/rooms/" + url.PathEscape(c.Room()) + "/door"
	if err := c.api.do(ctx, http.MethodPut, path, "Bearer "+c.token, api.DoorRequest{Door: door}, nil); err != nil {
		return fmt.Errorf("client: set door %q: %w", door, err)
	}
	return nil
}
