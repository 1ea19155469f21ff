// Runs every test vector of e2ee/testdata (RFC 9605 Appendix C and
// docs/PROTOCOL.md's sotto-vectors.json) against the JavaScript modules and
// publishes the outcome as window.vectorResults = {done, results: [{group,
// name, ok, error}]}. The vector files are fetched from ?testdata=<base>
// (default /testdata/). web/e2ee_test.go drives this page in Chromium.

import { concat, equal, fromHex, scriptedRandom, toHex, u16, u32, u64, utf8 } from '../bytes.js';
import { encodeFrameKey, encodeFrameKeyAck, encodeMuteState, parseFrameKey, parseFrameKeyAck, parseMuteState } from '../envelope.js';
import { FrameReceiver, FrameSealer, ackOf, kidOf } from '../framekeys.js';
import { PrivateIdentity, PublicIdentity, safetyHalf, safetyNumber } from '../identity.js';
import { hmacSha256, x25519, x25519KeyPair, x25519Public } from '../primitives.js';
import { SFrameKey, ctrHmacOpen, ctrHmacSeal, decodeHeader, deriveKeySalt, encodeHeader, ratchetBaseKey, suiteParams } from '../sframe.js';
import { nobleKem, webCryptoKem } from '../mlkem.js';
import { KEM_PREKEY_LABEL, PQXDH_INFO, PrekeyStore, acceptSession, initiateSession, pqxdhSecret, verifyBundle } from '../pqxdh.js';
import { assert, eqHex, harness } from './harness.js';

const h = harness('vectorResults');
const { run } = h;

// JSON with 64-bit kid/ctr numbers read exactly (JSON.parse source text).
function parseBig(text) {
  return JSON.parse(text, (key, value, ctx) => ((key === 'kid' || key === 'ctr') && typeof value === 'number' ? BigInt(ctx.source) : value));
}

async function fetchText(url) {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
  return r.text();
}

// Extract(salt = "", ikm) = HMAC(HashLen zero bytes, ikm).
async function hkdfExtract(hash, ikm) {
  const len = hash === 'SHA-512' ? 64 : 32;
  const key = await crypto.subtle.importKey('raw', new Uint8Array(len), { name: 'HMAC', hash }, false, ['sign']);
  return new Uint8Array(await crypto.subtle.sign('HMAC', key, ikm));
}

async function rfc9605(v) {
  for (const h of v.header) {
    await run('rfc9605.header', `kid=${h.kid} ctr=${h.ctr}`, async () => {
      eqHex(encodeHeader(h.kid, h.ctr), h.encoded, 'encoding');
      const enc = fromHex(h.encoded);
      const d = decodeHeader(concat(enc, Uint8Array.of(0xaa)));
      assert(d && d.kid === h.kid && d.ctr === h.ctr && d.length === enc.length, `decoding gives ${d && d.kid}/${d && d.ctr}/${d && d.length}`);
      assert(enc.length === 1 || decodeHeader(enc.subarray(0, enc.length - 1)) === null, 'truncated header parses');
    });
  }
  for (const c of v.aes_ctr_hmac) {
    await run('rfc9605.aes_ctr_hmac', `suite=${c.cipher_suite}`, async () => {
      const key = fromHex(c.key);
      eqHex(key.subarray(0, 16), c.enc_key, 'enc_key');
      eqHex(key.subarray(16), c.auth_key, 'auth_key');
      const ct = await ctrHmacSeal(c.cipher_suite, key, fromHex(c.nonce), fromHex(c.aad), fromHex(c.pt));
      eqHex(ct, c.ct, 'ciphertext');
      eqHex(await ctrHmacOpen(c.cipher_suite, key, fromHex(c.nonce), fromHex(c.aad), fromHex(c.ct)), c.pt, 'open');
      const bad = fromHex(c.ct);
      bad[0] ^= 1;
      assert((await ctrHmacOpen(c.cipher_suite, key, fromHex(c.nonce), fromHex(c.aad), bad)) === null, 'tampered ciphertext opens');
    });
  }
  for (const s of v.sframe) {
    await run('rfc9605.sframe', `suite=${s.cipher_suite}`, async () => {
      const p = suiteParams(s.cipher_suite);
      eqHex(concat(utf8('SFrame 1.0 Secret key '), u64(s.kid), u16(s.cipher_suite)), s.sframe_key_label, 'key label');
      eqHex(concat(utf8('SFrame 1.0 Secret salt '), u64(s.kid), u16(s.cipher_suite)), s.sframe_salt_label, 'salt label');
      const base = fromHex(s.base_key);
      eqHex(await hkdfExtract(p.hash, base), s.sframe_secret, 'sframe_secret');
      const ks = await deriveKeySalt(s.cipher_suite, s.kid, base);
      eqHex(ks.key, s.sframe_key, 'sframe_key');
      eqHex(ks.salt, s.sframe_salt, 'sframe_salt');
      const nonce = ks.salt.slice();
      const c = u64(s.ctr);
      for (let i = 0; i < 8; i++) nonce[4 + i] ^= c[i];
      eqHex(nonce, s.nonce, 'nonce');
      const header = encodeHeader(s.kid, s.ctr);
      eqHex(concat(header, fromHex(s.metadata)), s.aad, 'aad');
      const key = await SFrameKey.create(s.cipher_suite, s.kid, base);
      const frame = await key.seal(s.ctr, fromHex(s.pt), fromHex(s.metadata));
      eqHex(frame, s.ct, 'frame');
      const hdr = decodeHeader(fromHex(s.ct));
      eqHex(await key.open(fromHex(s.ct), hdr, fromHex(s.metadata)), s.pt, 'open');
      assert((await key.open(fromHex(s.ct), hdr, new Uint8Array(0))) === null, 'opens without its metadata');
    });
  }
}

async function sotto(v) {
  const pubs = {};
  const privs = {};
  for (const iv of v.identities) {
    await run('sotto.identities', iv.name, async () => {
      const id = await PrivateIdentity.fromBytes(fromHex(iv.private));
      eqHex(id.toBytes(), iv.private, 'private round trip');
      const gen = await PrivateIdentity.generate(scriptedRandom(fromHex(iv.random)));
      eqHex(gen.toBytes(), iv.private, 'private from random');
      eqHex(id.public.bytes, iv.public, 'public');
      eqHex(id.public.sigPub, iv.sig_pub, 'sig_pub');
      eqHex(id.public.dhPub, iv.dh_pub, 'dh_pub');
      const p = await PublicIdentity.parse(fromHex(iv.public));
      assert(p.fingerprint === iv.fingerprint, `fingerprint ${p.fingerprint}`);
      assert((await safetyHalf(p)) === iv.safety_half, 'safety half');
      assert(p.equals(id.public), 'parsed identity differs');
      const bad = fromHex(iv.public);
      bad[100] ^= 1;
      let rejected = false;
      await PublicIdentity.parse(bad).catch(() => (rejected = true));
      assert(rejected, 'identity with a bad signature accepted');
      pubs[iv.name] = p;
      privs[iv.name] = id;
    });
  }
  await run('sotto.safety_number', 'alice-bob', async () => {
    const ab = await safetyNumber(pubs.alice, pubs.bob);
    const ba = await safetyNumber(pubs.bob, pubs.alice);
    assert(ab === v.safety_number && ba === v.safety_number, `got ${ab} / ${ba}`);
  });
  const spk = v.bob_signed_prekey;
  const opk = v.bob_one_time_prekey;
  const lrk = v.bob_kem_prekey;
  const otk = v.bob_one_time_kem_prekey;
  const x = v.pqxdh;
  const lr = v.pqxdh_last_resort;
  const kemOf = (k) => ({ id: k.id, key: fromHex(k.public), signature: fromHex(k.signature) });
  const bundle = {
    identityKey: pubs.bob.bytes,
    signedPrekey: { id: spk.id, key: fromHex(spk.public), signature: fromHex(spk.signature) },
    oneTimePrekey: { id: opk.id, key: fromHex(opk.public) },
    kemPrekey: kemOf(lrk),
    oneTimeKemPrekey: kemOf(otk),
  };
  // Both ML-KEM backends: the browser's WebCrypto (which Chromium has) and
  // the vendored fallback; the second derandomizes encapsulation with the
  // recorded m (FIPS 203 ML-KEM.Encaps_internal).
  const noble = await nobleKem();
  const webcrypto = await webCryptoKem();
  const backends = [noble, webcrypto || { name: 'webcrypto (missing: this browser has no ML-KEM-768)' }];
  const derandomized = (m) => ({ encapsulate: async (pk) => noble.encapsulateWith(pk, fromHex(m)) });
  // A store fed the same random bytes publishes the same prekeys, in the
  // order Go's draws them: id base, signed prekey, KEM prekey seed, then
  // one of each kind of one-time prekey.
  const storeFromRandom = (kem) =>
    PrekeyStore.create(privs.bob, scriptedRandom(u32(spk.id - 1), fromHex(spk.private), fromHex(lrk.seed), fromHex(opk.private), fromHex(otk.seed)), kem);

  await run('sotto.bob_signed_prekey', `id=${spk.id}`, async () => {
    eqHex(await x25519Public(fromHex(spk.private)), spk.public, 'public');
    eqHex(await privs.bob.signPrekey(spk.id, fromHex(spk.public)), spk.signature, 'signature');
    await verifyBundle(bundle);
    const store = await storeFromRandom(webcrypto);
    const s = store.signedPrekey;
    assert(s.id === spk.id, `store id ${s.id}`);
    eqHex(s.key, spk.public, 'store key');
    eqHex(s.signature, spk.signature, 'store signature');
    const [o] = await store.newOneTimePrekeys(1);
    assert(o.id === opk.id, `one-time id ${o.id}`);
    eqHex(o.key, opk.public, 'one-time key');
    let rejected = false;
    const badSig = fromHex(spk.signature);
    badSig[0] ^= 1;
    await verifyBundle({ ...bundle, signedPrekey: { ...bundle.signedPrekey, signature: badSig } }).catch(() => (rejected = true));
    assert(rejected, 'bad signed prekey signature accepted');
  });
  await run('sotto.bob_one_time_prekey', `id=${opk.id}`, async () => {
    eqHex(await x25519Public(fromHex(opk.private)), opk.public, 'public');
  });
  // KEM prekeys: the public key from the seed, the signature, and the
  // decapsulation (from the seed) of the ciphertext sent to it, in both
  // backends.
  const kemPrekeyVector = (group, k, session, storeKey) =>
    run(group, `id=${k.id}`, async () => {
      assert(session.kem_prekey_id === k.id, `the vector's session used KEM prekey ${session.kem_prekey_id}`);
      eqHex(await privs.bob.sign(KEM_PREKEY_LABEL, u32(k.id), fromHex(k.public)), k.signature, 'signature');
      for (const kem of backends) {
        const pair = await kem.keyPair(fromHex(k.seed));
        eqHex(pair.publicKey, k.public, `${kem.name}: public key from the seed`);
        eqHex(await pair.decapsulate(fromHex(session.kem_ciphertext)), session.kem_shared_secret, `${kem.name}: decapsulation`);
        const published = await storeKey(await storeFromRandom(kem));
        assert(published.id === k.id, `${kem.name}: store id ${published.id}`);
        eqHex(published.key, k.public, `${kem.name}: store key`);
        eqHex(published.signature, k.signature, `${kem.name}: store signature`);
      }
    });
  await kemPrekeyVector('sotto.bob_kem_prekey', lrk, lr, async (store) => store.kemPrekey);
  await kemPrekeyVector('sotto.bob_one_time_kem_prekey', otk, x, async (store) => {
    await store.newOneTimePrekeys(1);
    return (await store.newOneTimeKemPrekeys(1))[0];
  });

  await run('sotto.pqxdh', 'alice-bob', async () => {
    assert(x.info === PQXDH_INFO, `info ${x.info}`);
    const ek = await x25519KeyPair(fromHex(x.alice_ephemeral_private));
    const init = fromHex(v.ratchet[0].payload).subarray(2);
    // EK_A, kem_id and kem_ct as Alice's pqxdh-init carries them.
    eqHex(init.subarray(128, 160), toHex(ek.publicKey), 'EK_A in the pqxdh-init payload');
    eqHex(init.subarray(169, 173), toHex(u32(otk.id)), 'kem_id in the pqxdh-init payload');
    eqHex(init.subarray(173, 173 + 1088), x.kem_ciphertext, 'kem_ct in the pqxdh-init payload');
    const spkPair = await x25519KeyPair(fromHex(spk.private));
    const opkPair = await x25519KeyPair(fromHex(opk.private));
    // Alice's side.
    const enc = noble.encapsulateWith(fromHex(otk.public), fromHex(x.kem_encapsulation_random));
    eqHex(enc.ciphertext, x.kem_ciphertext, 'kem_ciphertext');
    eqHex(enc.sharedSecret, x.kem_shared_secret, 'kem_shared_secret');
    const dh1 = await x25519(privs.alice.dhPrivateKey, fromHex(spk.public));
    const dh2 = await x25519(ek.privateKey, pubs.bob.dhPub);
    const dh3 = await x25519(ek.privateKey, fromHex(spk.public));
    const dh4 = await x25519(ek.privateKey, fromHex(opk.public));
    eqHex(dh1, x.dh1, 'dh1');
    eqHex(dh2, x.dh2, 'dh2');
    eqHex(dh3, x.dh3, 'dh3');
    eqHex(dh4, x.dh4, 'dh4');
    eqHex(await pqxdhSecret([dh1, dh2, dh3, dh4], enc.sharedSecret), x.sk, 'sk (alice)');
    // Bob's side, decapsulating with the browser's ML-KEM.
    const pair = await webcrypto.keyPair(fromHex(otk.seed));
    const b = [
      await x25519(spkPair.privateKey, pubs.alice.dhPub),
      await x25519(privs.bob.dhPrivateKey, ek.publicKey),
      await x25519(spkPair.privateKey, ek.publicKey),
      await x25519(opkPair.privateKey, ek.publicKey),
    ];
    eqHex(await pqxdhSecret(b, await pair.decapsulate(fromHex(x.kem_ciphertext))), x.sk, 'sk (bob)');
    eqHex(concat(pubs.alice.bytes, pubs.bob.bytes), x.ad, 'ad');
    // Checked last so that a wrong field does not hide the checks above.
    eqHex(ek.publicKey, x.alice_ephemeral_public, 'alice_ephemeral_public (X25519 of the private key with the base point 09 00..00)');
  });

  // Bob's store, as the vectors give it.
  const bobStore = async (kem, random) => {
    const store = new PrekeyStore(privs.bob, random, kem);
    await store.setSignedPrekey(spk.id, fromHex(spk.private), fromHex(spk.signature));
    await store.addOneTimePrekey(opk.id, fromHex(opk.private));
    await store.setKemPrekey(lrk.id, fromHex(lrk.seed), fromHex(lrk.signature));
    await store.addOneTimeKemPrekey(otk.id, fromHex(otk.seed), fromHex(otk.signature));
    return store;
  };

  // The Double Ratchet transcript, replayed from the recorded randomness.
  const aliceRnd = scriptedRandom(fromHex(x.alice_ephemeral_private), fromHex(x.alice_initial_ratchet_private));
  const bobRnd = scriptedRandom();
  let as = null;
  let bs = null;
  let store = null;
  const now = Date.UTC(2026, 0, 1);
  for (const [i, st] of v.ratchet.entries()) {
    await run('sotto.ratchet', `${i}: ${st.party} ${st.op}`, async () => {
      if (!as) {
        as = await initiateSession(privs.alice, bundle, aliceRnd, derandomized(x.kem_encapsulation_random));
        eqHex(as.ad, x.ad, 'session ad');
        assert(!as.lastResortKem, 'alice used the last-resort KEM prekey');
        store = await bobStore(webcrypto, bobRnd);
      }
      const rnd = st.party === 'alice' ? aliceRnd : bobRnd;
      rnd.feed(fromHex(st.random));
      if (st.op === 'encrypt') {
        const s = st.party === 'alice' ? as : bs;
        eqHex(await s.encrypt(fromHex(st.plaintext)), st.payload, 'payload');
      } else if (st.party === 'bob' && !bs) {
        const r = await acceptSession(store, fromHex(st.payload), now);
        bs = r.session;
        eqHex(r.plaintext, st.plaintext, 'accepted plaintext');
        assert(bs.peer.equals(pubs.alice), 'peer identity');
        assert(!bs.lastResortKem, 'bob used the last-resort KEM prekey');
        assert(store.oneTimePrekeyCount === 0 && store.oneTimeKemPrekeyCount === 0, 'one-time prekeys not deleted');
      } else {
        const s = st.party === 'alice' ? as : bs;
        eqHex(await s.decrypt(fromHex(st.payload), now), st.plaintext, 'plaintext');
      }
      assert(rnd.remaining() === 0, `${rnd.remaining()} recorded random bytes unused`);
    });
  }

  // A second session, to the last-resort KEM prekey: alice's first message
  // byte for byte, and bob accepts it in both backends.
  await run('sotto.pqxdh_last_resort', 'alice-bob', async () => {
    const b = { ...bundle, oneTimePrekey: null, oneTimeKemPrekey: null };
    const s = await initiateSession(privs.alice, b, scriptedRandom(fromHex(lr.alice_ephemeral_private), fromHex(lr.alice_initial_ratchet_private)), derandomized(lr.kem_encapsulation_random));
    assert(s.lastResortKem, 'alice did not use the last-resort KEM prekey');
    eqHex(await s.encrypt(fromHex(lr.plaintext)), lr.payload, 'payload');
    for (const kem of backends) {
      const r = await acceptSession(await bobStore(kem, scriptedRandom(fromHex(lr.bob_random))), fromHex(lr.payload), now);
      eqHex(r.plaintext, lr.plaintext, `${kem.name}: accepted plaintext`);
      assert(r.session.lastResortKem, `${kem.name}: bob did not use the last-resort KEM prekey`);
    }
  });

  for (const r of v.sframe_ratchet) {
    await run('sotto.sframe_ratchet', `suite=${r.cipher_suite}`, async () => {
      eqHex(await ratchetBaseKey(r.cipher_suite, fromHex(r.base_key)), r.next_base_key, 'next base key');
    });
  }
  const receiver = new FrameReceiver();
  for (const fk of v.frame_keys) {
    await run('sotto.frame_keys', `gen=${fk.generation} step=${fk.ratchet_step}`, async () => {
      const k = { suite: fk.cipher_suite, senderIndex: fk.sender_index, generation: fk.generation, step: fk.ratchet_step, baseKey: fromHex(fk.base_key) };
      eqHex(encodeFrameKey(k), fk.encoded, 'encoded');
      const p = parseFrameKey(fromHex(fk.encoded));
      assert(p.suite === k.suite && p.senderIndex === k.senderIndex && p.generation === k.generation && p.step === k.step && equal(p.baseKey, k.baseKey), 'parsed fields');
      assert(kidOf(k.senderIndex, k.generation, k.step) === BigInt(fk.kid), `kid ${kidOf(k.senderIndex, k.generation, k.step)}`);
      eqHex(encodeFrameKeyAck(ackOf(k)), fk.ack_encoded, 'ack');
      const a = parseFrameKeyAck(fromHex(fk.ack_encoded));
      assert(a.senderIndex === k.senderIndex && a.generation === k.generation && a.step === k.step, 'parsed ack');
      const ack = await receiver.setKey('sender', p, now);
      eqHex(encodeFrameKeyAck(ack), fk.ack_encoded, 'receiver ack');
    });
  }
  for (const f of v.frames) {
    await run('sotto.frames', `kid=${f.kid} ctr=${f.ctr}`, async () => {
      const kid = BigInt(f.kid);
      const ctr = BigInt(f.ctr);
      const ks = await deriveKeySalt(f.cipher_suite, kid, fromHex(f.base_key));
      eqHex(ks.key, f.sframe_key, 'sframe_key');
      eqHex(ks.salt, f.sframe_salt, 'sframe_salt');
      const key = await SFrameKey.create(f.cipher_suite, kid, fromHex(f.base_key));
      eqHex(await key.seal(ctr, fromHex(f.plaintext)), f.frame, 'frame');
      const r = await receiver.open(fromHex(f.frame), now);
      assert(r.plaintext, `receiver drops it: ${r.drop}`);
      eqHex(r.plaintext, f.plaintext, 'receiver plaintext');
      assert((await receiver.open(fromHex(f.frame), now)).drop === 'replayed', 'replay not dropped');
    });
  }
  // The sealer numbers frames from 0 under each key, as the vectors do.
  await run('sotto.sealer', 'sealer reproduces the first key\'s frames', async () => {
    const fk = v.frame_keys[0];
    const sealer = new FrameSealer();
    await sealer.setKey({ suite: fk.cipher_suite, senderIndex: fk.sender_index, generation: fk.generation, step: fk.ratchet_step, baseKey: fromHex(fk.base_key) });
    for (const f of v.frames.filter((f) => f.kid === fk.kid)) eqHex(await sealer.seal(fromHex(f.plaintext)), f.frame, `frame ctr ${f.ctr}`);
  });
}

async function muteState(v) {
  for (const m of v.mute_state) {
    await run('mute.mute_state', m.encoded, async () => {
      eqHex(encodeMuteState(m.muted), m.encoded, 'encoding');
      assert(parseMuteState(fromHex(m.encoded)) === m.muted, 'decoding');
    });
  }
  for (const bad of v.invalid) {
    await run('mute.invalid', bad || '(empty)', async () => {
      let refused = false;
      try {
        parseMuteState(fromHex(bad));
      } catch {
        refused = true;
      }
      assert(refused, 'accepted');
    });
  }
}

async function main() {
  const base = new URLSearchParams(location.search).get('testdata') || '/testdata/';
  try {
    await rfc9605(parseBig(await fetchText(base + 'rfc9605-test-vectors.json')));
    await sotto(JSON.parse(await fetchText(base + 'sotto-vectors.json')));
    await muteState(JSON.parse(await fetchText(base + 'mute-state-vectors.json')));
  } catch (e) {
    h.fail(e);
  }
  h.finish();
}

main();
