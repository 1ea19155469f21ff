// Byte helpers shared by the e2ee modules: hex and base64, big-endian
// integers (u64 as BigInt), concatenation and comparisons.

const enc = new TextEncoder();

/** UTF-8 (ASCII for protocol labels) bytes of s. */
export function utf8(s) {
  return enc.encode(s);
}

/** Lowercase hex of b. */
export function toHex(b) {
  let s = '';
  for (let i = 0; i < b.length; i++) s += b[i].toString(16).padStart(2, '0');
  return s;
}

/** Bytes of a hex string (even length, any case); throws on bad input. */
export function fromHex(s) {
  if (typeof s !== 'string' || s.length % 2 !== 0 || /[^0-9a-fA-F]/.test(s)) {
    throw new TypeError('invalid hex');
  }
  const out = new Uint8Array(s.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(s.substr(2 * i, 2), 16);
  return out;
}

/** Standard base64 with padding, as Go's encoding/json writes []byte. */
export function toBase64(b) {
  let s = '';
  for (let i = 0; i < b.length; i += 0x8000) {
    s += String.fromCharCode.apply(null, b.subarray(i, i + 0x8000));
  }
  return btoa(s);
}

/** Bytes of standard base64 (padding optional); throws on bad input. */
export function fromBase64(s) {
  if (typeof s !== 'string') throw new TypeError('invalid base64');
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/** Unpadded base64url (JWK fields). */
export function toBase64url(b) {
  return toBase64(b).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

export function fromBase64url(s) {
  const t = s.replace(/-/g, '+').replace(/_/g, '/');
  return fromBase64(t + '==='.slice((t.length + 3) % 4));
}

/** Concatenation of byte arrays. */
export function concat(...parts) {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

export function u8(n) {
  return Uint8Array.of(n & 0xff);
}

export function u16(n) {
  return Uint8Array.of((n >>> 8) & 0xff, n & 0xff);
}

export function u32(n) {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n >>> 0);
  return b;
}

/** 8 big-endian bytes of a BigInt (or a safe integer Number). */
export function u64(v) {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt.asUintN(64, BigInt(v)));
  return b;
}

export function readU16(b, off = 0) {
  return (b[off] << 8) | b[off + 1];
}

export function readU32(b, off = 0) {
  return new DataView(b.buffer, b.byteOffset + off, 4).getUint32(0);
}

export function readU64(b, off = 0) {
  return new DataView(b.buffer, b.byteOffset + off, 8).getBigUint64(0);
}

/** Unsigned big-endian integer of any length up to 8 bytes, as BigInt. */
export function readUint(b) {
  let v = 0n;
  for (let i = 0; i < b.length; i++) v = (v << 8n) | BigInt(b[i]);
  return v;
}

/** Equality in time that depends only on the lengths. */
export function equal(a, b) {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a[i] ^ b[i];
  return d === 0;
}

/** Byte-wise order: -1, 0 or +1 (like Go's bytes.Compare). */
export function compare(a, b) {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    if (a[i] !== b[i]) return a[i] < b[i] ? -1 : 1;
  }
  return a.length === b.length ? 0 : a.length < b.length ? -1 : 1;
}

/** Overwrite secret bytes once they are no longer needed. */
export function wipe(...arrays) {
  for (const a of arrays) if (a) a.fill(0);
}

/** A random source: n bytes from the platform CSPRNG. Modules take a
 *  `random(n)` function of this shape so that tests can inject bytes. */
export function randomBytes(n) {
  return crypto.getRandomValues(new Uint8Array(n));
}

/** A random source that returns the given bytes in order, then throws: to
 *  replay the random values recorded in test vectors. */
export function scriptedRandom(...chunks) {
  let buf = concat(...chunks);
  const fn = (n) => {
    if (buf.length < n) throw new Error(`scripted random exhausted (${n} wanted, ${buf.length} left)`);
    const out = buf.slice(0, n);
    buf = buf.subarray(n);
    return out;
  };
  fn.feed = (b) => {
    buf = concat(buf, b);
  };
  fn.remaining = () => buf.length;
  return fn;
}
