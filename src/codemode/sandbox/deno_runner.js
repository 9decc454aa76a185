// The process side of DenoExecutor: a long-lived process that runs each program in a Worker of its own.
//
// The process has no --allow-* permission, and a Worker inherits its parent's permissions, so every
// program runs with none. The first stdin line is the host's hello: a nonce for this process, the
// source of deno_worker.js and how many Workers to keep started ahead of demand. Then the host sends
// one command per line:
//
//   start <run> <request>   hand the request to a fresh Worker (started ahead of time when possible)
//   reply <run> <json>      a call's answer, passed on to that run's Worker
//   kill <run>              terminate that run's Worker (at the end of a run, or at its time limit)
//
// and the process writes one line per event, each starting with the process nonce:
//
//   o <run> <text>          a message the run's Worker posted (the host checks the run's own nonce)
//   x <run> <json>          the Worker stopped on an uncaught error (a rejected promise nobody awaited)
//   e <run>                 the Worker was terminated: nothing of that run is left in this process
//
// A Worker is never reused: each program gets a fresh isolate (globals, prototypes, timers, module
// cache), and terminating it ends whatever the program left running.

const stdout = Deno.stdout;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

function write(text) {
  const bytes = encoder.encode(text);
  let offset = 0;
  while (offset < bytes.length) offset += stdout.writeSync(bytes.subarray(offset));
}

// Read with `Deno.stdin.read`, not through a ReadableStream: a command reaches its Worker ~0.1 ms sooner.
const chunk = new Uint8Array(1 << 16);
let buffered = "";
async function readLine() {
  for (;;) {
    const newline = buffered.indexOf("\n");
    if (newline >= 0) {
      const line = buffered.slice(0, newline);
      buffered = buffered.slice(newline + 1);
      return line;
    }
    const read = await Deno.stdin.read(chunk);
    if (read === null) return null;
    buffered += decoder.decode(chunk.subarray(0, read), { stream: true });
  }
}

let nonce = "";
let workerURL = "";
let warm = 0;
const spare = []; // Workers started for no run yet, oldest first
const runs = new Map(); // run id -> its Worker

function start() {
  const entry = { worker: new Worker(workerURL, { type: "module" }), run: null };
  entry.worker.onmessage = (event) => {
    const data = event.data;
    if (entry.run === null || data === "") return; // "": the Worker warming its side of the channel
    // The runner posts single-line strings; anything else is not from it: the host fails the run.
    write(nonce + "o " + entry.run + " " + (typeof data === "string" && !data.includes("\n") ? data : "!") + "\n");
  };
  entry.worker.onerror = (event) => {
    event.preventDefault();
    if (entry.run !== null) write(nonce + "x " + entry.run + " " + JSON.stringify(String(event.message)) + "\n");
    else spare.splice(spare.indexOf(entry), 1); // a spare that failed to start: the next run gets another
  };
  entry.worker.onmessageerror = () => {
    if (entry.run !== null) write(nonce + "o " + entry.run + " !\n");
  };
  entry.worker.postMessage(""); // warms the Worker's message path before a run depends on it
  return entry;
}

// Spares are replaced when a run ends, so starting one (an isolate: milliseconds of CPU) does not
// compete with the run that just took one; only when none is left does a start begin one at once.
let toppingUp = false;
function topUp() {
  if (toppingUp) return;
  toppingUp = true;
  setTimeout(() => {
    toppingUp = false;
    while (spare.length < warm) spare.push(start());
  }, 0);
}

function command(line) {
  const first = line.indexOf(" ");
  const second = line.indexOf(" ", first + 1);
  const verb = line.slice(0, first);
  const run = second < 0 ? line.slice(first + 1) : line.slice(first + 1, second);
  const rest = second < 0 ? "" : line.slice(second + 1);
  if (verb === "start") {
    const entry = spare.shift() ?? start();
    entry.run = run;
    runs.set(run, entry);
    entry.worker.postMessage(rest);
    if (!spare.length) topUp();
  } else if (verb === "reply") {
    runs.get(run)?.worker.postMessage(rest);
  } else if (verb === "kill") {
    const entry = runs.get(run);
    runs.delete(run);
    entry?.worker.terminate();
    write(nonce + "e " + run + "\n");
    topUp();
  }
}

async function main() {
  const hello = JSON.parse(await readLine());
  nonce = hello.nonce;
  warm = hello.warm;
  workerURL = URL.createObjectURL(new Blob([hello.worker], { type: "text/javascript" }));
  while (spare.length < warm) spare.push(start());
  write("ready\n");
  for (;;) {
    const line = await readLine();
    if (line === null) Deno.exit(0);
    command(line);
  }
}

main();
