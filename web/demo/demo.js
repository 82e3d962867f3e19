// The demo: one chat, local (the default tiny model in a Web Worker) or through a gateway,
// switched with one control; shows TTFT and tok/s of every answer. The local model's backend is
// chosen with ?backend=auto|cpu|webgpu (the control reloads the page with it; default auto) and
// the status line says which one runs it and why.
import { SippClient } from '../dist/sipp.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const modelUrl = params.get('model') ?? '/models/tinystories-instruct-3m-soda-chat-Q4_0.gguf';
const maxTokens = Number(params.get('maxTokens')) || 128;
const backend = ['auto', 'cpu', 'webgpu'].includes(params.get('backend')) ? params.get('backend') : 'auto';
$('backend').value = backend;
$('backend').onchange = () => { params.set('backend', $('backend').value); location.search = params.toString(); };
const client = new SippClient({ backend, wasmBaseUrl: new URL('../dist/wasm/', import.meta.url).href,
                                workerUrl: new URL('../dist/sipp-worker.js', import.meta.url).href });
const history = [];
let current = null;

function add(role, text) {
  const d = document.createElement('div');
  d.className = `msg ${role}`;
  d.textContent = text;
  $('log').appendChild(d);
  return d;
}

async function start() {
  $('status').textContent = 'loading the local model…';
  const info = await client.add('local', { kind: 'local', source: modelUrl, nCtx: 1024, warmup: params.get('warmup') !== '0',
    onProgress: (e) => { $('status').textContent = `${e.phase} ${(e.loaded / 1e6).toFixed(1)} MB`; } });
  const rt = info.runtime;
  $('status').textContent = `ready: ${info.description} (${info.loadedFrom}) on ${rt.backend === 'webgpu' ? 'WebGPU' : 'the CPU'}` +
    `${rt.backend === 'cpu' ? `, ${rt.threads === 'mt' ? rt.nThreads + ' threads' : 'single thread'}` : ''}; ${rt.backendReason}`;
  $('metrics').dataset.backend = rt.backend;
}

$('endpoint').onchange = () => $('gateway').classList.toggle('on', $('endpoint').value === 'gateway');
$('gwConnect').onclick = async () => {
  try {
    await client.remove('gateway');
    const token = $('gwToken').value;
    await client.add('gateway', { kind: 'gateway', baseUrl: $('gwUrl').value, target: $('gwTarget').value,
      authentication: token ? { kind: 'bearer', token } : { kind: 'none' } });
    $('status').textContent = 'gateway connected';
  } catch (e) { $('status').textContent = e.message; }
};

async function send() {
  const text = $('prompt').value.trim();
  if (!text || current) return;
  $('prompt').value = '';
  add('user', text);
  history.push({ role: 'user', content: text });
  const out = add('assistant', '');
  const t0 = performance.now();
  let first = 0;
  current = client.chat(history, { endpoint: $('endpoint').value, maxTokens, temperature: 0.7 });
  try {
    for await (const piece of current.tokens) {
      if (!first) first = performance.now();
      out.textContent += piece;
    }
    const r = await current.response;
    if (r.status !== 'ok') out.textContent += ` [${r.status}: ${r.errorMessage}]`;
    history.push({ role: 'assistant', content: r.text });
    const t1 = performance.now();
    const n = r.usage.outputTokens;
    const tps = n > 1 && first ? (n - 1) / ((t1 - first) / 1000) : 0;
    $('metrics').textContent = `${$('metrics').dataset.backend === 'webgpu' ? 'WebGPU' : 'CPU'} · TTFT ${(first ? first - t0 : 0).toFixed(0)} ms · ${tps.toFixed(1)} tok/s · ${n} tokens · ${r.finishReason}`;
  } catch (e) {
    out.textContent = `error: ${e.message}`;
  } finally {
    current = null;
  }
}
$('send').onclick = send;
$('prompt').onkeydown = (e) => { if (e.key === 'Enter') send(); };
$('stop').onclick = () => current?.cancel();
start().catch((e) => { $('status').textContent = `error: ${e.message}`; });
