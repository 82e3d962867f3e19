// Generated from include/sipp_settings.h by tests/bindings/settings_gen.c: do not edit.
// Update with scripts/gen-settings (the ctest settings_generated fails while it is stale).

/** Options of a local model endpoint (`sipp_local_params`; the model path is addLocal's
 *  argument). Absent = the library's default. */
export interface LocalOptions {
  /** context tokens per sequence (0 = model's, max 4096) */
  nCtx?: number;
  /** CPU threads (0 = the CPUs it may use, max 16) */
  nThreads?: number;
  /** tokens per llama.cpp step (default 512) */
  nBatch?: number;
  /** layers on the GPU, -1 = all (GPU builds) */
  nGpuLayers?: number;
  /** sequences decoded together (0 = 4) */
  nParallel?: number;
  /** requests admitted into sequences at once (0 = n_parallel) */
  maxRunning?: number;
  /** requests waiting for a sequence before SIPP_BUSY (0 = 256) */
  maxQueued?: number;
  /** tokens decoded per engine tick (0 = n_batch) */
  tickBudget?: number;
  /** most prompt tokens one request prefills per tick (0 = no cap) */
  prefillChunk?: number;
  /** generated text held for a consumer that does not read (0 = 256 KiB) */
  streamBufferBytes?: number;
  /** when the context fills, drop old tokens and go on */
  contextShift?: boolean;
  /** tokens kept at the start when the context shifts */
  nKeep?: number;
  /** RAM budget of prefix snapshots (0 = 1 GiB) */
  cacheRamBytes?: number;
  /** disk tier of prefix snapshots (survives restarts) */
  cacheDir?: string;
  /** disk budget of the snapshot directory (0 = 4 GiB) */
  cacheDiskBytes?: number;
  /** refuse to load unless the file's SHA-256 is HEX */
  sha256?: string;
  /** watchdog: no scheduler round for this long is a stall (0 = 60000) */
  stallAlarmMs?: number;
  /** the model's projector GGUF: images/audio in (llama.cpp's mmproj) */
  mmproj?: string;
  /** inter-token latency target while a prompt prefills (0 = 400) */
  itlTargetMs?: number;
  /** sequences kept warm in memory (0 = n_parallel) */
  nResident?: number;
}
