// The sandbox side of DenoExecutor: runs one program in a fresh Worker, which is terminated after it.
//
// deno_runner.js starts this script as a module Worker (a V8 isolate of its own) inside a process
// with no --allow-* permission, so the Worker has none either. The script keeps private references
// to `postMessage` and the few built-ins it needs, removes `Deno`, `process`, `postMessage` and
// `Worker` from the global scope, and waits for one request. Every message it posts starts with a
// nonce the host chose for this run; the host fails the run on any other output. Frames are written
// by the runner's own serializer, which never consults `toJSON` or prototype methods, so patching
// built-ins cannot reshape them.

const inspect = Deno.inspect;
const memoryUsage = Deno.memoryUsage;
const post = globalThis.postMessage.bind(globalThis);
const listen = globalThis.addEventListener.bind(globalThis);
const stringify = JSON.stringify;
const parse = JSON.parse;
const create = Object.create;
const freeze = Object.freeze;
const keys = Object.keys;
const isArray = Array.isArray;
const createObjectURL = URL.createObjectURL;
const TAG = "__codemode__";
const SAFE = 2n ** 53n;

// Nothing below may reach stdio or the host channel, spawn another isolate (a Worker would get a fresh
// `Deno`), or keep state for the next run (storage is keyed by the process's script).
for (const name of [
  "Deno",
  "process",
  "Worker",
  "SharedWorker",
  "localStorage",
  "sessionStorage",
  "caches",
  "postMessage",
  "close",
  "onmessage",
  "onmessageerror",
]) {
  try {
    delete globalThis[name];
  } catch {
    // not deletable: the nonce still marks what the runner sent
  }
}

// -- messages from the host: the request first, then call replies ------------------

const inbox = [];
let wake = null;
listen("message", (event) => {
  inbox.push(event.data);
  if (wake) {
    const resolve = wake;
    wake = null;
    resolve();
  }
});

async function readLine() {
  while (!inbox.length) await new Promise((resolve) => (wake = resolve));
  return String(inbox.shift());
}

// -- the codec (the JavaScript half of codec.py) ----------------------

function toBase64(bytes) {
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

function fromBase64(text) {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

function tagged(tag, key, value) {
  const out = create(null);
  out[TAG] = tag;
  out[key] = value;
  return out;
}

// The host's bounds on a value crossing the boundary (sent with the request): nesting depth, number of
// values (a value shared by reference counts every time it appears, as JSON repeats it), and JSON bytes.
let limits = { depth: 200, nodes: 500_000, bytes: 16_000_000 };

class ValueLimit extends Error {}

// Counted while walking, so a value that doubles a shared array twenty times is refused after the first
// `limits.nodes` values instead of being expanded.
function encode(value) {
  return encodeValue(value, { nodes: 0, bytes: 0 }, 0, new Set());
}

function count(budget, bytes) {
  budget.nodes += 1;
  budget.bytes += bytes;
  if (budget.nodes > limits.nodes || budget.bytes > limits.bytes) throw new ValueLimit("too large");
}

function bigint(value) {
  const text = value.toString();
  if (text.length <= 3900) return text;
  return value < 0n ? "-0x" + (-value).toString(16) : "0x" + value.toString(16);
}

function encodeValue(value, budget, depth, seen) {
  if (value === null || value === undefined) return null;
  switch (typeof value) {
    case "boolean":
      count(budget, 4);
      return value;
    case "string":
      count(budget, value.length + 2);
      return value;
    case "number":
      count(budget, 1);
      if (Number.isFinite(value)) return value;
      return tagged("float", "value", Number.isNaN(value) ? "nan" : value > 0 ? "inf" : "-inf");
    case "bigint": {
      const text = bigint(value);
      count(budget, text.length + 30);
      return tagged("bigint", "value", text);
    }
    case "function":
    case "symbol":
      return undefined;
  }
  if (depth > limits.depth) throw new TypeError(`nesting deeper than ${limits.depth} levels`);
  if (ArrayBuffer.isView(value) || value instanceof ArrayBuffer) {
    const bytes = value instanceof ArrayBuffer ? new Uint8Array(value) : new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
    count(budget, Math.ceil(bytes.length / 3) * 4 + 30);
    return tagged("bytes", "base64", toBase64(bytes));
  }
  if (value instanceof Date) {
    count(budget, 40);
    if (Number.isNaN(value.getTime())) return null;
    const year = value.getUTCFullYear();
    const iso = value.toISOString();
    // Python's datetime holds years 1 to 9999: any other date crosses as its ISO 8601 text.
    return year >= 1 && year <= 9999 ? tagged("datetime", "iso", iso.replace("Z", "+00:00")) : iso;
  }
  if (seen.has(value)) throw new TypeError("the value contains a cycle");
  seen.add(value);
  try {
    if (isArray(value)) {
      count(budget, 1 + value.length);
      const out = [];
      for (let i = 0; i < value.length; i++) out[i] = encodeValue(value[i], budget, depth + 1, seen) ?? null;
      return out;
    }
    if (value instanceof Set) {
      count(budget, 1 + value.size);
      return tagged("set", "items", [...value].map((v) => encodeValue(v, budget, depth + 1, seen) ?? null));
    }
    if (value instanceof Map) {
      count(budget, 1 + value.size);
      const entries = [...value].map(([k, v]) => [
        encodeValue(k, budget, depth + 1, seen) ?? null,
        encodeValue(v, budget, depth + 1, seen) ?? null,
      ]);
      return tagged("map", "entries", entries);
    }
    const names = keys(value);
    count(budget, 1 + names.length);
    const out = create(null);
    for (const key of names) {
      budget.bytes += key.length + 3;
      const item = encodeValue(value[key], budget, depth + 1, seen);
      if (item !== undefined) out[key] = item;
    }
    return TAG in out ? tagged("object", "value", out) : out;
  } finally {
    seen.delete(value);
  }
}

function decode(data) {
  if (isArray(data)) return data.map(decode);
  if (data === null || typeof data !== "object") return data;
  const tag = data[TAG];
  if (tag === undefined) {
    const out = {};
    for (const key of keys(data)) out[key] = decode(data[key]);
    return out;
  }
  switch (tag) {
    case "bytes":
      return fromBase64(data.base64);
    case "bigint": {
      const text = String(data.value);
      const n = text.startsWith("-") ? -BigInt(text.slice(1)) : BigInt(text);
      return n >= -SAFE && n <= SAFE ? Number(n) : n;
    }
    case "datetime":
    case "date":
      return new Date(data.iso);
    case "float":
      return data.value === "nan" ? NaN : data.value === "inf" ? Infinity : -Infinity;
    case "set":
      return new Set(data.items.map(decode));
    case "map":
      return new Map(data.entries.map(([k, v]) => [decode(k), decode(v)]));
    case "object": {
      const out = {};
      for (const key of keys(data.value)) out[key] = decode(data.value[key]);
      return out;
    }
  }
  throw new TypeError(`unknown codemode tag ${tag}`);
}

// -- talking to the host --------------------------------------------------------

let nonce = "";

// JSON text of encoded data (plain values, arrays, null-prototype objects), without `toJSON`.
function serialize(value) {
  if (value === null || value === undefined) return "null";
  if (typeof value === "string") return stringify(value);
  if (typeof value === "number") return Number.isFinite(value) ? "" + value : "null";
  if (typeof value === "boolean") return value ? "true" : "false";
  let out = "";
  if (isArray(value)) {
    for (let i = 0; i < value.length; i++) out += (i ? "," : "") + serialize(value[i]);
    return "[" + out + "]";
  }
  const names = keys(value);
  for (let i = 0; i < names.length; i++) {
    out += (i ? "," : "") + stringify(names[i]) + ":" + serialize(value[names[i]]);
  }
  return "{" + out + "}";
}

let finished = false;
let memoryLimit = Infinity;

function send(frame) {
  if (finished) return;
  if (frame.t === "done") finished = true;
  else if (overMemory()) return;
  post(nonce + serialize(frame));
}

// V8's heap limit is per isolate; memory outside the heap (ArrayBuffer contents) is checked here, at
// every frame and at the end, so a run holding more than its limit ends with MemoryError. (The
// process's data limit bounds what a run can allocate between two checks.)
function overMemory() {
  if (finished || memoryUsage().external <= memoryLimit) return false;
  const done = frame({ t: "done", ok: false, memory: true });
  if (logDropped) done.dropped = logDropped;
  send(done);
  return true;
}

function frame(fields) {
  const out = create(null);
  for (const key of keys(fields)) out[key] = fields[key];
  return out;
}

const pending = new Map();
let nextId = 0;

// The step whose function is running, per async context: a step is replayed without running its
// function, so what that function calls would shift every later sequence number. Loaded with the
// first step, so a Worker that runs no step does not pay for the Node compatibility layer.
let stepScope = null;
const INSIDE_STEP_OK = new Set(["search", "describe"]);

function call(namespace, method, args) {
  const step = stepScope?.getStore();
  if (step !== undefined && !(namespace === "codemode" && INSIDE_STEP_OK.has(method))) {
    const what = namespace === "codemode" ? `codemode.${method === "step_decide" ? "step" : method}` : `${namespace}.${method}`;
    return Promise.reject(
      new Error(
        `${what} cannot be called while codemode.step "${step}" is running: a step's function is skipped on ` +
          "replay, so it must not call tools or other steps. Call the tool outside the step and pass its result " +
          "in, or make the call a step of its own after this one.",
      ),
    );
  }
  let encoded;
  let refused;
  try {
    encoded = encode(args === undefined ? {} : args);
  } catch (error) {
    // Too large, too deep or cyclic: the host answers with the error (the same text as for Python).
    if (!(error instanceof ValueLimit || error instanceof TypeError)) {
      return Promise.reject(new TypeError(`Arguments to ${namespace}.${method} cannot be sent: ${error.message}`));
    }
    refused = { large: error instanceof ValueLimit, reason: String(error.message) };
    encoded = null;
  }
  const id = nextId++;
  const promise = new Promise((resolve, reject) => pending.set(id, { resolve, reject }));
  send(frame(refused ? { t: "call", id, ns: namespace, m: method, a: null, refused: frame(refused) } : { t: "call", id, ns: namespace, m: method, a: encoded }));
  return promise;
}

const ERRORS = { TypeError, RangeError, SyntaxError, ReferenceError };

async function receive() {
  for (;;) {
    const message = parse(await readLine());
    const waiter = pending.get(message.id);
    if (!waiter) continue;
    pending.delete(message.id);
    if (message.ok) {
      waiter.resolve(decode(message.value));
    } else {
      const Kind = ERRORS[message.kind] ?? Error;
      const error = new Kind(message.error);
      if (!(message.kind in ERRORS) && message.kind) error.name = message.kind;
      waiter.reject(error);
    }
  }
}

// -- the console ------------------------------------------------------------------

// Each line goes to the host at once, so a pass that pauses or times out keeps its output.
let logSize = 0;
let logDropped = 0; // characters not sent: the host adds a line saying how many
const MAX_LOG_CHARS = 1_000_000;

function logger(prefix) {
  return (...parts) => {
    let line = prefix;
    for (let i = 0; i < parts.length; i++) {
      const part = parts[i];
      line += (i ? " " : "") + (typeof part === "string" ? part : inspect(part, { colors: false }));
    }
    if (logDropped || logSize + line.length > MAX_LOG_CHARS) {
      if (!logDropped) send(frame({ t: "log", s: "", dropped: true })); // marked now, in case no `done` follows
      logDropped += line.length + 1;
      return;
    }
    logSize += line.length;
    send(frame({ t: "log", s: line }));
  };
}

const log = logger("");
globalThis.console = freeze({
  log,
  info: log,
  debug: log,
  trace: log,
  warn: logger("[warn] "),
  error: logger("[error] "),
});

// -- the program ------------------------------------------------------------------

const TS = "application/typescript";
const JS = "text/javascript";

function describeError(error, code) {
  if (!(error instanceof Error)) return `Uncaught ${typeof error === "string" ? error : inspect(error)}`;
  // The program runs with no permission on purpose: Deno's "run again with the --allow-net flag" is no advice.
  let message = String(error.message).replace(/,? run again with the --allow-\w+ flag/, "");
  let name = String(error.name);
  let where = String(error.stack ?? "");
  const syntax = /^SyntaxError: ([^\n]*)/.exec(message);
  if (syntax) {
    // Deno reports a program that does not parse as a TypeError wrapping the parser's code frame, numbered
    // by the wrapped module: keep the parser's message; the line comes from the frame's location.
    name = "SyntaxError";
    where = message;
    message = syntax[1];
  }
  let text = `${name}: ${message}`;
  const match = PROGRAM_FRAME.exec(where);
  if (match) {
    const line = Number(match[1]);
    const shown = (code.split("\n")[line - 1] ?? "").trim();
    text += `\n  at line ${line}` + (shown ? `: ${shown}` : "");
  }
  return text;
}

// A data: URL needs no trip through the blob store (a tenth of the time of a blob: URL). Loaded as
// JavaScript first; what does not parse as JavaScript is loaded as TypeScript, whose types Deno
// strips (a few milliseconds more). Evaluating the module only creates the program's function, so an
// import that fails is a program that does not parse. Stack frames show such a URL elided, but with
// its line and column at the end; the URL has no other colon past its comma (they are %-encoded).
const PROGRAM_FRAME = /data:(?:text\/javascript|application\/typescript),[^\s:]*:(\d+):(\d+)/;

async function load(code) {
  const source = encodeURIComponent(`export default (${code}\n);\n`);
  for (const type of [JS, TS]) {
    try {
      return (await import(`data:${type},${source}`)).default;
    } catch (error) {
      if (type === TS) throw error;
    }
  }
}

async function main() {
  // Load one TypeScript module now, while the Worker waits to be used, so the program's own import
  // does not pay for the first use of the transpiler in this isolate.
  // Warm up what every run uses, while the Worker waits to be used: both kinds of program import and
  // the runner's own functions (compiled on first use). Not timers: setting them up costs an isolate
  // ~15 ms, which only the programs that use them pay.
  await load("async (): Promise<number> => 1");
  await (await load("async () => 1"))();
  serialize(encode(decode(parse('{"a": [1, "b", null, {"__codemode__": "bigint", "value": "1"}]}'))));
  // The run's `codemode` object and first use of what the end of a run calls, built while waiting too.
  const api = freeze({
    search: (query) => call("codemode", "search", { query: String(query) }),
    describe: (target) => call("codemode", "describe", { target: String(target) }),
    run: (name, input) => call("codemode", "run", { name: String(name), input }),
    step: async (name, fn) => {
      stepScope ??= new (await import("node:async_hooks")).AsyncLocalStorage();
      const decision = await call("codemode", "step_decide", { name: String(name) });
      if (decision.replay) return decision.value;
      const token = decision.token;
      let value;
      try {
        value = await stepScope.run(String(name), fn);
      } catch (error) {
        const kind = error instanceof Error ? String(error.name) : "Error";
        const message = error instanceof Error ? String(error.message) : String(error);
        await call("codemode", "step_fail", { token, kind, message });
        throw error;
      }
      return await call("codemode", "step_record", { token, value });
    },
  });
  memoryUsage();
  serialize(frame({ t: "done", ok: true, value: encode(1) ?? null }));
  post(""); // the first message a Worker posts costs more than the next: the runner drops this one
  let line;
  while (!(line = await readLine())); // the process posts an empty message first, to warm the channel
  const request = parse(line);
  nonce = request.nonce;
  if (request.limits) limits = request.limits;
  if (request.limits?.memory) memoryLimit = request.limits.memory;
  // The program's module starts loading at once; the globals below are in place before it is evaluated
  // (a later turn: `import()` never evaluates a module before it returns).
  const loading = load(request.code);
  receive();
  const namespaces = request.namespaces;
  for (const name of keys(namespaces)) {
    const ns = create(null);
    for (const method of namespaces[name]) ns[method] = (args) => call(name, method, args);
    globalThis[name] = freeze(ns);
  }
  globalThis.codemode = api;
  let done;
  try {
    const program = await loading;
    const result = await program(decode(request.input));
    if (overMemory()) return;
    try {
      done = frame({ t: "done", ok: true, value: encode(result) ?? null });
    } catch (error) {
      if (!(error instanceof ValueLimit || error instanceof TypeError)) throw error;
      done = frame({ t: "done", ok: false, refused: frame({ large: error instanceof ValueLimit, reason: String(error.message) }) });
    }
  } catch (error) {
    done = frame({ t: "done", ok: false, error: describeError(error, request.code) });
  }
  if (logDropped) done.dropped = logDropped;
  send(done);
}

main();
