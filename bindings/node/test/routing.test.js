'use strict';
// The draft check and draft-then-audit (sipp_policy_check_draft, sipp_route_draft_audit) in the
// Node binding: a local tiny model drafts, an OpenAI-compatible peer on loopback audits.
const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const http = require('node:http');

const { Client, SippError, Policy } = require('..');

const ROOT = path.resolve(__dirname, '..', '..', '..');
const MODELS = process.env.SIPP_TEST_MODELS_DIR || path.join(ROOT, '..', 'shared', 'models');
const CHAT_MODEL = path.join(MODELS, 'tinystories-instruct-3m-soda-chat-Q4_0.gguf');
const GREEDY = { temperature: 0 };

/** The C test's peer: 'answer' streams "audited answer", 'one_token' streams "Hel" and drops
 *  the connection, 'busy' answers 503. It keeps the request bodies it got. */
async function auditPeer(mode) {
  const bodies = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (d) => { body += d; });
    req.on('end', () => {
      bodies.push(JSON.parse(body));
      if (mode === 'busy') {
        res.writeHead(503, { 'content-type': 'application/json' });
        res.end('{"error":{"message":"overloaded","type":"x"}}');
        return;
      }
      res.writeHead(200, { 'content-type': 'text/event-stream', connection: 'close' });
      if (mode === 'one_token') {
        res.write('data: {"choices":[{"index":0,"delta":{"content":"Hel"},"logprobs":{"content":' +
          '[{"token":"Hel","logprob":-0.1,"top_logprobs":[]}]},"finish_reason":null}]}\n\n', () => res.socket.end());
        return;
      }
      res.end('data: {"choices":[{"index":0,"delta":{"content":"audited answer"},' +
        '"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n');
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { bodies, url: `http://127.0.0.1:${server.address().port}/v1`, close: () => server.close() };
}

const content = (body) => body.messages.map((m) => m.content).join('\n');

async function collect(run) {
  let text = '';
  for await (const b of run) text += b.text;
  return text;
}

test('draft-then-audit: a confident draft stands, an unsure one goes to the target with the draft', async () => {
  const client = new Client();
  const peer = await auditPeer('answer');
  try {
    const chat = await client.addLocal('chat', CHAT_MODEL, { nCtx: 256, nThreads: 1 });
    const cloud = await client.addProvider('cloud', { model: 'm', baseUrl: peer.url, allowPrivateNetwork: true });
    const question = 'What did the cat see in the garden?';
    const draft = await chat.chat(question, { maxTokens: 12, logprobs: true, ...GREEDY }).response;
    const n = draft.logprobs.length;
    const conf = Math.exp(draft.logprobs.reduce((s, t) => s + t.logprob, 0) / n);
    assert.ok(n > 0 && conf > 0 && conf < 1);
    const lax = new Policy([['escalate_low_confidence', conf * 0.9]]);
    const strict = new Policy([['escalate_low_confidence', (conf + 1) / 2]]);

    // the draft check on a response
    let d = lax.checkDraft(draft);
    assert.equal(d.outcome, 'draft');
    assert.ok(Math.abs(d.confidence - conf) < 1e-5 * conf);
    assert.equal(d.nTokens, n);
    assert.match(d.reasons, /the draft stands/);
    assert.equal(strict.checkDraft(draft).outcome, 'escalated');
    const bare = await chat.chat(question, { maxTokens: 12, ...GREEDY }).response; // no logprobs
    d = lax.checkDraft(bare);
    assert.equal(d.outcome, 'escalated');
    assert.ok(Number.isNaN(d.confidence));
    assert.match(d.reasons, /no token log-probabilities/);
    assert.equal(new Policy(['fit_context']).checkDraft(draft).outcome, 'draft');
    assert.throws(() => lax.checkDraft('not a response'), TypeError);

    // confident: the draft stands, the cloud is not asked
    const opts = { maxTokens: 12, contextKey: 'file:garden.txt', ...GREEDY };
    let r = await lax.draftAudit(chat, cloud, question, opts);
    assert.equal(r.decision.outcome, 'draft');
    assert.equal((await r.run.response).text, draft.text);
    assert.equal(peer.bodies.length, 0);
    // unsure: the question and the draft go to the cloud; only its answer is read
    r = await strict.draftAudit(chat, cloud, question, opts);
    assert.equal(r.decision.outcome, 'escalated');
    assert.match(r.decision.reasons, /escalated to the target with the draft/);
    assert.equal(r.run.endpoint, cloud);
    assert.equal(await collect(r.run), 'audited answer');
    assert.equal((await r.run.response).text, 'audited answer');
    assert.equal(peer.bodies.length, 1);
    assert.ok(content(peer.bodies[0]).includes(question));
    assert.ok(content(peer.bodies[0]).includes('Draft:\n' + draft.text));
    assert.ok(!JSON.stringify(peer.bodies[0]).includes('garden.txt')); // no local cache hint
    // without the draft: the question only
    r = await strict.draftAudit(chat, cloud, [{ role: 'user', content: question }], { ...opts, sendDraft: false });
    assert.equal((await r.run.response).text, 'audited answer');
    assert.match(r.decision.reasons, /\(question only\)/);
    assert.ok(!content(peer.bodies[1]).includes('Draft:'));
  } finally {
    client.close();
    peer.close();
  }
});

test('draft-then-audit never switches a stream: a failed draft is not re-sent', async () => {
  const client = new Client();
  const broken = await auditPeer('one_token'), busy = await auditPeer('busy'), target = await auditPeer('answer');
  try {
    const add = (id, p) => client.addProvider(id, { model: 'm', baseUrl: p.url, allowPrivateNetwork: true });
    const b = await add('broken', broken), rf = await add('busy', busy), t = await add('t', target);
    const pol = new Policy([['escalate_low_confidence', 0.99]]);
    let r = await pol.draftAudit(b, t, 'hi', { maxTokens: 8 });
    assert.equal(r.decision.outcome, 'draft_failed');
    assert.equal(r.decision.retrySafe, false);
    assert.equal(r.run.endpoint, b);
    await assert.rejects(r.run.response, SippError);
    r = await pol.draftAudit(rf, t, 'hi', { maxTokens: 8 });
    assert.equal(r.decision.outcome, 'draft_failed');
    assert.equal(r.decision.retrySafe, true);
    assert.match(r.decision.reasons, /before any output token/);
    await assert.rejects(r.run.response, SippError);
    assert.equal(target.bodies.length, 0); // Sipp moved nothing
    // refused at submission: a rejection, nothing sent anywhere
    await assert.rejects(pol.draftAudit(b, t, 'hi', { maxTokens: 0 }),
      (e) => e instanceof SippError && e.kind === 'invalid_argument');
    await assert.rejects(pol.draftAudit(b, 'not an endpoint', 'hi'), TypeError);
    assert.equal(target.bodies.length, 0);
    assert.equal(broken.bodies.length, 1);
  } finally {
    client.close();
    for (const p of [broken, busy, target]) p.close();
  }
});

test('draft-then-audit: a client closed while the draft runs rejects, frees and does not crash', async () => {
  const client = new Client();
  const peer = await auditPeer('answer');
  try {
    const chat = await client.addLocal('chat', CHAT_MODEL, { nCtx: 256, nThreads: 1 });
    const cloud = await client.addProvider('cloud', { model: 'm', baseUrl: peer.url, allowPrivateNetwork: true });
    const pol = new Policy([['escalate_low_confidence', 0.99]]);
    const pending = pol.draftAudit(chat, cloud, 'What did the cat see?', { maxTokens: 12, ...GREEDY });
    await new Promise((resolve) => setImmediate(resolve)); // the work is queued, the draft runs
    client.close();
    await assert.rejects(pending, (e) => e instanceof SippError && e.kind === 'closed');
    await assert.rejects(pol.draftAudit(chat, cloud, 'hi'), (e) => e instanceof SippError && e.kind === 'closed');
    assert.equal(peer.bodies.length, 0);
  } finally {
    client.close();
    peer.close();
  }
});
