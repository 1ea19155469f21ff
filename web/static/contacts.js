// What this browser remembers about the people it called, beyond one call.
// Call identities get a fresh random suffix every call, so across calls a
// person is recognised by two things: the identity key whose safety number
// was verified (verification belongs to the key), and the display name,
// whose last key is remembered to warn when someone of that name comes back
// with another one.

const VERIFIED = 'sotto.verified.';
const SEEN = 'sotto.seen.';

/** The name a person chose: the identity without the server's suffix,
 *  underscores (the page's stand-in for spaces) shown as spaces. */
export function displayName(identity) {
  return String(identity || '')
    .replace(/-[a-z2-7]{8}$/, '')
    .replace(/_/g, ' ');
}

/** The server's random suffix of an identity, or ''. */
export function identityTag(identity) {
  const m = /-([a-z2-7]{8})$/.exec(String(identity || ''));
  return m ? m[1] : '';
}

export class Contacts {
  constructor(storage) {
    this._s = storage;
  }

  isVerified(fingerprint) {
    return !!fingerprint && this._s.getItem(VERIFIED + fingerprint) === '1';
  }

  setVerified(fingerprint, verified) {
    if (verified) this._s.setItem(VERIFIED + fingerprint, '1');
    else this._s.removeItem(VERIFIED + fingerprint);
  }

  /** Records that name presented fingerprint; returns what was known for
   *  that name before if it was another key ({fingerprint, verified}), or
   *  null. */
  meet(name, fingerprint) {
    const key = SEEN + name;
    let before = null;
    try {
      before = JSON.parse(this._s.getItem(key) || 'null');
    } catch {
      before = null;
    }
    this._s.setItem(key, JSON.stringify({ fingerprint }));
    if (!before || typeof before.fingerprint !== 'string' || before.fingerprint === fingerprint) return null;
    return { fingerprint: before.fingerprint, verified: this.isVerified(before.fingerprint) };
  }
}
