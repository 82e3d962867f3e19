// Quick start: stream a chat answer from a local model, then the same call through a Sipp gateway
// (and an OpenAI-compatible server) when one is given.
//   SIPP_MODEL=path/to/model.gguf node examples/quickstart.js
//   SIPP_GATEWAY_URL=http://127.0.0.1:8080 SIPP_GATEWAY_TARGET=local SIPP_GATEWAY_TOKEN=... ...
//   SIPP_REMOTE_URL=http://127.0.0.1:8080/v1 ...   # also ask an OpenAI-compatible server
const { Client } = require('..'); // require('sipp') once installed

async function main() {
  const client = new Client();
  const endpoints = [await client.add({ kind: 'local', id: 'local', modelPath: process.env.SIPP_MODEL || 'model.gguf' })];
  if (process.env.SIPP_GATEWAY_URL) {
    // the token comes from SIPP_GATEWAY_TOKEN unless token or tokenEnv says otherwise
    endpoints.push(await client.add({ kind: 'gateway', id: 'gateway', baseUrl: process.env.SIPP_GATEWAY_URL,
      target: process.env.SIPP_GATEWAY_TARGET || 'local' }));
  }
  if (process.env.SIPP_REMOTE_URL) {
    endpoints.push(await client.add({ kind: 'provider', id: 'remote', provider: 'openai_compatible',
      baseUrl: process.env.SIPP_REMOTE_URL, model: 'any' }));
  }
  for (const ep of endpoints) { // the same call, whichever endpoint answers
    const run = client.chat(ep, [{ role: 'user', content: 'Do you like to play outside?' }], { maxTokens: 48, temperature: 0 });
    for await (const batch of run) process.stdout.write(batch.text);
    const r = await run.response;
    console.log(`\n[${ep.id}] finish: ${r.finishReason}, ${r.usage.outputTokens} tokens`);
  }
  client.close();
}

main().catch((e) => { console.error(e); process.exit(1); });
