// The Web Worker entry: a Host fed by the page's messages (see host.ts).
import { Host } from './host.js';
import type { HostRequest } from './protocol.js';

const scope = self as unknown as { postMessage(m: unknown): void; onmessage: ((e: MessageEvent) => void) | null };
const host = new Host((e) => scope.postMessage(e), false);
scope.onmessage = (e: MessageEvent) => { void host.handle(e.data as HostRequest); };
