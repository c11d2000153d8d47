#!/usr/bin/env node
// mobilepre-bundle: build mobilepre bundles (or reuse a build output) and copy one web bundle into public/.
import { spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, realpathSync, renameSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";

const HELP = `usage: mobilepre-bundle [options]

Build size-budgeted bundles with mobilepre and copy one web profile's bundle into the app.

  --model PATH         .keras, .h5 or SavedModel folder (default: mobilepre's demo model)
  --calibration PATH   images for int8 calibration (and drift, unless --validation)
  --validation PATH    images to measure drift on
  --labels PATH        labels of the validation images
  --class-names PATH   class names, one per line
  --profiles PATH      a folder of profile TOML files, or one file (default: the shipped ones)
  --profile NAME       whose bundle to copy (needed when the build has several profiles)
  --config PATH        more build options, as a mobilepre TOML file
  --out DIR            the build output (default: node_modules/.cache/mobilepre-bundle/out)
  --from DIR           reuse this build output instead of building
  --public DIR         the app's static folder (default: public)
  --name NAME          the bundle's folder in it (default: the model's name, or "model")
  --verify-key PATH    require the bundle's signature by this public key
  --force              build even when nothing changed
  -h, --help           this text

Exit codes: 0 done, 1 a failed budget or check (the reason on stderr), 2 bad input.
mobilepre runs from MOBILEPRE, else PATH.`;

const PATHS = ["model", "calibration", "validation", "labels", "class-names", "profiles", "config"];
const CACHE = path.join("node_modules", ".cache", "mobilepre-bundle");

function fail(message, code = 2) {
  process.stderr.write(`mobilepre-bundle: ${message}\n`);
  process.exit(code);
}

function options() {
  const spec = { help: { type: "boolean", short: "h" }, force: { type: "boolean" } };
  for (const name of [...PATHS, "profile", "out", "from", "public", "name", "verify-key"]) spec[name] = { type: "string" };
  try {
    return parseArgs({ options: spec, allowPositionals: false }).values;
  } catch (error) {
    fail(`${error.message}; see mobilepre-bundle --help`);
  }
}

// Everything a build depends on, as one hash: file contents (folders recursively), options, mobilepre's version.
function fingerprint(opts, mobilepre, version) {
  const hash = createHash("sha256");
  hash.update(JSON.stringify({ version, mobilepre, opts }));
  const seen = new Set(); // a symlink loop in a data folder ends here
  const add = (file) => {
    const info = statSync(file);
    if (info.isDirectory()) {
      const real = realpathSync(file);
      if (seen.has(real)) return;
      seen.add(real);
      for (const entry of readdirSync(file).sort()) add(path.join(file, entry));
    } else if (info.isFile()) {
      hash.update(`\0${file}\0`);
      hash.update(readFileSync(file));
    }
  };
  for (const name of PATHS) {
    if (opts[name] === undefined) continue;
    if (!existsSync(opts[name])) fail(`--${name} ${opts[name]}: no such file or folder`);
    add(opts[name]);
  }
  return hash.digest("hex");
}

function version(mobilepre) {
  const probe = spawnSync(mobilepre, ["--version"], { encoding: "utf8" });
  if (probe.error) fail(`cannot start mobilepre ('${mobilepre}'): ${probe.error.code}; install it, or set MOBILEPRE to its path`);
  if (probe.status !== 0) fail(`'${mobilepre} --version' failed: ${(probe.stderr || probe.stdout).trim()}`);
  return probe.stdout.trim();
}

// Run mobilepre with its output shown; on failure exit with its code and its one line.
function run(mobilepre, args) {
  return new Promise((resolve) => {
    const child = spawn(mobilepre, args, { stdio: ["ignore", "inherit", "pipe"] });
    let reason = "";
    let pending = "";
    child.stderr.on("data", (chunk) => {
      process.stderr.write(chunk);
      pending += chunk.toString("utf8");
      const lines = pending.split("\n");
      pending = lines.pop();
      for (const line of lines) if (/^mobilepre: (error|failed): /.test(line)) reason = line;
    });
    child.on("error", (error) => fail(`cannot start mobilepre ('${mobilepre}'): ${error.code}`));
    child.on("close", (code, signal) => {
      if (code === 0) return resolve();
      if (/^mobilepre: (error|failed): /.test(pending)) reason = pending;
      if (reason) process.exit(code || 1); // mobilepre's own line is already on stderr
      fail(`mobilepre ${args[0]} ended with ${signal || `exit code ${code}`}`, code || 1);
    });
  });
}

const opts = options();
if (opts.help) {
  console.log(HELP);
  process.exit(0);
}
const mobilepre = process.env.MOBILEPRE || "mobilepre";
const name = opts.name || (opts.model ? path.basename(opts.model).replace(/\.(keras|h5)$/, "") : "model");
if (!/^[A-Za-z0-9._-]+$/.test(name) || name.startsWith(".")) fail(`--name ${name}: use letters, digits, '.', '_' and '-'`);
const dest = path.join(opts.public || "public", name);
const profileArgs = opts.profile ? ["--profile", opts.profile] : [];
let out = opts.from;

if (out === undefined) {
  out = opts.out || path.join(CACHE, "out");
  const stampFile = path.join(CACHE, `${createHash("sha256").update(path.resolve(out)).digest("hex").slice(0, 16)}.json`);
  const buildOpts = Object.fromEntries(Object.entries(opts).filter(([k]) => !["force", "public", "name", "verify-key"].includes(k)));
  const stamp = fingerprint(buildOpts, mobilepre, version(mobilepre));
  let previous = null;
  try {
    previous = JSON.parse(readFileSync(stampFile, "utf8")).fingerprint;
  } catch {}
  if (!opts.force && previous === stamp && existsSync(path.join(out, "report.json"))) {
    console.log(`mobilepre-bundle: ${out} is up to date (nothing it depends on changed)`);
  } else {
    const args = ["build"];
    if (opts.model) args.push(opts.model);
    args.push("--out", out, "--force");
    for (const flag of PATHS.slice(1)) if (opts[flag] !== undefined) args.push(`--${flag}`, opts[flag]);
    if (!opts.out) mkdirSync(CACHE, { recursive: true });
    await run(mobilepre, [...args, ...profileArgs]);
    mkdirSync(CACHE, { recursive: true });
    writeFileSync(`${stampFile}.tmp`, JSON.stringify({ fingerprint: stamp, out }) + "\n");
    renameSync(`${stampFile}.tmp`, stampFile);
  }
}
const copy = ["copy", out, dest, ...profileArgs];
if (opts["verify-key"]) copy.push("--verify-key", opts["verify-key"]);
await run(mobilepre, copy);
