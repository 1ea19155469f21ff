// ML-KEM-768 (FIPS 203) for PQXDH (docs/PROTOCOL.md §4): the browser's
// WebCrypto where it has ML-KEM-768, else the vendored @noble/post-quantum
// (web/static/vendor/noble, loaded only then). Both backends make a key
// pair from a 64-byte seed (d || z), as Go's crypto/mlkem does, so that a
// prekey store fed the same random bytes publishes the same keys.
//
// A backend is {name, keyPair(seed), encapsulate(publicKey)}:
//   keyPair(seed)          -> {publicKey (1184 bytes), decapsulate(ct) -> shared secret (32 bytes),
//                              wipe() (zeroes what of the private key it can)}
//   encapsulate(publicKey) -> {ciphertext (1088 bytes), sharedSecret (32 bytes)}
// Encapsulation draws its own randomness (the platform CSPRNG). Keys and
// ciphertexts of the wrong size, or encapsulation keys that FIPS 203's
// modulus check rejects, throw a ProtocolError 'invalid'.

import { ProtocolError } from './errors.js';
import { wipe } from './bytes.js';

export const KEM_PUBLIC_KEY_SIZE = 1184;
export const KEM_CIPHERTEXT_SIZE = 1088;
export const KEM_SEED_SIZE = 64;
export const KEM_SHARED_SECRET_SIZE = 32;

const ALG = { name: 'ML-KEM-768' };

function checkSize(what, b, n) {
  if (!(b instanceof Uint8Array) || b.length !== n) throw new ProtocolError('invalid', `ML-KEM-768 ${what}: ${b && b.length} bytes, want ${n}`);
}

async function invalidOnError(what, fn) {
  try {
    return await fn();
  } catch (e) {
    throw e instanceof ProtocolError ? e : new ProtocolError('invalid', `ML-KEM-768 ${what}: ${e.message || e.name}`);
  }
}

const webCrypto = {
  name: 'webcrypto',
  async keyPair(seed) {
    checkSize('seed', seed, KEM_SEED_SIZE);
    const privateKey = await crypto.subtle.importKey('raw-seed', seed, ALG, false, ['decapsulateBits']);
    const pub = await crypto.subtle.getPublicKey(privateKey, ['encapsulateBits']);
    return {
      publicKey: new Uint8Array(await crypto.subtle.exportKey('raw-public', pub)),
      decapsulate: (ct) => {
        checkSize('ciphertext', ct, KEM_CIPHERTEXT_SIZE);
        return invalidOnError('decapsulate', async () => new Uint8Array(await crypto.subtle.decapsulateBits(ALG, privateKey, ct)));
      },
      // A non-extractable CryptoKey cannot be zeroed; it is dropped with
      // the pair.
      wipe: () => {},
    };
  },
  async encapsulate(publicKey) {
    checkSize('public key', publicKey, KEM_PUBLIC_KEY_SIZE);
    return invalidOnError('encapsulate', async () => {
      const key = await crypto.subtle.importKey('raw-public', publicKey, ALG, false, ['encapsulateBits']);
      const r = await crypto.subtle.encapsulateBits(ALG, key);
      return { ciphertext: new Uint8Array(r.ciphertext), sharedSecret: new Uint8Array(r.sharedKey) };
    });
  },
};

let webCryptoProbe;

/** The WebCrypto backend, or null when the browser has no ML-KEM-768. */
export function webCryptoKem() {
  webCryptoProbe ??= (async () => {
    try {
      if (typeof crypto.subtle.encapsulateBits !== 'function' || typeof crypto.subtle.getPublicKey !== 'function') return null;
      const seed = new Uint8Array(KEM_SEED_SIZE);
      const kp = await webCrypto.keyPair(seed);
      const { ciphertext, sharedSecret } = await webCrypto.encapsulate(kp.publicKey);
      const back = await kp.decapsulate(ciphertext);
      return back.every((x, i) => x === sharedSecret[i]) ? webCrypto : null;
    } catch {
      return null;
    }
  })();
  return webCryptoProbe;
}

let nobleModule;

/** The vendored @noble/post-quantum backend. */
export async function nobleKem() {
  nobleModule ??= import('../vendor/noble/post-quantum/ml-kem.js');
  const { ml_kem768: kem } = await nobleModule;
  return {
    name: 'noble',
    async keyPair(seed) {
      checkSize('seed', seed, KEM_SEED_SIZE);
      const { publicKey, secretKey } = kem.keygen(seed);
      return {
        publicKey,
        decapsulate: async (ct) => {
          checkSize('ciphertext', ct, KEM_CIPHERTEXT_SIZE);
          return kem.decapsulate(ct, secretKey);
        },
        /** Zeroes the expanded secret key. */
        wipe: () => wipe(secretKey),
      };
    },
    encapsulate(publicKey) {
      checkSize('public key', publicKey, KEM_PUBLIC_KEY_SIZE);
      return invalidOnError('encapsulate', async () => {
        const { cipherText, sharedSecret } = kem.encapsulate(publicKey);
        return { ciphertext: cipherText, sharedSecret };
      });
    },
    /** Derandomized encapsulation with the 32 bytes m (FIPS 203
     *  ML-KEM.Encaps_internal): for test vectors only. */
    encapsulateWith(publicKey, m) {
      checkSize('public key', publicKey, KEM_PUBLIC_KEY_SIZE);
      const { cipherText, sharedSecret } = kem.encapsulate(publicKey, m);
      return { ciphertext: cipherText, sharedSecret };
    },
  };
}

let chosen;

/** The backend the page uses: WebCrypto's ML-KEM-768 where the browser has
 *  it, else the vendored one. */
export function defaultKem() {
  chosen ??= webCryptoKem().then((w) => w || nobleKem());
  return chosen;
}
