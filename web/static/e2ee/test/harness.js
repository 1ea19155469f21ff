// What the e2ee test pages share: checks run one by one and recorded as
// {group, name, ok, error}, and a summary published for the Go test that
// drives the page, as window[global] = {done, results}.

import { toHex } from '../bytes.js';

export function assert(cond, what) {
  if (!cond) throw new Error(what);
}

export function eqHex(got, wantHex, what) {
  const g = toHex(got);
  if (g !== wantHex.toLowerCase()) throw new Error(`${what}: got ${g}, want ${wantHex}`);
}

const describe = (e) => String(e && e.stack ? e.stack : e);

/** The results of a page published as window[global]. */
export function harness(global) {
  const results = [];
  window[global] = { done: false, results };
  return {
    /** Runs one check; a throw fails it. */
    async run(group, name, fn) {
      try {
        await fn();
        results.push({ group, name, ok: true });
      } catch (e) {
        results.push({ group, name, ok: false, error: describe(e) });
      }
    },
    /** Records a failure outside any check (loading the vectors). */
    fail(e) {
      results.push({ group: 'setup', name: 'load', ok: false, error: describe(e) });
    },
    /** Shows the summary and tells the driver the page is done. */
    finish() {
      const failed = results.filter((r) => !r.ok);
      document.getElementById('out').textContent = `${results.length - failed.length}/${results.length} passed\n` + failed.map((r) => `FAIL ${r.group} ${r.name}: ${r.error}`).join('\n');
      window[global] = { done: true, results };
    },
  };
}
