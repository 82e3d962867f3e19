// Resumable downloads into OPFS. Each URL being downloaded has a directory
// /sipp-downloads/<sha256(url)>/ with the bytes so far (`data`) and a journal (`journal.json`:
// URL, expected size, validator, bytes committed, updated-at). The journal is rewritten only
// after the data it counts has been flushed, every JOURNAL_INTERVAL bytes, when the connection
// breaks and on abort, so after a reload the download resumes at most one interval back.
//
// Resuming sends `Range: bytes=N-` with `If-Range: <validator>` (same-origin; a cross-origin
// request sends only the CORS-safelisted Range and the 206's validator is compared instead).
// A 206 whose Content-Range starts at N continues; a 200 means the server ignored the range or
// the file changed: the partial is truncated and the download starts over with a 'restart'
// event. A body that breaks off is retried with bounded backoff from the bytes done; after
// `maxRetries` failed attempts in a row without new bytes it fails and the partial stays for
// the next attempt. Partials not updated for `maxAgeMs` are removed when a store operation
// starts (expirePartials). With `hash`, the SHA-256 is computed while the bytes arrive (the
// prefix of a resumed partial is read back once), so verifying costs no second pass.

import { sha256 } from '@noble/hashes/sha2.js';
import { bytesToHex } from '@noble/hashes/utils.js';

const ROOT = 'sipp-downloads';
const JOURNAL = 'journal.json';
const DATA = 'data';
const JOURNAL_INTERVAL = 4 * 1024 * 1024;
const HASH_CHUNK = 8 * 1024 * 1024;
const BACKOFF_MS = 250;
const BACKOFF_MAX_MS = 4000;
/** Restarts from 0 within one call (a server whose file keeps changing). */
const MAX_RESTARTS = 3;
/** Tries to take the partial's write lock (another tab, or the worker of a page just closed). */
const LOCK_TRIES = 6;

export interface Journal {
  v: 1;
  url: string;
  /** Bytes of the whole file; 0 when the server did not say. */
  size: number;
  /** Strong ETag, else Last-Modified, else '' (then nothing can be resumed). */
  validator: string;
  /** The cache id's input (ETag, or length/Last-Modified) of the full response. */
  idKey: string;
  /** Bytes of `data` that are on disk and belong to this validator. */
  bytes: number;
  updatedAt: string;
}

export type DownloadEventKind = 'resume' | 'retry' | 'restart';

export interface DownloadOptions {
  signal?: AbortSignal;
  progress: (loaded: number, total: number) => void;
  event: (kind: DownloadEventKind, reason: string, loaded: number, total: number) => void;
  /** Failed attempts in a row without new bytes before giving up. */
  maxRetries: number;
  /** Compute the file's SHA-256 (Downloaded.sha256); `hashing` reports reading back a
   *  resumed partial's prefix into the hash. */
  hash?: boolean;
  hashing?: (loaded: number, total: number) => void;
}

/** A download error with a C status name (sipp_status_name). */
function fail(status: string, message: string): Error {
  return Object.assign(new Error(message), { status });
}

function aborted(signal?: AbortSignal): Error {
  return signal?.reason ?? new DOMException('aborted', 'AbortError');
}

async function partialsRoot(): Promise<FileSystemDirectoryHandle> {
  return (await navigator.storage.getDirectory()).getDirectoryHandle(ROOT, { create: true });
}

export async function sha256Hex(data: BufferSource | string): Promise<string> {
  const bytes = typeof data === 'string' ? new TextEncoder().encode(data) : data;
  const d = await crypto.subtle.digest('SHA-256', bytes);
  return [...new Uint8Array(d)].map((b) => b.toString(16).padStart(2, '0')).join('').slice(0, 32);
}

/** The full SHA-256 of a Blob (an OPFS File), read in 8 MiB slices: memory stays bounded
 *  whatever the size (Web Crypto's digest() would need the whole file in one buffer). */
export async function hashBlob(blob: Blob, progress?: (n: number, total: number) => void,
                               signal?: AbortSignal): Promise<string> {
  const h = sha256.create();
  for (let o = 0; o < blob.size; o += HASH_CHUNK) {
    if (signal?.aborted) throw aborted(signal);
    h.update(new Uint8Array(await blob.slice(o, o + HASH_CHUNK).arrayBuffer()));
    progress?.(Math.min(blob.size, o + HASH_CHUNK), blob.size);
  }
  return bytesToHex(h.digest());
}

async function readJournal(dir: FileSystemDirectoryHandle): Promise<Journal | null> {
  try {
    const j = JSON.parse(await (await (await dir.getFileHandle(JOURNAL)).getFile()).text());
    if (j?.v !== 1 || typeof j.url !== 'string' || !Number.isSafeInteger(j.bytes) || j.bytes < 0 ||
        !Number.isSafeInteger(j.size) || j.size < 0 || typeof j.validator !== 'string' ||
        typeof j.idKey !== 'string' || typeof j.updatedAt !== 'string') return null;
    return j as Journal;
  } catch {
    return null;
  }
}

/** Replaces the journal (createWritable writes a swap file and swaps it in on close). */
async function writeJournal(dir: FileSystemDirectoryHandle, j: Journal): Promise<void> {
  j.updatedAt = new Date().toISOString();
  const w = await (await dir.getFileHandle(JOURNAL, { create: true })).createWritable();
  await w.write(JSON.stringify(j));
  await w.close();
}

/**
 * Removes the partials whose journal is older than `maxAgeMs` (a partial without a readable
 * journal ages by its data file). One locked by a download in progress elsewhere is skipped.
 */
export async function expirePartials(maxAgeMs: number): Promise<void> {
  const root = await partialsRoot();
  const now = Date.now();
  const stale: string[] = [];
  // @ts-ignore: entries() is in every browser with OPFS, not yet in TypeScript's DOM lib
  for await (const [name, handle] of root.entries()) {
    if (handle.kind !== 'directory') { stale.push(name); continue; }
    const dir = handle as FileSystemDirectoryHandle;
    const j = await readJournal(dir);
    let at = j ? Date.parse(j.updatedAt) : NaN;
    if (!Number.isFinite(at)) {
      try { at = (await (await dir.getFileHandle(DATA)).getFile()).lastModified; } catch { at = 0; }
    }
    if (now - at > maxAgeMs) stale.push(name);
  }
  for (const name of stale) await root.removeEntry(name, { recursive: true }).catch(() => {});
}

/** Writes the partial file in place. In a worker a sync access handle (writes in place, flush()
 *  commits); elsewhere a writable stream kept open between commits (each reopening copies the
 *  file in Chromium, so its commits are spaced geometrically: O(size) copying in all). */
interface PartWriter {
  size(): Promise<number>;
  /** Reads `n` committed bytes at `at`. */
  read(at: number, n: number): Promise<Uint8Array>;
  truncate(n: number): Promise<void>;
  write(chunk: Uint8Array, at: number): Promise<void>;
  /** Makes every byte written so far durable. */
  flush(): Promise<void>;
  close(): Promise<void>;
  /** Bytes to write before the next commit, `done` bytes being done. */
  interval(done: number): number;
}

async function openWriter(fh: FileSystemFileHandle): Promise<PartWriter> {
  const h = fh as unknown as { createSyncAccessHandle?: () => Promise<any> };
  if (typeof h.createSyncAccessHandle === 'function') {
    let sync: any = null;
    for (let i = 0; ; i++) {
      try { sync = await h.createSyncAccessHandle(); break; } catch (e) {
        if ((e as DOMException).name !== 'NoModificationAllowedError') throw e;
        if (i + 1 >= LOCK_TRIES) throw fail('busy', 'this model is being downloaded by another tab or worker');
        await new Promise((ok) => setTimeout(ok, 100 * 2 ** i));
      }
    }
    return {
      size: async () => sync.getSize(),
      read: async (at, n) => {
        const buf = new Uint8Array(n);
        const got = sync.read(buf, { at });
        if (got !== n) throw new Error(`short read at ${at}: ${got} of ${n} bytes`);
        return buf;
      },
      truncate: async (n) => { await sync.truncate(n); },
      write: async (chunk, at) => {
        for (let o = 0; o < chunk.byteLength;) {
          const n = sync.write(chunk.subarray(o), { at: at + o });
          if (!(n > 0)) throw new Error('the file system wrote nothing');
          o += n;
        }
      },
      flush: async () => { await sync.flush(); },
      close: async () => { await sync.close(); },
      interval: () => JOURNAL_INTERVAL,
    };
  }
  let w: FileSystemWritableFileStream | null = null;
  const open = async () => (w ??= await fh.createWritable({ keepExistingData: true }));
  return {
    size: async () => (await fh.getFile()).size,
    read: async (at, n) => new Uint8Array(await (await fh.getFile()).slice(at, at + n).arrayBuffer()),
    truncate: async (n) => { await (await open()).truncate(n); },
    write: async (chunk, at) => { await (await open()).write({ type: 'write', position: at, data: chunk as Uint8Array<ArrayBuffer> }); },
    flush: async () => { if (w) { const c = w; w = null; await c.close(); } },
    close: async () => { if (w) { const c = w; w = null; await c.abort().catch(() => {}); } },
    interval: (done) => Math.max(JOURNAL_INTERVAL, done >> 2),
  };
}

function parseContentRange(v: string | null): { start: number; end: number; total: number } | null {
  const m = v && /^bytes (?:(\d+)-(\d+)|\*)\/(\d+|\*)$/.exec(v.trim());
  if (!m) return null;
  return { start: m[1] ? Number(m[1]) : -1, end: m[2] ? Number(m[2]) : -1, total: m[3] === '*' ? 0 : Number(m[3]) };
}

/** The validator of a full response for If-Range: a strong ETag, else Last-Modified (RFC 9110
 *  13.1.5: If-Range takes no weak ETag); '' when the body is content-encoded (ranges would
 *  address the encoded bytes) or there is none. */
function validatorOf(res: Response): string {
  const enc = res.headers.get('content-encoding');
  if (enc && enc !== 'identity') return '';
  const etag = res.headers.get('etag');
  if (etag && !etag.startsWith('W/')) return etag;
  return res.headers.get('last-modified') ?? '';
}

function sameOrigin(url: string): boolean {
  const here = (globalThis as { location?: { origin?: string } }).location?.origin;
  try { return !!here && new URL(url).origin === here; } catch { return false; }
}

const RETRY_STATUS = new Set([408, 429, 500, 502, 503, 504]);

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((ok, no) => {
    if (signal?.aborted) { no(aborted(signal)); return; }
    const t = setTimeout(() => { signal?.removeEventListener('abort', onAbort); ok(); }, ms);
    const onAbort = () => { clearTimeout(t); no(aborted(signal)); };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** The partial's directory for `url` (created when missing). */
async function partialDir(url: string): Promise<{ root: FileSystemDirectoryHandle; name: string; dir: FileSystemDirectoryHandle }> {
  const root = await partialsRoot();
  const name = await sha256Hex(url);
  return { root, name, dir: await root.getDirectoryHandle(name, { create: true }) };
}

export interface Downloaded {
  /** The complete file (in the partial's directory until take() moves it). */
  file: FileSystemFileHandle;
  journal: Journal;
  /** Moves the file to `dir`/`name` and removes the partial's directory. */
  take(dir: FileSystemDirectoryHandle, name: string): Promise<void>;
  /** Removes the partial (a sha256 mismatch). */
  discard(): Promise<void>;
  /** Lowercase hex SHA-256 of the file, with `hash`. */
  sha256?: string;
}

/** Downloads `url` into its partial, resuming from the journal; resolves once it is complete. */
export async function download(url: string, opts: DownloadOptions): Promise<Downloaded> {
  const { root, name, dir } = await partialDir(url);
  const fh = await dir.getFileHandle(DATA, { create: true });
  const out = await openWriter(fh);
  let j: Journal | null = null;
  let hasher = opts.hash ? sha256.create() : null;
  try {
    const had = await readJournal(dir);
    const onDisk = await out.size();
    if (had && had.url === url && had.bytes <= onDisk && (had.size === 0 || had.bytes <= had.size)) {
      j = had;
      if (onDisk > j.bytes) await out.truncate(j.bytes); // written after the last commit: unproven
      if (j.bytes > 0 && !j.validator) {
        opts.event('restart', 'no-validator', 0, j.size);
        j = null;
      } else if (j.bytes > 0) {
        opts.event('resume', 'journal', j.bytes, j.size);
      }
    }
    if (!j && onDisk > 0) await out.truncate(0);
    if (hasher && j && j.bytes > 0) { // the bytes kept, into the hash (they are committed)
      for (let o = 0; o < j.bytes; o += HASH_CHUNK) {
        if (opts.signal?.aborted) throw aborted(opts.signal);
        hasher.update(await out.read(o, Math.min(HASH_CHUNK, j.bytes - o)));
        opts.hashing?.(Math.min(j.bytes, o + HASH_CHUNK), j.bytes);
      }
    }

    let failures = 0;
    let restarts = 0;
    const restart = async (reason: string) => {
      if (++restarts > MAX_RESTARTS) throw fail('upstream_error', `download of ${url}: restarted ${MAX_RESTARTS} times (${reason}); giving up`);
      opts.event('restart', reason, 0, j?.size ?? 0);
      await out.truncate(0);
      j = null;
      if (hasher) hasher = sha256.create();
    };
    const commit = async () => {
      if (!j) return;
      await out.flush();
      await writeJournal(dir, j);
    };
    // A failed attempt: gives up after maxRetries in a row without new bytes, else waits.
    const failed = async (progressed: boolean, why: string) => {
      failures = progressed ? 1 : failures + 1;
      if (failures > opts.maxRetries) {
        const kept = j?.bytes ?? 0;
        throw fail('transport', `download of ${url} failed ${failures} time(s) in a row (${why}); ` +
          `${kept} of ${j?.size || '?'} bytes are kept in OPFS and the next attempt resumes there`);
      }
      opts.event('retry', why, j?.bytes ?? 0, j?.size ?? 0);
      await sleep(Math.min(BACKOFF_MAX_MS, BACKOFF_MS * 2 ** (failures - 1)), opts.signal);
    };

    for (;;) {
      if (opts.signal?.aborted) throw aborted(opts.signal);
      const done: number = j?.bytes ?? 0;
      if (j && j.size > 0 && done === j.size) break; // complete (a reload after the last byte)
      if (j && done > 0 && !j.validator) { await restart('no-validator'); continue; } // nothing to resume against
      const ranged = !!j && done > 0;
      const headers: Record<string, string> = {};
      if (ranged) {
        headers.Range = `bytes=${done}-`;
        if (sameOrigin(url)) headers['If-Range'] = j!.validator;
      }
      let res: Response;
      try {
        res = await fetch(url, { signal: opts.signal, credentials: 'same-origin', headers });
      } catch (e) {
        if (opts.signal?.aborted) throw aborted(opts.signal);
        await failed(false, `network error: ${(e as Error).message}`);
        continue;
      }
      if (ranged && res.status === 206) {
        const cr = parseContentRange(res.headers.get('content-range'));
        const v = validatorOf(res);
        if (!cr || cr.start !== done || (j!.size > 0 && cr.total !== j!.size) || !res.body) {
          await res.body?.cancel().catch(() => {});
          await restart('range-mismatch');
          continue;
        }
        if (v && v !== j!.validator) { // a server that honours Range but not If-Range
          await res.body.cancel().catch(() => {});
          await restart('changed');
          continue;
        }
      } else if (ranged && res.status === 416) {
        const cr = parseContentRange(res.headers.get('content-range'));
        await res.body?.cancel().catch(() => {});
        if (cr && cr.total === done && j!.size === done) break; // it was all there
        await restart('changed');
        continue;
      } else if (res.status === 200 && res.body) {
        if (ranged) {
          await restart(validatorOf(res) !== j!.validator ? 'changed' : 'range-not-supported');
        }
        const enc = res.headers.get('content-encoding');
        const encoded = !!enc && enc !== 'identity';
        const etag = res.headers.get('etag');
        j = {
          v: 1, url, size: encoded ? 0 : Number(res.headers.get('content-length') ?? 0) || 0,
          validator: validatorOf(res),
          idKey: etag ?? `${res.headers.get('content-length') ?? ''}/${res.headers.get('last-modified') ?? ''}`,
          bytes: 0, updatedAt: '',
        };
        await out.truncate(0);
        await writeJournal(dir, j);
      } else {
        await res.body?.cancel().catch(() => {});
        if (RETRY_STATUS.has(res.status)) { await failed(false, `HTTP ${res.status}`); continue; }
        throw fail(res.status === 404 || res.status === 410 ? 'not_found' : 'upstream_error',
          `model download failed: HTTP ${res.status}`);
      }

      // The body, written at j.bytes; committed every interval.
      const jj = j!;
      const start = jj.bytes;
      let next = jj.bytes + out.interval(jj.bytes);
      const reader = res.body!.getReader();
      try {
        for (;;) {
          const { done: end, value } = await reader.read();
          if (end) break;
          if (jj.size > 0 && jj.bytes + value.byteLength > jj.size) throw fail('upstream_error', `download of ${url}: more bytes than its size (${jj.size})`);
          try { await out.write(value, jj.bytes); } catch (e) {
            throw fail('io_error', `writing the download to OPFS failed: ${(e as Error).message}`);
          }
          hasher?.update(value);
          jj.bytes += value.byteLength;
          opts.progress(jj.bytes, jj.size);
          if (jj.bytes >= next) { await commit(); next = jj.bytes + out.interval(jj.bytes); }
        }
      } catch (e) {
        await commit();
        if (opts.signal?.aborted) throw aborted(opts.signal);
        if ((e as { status?: string }).status) throw e;
        await failed(jj.bytes > start, `connection broke at byte ${jj.bytes}: ${(e as Error).message}`);
        continue;
      } finally {
        reader.releaseLock();
      }
      if (jj.size > 0 && jj.bytes < jj.size) { // a clean end before Content-Length said
        await commit();
        await failed(jj.bytes > start, `body ended at byte ${jj.bytes} of ${jj.size}`);
        continue;
      }
      if (jj.size === 0) jj.size = jj.bytes;
      await commit();
      break;
    }
  } finally {
    await out.close().catch(() => {});
  }
  const journal = j!;
  return {
    file: fh, journal, ...(hasher ? { sha256: bytesToHex(hasher.digest()) } : {}),
    take: async (to, as) => {
      // @ts-ignore: FileSystemHandle.move() is in Chromium, not yet in TypeScript's DOM lib
      await fh.move(to, as);
      await root.removeEntry(name, { recursive: true }).catch(() => {});
    },
    discard: async () => { await root.removeEntry(name, { recursive: true }).catch(() => {}); },
  };
}
