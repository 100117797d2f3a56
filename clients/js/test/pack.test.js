// `npm pack` makes an installable package holding what the README and
// package.json promise, and the packed module loads under its name.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PKG } from "./broker.js";

test("npm pack: ringfan.js, ringfan.d.ts, README.md, package.json; installable; importable by name", () => {
  const dir = mkdtempSync(join(tmpdir(), "ringfan-pack-"));
  try {
    const out = execFileSync("npm", ["pack", "--json", "--pack-destination", dir], { cwd: PKG, encoding: "utf8" });
    const [info] = JSON.parse(out);
    assert.equal(info.name, "ringfan");
    assert.deepEqual(info.files.map((f) => f.path).sort(), ["README.md", "package.json", "ringfan.d.ts", "ringfan.js"]);
    // Installed into an empty project (no registry: a local tarball, no
    // dependencies), it resolves by its name.
    const app = join(dir, "app");
    mkdirSync(app);
    writeFileSync(join(app, "package.json"), JSON.stringify({ name: "app", private: true, type: "module" }));
    execFileSync("npm", ["install", "--offline", "--no-audit", "--no-fund", join(dir, info.filename)], { cwd: app, stdio: "pipe" });
    const probe = "import { Ringfan, RingfanError, backoffDelay } from 'ringfan'; console.log(typeof Ringfan, typeof RingfanError, backoffDelay(1, {initialMs: 10}, () => 0.5))";
    const res = execFileSync(process.execPath, ["--input-type=module", "-e", probe], { cwd: app, encoding: "utf8" });
    assert.equal(res.trim(), "function function 5");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
