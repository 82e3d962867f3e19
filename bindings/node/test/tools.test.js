'use strict';
// Tools, tool calls, results and deltas in the Node binding (issue 18), against the scripted
// OpenAI-shaped peer (tests/e2e/fault_server.py, run as a child: it prints its port, then each
// request as a JSON line). Its "tools" scenario answers with reasoning, text and two calls, and
// with the final text once the results come back. Also the response's logprobs.
const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const readline = require('node:readline');
const { spawn, execFileSync } = require('node:child_process');

const { Client, toolResult } = require('..');

const ROOT = path.resolve(__dirname, '..', '..', '..');
const MODELS = process.env.SIPP_TEST_MODELS_DIR || path.join(ROOT, '..', 'shared', 'models');
const WEATHER = { name: 'get_weather', description: 'The weather now, in a unit',
  parameters: { type: 'object', properties: { unit: { enum: ['celsius', 'fahrenheit'] } }, required: ['unit'] } };
const TIME = { type: 'function', function: { name: 'get_time', description: 'The time', parameters: { type: 'object' } } };

let server, lines, port;
const seen = [];
let client, ep;
test.before(async () => {
  server = spawn('/usr/bin/python3', [path.join(ROOT, 'tests', 'e2e', 'fault_server.py')], { stdio: ['pipe', 'pipe', 'inherit'] });
  lines = readline.createInterface({ input: server.stdout });
  port = await new Promise((resolve) => lines.once('line', (l) => resolve(Number(l))));
  lines.on('line', (l) => seen.push(JSON.parse(l)));
  client = new Client();
  ep = await client.addProvider('tools', { baseUrl: `http://127.0.0.1:${port}/tools/v1`, model: 'm', allowPrivateNetwork: true });
});
test.after(() => {
  client.close();
  server.stdin.end(); // it ends when its stdin closes
});

const lastBody = async () => {
  for (let i = 0; i < 100 && seen.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
  return seen.pop().body;
};

test('calls, reasoning and deltas', async () => {
  const run = ep.chat('Weather and time?', { tools: [WEATHER, TIME], toolChoice: 'required' });
  const deltas = [];
  for await (const d of run.deltas()) deltas.push(d);
  const r = await run.response;
  assert.equal(r.finishReason, 'tool_calls');
  assert.equal(r.text, 'Checking.');
  assert.equal(r.reasoning, 'Let me think');
  assert.deepEqual(r.toolCalls, [
    { id: 'call_a', name: 'get_weather', arguments: '{"unit": "celsius"}' },
    { id: 'call_b', name: 'get_time', arguments: '{"zone": "utc"}' },
  ]);
  assert.deepEqual(deltas.slice(0, 2).map((d) => d.kind), ['reasoning', 'content']);
  assert.deepEqual(deltas[2], { kind: 'toolCall', text: '', toolIndex: 0, toolId: 'call_a', toolName: 'get_weather' });
  assert.equal(deltas.filter((d) => d.kind === 'toolCall' && d.toolIndex === 0).map((d) => d.text).join(''), '{"unit": "celsius"}');
  const body = await lastBody();
  assert.equal(body.tool_choice, 'required');
  assert.deepEqual(body.tools.map((t) => t.function.name), ['get_weather', 'get_time']);
  assert.deepEqual(body.tools[0].function.parameters, WEATHER.parameters);
});

test('the round trip, a named choice and reasoning inline', async () => {
  const first = await ep.chat('Weather?', { tools: [WEATHER, TIME], reasoning: 'inline' }).response;
  assert.equal(first.text, '<think>Let me think</think>Checking.');
  await lastBody();
  const messages = [{ role: 'user', content: 'Weather?' }, first.message(),
    ...first.toolCalls.map((c) => toolResult(c, '21 C'))];
  const r = await ep.chat(messages, { tools: [WEATHER, TIME], toolChoice: 'get_time', parallelToolCalls: false }).response;
  assert.equal(r.finishReason, 'stop');
  assert.equal(r.text, 'It is 21 C.');
  assert.deepEqual(r.toolCalls, []);
  const body = await lastBody();
  assert.deepEqual(body.tool_choice, { type: 'function', function: { name: 'get_time' } });
  assert.equal(body.parallel_tool_calls, false);
  assert.deepEqual(body.messages[2], { role: 'tool', content: '21 C', tool_call_id: 'call_a' });
  assert.equal(body.messages[1].tool_calls[1].function.arguments, '{"zone": "utc"}');
});

test('bad tools are invalid_argument', () => {
  assert.throws(() => ep.chat('x', { tools: [WEATHER], toolChoice: 'nope' }), (e) => e.kind === 'invalid_argument' && /tool_choice/.test(e.message));
  assert.throws(() => ep.chat('x', { tools: [{ name: 't', parameters: '[1]' }] }), (e) => e.kind === 'invalid_argument');
  assert.throws(() => ep.chat([{ role: 'user', content: 'x' }, toolResult('unknown', 'r')], { tools: [WEATHER] }),
    (e) => e.kind === 'invalid_argument');
  assert.throws(() => ep.chat('x', { reasoning: 'loud' }), (e) => e.kind === 'invalid_argument');
});

test('logprobs come with the response', async () => {
  const c = new Client();
  try {
    const local = await c.addLocal('story', path.join(MODELS, 'stories260K.gguf'), { nCtx: 128, nThreads: 1 });
    const r = await local.query('Once upon a time', { maxTokens: 4, temperature: 0, logprobs: true, topLogprobs: 2 }).response;
    assert.equal(r.logprobs.length, r.usage.outputTokens);
    for (const e of r.logprobs) {
      assert.ok(e.logprob <= 0 && typeof e.token === 'string');
      assert.equal(e.top.length, 2);
      assert.ok(e.top[0].logprob >= e.top[1].logprob);
    }
    assert.equal((await local.query('Once', { maxTokens: 2 }).response).logprobs, null);
  } finally {
    c.close();
  }
});

test('the agent-loop example runs', async () => {
  const out = execFileSync(process.execPath, [path.join(__dirname, '..', 'examples', 'agent_loop.js')], {
    env: { ...process.env, SIPP_REMOTE_URL: `http://127.0.0.1:${port}/tools/v1` }, encoding: 'utf8', timeout: 60000,
  });
  assert.match(out, /\[get_weather\(\{"unit": "celsius"\}\) -> 21 C\]/);
  assert.match(out, /It is 21 C\.\n\[answer after 1 tool round\(s\)\]/);
});
