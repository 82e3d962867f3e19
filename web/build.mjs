// Builds the package offline from src/: dist/sipp.js (ES module), dist/sipp-worker.js (the
// classic worker script; emscripten's output is loaded there with importScripts) and
// dist/types/ (TypeScript declarations, checked by tsc). The wasm artifacts come from
// scripts/build-wasm into dist/wasm/.
import { build } from 'esbuild';
import { execFileSync } from 'node:child_process';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
execFileSync(process.execPath, [`${here}/node_modules/typescript/bin/tsc`, '-p', `${here}/tsconfig.json`], { stdio: 'inherit' });
const common = { bundle: true, target: 'es2022', sourcemap: true, logLevel: 'warning' };
await build({ ...common, entryPoints: [`${here}/src/index.ts`], format: 'esm', outfile: `${here}/dist/sipp.js` });
await build({ ...common, entryPoints: [`${here}/src/worker.ts`], format: 'iife', outfile: `${here}/dist/sipp-worker.js` });
// The WebGPU pipeline alone (the tests' pages and the Node benchmark load it directly).
await build({ ...common, entryPoints: [`${here}/src/webgpu/index.ts`], format: 'esm', outfile: `${here}/dist/sipp-webgpu.js` });
