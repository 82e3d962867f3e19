// Runs the official OpenAI Node SDK's audio.transcriptions.create, unchanged, against
// sipp-gateway's /v1/audio/transcriptions (multipart/form-data as the SDK builds it); prints the
// two answers (json and text) as one JSON object for test_audio.py to check. GW_FILE is a WAV
// and GW_MODEL a local target with an audio encoder.
import fs from "node:fs";
import OpenAI from "openai";

const client = new OpenAI({ baseURL: process.env.GW_URL, apiKey: "unused", maxRetries: 0 });
const model = process.env.GW_MODEL;
const json = await client.audio.transcriptions.create({
  file: fs.createReadStream(process.env.GW_FILE), model, temperature: 0 });
const text = await client.audio.transcriptions.create({
  file: fs.createReadStream(process.env.GW_FILE), model, temperature: 0, response_format: "text" });
console.log(JSON.stringify({ json, text }));
