// Errors of the e2ee modules.

/** An error with a machine-readable code: invalid, bad_signature, decrypt,
 *  too_many_skipped, other_session, unknown_prekey, replayed_init,
 *  no_kem_prekey (a bundle without a valid KEM prekey), unknown_suite,
 *  sender_index_in_use, stale_key, chain_exhausted, identity_changed,
 *  counter_exhausted. */
export class ProtocolError extends Error {
  constructor(code, message) {
    super(message);
    this.name = 'ProtocolError';
    this.code = code;
  }
}
