// Runs the official OpenAI Node SDK, unchanged, against sipp-gateway (base URL = gateway + /v1)
// and prints what it saw as one JSON object for test_gateway_sdk.py to check.
import OpenAI from "openai";

const client = new OpenAI({ baseURL: process.env.GW_URL, apiKey: process.env.GW_KEY, maxRetries: 0 });
const out = {};
const messages = [{ role: "user", content: "Hi" }];

out.models = (await client.models.list()).data.map((m) => m.id);

const chat = await client.chat.completions.create({ model: "local", messages, max_tokens: 4 });
out.chat = { object: chat.object, role: chat.choices[0].message.role,
             content: chat.choices[0].message.content, usage: chat.usage,
             finish: chat.choices[0].finish_reason };

const stream = await client.chat.completions.create({
  model: "local", messages, max_tokens: 5, stream: true, stream_options: { include_usage: true } });
let text = "", chunks = 0, usage = null, finish = null;
for await (const chunk of stream) {
  chunks++;
  if (chunk.usage) usage = chunk.usage;
  for (const c of chunk.choices) {
    text += c.delta?.content ?? "";
    if (c.finish_reason) finish = c.finish_reason;
  }
}
out.stream = { text, chunks, usage, finish };

const comp = await client.completions.create({ model: "local", prompt: "Once upon a time", max_tokens: 3 });
out.completion = { object: comp.object, text: comp.choices[0].text, finish: comp.choices[0].finish_reason };

const cstream = await client.completions.create({ model: "local", prompt: "Once", max_tokens: 3, stream: true });
let ctext = "";
for await (const chunk of cstream) ctext += chunk.choices[0]?.text ?? "";
out.completion_stream = ctext;

const emb = await client.embeddings.create({ model: "local", input: ["hello", "world"] });
out.embeddings = emb.data.map((d) => d.embedding.length);
const embf = await client.embeddings.create({ model: "local", input: "hello", encoding_format: "float" });
out.embedding_float = embf.data[0].embedding.slice(0, 3);
const embb = await client.embeddings.create({ model: "local", input: "hello" });
out.embedding_b64 = embb.data[0].embedding.slice(0, 3);

try {
  await client.chat.completions.create({ model: "nope", messages });
} catch (e) {
  out.error = { status: e.status, code: e.code, type: e.type, name: e.constructor.name };
}
try {
  await new OpenAI({ baseURL: process.env.GW_URL, apiKey: "wrong", maxRetries: 0 })
    .chat.completions.create({ model: "local", messages });
} catch (e) {
  out.auth_error = { status: e.status, name: e.constructor.name };
}
console.log(JSON.stringify(out));
