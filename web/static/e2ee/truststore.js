// Storage of what a client knows about identities: the device's own
// private identity, and the fingerprint first seen (and whether the user
// verified it) for each peer identity name. CallCrypto takes any object
// with get(name) and set(name, record), synchronous or returning promises.

import { fromHex, toHex } from './bytes.js';
import { PrivateIdentity } from './identity.js';

/** A trust store in memory: {fingerprint, verified} per identity name. */
export class MemoryTrustStore {
  constructor(entries = {}) {
    this._m = new Map(Object.entries(entries));
  }

  get(name) {
    const r = this._m.get(name);
    return r ? { ...r } : undefined;
  }

  set(name, record) {
    this._m.set(name, { fingerprint: record.fingerprint, verified: !!record.verified });
  }
}

/** A trust store in Web Storage (localStorage), one key per peer, under a
 *  prefix that names the local identity (so that two identities used in
 *  one browser keep separate records). */
export class StorageTrustStore {
  constructor(storage, prefix) {
    this._s = storage;
    this._prefix = `sotto.trust.${prefix}.`;
  }

  get(name) {
    const raw = this._s.getItem(this._prefix + name);
    if (!raw) return undefined;
    try {
      const r = JSON.parse(raw);
      return typeof r.fingerprint === 'string' ? { fingerprint: r.fingerprint, verified: !!r.verified } : undefined;
    } catch {
      return undefined;
    }
  }

  set(name, record) {
    this._s.setItem(this._prefix + name, JSON.stringify({ fingerprint: record.fingerprint, verified: !!record.verified }));
  }
}

/** Loads the device identity stored for name in storage, or creates and
 *  stores one. (Web Storage is readable by any script of the origin; the
 *  page's CSP admits only its own scripts.) */
export async function loadOrCreateIdentity(storage, name) {
  const key = `sotto.identity.${name}`;
  const raw = storage.getItem(key);
  if (raw) {
    try {
      return await PrivateIdentity.fromBytes(fromHex(raw));
    } catch {
      // Unreadable: replace it. Peers will see an identity change.
    }
  }
  const id = await PrivateIdentity.generate();
  storage.setItem(key, toHex(id.toBytes()));
  return id;
}
