// The blob routes of docs/API.md: the ciphertext of a file shared in the
// call goes up (POST /v1/rooms/{room}/blobs) and comes down (GET
// /v1/rooms/{room}/blobs/{id}), authenticated by the participant's
// session, with progress both ways. Only ciphertext ever passes here.

import { ApiError, UnreachableError } from './api.js';

const path = (room, id) => `/v1/rooms/${encodeURIComponent(room)}/blobs${id ? `/${encodeURIComponent(id)}` : ''}`;

function apiError(status, text) {
  let e = null;
  try {
    e = JSON.parse(text).error;
  } catch {
    // Not the API's error body.
  }
  if (!e && status >= 500) return new UnreachableError(new Error(`HTTP ${status}`));
  return new ApiError(status, e ? e.code : `http_${status}`, e ? e.message : `HTTP ${status}`);
}

/** Uploads ciphertext (a Uint8Array); onProgress(sent, total). Resolves
 *  to {id, size, expires}. XMLHttpRequest, because fetch reports no
 *  upload progress. */
export function uploadBlob(room, session, data, onProgress = () => {}) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', path(room));
    xhr.setRequestHeader('Authorization', `Session ${session}`);
    xhr.setRequestHeader('Content-Type', 'application/octet-stream');
    xhr.upload.addEventListener('progress', (e) => onProgress(e.loaded, data.length));
    xhr.addEventListener('load', () => {
      if (xhr.status === 201) {
        try {
          resolve(JSON.parse(xhr.responseText));
        } catch (e) {
          reject(e);
        }
      } else {
        reject(apiError(xhr.status, xhr.responseText));
      }
    });
    xhr.addEventListener('error', () => reject(new UnreachableError(new Error('upload failed'))));
    xhr.send(data);
  });
}

/** Downloads a blob of at most maxSize bytes; onProgress(received,
 *  expected). Resolves to its bytes. */
export async function downloadBlob(room, session, id, expected, onProgress = () => {}) {
  let resp;
  try {
    resp = await fetch(path(room, id), { headers: { Authorization: `Session ${session}` }, cache: 'no-store', credentials: 'omit' });
  } catch (err) {
    throw new UnreachableError(err);
  }
  if (!resp.ok) throw apiError(resp.status, await resp.text());
  const out = new Uint8Array(expected);
  const reader = resp.body.getReader();
  let n = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    if (n + value.length > expected) {
      reader.cancel();
      // Longer than the file announced: not the file.
      return null;
    }
    out.set(value, n);
    n += value.length;
    onProgress(n, expected);
  }
  return out.subarray(0, n);
}
