// Agent loop: offer the model tools, run the calls it makes with local functions, send the
// results back, print the answer. The same code on a local model (a chat template with tool
// support) or an OpenAI-compatible server.
//   SIPP_MODEL=path/to/model.gguf node examples/agent_loop.js
//   SIPP_REMOTE_URL=http://127.0.0.1:8080/v1 node examples/agent_loop.js
const { Client, toolResult } = require('..'); // require('sipp') once installed

const functions = {
  get_weather: ({ unit }) => (unit === 'fahrenheit' ? '70 F' : '21 C'),
  get_time: () => '12:00',
};
const tools = [
  { name: 'get_weather', description: 'The weather now, in a unit',
    parameters: { type: 'object', properties: { unit: { enum: ['celsius', 'fahrenheit'] } }, required: ['unit'] } },
  { name: 'get_time', description: 'The time now in a zone',
    parameters: { type: 'object', properties: { zone: { type: 'string' } }, required: ['zone'] } },
];

async function main() {
  const client = new Client();
  const ep = process.env.SIPP_REMOTE_URL
    ? await client.addProvider('agent', { baseUrl: process.env.SIPP_REMOTE_URL, model: 'any', allowPrivateNetwork: true })
    : await client.addLocal('agent', process.env.SIPP_MODEL || 'model.gguf');
  const messages = [{ role: 'user', content: 'What are the weather and the time?' }];
  for (let turn = 0; turn < 4; turn++) { // a bound on the turns: a model may keep calling
    const run = ep.chat(messages, { tools, maxTokens: 256 });
    for await (const d of run.deltas()) { // text as it comes; the calls are in the response
      if (d.kind === 'content') process.stdout.write(d.text);
    }
    const r = await run.response;
    if (r.finishReason !== 'tool_calls') {
      console.log(`\n[answer after ${turn} tool round(s)]`);
      break;
    }
    messages.push(r.message()); // the assistant turn with its calls
    for (const call of r.toolCalls) {
      const result = functions[call.name](JSON.parse(call.arguments));
      console.log(`\n[${call.name}(${call.arguments}) -> ${result}]`);
      messages.push(toolResult(call, result));
    }
  }
  client.close();
}

main().catch((e) => { console.error(e); process.exit(1); });
