// The real `sipp-gateway` (build/bin) for the browser client's tests, started like the
// gateway's own e2e tests do (tests/e2e/gateway_util.py): a TOML config on loopback ports, a
// local target on a tiny model, bearer tokens read from the environment, CORS for the test
// page's origin, and /readyz on the management port awaited before the tests start.
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { openSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const REAL_TOKEN = 'gw-browser-s3cret-456';
export const LIMITED_TOKEN = 'gw-limited-s3cret-789';

function freePort() {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.on('error', fail);
    s.listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => ok(p)); });
  });
}

/** Starts sipp-gateway; resolves once it is ready. `origins`: allowed_origins. Two callers:
 *  `browser` (REAL_TOKEN, no limits) and `limited` (LIMITED_TOKEN, 1 request per minute). */
export async function startRealGateway({ binDir, model, origins, tmp }) {
  const port = await freePort(), mport = await freePort();
  const config = join(tmp, `gw-${port}.toml`);
  const q = (s) => JSON.stringify(s);
  writeFileSync(config, [
    `public_bind = ${q(`127.0.0.1:${port}`)}`,
    `management_bind = ${q(`127.0.0.1:${mport}`)}`,
    `allowed_origins = [${origins.map(q).join(', ')}]`,
    '[[targets]]', 'name = "tiny"', 'type = "local"', `model = ${q(model)}`, 'backend = "cpu"',
    '[targets.runtime]', 'n_ctx = 512', 'n_parallel = 2', 'n_threads = 1',
    '[[tokens]]', 'env = "SIPP_WEBTEST_TOKEN"', 'caller = "browser"',
    '[[tokens]]', 'env = "SIPP_WEBTEST_LIMITED"', 'caller = "limited"', 'requests_per_minute = 1',
    '',
  ].join('\n'));
  const logPath = join(tmp, `gw-${port}.log`);
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('SIPP_')));
  const proc = spawn(join(binDir, 'sipp-gateway'), ['serve', '--config', config], {
    stdio: ['ignore', 'ignore', openSync(logPath, 'w')],
    env: { ...env, SIPP_WEBTEST_TOKEN: REAL_TOKEN, SIPP_WEBTEST_LIMITED: LIMITED_TOKEN },
  });
  let exited = false;
  proc.on('exit', () => { exited = true; });
  const deadline = Date.now() + 30000;
  for (;;) {
    try {
      const r = await fetch(`http://127.0.0.1:${mport}/readyz`);
      if (r.status === 200) break;
    } catch { /* not listening yet */ }
    if (exited || Date.now() > deadline) {
      proc.kill('SIGKILL');
      throw new Error(`sipp-gateway did not start:\n${readFileSync(logPath, 'utf8')}`);
    }
    await new Promise((ok) => setTimeout(ok, 50));
  }
  return {
    url: `http://127.0.0.1:${port}`,
    log: () => readFileSync(logPath, 'utf8'),
    close: () => new Promise((ok) => {
      if (exited) return ok();
      proc.once('exit', () => ok());
      proc.kill('SIGTERM');
    }),
  };
}
