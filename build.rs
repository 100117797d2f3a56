//! Embeds the git commit the binary was built from as the compile-time
//! variable `RINGFAN_GIT_COMMIT` (`ringfan --version`, `ringfan_build_info`).
//!
//! It is the 12-digit short hash of HEAD, or `unknown` where there is no git
//! or no repository (a source tarball, a Docker build without `.git`). A
//! build without `.git` can pass the commit in as `RINGFAN_GIT_COMMIT` in
//! the build's environment, which wins over git. No `-dirty` mark: cargo
//! reruns this script only when HEAD or the branch moves, not on every
//! edit, so a mark would often be stale, which is worse than none.
//!
//! Only release builds (and benches) are stamped. A changed stamp rebuilds
//! every target of the package, so stamping debug builds made every commit
//! rebuild the library and all ~40 test binaries (several minutes on a
//! 2-core machine); debug builds say `dev`.

use std::path::Path;
use std::process::Command;

/// `git ARGS` run in the package's directory; its trimmed stdout if it
/// succeeded and said something.
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

/// Rerun when `path` changes, if it exists: cargo reruns a script on every
/// build while a path it watches is missing.
fn watch(path: &str) {
    if Path::new(path).exists() {
        println!("cargo:rerun-if-changed={path}");
    }
}

fn commit() -> String {
    if let Ok(c) = std::env::var("RINGFAN_GIT_COMMIT") {
        if !c.trim().is_empty() {
            return c.trim().to_string();
        }
    }
    if std::env::var("PROFILE").as_deref() != Ok("release") {
        return "dev".into();
    }
    // Only this package's own repository: an unpacked tarball inside some
    // other checkout must not report that checkout's commit.
    let here = std::env::var("CARGO_MANIFEST_DIR")
        .ok()
        .and_then(|d| std::fs::canonicalize(d).ok());
    let top = git(&["rev-parse", "--show-toplevel"]).and_then(|t| std::fs::canonicalize(t).ok());
    if here.is_none() || here != top {
        return "unknown".into();
    }
    // `--git-path` resolves worktrees (where `.git` is a file naming the
    // real directory, and branches live in the common one) and packed refs.
    if let Some(head) = git(&["rev-parse", "--git-path", "HEAD"]) {
        watch(&head);
    }
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        match git(&["rev-parse", "--git-path", &branch]) {
            Some(loose) if Path::new(&loose).exists() => watch(&loose),
            // A packed ref: watch packed-refs, and the folder where the
            // next commit writes the loose ref.
            Some(loose) => {
                if let Some(dir) = Path::new(&loose).parent().and_then(|d| d.to_str()) {
                    watch(dir);
                }
                if let Some(packed) = git(&["rev-parse", "--git-path", "packed-refs"]) {
                    watch(&packed);
                }
            }
            None => {}
        }
    }
    git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into())
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=RINGFAN_GIT_COMMIT");
    println!("cargo:rustc-env=RINGFAN_GIT_COMMIT={}", commit());
}
