#!/usr/bin/env node
// Runs an ONNX model in ONNX Runtime (onnxruntime-node, CPU) on one .npy input and writes the
// first output as .npy. General enough for benchmarks:
//   node tools/ort/run.js MODEL.onnx INPUT.npy OUTPUT.npy [--threads N] [--iters N] [--warmup N]
//                         [--profile PREFIX] [--opt all|extended|basic|disabled]
// --threads: intraOpNumThreads (default 1; inter-op 1, sequential execution).
// --iters / --warmup: time that many runs after the warm-up ones (default 1 / 0); prints one JSON
//   line {"model", "threads", "iters", "median_ms", "min_ms", "input": [dims], "output": [dims]}.
// --profile: ORT's profiler, its JSON trace written as PREFIX_<date>.json (path printed).
// graphOptimizationLevel is 'all' unless --opt. Finds onnxruntime-node in CTNET_ORT_DIR or the
// cache folder that tools/ort/install.sh fills (run it first).
'use strict';
const fs = require('fs');
const path = require('path');
const os = require('os');

function usage(msg) {
  if (msg) console.error('run.js: ' + msg);
  console.error('usage: node run.js MODEL.onnx INPUT.npy OUTPUT.npy [--threads N] [--iters N] [--warmup N] ' +
                '[--profile PREFIX] [--opt all|extended|basic|disabled]');
  process.exit(2);
}

function loadOrt() {
  const cache = process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache');
  const dir = process.env.CTNET_ORT_DIR || path.join(cache, 'ctnet', 'ort');
  try {
    return require(path.join(dir, 'node_modules', 'onnxruntime-node'));
  } catch (e) {
    console.error(`run.js: onnxruntime-node not found in ${dir} (run tools/ort/install.sh): ${e.message}`);
    process.exit(1);
  }
}

function readNpy(file) {
  const b = fs.readFileSync(file);
  if (b.length < 10 || b.toString('latin1', 0, 6) !== '\x93NUMPY') throw new Error(`${file}: not a .npy file`);
  const major = b[6];
  const hlen = major === 1 ? b.readUInt16LE(8) : b.readUInt32LE(8);
  const start = major === 1 ? 10 : 12;
  const header = b.toString('latin1', start, start + hlen);
  if (!/'descr':\s*'<f4'/.test(header)) throw new Error(`${file}: want float32 little-endian ('<f4'), got ${header}`);
  if (/'fortran_order':\s*True/.test(header)) throw new Error(`${file}: Fortran order is not supported`);
  const m = /'shape':\s*\(([^)]*)\)/.exec(header);
  if (!m) throw new Error(`${file}: no shape in the header`);
  const dims = m[1].split(',').map((s) => s.trim()).filter((s) => s.length).map(Number);
  const n = dims.reduce((a, d) => a * d, 1);
  const off = start + hlen;
  if (b.length - off !== n * 4) throw new Error(`${file}: ${b.length - off} bytes of data, the shape needs ${n * 4}`);
  const data = new Float32Array(n);
  for (let i = 0; i < n; ++i) data[i] = b.readFloatLE(off + 4 * i);
  return { dims, data };
}

function writeNpy(file, dims, data) {
  let header = `{'descr': '<f4', 'fortran_order': False, 'shape': (${dims.join(', ')}${dims.length === 1 ? ',' : ''}), }`;
  const pad = 64 - ((10 + header.length + 1) % 64);
  header += ' '.repeat(pad % 64) + '\n';
  const h = Buffer.alloc(10);
  h.write('\x93NUMPY', 0, 'latin1');
  h[6] = 1;
  h[7] = 0;
  h.writeUInt16LE(header.length, 8);
  const body = Buffer.alloc(data.length * 4);
  for (let i = 0; i < data.length; ++i) body.writeFloatLE(data[i], 4 * i);
  const tmp = file + '.tmp';
  fs.writeFileSync(tmp, Buffer.concat([h, Buffer.from(header, 'latin1'), body]));
  fs.renameSync(tmp, file);
}

async function main() {
  const args = process.argv.slice(2);
  const pos = [];
  const opt = { threads: 1, iters: 1, warmup: 0, profile: null, level: 'all' };
  for (let i = 0; i < args.length; ++i) {
    const a = args[i];
    const next = () => { if (i + 1 >= args.length) usage(`${a} needs a value`); return args[++i]; };
    if (a === '--threads') opt.threads = parseInt(next(), 10);
    else if (a === '--iters') opt.iters = parseInt(next(), 10);
    else if (a === '--warmup') opt.warmup = parseInt(next(), 10);
    else if (a === '--profile') opt.profile = next();
    else if (a === '--opt') opt.level = next();
    else if (a.startsWith('--')) usage(`unknown option ${a}`);
    else pos.push(a);
  }
  if (pos.length !== 3) usage();
  if (!(opt.threads >= 1) || !(opt.iters >= 1) || !(opt.warmup >= 0)) usage('--threads and --iters must be positive');
  if (!['all', 'extended', 'basic', 'disabled'].includes(opt.level)) usage(`--opt ${opt.level}`);
  const [model, inFile, outFile] = pos;
  const ort = loadOrt();
  const input = readNpy(inFile);
  const so = {
    intraOpNumThreads: opt.threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: opt.level,
    executionProviders: ['cpu'],
  };
  if (opt.profile) { so.enableProfiling = true; so.profileFilePrefix = opt.profile; }
  const session = await ort.InferenceSession.create(model, so);
  if (session.inputNames.length !== 1) throw new Error(`${model}: the model has ${session.inputNames.length} inputs, want 1`);
  const feeds = { [session.inputNames[0]]: new ort.Tensor('float32', input.data, input.dims) };
  let out;
  for (let i = 0; i < opt.warmup; ++i) await session.run(feeds);
  const times = [];
  for (let i = 0; i < opt.iters; ++i) {
    const t0 = process.hrtime.bigint();
    out = await session.run(feeds);
    times.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  const y = out[session.outputNames[0]];
  writeNpy(outFile, y.dims.map(Number), y.data);
  if (opt.profile) {
    const f = session.endProfiling ? session.endProfiling() : undefined;
    if (f) console.error(`run.js: profile written to ${f}`);
  }
  const sorted = [...times].sort((a, b) => a - b);
  console.log(JSON.stringify({
    model, threads: opt.threads, iters: opt.iters, median_ms: sorted[Math.floor(sorted.length / 2)],
    min_ms: sorted[0], input: input.dims, output: y.dims.map(Number),
  }));
}

main().catch((e) => { console.error('run.js: ' + (e && e.message ? e.message : e)); process.exit(1); });
