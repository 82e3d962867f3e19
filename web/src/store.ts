// The OPFS model cache. Layout: /sipp-models/<id>/meta.json plus the model file(s). An entry
// is only used once meta.json exists (written last), so a download cut short is never loaded.
// Ids are stable: SHA-256 of the URL and its ETag (or length + Last-Modified) for URLs, of the
// URL list for shards, and of the size plus the first and last MiB of content for files.
// Downloads go through download.ts first (a resumable partial per URL under /sipp-downloads/),
// and the complete file is moved into its entry.

import type { LocalModel } from './types.js';
import { planShards, readGgufHeader, shardName, writeShard } from './gguf.js';
import { download, expirePartials, hashBlob, sha256Hex } from './download.js';
import type { DownloadEventKind, DownloadOptions, Downloaded } from './download.js';

export { sha256Hex } from './download.js';

const ROOT = 'sipp-models';

export interface StoreProgress {
  (phase: 'download' | 'verify' | 'store', loaded: number, total: number, kind?: DownloadEventKind, reason?: string): void
}

async function rootDir(): Promise<FileSystemDirectoryHandle> {
  const opfs = await navigator.storage.getDirectory();
  return opfs.getDirectoryHandle(ROOT, { create: true });
}

async function readMeta(dir: FileSystemDirectoryHandle): Promise<LocalModel | null> {
  try {
    const f = await (await dir.getFileHandle('meta.json')).getFile();
    return JSON.parse(await f.text()) as LocalModel;
  } catch {
    return null;
  }
}

export async function listLocal(): Promise<LocalModel[]> {
  const root = await rootDir();
  const out: LocalModel[] = [];
  // @ts-ignore: entries() is in every browser with OPFS, not yet in TypeScript's DOM lib
  for await (const [, handle] of root.entries()) {
    if (handle.kind !== 'directory') continue;
    const m = await readMeta(handle as FileSystemDirectoryHandle);
    if (m) out.push(m);
  }
  return out;
}

export async function removeLocal(id: string): Promise<boolean> {
  if (!/^[0-9a-f]{32}$/.test(id)) return false;
  const root = await rootDir();
  try {
    await root.removeEntry(id, { recursive: true });
    return true;
  } catch {
    return false;
  }
}

/** The cached entry for `source` (a URL or a shard list), if complete. */
export async function findBySource(source: string): Promise<{ meta: LocalModel; files: File[] } | null> {
  const root = await rootDir();
  // @ts-ignore: see listLocal
  for await (const [, handle] of root.entries()) {
    if (handle.kind !== 'directory') continue;
    const m = await readMeta(handle as FileSystemDirectoryHandle);
    if (m && m.source === source) return { meta: m, files: await openFiles(handle, m) };
  }
  return null;
}

export async function findById(id: string): Promise<{ meta: LocalModel; files: File[] } | null> {
  const root = await rootDir();
  try {
    const dir = await root.getDirectoryHandle(id);
    const m = await readMeta(dir);
    return m ? { meta: m, files: await openFiles(dir, m) } : null;
  } catch {
    return null;
  }
}

async function openFiles(dir: FileSystemDirectoryHandle, m: LocalModel): Promise<File[]> {
  return Promise.all(m.files.map(async (n) => (await dir.getFileHandle(n)).getFile()));
}

export interface StoreOptions {
  shardThresholdBytes: number;
  shardSizeBytes: number;
  progress: StoreProgress;
  signal?: AbortSignal;
  /** Expected SHA-256 (lowercase hex) of the file, or of each shard; verified before storing. */
  sha256?: string | string[];
  /** Failed download attempts in a row without new bytes before giving up. */
  maxRetries: number;
  /** Partial downloads not updated for this long are removed when a store starts. */
  partialMaxAgeMs: number;
}

function dlOpts(opts: StoreOptions, base: number, total: number): DownloadOptions {
  return {
    signal: opts.signal, maxRetries: opts.maxRetries, hash: opts.sha256 != null,
    hashing: (n, t) => opts.progress('verify', n, t),
    progress: (n, t) => opts.progress('download', base + n, total || t),
    event: (kind, reason, n, t) => opts.progress('download', base + n, total || t, kind, reason),
  };
}

function fail(status: string, message: string): Error {
  return Object.assign(new Error(message), { status });
}

/** Refuses a download whose SHA-256 (computed while it arrived) is not `want` (`model_invalid`),
 *  deleting it. */
async function verify(d: Downloaded, what: string, want: string, opts: StoreOptions) {
  opts.progress('verify', d.journal.bytes, d.journal.bytes);
  if (d.sha256 === want) return;
  await d.discard();
  throw fail('model_invalid', `sha256 mismatch for ${what}: expected ${want}, got ${d.sha256}; the download was deleted`);
}

async function writeStream(dir: FileSystemDirectoryHandle, name: string,
                           body: ReadableStream<Uint8Array>, total: number,
                           progress: StoreProgress, signal?: AbortSignal): Promise<number> {
  const w = await (await dir.getFileHandle(name, { create: true })).createWritable();
  let n = 0;
  const reader = body.getReader();
  try {
    for (;;) {
      if (signal?.aborted) throw signal.reason ?? new DOMException('aborted', 'AbortError');
      const { done, value } = await reader.read();
      if (done) break;
      await w.write(value as Uint8Array<ArrayBuffer>);
      n += value.byteLength;
      progress('download', n, total);
    }
    await w.close();
  } catch (e) {
    await w.abort().catch(() => {});
    throw e;
  }
  return n;
}

/** Splits `file` into shards in `dir` when it is above the threshold; returns the file names. */
async function maybeShard(dir: FileSystemDirectoryHandle, name: string, opts: StoreOptions): Promise<string[]> {
  const file = await (await dir.getFileHandle(name)).getFile();
  if (file.size <= opts.shardThresholdBytes) return [name];
  const h = await readGgufHeader(file);
  const plan = planShards(h, opts.shardSizeBytes);
  const names: string[] = [];
  let done = 0;
  for (let i = 0; i < plan.count; i++) {
    const sn = shardName('model', i, plan.count);
    const w = await (await dir.getFileHandle(sn, { create: true })).createWritable();
    try {
      await writeShard(file, h, plan, i, async (chunk) => {
        if (opts.signal?.aborted) throw opts.signal.reason ?? new DOMException('aborted', 'AbortError');
        await w.write(chunk as Uint8Array<ArrayBuffer>);
        done += chunk.byteLength;
        opts.progress('store', done, file.size);
      });
      await w.close();
    } catch (e) {
      await w.abort().catch(() => {});
      throw e;
    }
    names.push(sn);
  }
  await dir.removeEntry(name);
  return names;
}

async function finish(dir: FileSystemDirectoryHandle, meta: LocalModel): Promise<File[]> {
  const w = await (await dir.getFileHandle('meta.json', { create: true })).createWritable();
  await w.write(JSON.stringify(meta));
  await w.close();
  return openFiles(dir, meta);
}

async function freshDir(id: string): Promise<FileSystemDirectoryHandle> {
  const root = await rootDir();
  await root.removeEntry(id, { recursive: true }).catch(() => {});
  return root.getDirectoryHandle(id, { create: true });
}

/** Runs `fill` on a fresh entry `id`; the entry is removed when it fails (no partial files
 *  left taking space: without meta.json they would never be used). */
async function fillEntry<T>(id: string, fill: (dir: FileSystemDirectoryHandle) => Promise<T>): Promise<T> {
  const dir = await freshDir(id);
  try {
    return await fill(dir);
  } catch (e) {
    await (await rootDir()).removeEntry(id, { recursive: true }).catch(() => {});
    throw e;
  }
}

/** Downloads `url` into OPFS (resuming a partial download; sharding it when large). */
export async function storeUrl(url: string, opts: StoreOptions): Promise<{ meta: LocalModel; files: File[] }> {
  await expirePartials(opts.partialMaxAgeMs);
  const d = await download(url, dlOpts(opts, 0, 0));
  const want = typeof opts.sha256 === 'string' ? opts.sha256 : undefined;
  if (want) await verify(d, url, want, opts);
  const id = await sha256Hex(`${url}\n${d.journal.idKey}`);
  return fillEntry(id, async (dir) => {
    await d.take(dir, 'download.part');
    const files = await maybeShard(dir, 'download.part', opts);
    if (files.length === 1) {
      // @ts-ignore: FileSystemHandle.move() is in Chromium, not yet in TypeScript's DOM lib
      await (await dir.getFileHandle('download.part')).move('model.gguf');
      files[0] = 'model.gguf';
    }
    const meta: LocalModel = { id, source: url, etag: d.journal.idKey, bytes: d.journal.bytes, files,
                               storedAt: new Date().toISOString(), ...(want ? { sha256: want } : {}) };
    return { meta, files: await finish(dir, meta) };
  });
}

/** Downloads pre-split shards (already GGUF shards, named by llama.cpp's convention); each
 *  shard is a resumable download of its own. */
export async function storeShards(urls: string[], opts: StoreOptions): Promise<{ meta: LocalModel; files: File[] }> {
  await expirePartials(opts.partialMaxAgeMs);
  const source = urls.join('\n');
  const id = await sha256Hex(source);
  const want = Array.isArray(opts.sha256) ? opts.sha256 : undefined;
  const got: Downloaded[] = [];
  let bytes = 0;
  for (let i = 0; i < urls.length; i++) {
    try {
      const d = await download(urls[i], dlOpts(opts, bytes, 0));
      if (want) await verify(d, `shard ${i + 1} (${urls[i]})`, want[i], opts);
      bytes += d.journal.bytes;
      got.push(d);
    } catch (e) {
      if (e instanceof Error && !(e instanceof DOMException)) e.message = `shard ${i + 1}: ${e.message}`;
      throw e;
    }
  }
  return fillEntry(id, async (dir) => {
    const files: string[] = [];
    for (let i = 0; i < got.length; i++) {
      const name = shardName('model', i, urls.length);
      await got[i].take(dir, name);
      files.push(name);
    }
    const meta: LocalModel = { id, source, etag: '', bytes, files, storedAt: new Date().toISOString(),
                               ...(want ? { sha256: want } : {}) };
    return { meta, files: await finish(dir, meta) };
  });
}

/** Fingerprint of a File: its size and first and last MiB (hashing gigabytes would take
 *  longer than loading them). */
export async function fileId(file: Blob): Promise<string> {
  const mib = 1024 * 1024;
  const head = new Uint8Array(await file.slice(0, mib).arrayBuffer());
  const tail = new Uint8Array(await file.slice(Math.max(0, file.size - mib)).arrayBuffer());
  const buf = new Uint8Array(head.byteLength + tail.byteLength + 16);
  buf.set(new TextEncoder().encode(String(file.size).padStart(16, '0')), 0);
  buf.set(head, 16);
  buf.set(tail, 16 + head.byteLength);
  return sha256Hex(buf);
}

/** Copies a File into OPFS (sharding it when large). */
export async function storeFile(file: Blob, opts: StoreOptions): Promise<{ meta: LocalModel; files: File[] }> {
  if (typeof opts.sha256 === 'string') {
    const got = await hashBlob(file, (n, t) => opts.progress('verify', n, t), opts.signal);
    if (got !== opts.sha256) throw fail('model_invalid', `sha256 mismatch for the file: expected ${opts.sha256}, got ${got}`);
  }
  const id = await fileId(file);
  const source = `file:${id}`;
  const existing = await findBySource(source);
  if (existing) return existing;
  return fillEntry(id, async (dir) => {
    const bytes = await writeStream(dir, 'download.part', file.stream(), file.size,
      (_p, n, t) => opts.progress('store', n, t), opts.signal);
    const files = await maybeShard(dir, 'download.part', opts);
    if (files.length === 1) {
      // @ts-ignore: see storeUrl
      await (await dir.getFileHandle('download.part')).move('model.gguf');
      files[0] = 'model.gguf';
    }
    const meta = { id, source, etag: '', bytes, files, storedAt: new Date().toISOString() };
    return { meta, files: await finish(dir, meta) };
  });
}
