// Runs the official Anthropic Node SDK, unchanged, against sipp-gateway's /v1/messages (base URL
// = the gateway's origin) and prints what it saw as one JSON object for
// test_gateway_anthropic.py to check.
import Anthropic from "@anthropic-ai/sdk";

const client = new Anthropic({ baseURL: process.env.GW_URL, apiKey: process.env.GW_KEY, maxRetries: 0 });
const out = {};
const messages = [{ role: "user", content: "Hi" }];

const msg = await client.messages.create({ model: "local", max_tokens: 4, messages });
out.message = { type: msg.type, role: msg.role, id: msg.id, content: msg.content,
                stop_reason: msg.stop_reason, usage: msg.usage };

// the SDK's stream helper: text events, then the message it assembled from the events
const stream = client.messages.stream({
  model: "local", max_tokens: 5, system: "You answer briefly.",
  messages: [{ role: "user", content: [{ type: "text", text: "Tell me" }, { type: "text", text: "a story" }] }] });
let text = "";
stream.on("text", (t) => { text += t; });
const final = await stream.finalMessage();
out.stream = { text, final_text: final.content.map((b) => b.text).join(""),
               stop_reason: final.stop_reason, usage: final.usage };

// the raw event stream
const raw = await client.messages.create({ model: "local", max_tokens: 3, messages, stream: true });
out.events = [];
for await (const ev of raw) out.events.push(ev.type);

for (const [name, fn] of [
  ["not_found", () => client.messages.create({ model: "nope", max_tokens: 4, messages })],
  ["bad_request", () => client.messages.create({ model: "local", max_tokens: 4,
                                                 messages: [{ role: "system", content: "x" }] })],
  ["auth", () => new Anthropic({ baseURL: process.env.GW_URL, apiKey: "wrong", maxRetries: 0 })
      .messages.create({ model: "local", max_tokens: 4, messages })],
]) {
  try {
    await fn();
    out[name] = "no error";
  } catch (e) {
    out[name] = { status: e.status, name: e.constructor.name, type: e.error?.error?.type };
  }
}
console.log(JSON.stringify(out));
