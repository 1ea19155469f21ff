package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// Redis is the store a cluster shares. Operations that read and write
// (claiming a one-time prekey, a lease, a call's end) are Lua scripts, which
// Redis runs one at a time, so they are atomic across every client and
// node. docs/CLUSTER.md lists the keys.
type Redis struct {
	client *redis.Client
}

var _ Store = (*Redis)(nil)

// Defaults for a Redis URL that sets no timeouts: a request never waits
// long on a Redis that is gone, and answers store_unavailable instead.
const (
	redisDialTimeout = 2 * time.Second
	redisIOTimeout   = time.Second
	redisMaxRetries  = 2
	redisMaxBackoff  = 100 * time.Millisecond
	// A refused dial is retried once, shortly. After a run of refused
	// dials go-redis answers at once with the last error and probes
	// every second in the background: a Redis that returns is used again
	// within about a second.
	redisDialRetries    = 2
	redisDialRetryDelay = 50 * time.Millisecond
)

// quietRedisLog sends go-redis's own log lines (one per refused dial
// during an outage, say) to slog at debug level: the store's errors
// already report what matters, once per request.
var quietRedisLog sync.Once

type slogPrintf struct{}

func (slogPrintf) Printf(ctx context.Context, format string, v ...any) {
	slog.DebugContext(ctx, fmt.Sprintf(format, v...), "component", "go-redis")
}

// OpenRedis connects to the Redis at rawURL
// (redis://[user:password@]host:port/db) and checks that it answers.
// Once open, the client reconnects by itself after an outage.
func OpenRedis(ctx context.Context, rawURL string) (*Redis, error) {
	opt, err := redis.ParseURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("store: redis URL: %w", err)
	}
	if opt.DialTimeout == 0 {
		opt.DialTimeout = redisDialTimeout
	}
	if opt.ReadTimeout == 0 {
		opt.ReadTimeout = redisIOTimeout
	}
	if opt.WriteTimeout == 0 {
		opt.WriteTimeout = redisIOTimeout
	}
	opt.MaxRetries = redisMaxRetries
	opt.MaxRetryBackoff = redisMaxBackoff
	opt.DialerRetries = redisDialRetries
	opt.DialerRetryTimeout = redisDialRetryDelay
	opt.ContextTimeoutEnabled = true
	// Plain Redis: no client name announcements, no maintenance
	// notifications (Redis Enterprise's), so nothing but our commands.
	opt.DisableIdentity = true
	opt.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	quietRedisLog.Do(func() { redis.SetLogger(slogPrintf{}) })
	r := &Redis{client: redis.NewClient(opt)}
	if err := r.Ping(ctx); err != nil {
		_ = r.client.Close()
		return nil, fmt.Errorf("store: open redis %s: %w", opt.Addr, err)
	}
	return r, nil
}

// Key names; docs/CLUSTER.md describes each. The prekey keys of an
// identity share a hash tag, so that one script may touch them all.
const keyPrefix = "sotto:"

func callKey(room string) string       { return keyPrefix + "call:" + room }
func prekeyKey(identity string) string { return keyPrefix + "prekeys:{" + identity + "}" }
func markKey(key string) string        { return keyPrefix + "mark:" + key }
func leaseKey(name string) string      { return keyPrefix + "lease:" + name }
func nodeKey(id string) string         { return keyPrefix + "node:" + id }

// nodesKey is the set of the ids of the nodes that published a record; a
// record's own key says whether it is still alive.
const nodesKey = keyPrefix + "nodes"

// millis is d in whole milliseconds, at least 1 (Redis refuses 0).
func millis(d time.Duration) int64 { return max(1, d.Milliseconds()) }

// fail wraps a Redis error with op, marking every error but a reply to the
// command itself as ErrUnavailable; replies that say the server cannot
// serve now count as unavailable too.
func fail(op string, err error) error {
	var reply redis.Error
	if errors.As(err, &reply) && !busyReply(err) {
		return fmt.Errorf("store: redis %s: %w", op, err)
	}
	if errors.Is(err, redis.ErrClosed) {
		return fmt.Errorf("store: redis %s: %w", op, err)
	}
	return fmt.Errorf("store: redis %s: %w: %w", op, ErrUnavailable, err)
}

func busyReply(err error) bool {
	for _, prefix := range []string{"LOADING", "BUSY", "MASTERDOWN", "READONLY", "TRYAGAIN", "CLUSTERDOWN", "OOM"} {
		if redis.HasErrorPrefix(err, prefix) {
			return true
		}
	}
	return false
}

// createCallScript creates a call unless one exists; creating the same
// call again (a retried command) changes nothing and succeeds.
var createCallScript = redis.NewScript(`
local creator = redis.call('HGET', KEYS[1], 'creator')
if creator then return creator == ARGV[1] and 1 or 0 end
redis.call('HSET', KEYS[1], 'creator', ARGV[1], 'ended', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
`)

// CreateCall implements Calls.
func (r *Redis) CreateCall(ctx context.Context, room string, c Call, ttl time.Duration) error {
	op := "create call " + room
	ended := "0"
	if c.Ended {
		ended = "1"
	}
	created, err := createCallScript.Run(ctx, r.client, []string{callKey(room)}, c.Creator, millis(ttl), ended).Int()
	if err != nil {
		return fail(op, err)
	}
	if created == 0 {
		return fmt.Errorf("store: redis %s: %w", op, ErrExists)
	}
	return nil
}

// Call implements Calls.
func (r *Redis) Call(ctx context.Context, room string) (Call, error) {
	op := "call " + room
	vals, err := r.client.HMGet(ctx, callKey(room), "creator", "ended").Result()
	if err != nil {
		return Call{}, fail(op, err)
	}
	creator, ok := vals[0].(string)
	if !ok {
		return Call{}, fmt.Errorf("store: redis %s: %w", op, ErrNotFound)
	}
	ended, _ := vals[1].(string)
	return Call{Creator: creator, Ended: ended == "1"}, nil
}

// endCallScript marks an existing call ended, keeping its expiry.
var endCallScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'ended', '1')
return 1
`)

// EndCall implements Calls.
func (r *Redis) EndCall(ctx context.Context, room string) error {
	op := "end call " + room
	ended, err := endCallScript.Run(ctx, r.client, []string{callKey(room)}).Int()
	if err != nil {
		return fail(op, err)
	}
	if ended == 0 {
		return fmt.Errorf("store: redis %s: %w", op, ErrNotFound)
	}
	return nil
}

// putPrekeysScript stores an upload whole or refuses it whole.
// KEYS[1] is the identity's hash (fields epoch, bundle, and pool:<name> for
// each pool it has); each pool is the list KEYS[1]..':pool:'..name of
// entries (4-byte big-endian id, then the key), oldest first.
// ARGV: epoch, bundle, ttl ms, max per pool, then for each pool its name,
// its number of entries and the entries.
// Returns {'ok', name, count, ...} for the pools named, {'dup', name, id}
// or {'full', name, count}.
var putPrekeysScript = redis.NewScript(`
local key = KEYS[1]
local epoch, bundle, ttl, max = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local fresh = redis.call('HGET', key, 'epoch') ~= epoch
local pools = {}
for _, f in ipairs(redis.call('HKEYS', key)) do
  if string.sub(f, 1, 5) == 'pool:' then pools[#pools + 1] = string.sub(f, 6) end
end
local adds = {}
local i = 5
while i <= #ARGV do
  local name, n = ARGV[i], tonumber(ARGV[i + 1])
  local ids, count = {}, 0
  if not fresh then
    for _, e in ipairs(redis.call('LRANGE', key .. ':pool:' .. name, 0, -1)) do
      ids[string.sub(e, 1, 4)] = true
      count = count + 1
    end
  end
  if count + n > max then return {'full', name, count} end
  for j = i + 2, i + 1 + n do
    local id = string.sub(ARGV[j], 1, 4)
    if ids[id] then return {'dup', name, id} end
    ids[id] = true
  end
  adds[#adds + 1] = {name, i + 2, i + 1 + n}
  i = i + 2 + n
end
if fresh then
  for _, name in ipairs(pools) do redis.call('DEL', key .. ':pool:' .. name) end
  redis.call('DEL', key)
  pools = {}
end
redis.call('HSET', key, 'epoch', epoch, 'bundle', bundle)
local out = {'ok'}
for _, a in ipairs(adds) do
  local list = key .. ':pool:' .. a[1]
  if a[3] >= a[2] then
    redis.call('RPUSH', list, unpack(ARGV, a[2], a[3]))
    redis.call('HSET', key, 'pool:' .. a[1], '1')
  end
  out[#out + 1] = a[1]
  out[#out + 1] = redis.call('LLEN', list)
end
for _, name in ipairs(pools) do redis.call('PEXPIRE', key .. ':pool:' .. name, ttl) end
for _, a in ipairs(adds) do redis.call('PEXPIRE', key .. ':pool:' .. a[1], ttl) end
redis.call('PEXPIRE', key, ttl)
return out
`)

// PutPrekeys implements Prekeys.
func (r *Redis) PutPrekeys(ctx context.Context, identity string, u PrekeyUpload) (map[string]int, error) {
	op := "put prekeys of " + identity
	args := []any{u.Epoch, u.Bundle, millis(u.TTL), u.Max}
	for pool, keys := range u.OneTime {
		args = append(args, pool, len(keys))
		for _, k := range keys {
			args = append(args, prekeyEntryBytes(k))
		}
	}
	vals, err := putPrekeysScript.Run(ctx, r.client, []string{prekeyKey(identity)}, args...).Slice()
	if err != nil {
		return nil, fail(op, err)
	}
	status, _ := vals[0].(string)
	switch {
	case status == "dup" && len(vals) == 3:
		id, _ := vals[2].(string)
		if len(id) != 4 {
			break
		}
		return nil, fmt.Errorf("store: redis %s: %w: id %d (pool %v)", op, ErrDuplicatePrekey, binary.BigEndian.Uint32([]byte(id)), vals[1])
	case status == "full" && len(vals) == 3:
		return nil, fmt.Errorf("store: redis %s: %w: at most %d may be stored; %v are (pool %v)", op, ErrTooManyPrekeys, u.Max, vals[2], vals[1])
	case status == "ok":
		remaining, err := poolCounts(vals[1:])
		if err == nil {
			return remaining, nil
		}
	}
	return nil, fmt.Errorf("store: redis %s: unexpected reply %v", op, vals)
}

// takePrekeysScript returns {bundle, name, count, entry, ...} for every
// pool the identity has or ARGV names, entry being the one-time prekey
// taken (” if none), or nil if the identity has no entry.
// ARGV: ttl ms, then the pools to take from.
var takePrekeysScript = redis.NewScript(`
local key = KEYS[1]
local bundle = redis.call('HGET', key, 'bundle')
if not bundle then return false end
local ttl = ARGV[1]
local take, pools = {}, {}
for i = 2, #ARGV do take[ARGV[i]] = true; pools[ARGV[i]] = true end
for _, f in ipairs(redis.call('HKEYS', key)) do
  if string.sub(f, 1, 5) == 'pool:' then pools[string.sub(f, 6)] = true end
end
local out = {bundle}
for name in pairs(pools) do
  local list = key .. ':pool:' .. name
  local got = ''
  if take[name] then got = redis.call('LPOP', list) or '' end
  redis.call('PEXPIRE', list, ttl)
  out[#out + 1] = name
  out[#out + 1] = redis.call('LLEN', list)
  out[#out + 1] = got
end
redis.call('PEXPIRE', key, ttl)
return out
`)

// TakePrekeys implements Prekeys.
func (r *Redis) TakePrekeys(ctx context.Context, identity string, take []string, ttl time.Duration) (PrekeyFetch, error) {
	op := "take prekeys of " + identity
	args := []any{millis(ttl)}
	for _, pool := range take {
		args = append(args, pool)
	}
	vals, err := takePrekeysScript.Run(ctx, r.client, []string{prekeyKey(identity)}, args...).Slice()
	if errors.Is(err, redis.Nil) {
		return PrekeyFetch{}, fmt.Errorf("store: redis %s: %w", op, ErrNotFound)
	}
	if err != nil {
		return PrekeyFetch{}, fail(op, err)
	}
	bundle, ok := vals[0].(string)
	if !ok || len(vals)%3 != 1 {
		return PrekeyFetch{}, fmt.Errorf("store: redis %s: unexpected reply %v", op, vals)
	}
	f := PrekeyFetch{Bundle: []byte(bundle), OneTime: map[string]OneTimePrekey{}, Remaining: map[string]int{}}
	for i := 1; i < len(vals); i += 3 {
		name, okName := vals[i].(string)
		count, okCount := vals[i+1].(int64)
		entry, okEntry := vals[i+2].(string)
		if !okName || !okCount || !okEntry || (entry != "" && len(entry) < 4) {
			return PrekeyFetch{}, fmt.Errorf("store: redis %s: unexpected reply %v", op, vals)
		}
		f.Remaining[name] = int(count)
		if entry != "" {
			f.OneTime[name] = OneTimePrekey{ID: binary.BigEndian.Uint32([]byte(entry)), Key: []byte(entry[4:])}
		}
	}
	return f, nil
}

// prekeyEntryBytes encodes a one-time prekey as a pool list entry.
func prekeyEntryBytes(k OneTimePrekey) []byte {
	return append(binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(k.Key)), k.ID), k.Key...)
}

// poolCounts reads name, count pairs.
func poolCounts(vals []any) (map[string]int, error) {
	if len(vals)%2 != 0 {
		return nil, errors.New("odd pool counts")
	}
	counts := make(map[string]int, len(vals)/2)
	for i := 0; i < len(vals); i += 2 {
		name, okName := vals[i].(string)
		n, okCount := vals[i+1].(int64)
		if !okName || !okCount {
			return nil, errors.New("malformed pool count")
		}
		counts[name] = int(n)
	}
	return counts, nil
}

// Mark implements Marks.
func (r *Redis) Mark(ctx context.Context, key string, ttl time.Duration) (bool, error) {
	marked, err := r.client.SetNX(ctx, markKey(key), 1, time.Duration(millis(ttl))*time.Millisecond).Result()
	if err != nil {
		return false, fail("mark "+key, err)
	}
	return marked, nil
}

// Unmark implements Marks.
func (r *Redis) Unmark(ctx context.Context, key string) error {
	if err := r.client.Del(ctx, markKey(key)).Err(); err != nil {
		return fail("unmark "+key, err)
	}
	return nil
}

var claimLeaseScript = redis.NewScript(`
local holder = redis.call('GET', KEYS[1])
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return ARGV[1]
end
if holder == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return holder
`)

var renewLeaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
`)

var releaseLeaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1
`)

// ClaimLease implements Leases.
func (r *Redis) ClaimLease(ctx context.Context, name, owner string, ttl time.Duration) (string, error) {
	holder, err := claimLeaseScript.Run(ctx, r.client, []string{leaseKey(name)}, owner, millis(ttl)).Text()
	if err != nil {
		return "", fail("claim lease "+name, err)
	}
	return holder, nil
}

// RenewLease implements Leases.
func (r *Redis) RenewLease(ctx context.Context, name, owner string, ttl time.Duration) (bool, error) {
	renewed, err := renewLeaseScript.Run(ctx, r.client, []string{leaseKey(name)}, owner, millis(ttl)).Bool()
	if err != nil {
		return false, fail("renew lease "+name, err)
	}
	return renewed, nil
}

// ReleaseLease implements Leases.
func (r *Redis) ReleaseLease(ctx context.Context, name, owner string) (bool, error) {
	released, err := releaseLeaseScript.Run(ctx, r.client, []string{leaseKey(name)}, owner).Bool()
	if err != nil {
		return false, fail("release lease "+name, err)
	}
	return released, nil
}

// LeaseHolder implements Leases.
func (r *Redis) LeaseHolder(ctx context.Context, name string) (string, error) {
	holder, err := r.client.Get(ctx, leaseKey(name)).Result()
	if errors.Is(err, redis.Nil) {
		return "", nil
	}
	if err != nil {
		return "", fail("lease holder "+name, err)
	}
	return holder, nil
}

// putNodeScript stores a node's record and adds it to the set of nodes,
// which lives as long as the latest record.
// KEYS: the record's key, the set. ARGV: id, record, ttl ms.
var putNodeScript = redis.NewScript(`
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
redis.call('SADD', KEYS[2], ARGV[1])
if redis.call('PTTL', KEYS[2]) < tonumber(ARGV[3]) then redis.call('PEXPIRE', KEYS[2], ARGV[3]) end
return 1
`)

// nodesScript returns {id, record, ...} for every live node, and forgets
// the ids whose record expired. KEYS: the set. ARGV: the prefix of the
// records' keys.
var nodesScript = redis.NewScript(`
local out = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local record = redis.call('GET', ARGV[1] .. id)
  if record then
    out[#out + 1] = id
    out[#out + 1] = record
  else
    redis.call('SREM', KEYS[1], id)
  end
end
return out
`)

// PutNode implements Nodes.
func (r *Redis) PutNode(ctx context.Context, id string, record []byte, ttl time.Duration) error {
	if err := putNodeScript.Run(ctx, r.client, []string{nodeKey(id), nodesKey}, id, record, millis(ttl)).Err(); err != nil {
		return fail("put node "+id, err)
	}
	return nil
}

// DeleteNode implements Nodes.
func (r *Redis) DeleteNode(ctx context.Context, id string) error {
	if err := r.client.Del(ctx, nodeKey(id)).Err(); err != nil {
		return fail("delete node "+id, err)
	}
	if err := r.client.SRem(ctx, nodesKey, id).Err(); err != nil {
		return fail("delete node "+id, err)
	}
	return nil
}

// Nodes implements Nodes.
func (r *Redis) Nodes(ctx context.Context) (map[string][]byte, error) {
	vals, err := nodesScript.Run(ctx, r.client, []string{nodesKey}, nodeKey("")).Slice()
	if err != nil {
		return nil, fail("nodes", err)
	}
	if len(vals)%2 != 0 {
		return nil, fmt.Errorf("store: redis nodes: unexpected reply %v", vals)
	}
	out := make(map[string][]byte, len(vals)/2)
	for i := 0; i < len(vals); i += 2 {
		id, okID := vals[i].(string)
		record, okRecord := vals[i+1].(string)
		if !okID || !okRecord {
			return nil, fmt.Errorf("store: redis nodes: unexpected reply %v", vals)
		}
		out[id] = []byte(record)
	}
	return out, nil
}

// Ping implements Store.
func (r *Redis) Ping(ctx context.Context) error {
	if err := r.client.Ping(ctx).Err(); err != nil {
		return fail("ping", err)
	}
	return nil
}

// Close implements Store.
func (r *Redis) Close() error {
	if err := r.client.Close(); err != nil {
		return fmt.Errorf("store: close redis: %w", err)
	}
	return nil
}
