// Runs the official Anthropic Node SDK, unchanged, against sipp-gateway's /v1/messages with
// tools: a forced tool_use answer, the round trip with a tool_result, and the SDK's stream
// helper assembling a tool_use block from input_json_delta events. Prints what it saw as one
// JSON object for test_gateway_tools.py to check. GW_MODEL has a tool-capable template.
import Anthropic from "@anthropic-ai/sdk";

const client = new Anthropic({ baseURL: process.env.GW_URL, apiKey: "unused", maxRetries: 0 });
const model = process.env.GW_MODEL;
const out = {};
const tools = [{ name: "get_time", description: "The time in a zone",
                 input_schema: { type: "object", properties: { zone: { type: "string", enum: ["utc"] } },
                                 required: ["zone"], additionalProperties: false } }];
const messages = [{ role: "user", content: "What time is it?" }];
const tool_choice = { type: "tool", name: "get_time" };

const msg = await client.messages.create({ model, max_tokens: 200, temperature: 0, messages, tools,
                                           tool_choice });
out.message = { stop_reason: msg.stop_reason, content: msg.content };

const use = msg.content.find((b) => b.type === "tool_use");
const answer = await client.messages.create({
  model, max_tokens: 4, tools, tool_choice: { type: "none" },
  messages: [...messages, { role: "assistant", content: msg.content },
             { role: "user", content: [{ type: "tool_result", tool_use_id: use.id,
                                         content: JSON.stringify({ time: "12:00" }) }] }] });
out.answer = { stop_reason: answer.stop_reason, types: answer.content.map((b) => b.type) };

const stream = client.messages.stream({ model, max_tokens: 200, temperature: 0, messages, tools,
                                        tool_choice });
const partial = [];
stream.on("inputJson", (delta) => partial.push(delta));
const final = await stream.finalMessage();
out.stream = { stop_reason: final.stop_reason, content: final.content, pieces: partial.length,
               joined: partial.join("") };

console.log(JSON.stringify(out));
