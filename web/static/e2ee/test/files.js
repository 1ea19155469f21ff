// The message and file formats (docs/PROTOCOL.md §11, §12) in the page's
// modules: every vector of e2ee/testdata/sotto-message-vectors.json (the
// same the Go tests pass), then unit tests of the refusals: a tampered,
// truncated or reordered chunk, a wrong key, malformed messages. Results:
// window.filesResults = {done, results: [{group, name, ok, error}]};
// web/messages_test.go drives this page in Chromium.

import { concat, equal, fromHex, toHex } from '../bytes.js';
import { encodeMessage, encodeReceipt, parseMessage, parseReceipt, MAX_MESSAGE_TEXT } from '../message.js';
import { sha256 } from '../primitives.js';
import { FILE_CHUNK_SIZE, FILE_HEADER, chunkNonce, decryptFile, encryptFile, encryptedFileSize, fileAEADKey, newFileKey } from '../stream.js';
import { assert, eqHex, harness } from './harness.js';

const h = harness('filesResults');
const { run } = h;
const CHUNK = FILE_CHUNK_SIZE + 16;
const H = FILE_HEADER.length;

/** n bytes, byte i being i mod 251, as the vectors' plaintexts. */
function patterned(n) {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = i % 251;
  return b;
}

async function refused(key, ct, what) {
  try {
    await decryptFile(key, ct);
  } catch (e) {
    if (e.code !== 'file_corrupt') throw new Error(`${what}: error ${e.code} (${e.message}), want file_corrupt`);
    return;
  }
  throw new Error(`${what}: decrypted`);
}

/** Splits an encrypted file into its chunks. */
function chunks(ct) {
  const cs = [];
  let o = H;
  while (ct.length - o > CHUNK) {
    cs.push(ct.subarray(o, o + CHUNK));
    o += CHUNK;
  }
  cs.push(ct.subarray(o));
  return cs;
}

function damage(c, ct) {
  const cs = chunks(ct);
  switch (c.op) {
    case 'flip': {
      const out = ct.slice();
      out[c.offset] ^= 1;
      return out;
    }
    case 'truncate':
      return ct.slice(0, c.length);
    case 'append':
      return concat(ct, fromHex(c.bytes));
    case 'swap':
      [cs[c.a], cs[c.b]] = [cs[c.b], cs[c.a]];
      break;
    case 'drop':
      cs.splice(c.a, 1);
      break;
    case 'duplicate':
      cs.splice(c.a, 0, cs[c.a]);
      break;
    default:
      throw new Error(`unknown op ${c.op}`);
  }
  return concat(FILE_HEADER, ...cs);
}

async function vectors(v) {
  for (const m of v.messages) {
    await run('messages.messages', `seq ${m.seq}`, async () => {
      const msg = { seq: BigInt(m.seq), sentMs: Number(m.sent_ms), direct: m.direct, text: m.text || '' };
      if (m.file) msg.file = { blobId: m.file.blob_id, key: fromHex(m.file.key), digest: fromHex(m.file.digest), size: m.file.size, name: m.file.name, type: m.file.type };
      eqHex(encodeMessage(msg), m.encoded, 'encoding');
      const p = parseMessage(fromHex(m.encoded));
      assert(p.seq === msg.seq && p.sentMs === msg.sentMs && p.direct === msg.direct && p.text === msg.text, 'parsed fields');
      assert(!m.file === !p.file, 'file presence');
      if (m.file) {
        const f = p.file;
        assert(f.blobId === m.file.blob_id && toHex(f.key) === m.file.key && toHex(f.digest) === m.file.digest && f.size === m.file.size && f.name === m.file.name && f.type === m.file.type, 'file fields');
      }
    });
  }
  for (const r of v.receipts) {
    await run('messages.receipts', `seq ${r.seq}`, async () => {
      eqHex(encodeReceipt(BigInt(r.seq)), r.encoded, 'encoding');
      assert(parseReceipt(fromHex(r.encoded)) === BigInt(r.seq), 'parsed seq');
    });
  }
  const files = {};
  for (const f of v.files) {
    await run('messages.files', f.name, async () => {
      const key = fromHex(f.key);
      eqHex(await fileAEADKey(key), f.aead_key, 'AEAD key');
      eqHex(FILE_HEADER, f.header, 'header');
      const pt = patterned(f.plaintext_size);
      const ct = await encryptFile(key, pt);
      assert(ct.length === encryptedFileSize(pt.length), 'size');
      eqHex(await sha256(ct), f.ciphertext_sha256, 'ciphertext digest');
      if (f.ciphertext) eqHex(ct, f.ciphertext, 'ciphertext');
      const cs = chunks(ct);
      assert(cs.length === f.chunks.length, `${cs.length} chunks, want ${f.chunks.length}`);
      cs.forEach((c, i) => {
        eqHex(chunkNonce(i, i === cs.length - 1), f.chunks[i].nonce, `nonce ${i}`);
        assert(c.length === f.chunks[i].size, `chunk ${i} size`);
        eqHex(c.subarray(c.length - 16), f.chunks[i].tag, `chunk ${i} tag`);
      });
      // From a Blob too, as the page reads a File.
      assert(equal(await encryptFile(key, new Blob([pt])), ct), 'Blob source gives another ciphertext');
      assert(equal(await decryptFile(key, ct), pt), 'decryption');
      files[f.name] = { key, ct };
    });
  }
  for (const [i, c] of v.corrupt.entries()) {
    await run('messages.corrupt', `${i}: ${c.op} of ${c.file}`, async () => {
      const f = files[c.file];
      assert(f, `no file ${c.file}`);
      await refused(f.key, damage(c, f.ct), `${c.op}`);
    });
  }
}

/** Whether fn throws the 'invalid' ProtocolError. */
function invalid(fn) {
  try {
    fn();
  } catch (e) {
    return e.code === 'invalid';
  }
  return false;
}

async function units() {
  const key = newFileKey();
  const pt = patterned(3 * FILE_CHUNK_SIZE + 77);
  const ct = await encryptFile(key, pt);
  await run('units', 'round trip of every size around a chunk', async () => {
    for (const n of [0, 1, FILE_CHUNK_SIZE - 1, FILE_CHUNK_SIZE, FILE_CHUNK_SIZE + 1, 2 * FILE_CHUNK_SIZE]) {
      const p = patterned(n);
      const c = await encryptFile(key, p);
      assert(c.length === encryptedFileSize(n) && equal(await decryptFile(key, c), p), `size ${n}`);
    }
  });
  await run('units', 'progress reaches the total both ways', async () => {
    let enc = 0;
    let dec = 0;
    await decryptFile(key, await encryptFile(key, pt, (d, t) => (enc = d === t ? t : enc)), (d, t) => (dec = d === t ? t : dec));
    assert(enc === pt.length && dec === ct.length, `progress ${enc}, ${dec}`);
  });
  await run('units', 'a tampered chunk is refused', async () => {
    for (const at of [0, 5, H, H + 1000, H + CHUNK - 1, H + CHUNK + 10, ct.length - 1]) {
      const bad = ct.slice();
      bad[at] ^= 0x40;
      await refused(key, bad, `byte ${at}`);
    }
  });
  await run('units', 'a truncated file is refused', async () => {
    for (const n of [0, 3, H, H + 10, H + CHUNK, H + 2 * CHUNK, H + 3 * CHUNK, ct.length - 1]) await refused(key, ct.slice(0, n), `cut to ${n}`);
  });
  await run('units', 'reordered, dropped or repeated chunks are refused', async () => {
    const cs = chunks(ct);
    await refused(key, concat(FILE_HEADER, cs[1], cs[0], cs[2], cs[3]), 'swap 0 and 1');
    await refused(key, concat(FILE_HEADER, cs[0], cs[1], cs[3], cs[2]), 'last chunk moved');
    await refused(key, concat(FILE_HEADER, cs[0], cs[2], cs[3]), 'chunk 1 dropped');
    await refused(key, concat(FILE_HEADER, cs[0], cs[0], cs[1], cs[2], cs[3]), 'chunk 0 repeated');
    await refused(key, concat(ct, cs[3]), 'last chunk repeated');
  });
  await run('units', 'another key is refused', async () => {
    await refused(newFileKey(), ct, 'another key');
  });
  await run('units', 'the plaintext appears nowhere in the ciphertext', async () => {
    const needle = toHex(pt.subarray(1000, 1032));
    assert(!toHex(ct).includes(needle), 'plaintext found');
  });
  await run('units', 'malformed messages are refused', async () => {
    const good = encodeMessage({ seq: 7n, sentMs: 1, direct: false, text: 'hi' });
    const bad = {
      'frame key type': concat(Uint8Array.of(1), good.subarray(1)),
      'unknown flag': (() => { const b = good.slice(); b[17] = 2; return b; })(),
      'unknown kind': (() => { const b = good.slice(); b[18] = 9; return b; })(),
      'sequence 0': (() => { const b = good.slice(); b.fill(0, 1, 9); return b; })(),
      'invalid UTF-8': concat(good.subarray(0, 19), Uint8Array.of(0xff)),
      'empty text': good.subarray(0, 19),
      'cut header': good.subarray(0, 10),
    };
    for (const [name, b] of Object.entries(bad)) assert(invalid(() => parseMessage(b)), `${name} parses`);
    for (const [name, m] of Object.entries({
      'too long': { seq: 1n, sentMs: 0, text: 'a'.repeat(MAX_MESSAGE_TEXT + 1) },
      'no text': { seq: 1n, sentMs: 0, text: '' },
      'bad blob id': { seq: 1n, sentMs: 0, file: { blobId: '../x', key: new Uint8Array(32), digest: new Uint8Array(32), size: 1, name: 'n', type: '' } },
      'no name': { seq: 1n, sentMs: 0, file: { blobId: 'x', key: new Uint8Array(32), digest: new Uint8Array(32), size: 1, name: '', type: '' } },
    })) {
      assert(invalid(() => encodeMessage(m)), `${name} encodes`);
    }
    const withFile = encodeMessage({ seq: 1n, sentMs: 0, file: { blobId: 'b', key: new Uint8Array(32), digest: new Uint8Array(32), size: 3, name: 'ñ', type: 'text/plain' } });
    for (let n = 19; n < withFile.length; n++) assert(invalid(() => parseMessage(withFile.subarray(0, n))), `file message cut to ${n} bytes parses`);
  });
}

async function main() {
  const base = new URLSearchParams(location.search).get('testdata') || '/testdata/';
  try {
    const r = await fetch(base + 'sotto-message-vectors.json');
    if (!r.ok) throw new Error(`vectors: HTTP ${r.status}`);
    await vectors(await r.json());
    await units();
  } catch (e) {
    h.fail(e);
  }
  h.finish();
}

main();
