// Unit tests of resume.js: which ends a rejoin cures, the token's expiry,
// the rejoin schedule (backoff with jitter, the server's retry hint, the
// window) and when it gives up. Results: window.resumeResults = {done,
// results: [{group, name, ok, error}]}; web/resume_units_test.go drives
// this page in Chromium.

import { ApiError, UnreachableError } from '../api.js';
import { ResumeError, Resumption, Returning, resumable, tokenExpiry } from '../resume.js';

const results = [];
window.resumeResults = { done: false, results };

async function test(name, fn) {
  try {
    await fn();
    results.push({ group: 'resume', name, ok: true });
  } catch (e) {
    results.push({ group: 'resume', name, ok: false, error: String(e && e.stack ? e.stack : e) });
  }
}

function assert(cond, what) {
  if (!cond) throw new Error(what);
}

/** A room token as the server mints it, signature aside. */
function token(exp) {
  const body = btoa(JSON.stringify({ room: 'r', sub: 'alice', exp })).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  return `sotto1.${body}.c2lnbmF0dXJl`;
}

const later = token(Math.floor(Date.now() / 1000) + 3600);

/** Runs a Resumption whose attempts answer from outcomes in turn (an error
 *  to throw, or null to succeed), recording when each was made. */
async function run(o, outcomes) {
  const at = [];
  const r = new Resumption({
    token: later,
    ...o,
    attempt: async () => {
      at.push(Date.now() - r.lostAt);
      const e = outcomes[Math.min(at.length - 1, outcomes.length - 1)];
      if (e) throw e;
    },
  });
  try {
    return { after: await r.run(), at, r };
  } catch (err) {
    return { err, at, r };
  }
}

await test('ends that a rejoin cures, and those it does not', () => {
  for (const r of ['server_shutdown', 'session_lost', 'disconnected', 'dropped', 'connection_lost', 'ice_failed', 'timeout']) {
    assert(resumable(r), `${r} not resumable`);
  }
  for (const r of ['left', 'replaced', 'room_ended', '', 'something_new']) assert(!resumable(r), `${r} resumable`);
});

await test('token expiry read from the claims', () => {
  assert(tokenExpiry(token(1800000000)) === 1800000000 * 1000, 'expiry of a token');
  for (const bad of ['', 'sotto1', 'sotto1.!!!.x', 'sotto1.e30.x', null]) {
    assert(tokenExpiry(bad) === Infinity, `expiry of ${bad}: ${tokenExpiry(bad)}`);
  }
});

await test('backoff doubles with jitter until a join succeeds', async () => {
  const down = new UnreachableError(new Error('refused'));
  const { after, at, err } = await run({}, [down, down, null]);
  assert(!err, `gave up: ${err}`);
  assert(at.length === 3, `${at.length} attempts, want 3`);
  // Pauses drawn in [100, 200), [200, 400), [400, 800) ms.
  const gaps = [at[0], at[1] - at[0], at[2] - at[1]];
  const bounds = [
    [100, 200],
    [200, 400],
    [400, 800],
  ];
  gaps.forEach((g, i) => assert(g >= bounds[i][0] && g < bounds[i][1] + 150, `pause ${i + 1}: ${g} ms, want in ${bounds[i]}`));
  assert(after >= at[2], `resolved with ${after} ms, before the last attempt at ${at[2]}`);
});

await test('the retry hint delays the first attempt by one to two hints', async () => {
  const { at, err } = await run({ retryAfterMs: 300 }, [null]);
  assert(!err, `gave up: ${err}`);
  assert(at[0] >= 300 && at[0] < 600 + 150, `first attempt after ${at[0]} ms, want in [300, 600)`);
});

await test('410 call_ended ends it at once', async () => {
  const { err, at } = await run({}, [new ApiError(410, 'call_ended', 'ended')]);
  assert(err instanceof ResumeError && err.kind === 'refused' && err.cause.code === 'call_ended', `got ${err}`);
  assert(at.length === 1, `${at.length} attempts`);
});

await test('an expired or refused token ends it at once', async () => {
  for (const [code, kind] of [
    ['token_expired', 'expired'],
    ['unauthorized', 'refused'],
    ['wrong_room', 'refused'],
  ]) {
    const { err, at } = await run({}, [new ApiError(401, code, code)]);
    assert(err instanceof ResumeError && err.kind === kind, `${code}: got ${err}, want ${kind}`);
    assert(at.length === 1, `${code}: ${at.length} attempts`);
  }
});

await test('a busy or restarting server is retried', async () => {
  const { err, at } = await run({}, [new ApiError(503, 'shutting_down', 'x'), new ApiError(503, 'too_many_rooms', 'x'), new ApiError(500, 'internal', 'x'), null]);
  assert(!err && at.length === 4, `${at.length} attempts, ${err}`);
});

await test('the window runs out', async () => {
  const down = new UnreachableError(new Error('refused'));
  const t0 = Date.now();
  const { err, at } = await run({ windowMs: 700 }, [down]);
  assert(err instanceof ResumeError && err.kind === 'window' && err.cause === down, `got ${err}`);
  assert(at.length >= 2 && Date.now() - t0 < 700 + 300, `${at.length} attempts in ${Date.now() - t0} ms`);
});

await test('a token past its expiry is not used', async () => {
  const { err, at } = await run({ token: token(Math.floor(Date.now() / 1000) - 1) }, [null]);
  assert(err instanceof ResumeError && err.kind === 'expired' && at.length === 0, `got ${err} after ${at.length} attempts`);
});

await test('cancel stops it between attempts', async () => {
  const r = new Resumption({ token: later, retryAfterMs: 5000, attempt: async () => assert(false, 'attempted') });
  const p = r.run();
  setTimeout(() => r.cancel(), 50);
  const t0 = Date.now();
  let err;
  try {
    await p;
  } catch (e) {
    err = e;
  }
  assert(err instanceof ResumeError && err.kind === 'cancelled' && Date.now() - t0 < 1000, `got ${err}`);
});

await test('people come back by identity, once; the rest are given up', () => {
  const ret = new Returning();
  const ann = { id: 'p_1', identity: 'Ann-aaaaaaaa' };
  const bo = { id: 'p_2', identity: 'Bo-bbbbbbbb' };
  ret.expect(ann);
  ret.expect(bo);
  ret.expect({ id: 'p_3', identity: '' });
  assert(ret.claim('Ann-aaaaaaaa') === ann, 'Ann not claimed');
  assert(ret.claim('Ann-aaaaaaaa') === null, 'Ann claimed twice');
  assert(ret.claim('Cy-cccccccc') === null, 'a stranger claimed');
  const gone = [];
  ret.giveUp((p) => gone.push(p));
  assert(gone.length === 1 && gone[0] === bo, `given up ${JSON.stringify(gone)}`);
  assert(ret.claim('Bo-bbbbbbbb') === null, 'Bo back after being given up');
});

window.resumeResults.done = true;
document.getElementById('out').textContent = results.map((r) => `${r.ok ? 'ok  ' : 'FAIL'} ${r.name}${r.error ? `\n${r.error}` : ''}`).join('\n');
