// Runs the official OpenAI Node SDK's tool helper (chat.completions.runTools, finite and
// streaming) and its streaming accumulator (chat.completions.stream + finalChatCompletion),
// unchanged, against sipp-gateway; prints what it saw as one JSON object for
// test_gateway_tools.py to check. GW_MODEL is a local target whose random-weight model carries a
// tool-capable template: a named tool_choice makes the grammar force the call.
import OpenAI from "openai";

const client = new OpenAI({ baseURL: process.env.GW_URL, apiKey: "unused", maxRetries: 0 });
const model = process.env.GW_MODEL;
const out = { calls: [] };
const messages = [{ role: "user", content: "What time is it?" }];
const params = { type: "object", properties: { zone: { type: "string", enum: ["utc"] } },
                 required: ["zone"], additionalProperties: false };
const tools = [{ type: "function", function: {
  name: "get_time", description: "The time in a zone", parameters: params, parse: JSON.parse,
  function: (args) => { out.calls.push(args); return { time: "12:00", zone: args.zone }; } } }];
const toolChoice = { type: "function", function: { name: "get_time" } };

// The tool helper: the named call runs the function once with the parsed arguments and the
// runner keeps the assistant turn and the tool result.
const runner = client.chat.completions.runTools({ model, messages, tools, tool_choice: toolChoice,
                                                  temperature: 0, max_tokens: 200 });
const result = await runner.finalFunctionToolCallResult();
out.run = { result, roles: runner.messages.map((m) => m.role),
            call: runner.messages.find((m) => m.tool_calls)?.tool_calls[0] };

// The round trip: the SDK's own messages (assistant tool_calls with content null, the tool
// result) sent back; the model answers in text.
const answer = await client.chat.completions.create({
  model, messages: runner.messages, tools: tools.map((t) => ({ type: "function", function: {
    name: t.function.name, description: t.function.description, parameters: params } })),
  tool_choice: "none", max_tokens: 4 });
out.answer = { finish: answer.choices[0].finish_reason, content: answer.choices[0].message.content,
               tool_calls: answer.choices[0].message.tool_calls ?? null };

// The streaming tool helper.
const sruner = client.chat.completions.runTools({ model, messages, tools, tool_choice: toolChoice,
                                                  temperature: 0, max_tokens: 200, stream: true });
out.stream_run = { result: await sruner.finalFunctionToolCallResult(),
                   call: sruner.messages.find((m) => m.tool_calls)?.tool_calls[0] };

// The streaming accumulator: delta.tool_calls rebuilt into a chat.completion.
const stream = client.chat.completions.stream({
  model, messages, temperature: 0, max_tokens: 200, tool_choice: "required",
  parallel_tool_calls: false, tools: [{ type: "function", function: { name: "get_time",
    description: "The time in a zone", parameters: params } }] });
const argsDone = [];
stream.on("tool_calls.function.arguments.done", (e) => argsDone.push(e.arguments));
const final = await stream.finalChatCompletion();
out.accumulated = { finish: final.choices[0].finish_reason, message: final.choices[0].message,
                    args_done: argsDone };

console.log(JSON.stringify(out));
