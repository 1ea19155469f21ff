// The call's message panel: text and files between participants, end to
// end encrypted (docs/PROTOCOL.md §11, §12). Each message goes to each
// recipient in its own Double Ratchet session (CallCrypto.sendContent),
// numbered per recipient so that each shows what one sender sent in order;
// the recipient's encrypted receipt marks it delivered. A file is
// encrypted here under a fresh key and only its ciphertext is uploaded;
// its key, digest, name, type and size go in the message. While the page
// is in the background a message raises a notification that says nothing
// of it. The DOM is index.html's #messages-panel.

import { describeError } from './api.js';
import { downloadBlob, uploadBlob } from './blobs.js';
import { equal, toHex, utf8 } from './e2ee/bytes.js';
import { ProtocolError } from './e2ee/errors.js';
import { CONTENT_MESSAGE, CONTENT_RECEIPT, MAX_FILE_NAME, MAX_FILE_TYPE, MAX_MESSAGE_TEXT, encodeMessage, encodeReceipt, parseMessage, parseReceipt } from './e2ee/message.js';
import { sha256 } from './e2ee/primitives.js';
import { decryptFile, encryptFile, encryptedFileSize, newFileKey } from './e2ee/stream.js';

/** The only thing a notification ever says. */
export const NOTIFICATION_TITLE = 'New private message in your call';
const MAX_SHOWN = 500; // messages kept in the panel
const MAX_UNRECEIPTED = 1024; // per recipient, awaiting a receipt

const $ = (id) => document.getElementById(id);

/** A name safe to save a file under: no path, no control characters. */
function safeFileName(name) {
  const n = name.replace(/[\x00-\x1f\x7f/\\:*?"<>|]/g, '_').replace(/^\.+/, '_').trim();
  return n || 'file';
}

/** A media type to label a saved file with; anything odd is a plain download. */
function safeType(type) {
  return /^[a-z0-9.+-]+\/[a-z0-9.+-]+$/i.test(type) ? type : 'application/octet-stream';
}

/** Cuts s to at most max bytes of UTF-8, keeping whole characters. */
function clip(s, max) {
  let out = '';
  for (const ch of s) {
    if (utf8(out + ch).length > max) break;
    out += ch;
  }
  return out;
}

function formatSize(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

export class Chat {
  /**
   * @param {object} o
   * @param {string} o.room
   * @param {() => string} o.session  the participant's session secret now
   * @param {string} o.selfId
   * @param {(id: string) => string} o.nameOf  a participant's display name
   * @param {(id: string) => boolean} o.verifiedOf  whether its key is verified
   */
  constructor({ room, session, selfId, nameOf, verifiedOf }) {
    this.room = room;
    this.session = session;
    this.selfId = selfId;
    this.nameOf = nameOf;
    this.verifiedOf = verifiedOf;
    this.crypto = null;
    this.messages = [];
    this.refused = 0;
    this._peers = new Map(); // participant id -> {sent, received, unreceipted: Map(seq -> message)}
    this._nextId = 1;
    this._urls = [];
    this._recipients = '';
    this._onSubmit = (e) => {
      e.preventDefault();
      this._submit();
    };
    this._onFile = () => {
      const input = $('file-input');
      const file = input.files && input.files[0];
      input.value = '';
      if (file) this.sendFile(file, $('message-to').value);
    };
    this._onNotify = () => this._askNotifications();
    this._onFocus = () => this._refreshRecipients();
    $('message-form').addEventListener('submit', this._onSubmit);
    $('file-input').addEventListener('change', this._onFile);
    $('notify-button').addEventListener('click', this._onNotify);
    $('message-to').addEventListener('focus', this._onFocus);
    this._timer = setInterval(() => this._refreshRecipients(), 1000);
    this._refreshNotifyButton();
    $('message-list').replaceChildren();
    this._error('');
  }

  /** The CallCrypto whose sessions carry the messages. */
  attach(crypto) {
    this.crypto = crypto;
  }

  _peer(id) {
    let p = this._peers.get(id);
    if (!p) {
      p = { sent: 0n, received: 0n, unreceipted: new Map() };
      this._peers.set(id, p);
    }
    return p;
  }

  /** A participant left: its numbering ends with it. */
  forget(id) {
    this._peers.delete(id);
    this._refreshRecipients();
  }

  _reachable(to) {
    const ids = this.crypto ? this.crypto.reachable() : [];
    return to ? ids.filter((id) => id === to) : ids;
  }

  _refreshRecipients() {
    const ids = this._reachable('');
    const key = ids.map((id) => `${id}:${this.nameOf(id)}`).join(',');
    if (key === this._recipients) return;
    this._recipients = key;
    const sel = $('message-to');
    const current = sel.value;
    const everyone = document.createElement('option');
    everyone.value = '';
    everyone.textContent = 'Everyone';
    sel.replaceChildren(
      everyone,
      ...ids.map((id) => {
        const o = document.createElement('option');
        o.value = id;
        o.textContent = `${this.nameOf(id)} only`;
        return o;
      }),
    );
    sel.value = ids.includes(current) ? current : '';
  }

  _error(text) {
    const e = $('message-error');
    e.textContent = text;
    e.hidden = !text;
  }

  _submit() {
    const input = $('message-text');
    const text = input.value.trim();
    if (!text) return;
    if (this.sendText(text, $('message-to').value)) input.value = '';
  }

  /** Sends text to everyone reachable, or to one participant (to). Returns
   *  false, with an error shown, if it cannot go. */
  sendText(text, to = '') {
    if (utf8(text).length > MAX_MESSAGE_TEXT) {
      this._error(`Messages are limited to ${MAX_MESSAGE_TEXT} bytes; this one is longer.`);
      return false;
    }
    const targets = this._targets(to);
    if (!targets) return false;
    const m = this._add({ dir: 'out', text, direct: !!to, to: targets });
    this._send(m, targets, { text });
    return true;
  }

  /** The recipients now, or null with an error shown. */
  _targets(to) {
    const targets = this._reachable(to);
    if (targets.length === 0) {
      this._error(to ? `${this.nameOf(to)} cannot receive messages right now.` : 'Nobody in the call can receive messages yet.');
      return null;
    }
    this._error('');
    return targets;
  }

  /** Numbers and sends one message's copies (body: {text} or {file}). */
  async _send(m, targets, body) {
    m.sentMs = Date.now();
    await Promise.all(
      targets.map(async (id) => {
        const p = this._peer(id);
        p.sent += 1n;
        const seq = p.sent;
        const content = encodeMessage({ seq, sentMs: m.sentMs, direct: m.direct, ...body });
        const ok = await this.crypto.sendContent(id, content);
        content.fill(0);
        if (!ok) return;
        m.status.set(id, 'sent');
        p.unreceipted.set(seq, m);
        p.unreceipted.delete(seq - BigInt(MAX_UNRECEIPTED));
      }),
    );
    if (m.status.size === 0) m.error = 'Not sent: the recipients left or their encryption is not set up.';
    this._render(m);
  }

  /** Encrypts file under a fresh key, uploads the ciphertext and sends
   *  the key with what the file is. */
  async sendFile(file, to = '') {
    const targets = this._targets(to);
    if (!targets) return;
    const name = clip(file.name || 'file', MAX_FILE_NAME);
    const type = /^[\x20-\x7e]*$/.test(file.type) ? file.type.slice(0, MAX_FILE_TYPE) : '';
    const m = this._add({ dir: 'out', direct: !!to, to: targets, file: { name, type, size: file.size } });
    const key = newFileKey();
    try {
      this._progress(m, 'encrypting', 0, file.size);
      const ct = await encryptFile(key, file, (done, total) => this._progress(m, 'encrypting', done, total));
      const digest = await sha256(ct);
      this._progress(m, 'uploading', 0, ct.length);
      const blob = await uploadBlob(this.room, this.session(), ct, (done, total) => this._progress(m, 'uploading', done, total));
      this._progress(m, 'done', ct.length, ct.length);
      // Whoever is still reachable of those it was meant for.
      const now = this._reachable(to);
      const still = targets.filter((id) => now.includes(id));
      await this._send(m, still, { file: { blobId: blob.id, key, digest, size: file.size, name, type } });
    } catch (err) {
      m.error = `Not sent: ${describeError(err)}`;
      m.errorCode = (err && err.code) || '';
      this._progress(m, 'failed', 0, 0);
    } finally {
      key.fill(0);
    }
  }

  /** Handles a message or receipt content from a participant (CallCrypto's
   *  onContent). */
  onContent(from, pt) {
    if (pt.length === 0) return;
    if (pt[0] === CONTENT_RECEIPT) {
      const p = this._peer(from);
      let seq;
      try {
        seq = parseReceipt(pt);
      } catch (err) {
        console.warn('receipt refused:', err.message);
        return;
      }
      const m = p.unreceipted.get(seq);
      if (!m) return;
      p.unreceipted.delete(seq);
      m.status.set(from, 'delivered');
      this._render(m);
      return;
    }
    if (pt[0] !== CONTENT_MESSAGE) return;
    const p = this._peer(from);
    let c;
    try {
      c = parseMessage(pt);
    } catch (err) {
      this.refused++;
      console.warn('message refused:', err.message);
      return;
    }
    if (c.seq <= p.received) {
      // Moved or repeated by the relay: showing it would break the order.
      this.refused++;
      return;
    }
    const missed = Number(c.seq - p.received - 1n);
    p.received = c.seq;
    this._add({
      dir: 'in',
      from,
      text: c.text,
      file: c.file,
      direct: c.direct,
      sentMs: c.sentMs,
      missed,
      verified: this.verifiedOf(from),
    });
    this._notify();
    // Not awaited: it queues behind the message being handled.
    this.crypto.sendContent(from, encodeReceipt(c.seq));
  }

  _add(fields) {
    const m = {
      id: this._nextId++,
      dir: 'in',
      from: this.selfId,
      to: [],
      text: '',
      file: null,
      direct: false,
      sentMs: Date.now(),
      receivedMs: Date.now(),
      missed: 0,
      verified: false,
      status: new Map(),
      progress: null,
      result: null,
      error: '',
      errorCode: '', // the API error code, or file_corrupt
      el: null,
      ...fields,
    };
    // Names as they are now: a participant who leaves takes its name along.
    m.fromName = m.dir === 'out' ? 'You' : this.nameOf(m.from);
    m.toNames = m.to.map((id) => this.nameOf(id));
    this.messages.push(m);
    if (this.messages.length > MAX_SHOWN) {
      const old = this.messages.shift();
      if (old.el) old.el.remove();
    }
    this._render(m);
    return m;
  }

  _progress(m, phase, done, total) {
    m.progress = { phase, done, total };
    this._render(m);
  }

  /** Downloads, verifies and decrypts a received file, then saves it. */
  async download(m) {
    const f = m.file;
    if (!f || (m.progress && !['failed', 'done'].includes(m.progress.phase))) return;
    m.error = '';
    m.errorCode = '';
    try {
      const expected = encryptedFileSize(f.size);
      this._progress(m, 'downloading', 0, expected);
      const ct = await downloadBlob(this.room, this.session(), f.blobId, expected, (done, total) => this._progress(m, 'downloading', done, total));
      if (ct === null || !equal(await sha256(ct), f.digest)) throw new ProtocolError('file_corrupt', 'the file on the server is not the one sent (wrong digest)');
      this._progress(m, 'decrypting', 0, ct.length);
      const pt = await decryptFile(f.key, ct, (done, total) => this._progress(m, 'decrypting', done, total));
      if (pt.length !== f.size) throw new ProtocolError('file_corrupt', `the file has ${pt.length} bytes, the sender announced ${f.size}`);
      const url = URL.createObjectURL(new Blob([pt], { type: safeType(f.type) }));
      this._urls.push(url);
      m.result = { size: pt.length, sha256: toHex(await sha256(pt)), url };
      this._progress(m, 'done', ct.length, ct.length);
      this._save(m);
    } catch (err) {
      m.error = err && err.code === 'file_corrupt' ? 'The file was altered or cut short on its way, and was refused.' : `Download failed: ${describeError(err)}`;
      m.errorCode = (err && err.code) || '';
      this._progress(m, 'failed', 0, 0);
    }
  }

  _save(m) {
    const a = document.createElement('a');
    a.href = m.result.url;
    a.download = safeFileName(m.file.name);
    a.click();
  }

  _notify() {
    if (!document.hidden || !('Notification' in window) || Notification.permission !== 'granted') return;
    try {
      // Title only: no text, no file name, no sender.
      new Notification(NOTIFICATION_TITLE, { tag: 'sotto-message' });
    } catch (err) {
      console.warn('notification:', err.message);
    }
  }

  async _askNotifications() {
    if (!('Notification' in window)) return;
    try {
      await Notification.requestPermission();
    } catch (err) {
      console.warn('notification permission:', err.message);
    }
    this._refreshNotifyButton();
  }

  _refreshNotifyButton() {
    const b = $('notify-button');
    const supported = 'Notification' in window;
    b.hidden = !supported;
    if (!supported) return;
    const p = Notification.permission;
    b.disabled = p !== 'default';
    b.textContent = p === 'granted' ? 'Background notifications on' : p === 'denied' ? 'Notifications blocked' : 'Notify me in the background';
  }

  _render(m) {
    if (!m.el) {
      m.el = $('message-template').content.firstElementChild.cloneNode(true);
      m.el.dataset.message = String(m.id);
      m.el.querySelector('.m-download').addEventListener('click', () => (m.result ? this._save(m) : this.download(m)));
      $('message-list').append(m.el);
      m.el.scrollIntoView({ block: 'nearest' });
    }
    const el = m.el;
    el.classList.toggle('out', m.dir === 'out');
    el.classList.toggle('failed', !!m.error);
    el.querySelector('.m-from').textContent = m.fromName;
    el.querySelector('.m-verified').hidden = m.dir === 'out' || !m.verified;
    el.querySelector('.m-to').textContent = m.direct ? (m.dir === 'out' ? `to ${m.toNames.join(', ')} only` : 'to you only') : '';
    el.querySelector('.m-time').textContent = new Date(m.sentMs).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
    el.querySelector('.m-status').textContent = this._statusText(m);
    el.querySelector('.m-missed').hidden = !m.missed;
    el.querySelector('.m-missed').textContent = m.missed ? `${m.missed} earlier message${m.missed > 1 ? 's' : ''} from ${m.fromName} did not arrive.` : '';
    el.querySelector('.m-text').textContent = m.text;
    el.querySelector('.m-text').hidden = !m.text;
    const f = el.querySelector('.m-file');
    f.hidden = !m.file;
    if (m.file) {
      el.querySelector('.m-file-name').textContent = m.file.name;
      el.querySelector('.m-file-size').textContent = formatSize(m.file.size);
      const busy = m.progress && !['done', 'failed'].includes(m.progress.phase);
      const bar = el.querySelector('.m-progress');
      bar.hidden = !busy;
      if (busy) {
        bar.max = Math.max(1, m.progress.total);
        bar.value = m.progress.done;
        bar.title = m.progress.phase;
      }
      el.querySelector('.m-phase').textContent = busy ? `${m.progress.phase}…` : '';
      const dl = el.querySelector('.m-download');
      dl.hidden = m.dir === 'out' || busy;
      dl.textContent = m.result ? 'Save again' : 'Download';
    }
    el.querySelector('.m-error').textContent = m.error;
    el.querySelector('.m-error').hidden = !m.error;
  }

  _statusText(m) {
    if (m.dir === 'in') return '';
    if (m.error) return 'not sent';
    if (m.status.size === 0) return 'sending…';
    const delivered = [...m.status.values()].filter((s) => s === 'delivered').length;
    if (delivered === 0) return 'sent';
    if (delivered === m.status.size) return 'delivered';
    return `delivered to ${delivered} of ${m.status.size}`;
  }

  /** What the panel holds, for the tests (no keys). */
  state() {
    return {
      refused: this.refused,
      messages: this.messages.map((m) => ({
        id: m.id,
        dir: m.dir,
        from: m.from,
        text: m.text,
        direct: m.direct,
        missed: m.missed,
        verified: m.verified,
        file: m.file ? { name: m.file.name, type: m.file.type, size: m.file.size } : null,
        status: Object.fromEntries(m.status),
        statusText: this._statusText(m),
        progress: m.progress,
        result: m.result ? { size: m.result.size, sha256: m.result.sha256 } : null,
        error: m.error,
        errorCode: m.errorCode,
      })),
    };
  }

  /** Stops the panel; the messages stay on screen until the next call. */
  close() {
    clearInterval(this._timer);
    $('message-form').removeEventListener('submit', this._onSubmit);
    $('file-input').removeEventListener('change', this._onFile);
    $('notify-button').removeEventListener('click', this._onNotify);
    $('message-to').removeEventListener('focus', this._onFocus);
    for (const url of this._urls) URL.revokeObjectURL(url);
    for (const m of this.messages) if (m.file && m.file.key) m.file.key.fill(0);
    this.crypto = null;
  }
}
