'use strict';
// The Node binding's image input (docs/multimodal.md): `images` in chat/query options, checked
// against llama.cpp's own llama-mtmd-cli on the random-weight LLaVA pair that sipp-make-model
// writes (the pair tests/e2e/test_multimodal.py uses). node --test --expose-gc test/
const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const fs = require('node:fs');
const os = require('node:os');
const zlib = require('node:zlib');
const { execFileSync } = require('node:child_process');

const { Client, SippError } = require('..');

const ROOT = path.resolve(__dirname, '..', '..', '..');
const BIN_DIR = process.env.SIPP_BIN_DIR || path.join(ROOT, 'build', 'bin');
const LLAMA_BIN = path.dirname(process.env.SIPP_LLAMA_SERVER || path.join(BIN_DIR, 'llama-server'));
const MODELS = process.env.SIPP_TEST_MODELS_DIR || path.join(ROOT, '..', 'shared', 'models');
const N_PREDICT = 12;
const SYSTEM = 'You look at pictures.';
const USER = 'Describe the picture.';

/** An 8-bit RGB PNG of a deterministic pattern (the same bytes as test_multimodal.py's png()). */
function png(w, h, seed) {
  const rows = [];
  for (let y = 0; y < h; y++) {
    rows.push(0);
    for (let x = 0; x < w; x++) {
      rows.push((x * 7 + y * 3 + seed * 11) % 256, (x * y + seed) % 256, (x ^ y) % 256);
    }
  }
  const chunk = (type, data) => {
    const td = Buffer.concat([Buffer.from(type, 'latin1'), data]);
    const len = Buffer.alloc(4);
    const crc = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    crc.writeUInt32BE(zlib.crc32(td) >>> 0);
    return Buffer.concat([len, td, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr.set([8, 2, 0, 0, 0], 8);
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr), chunk('IDAT', zlib.deflateSync(Buffer.from(rows))), chunk('IEND', Buffer.alloc(0))]);
}

let dir;
let client;
let vision;
const images = {};

test.before(async () => {
  if (!process.env.SIPP_LLAMA_SRC) throw new Error('SIPP_LLAMA_SRC must point at the llama.cpp source (ctest sets it)');
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sipp-node-mm-'));
  for (const [shape, name] of [['llava-text', 'text.gguf'], ['llava-mmproj', 'mmproj.gguf']]) {
    execFileSync(path.join(BIN_DIR, 'sipp-make-model'), ['--shape', shape, '--out', path.join(dir, name)],
      { stdio: ['ignore', 'ignore', 'pipe'] });
  }
  for (const [name, w, h, seed] of [['a.png', 64, 48, 1], ['b.png', 40, 90, 2]]) {
    images[name] = png(w, h, seed);
    fs.writeFileSync(path.join(dir, name), images[name]);
  }
  client = new Client();
  vision = await client.addLocal('vision', path.join(dir, 'text.gguf'),
    { mmproj: path.join(dir, 'mmproj.gguf'), nCtx: 1024, nThreads: 2 });
});

test.after(() => {
  if (client) client.close();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

/** llama-mtmd-cli's greedy text for one image and the user prompt (marker in front), with the
 *  system prompt unless `system` is false. */
function oracle(image, system = true) {
  const cli = path.join(LLAMA_BIN, 'llama-mtmd-cli');
  assert.ok(fs.existsSync(cli), `${cli} is missing: scripts/setup builds it`);
  const out = execFileSync(cli, ['-m', path.join(dir, 'text.gguf'), '--mmproj', path.join(dir, 'mmproj.gguf'),
    '--image', path.join(dir, image), '-p', USER, ...(system ? ['-sys', SYSTEM] : []), '--temp', '0',
    '-n', String(N_PREDICT), '-t', '2'], { stdio: ['ignore', 'pipe', 'ignore'], env: { ...process.env, OMP_WAIT_POLICY: 'passive' } });
  return out.toString('utf8').replace(/^\n+|\n+$/g, '');
}

/** The SippError a run fails with, thrown at submission or by its response. */
async function failure(start) {
  try {
    await start().response;
  } catch (e) {
    assert.ok(e instanceof SippError, `expected a SippError, got ${e}`);
    return e;
  }
  assert.fail('the run did not fail');
}

const MESSAGES = [{ role: 'system', content: SYSTEM }, { role: 'user', content: USER }];
const GREEDY = { temperature: 0, maxTokens: N_PREDICT };

test('the endpoint reports vision from its projector', () => {
  const info = vision.info();
  assert.equal(info.vision, true);
  assert.equal(info.audioIn, false);
  assert.equal(info.audioOut, false);
});

test('chat with an image equals llama-mtmd-cli token for token', async () => {
  const want = oracle('a.png');
  const r = await vision.chat(MESSAGES, { ...GREEDY, images: [images['a.png']] }).response;
  assert.equal(r.text, want);
  assert.equal(r.usage.outputTokens, N_PREDICT);
  assert.equal(r.stats.mediaChunks, 1);
  assert.ok(r.stats.encodeMs > 0);
  // another image steers the text elsewhere, so the match above means something
  const b = await vision.chat(MESSAGES, { ...GREEDY, images: [images['b.png']] }).response;
  assert.notEqual(b.text, r.text);
  assert.equal(b.stats.mediaChunks, 1);
  assert.ok(vision.stats().mediaEncoded >= 2);
});

test('a chat with tool calls and results carries its image too (sipp_chat_ex)', async () => {
  // the tool parts send the chat through sipp_chat_ex; the image still goes to the last user turn
  const history = [...MESSAGES,
    { role: 'assistant', content: '', toolCalls: [{ id: 'c1', name: 'look', arguments: '{}' }] },
    { role: 'tool', toolCallId: 'c1', content: 'a picture' },
    { role: 'user', content: USER }];
  const r = await vision.chat(history, { ...GREEDY, maxTokens: 4, images: [images['a.png']] }).response;
  assert.equal(r.stats.mediaChunks, 1);
  assert.ok(r.stats.encodeMs > 0);
  // the image part names the last user message: one more part there is a marker mismatch
  const err = await failure(() => vision.chat(
    [...history.slice(0, -1), { role: 'user', content: `<__media__>${USER}` }],
    { ...GREEDY, images: [images['a.png'], images['b.png']] }));
  assert.equal(err.kind, 'invalid_argument');
  assert.ok(err.message.includes('media marker'), err.message);
});

test('an image is a Buffer, a Uint8Array view or an ArrayBuffer alike', async () => {
  const buf = images['a.png'];
  // a view into a larger buffer at an offset: the part is the view's bytes only
  const big = new Uint8Array(buf.length + 16);
  big.set(buf, 8);
  const view = new Uint8Array(big.buffer, 8, buf.length);
  const ab = buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.length);
  const a = (await vision.chat(MESSAGES, { ...GREEDY, maxTokens: 4, images: [buf] }).response).text;
  assert.equal((await vision.chat(MESSAGES, { ...GREEDY, maxTokens: 4, images: [view] }).response).text, a);
  assert.equal((await vision.chat(MESSAGES, { ...GREEDY, maxTokens: 4, images: [ab] }).response).text, a);
});

test('query: the image takes the marker of the raw prompt', async () => {
  // the prompt llama-mtmd-cli renders without a system prompt (ChatML)
  const raw = `<|im_start|>user\n<__media__>${USER}<|im_end|>\n<|im_start|>assistant\n`;
  for (const name of ['a.png', 'b.png']) {
    const r = await vision.query(raw, { ...GREEDY, images: [images[name]] }).response;
    assert.equal(r.text, oracle(name, false));
  }
});

test('bad images are SippErrors naming the problem; the endpoint goes on', async () => {
  const cases = [
    [Buffer.from('hello, I am not an image at all\n'.repeat(10)), 'not an image'],
    [images['a.png'].subarray(0, 20), 'header is truncated or corrupt'],
    [Buffer.alloc(0), 'empty (0 bytes)'],
  ];
  for (const [bytes, expect] of cases) {
    const err = await failure(() => vision.chat(MESSAGES, { ...GREEDY, images: [bytes] }));
    assert.equal(err.kind, 'invalid_argument');
    assert.ok(err.message.includes(expect), err.message);
  }
  const err = await failure(() => vision.query('<__media__> one marker for two images',
    { ...GREEDY, images: [images['a.png'], images['b.png']] }));
  assert.equal(err.kind, 'invalid_argument');
  assert.ok(err.message.includes('1 media marker(s) but 2 media part(s)'), err.message);
  const r = await vision.chat(MESSAGES, { ...GREEDY, maxTokens: 2, images: [images['a.png']] }).response;
  assert.equal(r.usage.outputTokens, 2);
});

test('images must be an array of bytes', () => {
  assert.throws(() => vision.chat(MESSAGES, { images: images['a.png'] }), TypeError);
  assert.throws(() => vision.chat(MESSAGES, { images: ['a.png'] }), /images\[0\] must be a Buffer/);
  assert.throws(() => vision.chat(MESSAGES, { images: [new Float32Array(4)] }), /images\[0\] must be a Buffer/);
});

test('an endpoint without a projector refuses images as unsupported', async () => {
  const ep = await client.addLocal('text-only', path.join(MODELS, 'tinystories-instruct-3m-soda-chat-Q4_0.gguf'),
    { nCtx: 256, nThreads: 1 });
  assert.equal(ep.info().vision, false);
  const err = await failure(() => ep.chat('hi', { maxTokens: 2, images: [images['a.png']] }));
  assert.equal(err.kind, 'unsupported');
  assert.match(err.message, /without a projector \(mmproj\)/);
});
