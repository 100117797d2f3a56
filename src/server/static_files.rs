//! `--static DIR`: a directory served over HTTP `GET`/`HEAD` on the public
//! listeners (plain and TLS), beside `/ws` (the demo board, `demo/`, is
//! served this way: page and socket from one origin, no other web server).
//!
//! **Read at start-up and on SIGHUP, never per request.** The files are
//! read into memory when the broker starts and again on SIGHUP; a request
//! is a map lookup. Why not `std::fs` at request time: the shard's loop
//! would then wait on the disk (a cold page cache, a network filesystem)
//! while every connection of the shard waits on it, and the request's path
//! would reach the filesystem, where `..`, symlinks and files swapped
//! between a check and the open are all to be defended. Here only the
//! files found under DIR at load time exist: a path that is not one of
//! them is a 404 whatever it spells. The cost: an edited file shows after
//! `kill -HUP` (a failed reload keeps the files in use and says why).
//!
//! **Bounds.** A file over [`MAX_FILE`] is not loaded and answers `413`
//! (it is listed, so the refusal says why instead of a puzzling 404); all
//! files together at most [`MAX_TOTAL`] and [`MAX_FILES`], or the load
//! fails (start-up exits, a reload keeps the old files). Each response in
//! flight holds a copy of its file (the runtime sends one buffer), so a
//! connection holds at most `MAX_FILE` of it, below the 4 MiB a WebSocket
//! connection may queue (`--max-backlog-bytes`).
//!
//! **What is served.** Regular files under DIR, by their path relative to
//! it; `/` and `/sub/` serve the directory's `index.html` (`/sub` without
//! the slash is redirected there, so the page's relative links work); a
//! directory without one is a 404 (no listings). Names starting with `.`
//! (`.git`, `.env`) are skipped, as are names that are not UTF-8. A
//! symlink is followed only to a file whose canonical path is inside DIR's
//! (symlinked directories are skipped: no cycles to guard).

use crate::runtime::HttpReply;
use crate::ws::handshake::Request;
use crate::ws::http;
use bytes::{BufMut, Bytes, BytesMut};
use rustc_hash::FxHashMap;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// Largest file served (larger ones answer 413).
pub const MAX_FILE: u64 = 1 << 20;
/// Most bytes of all files together.
pub const MAX_TOTAL: u64 = 64 << 20;
/// Most files (and directories) loaded.
pub const MAX_FILES: usize = 4096;
/// Deepest directory nesting walked.
const MAX_DEPTH: usize = 16;

/// One loaded file.
#[derive(Debug)]
struct File {
    body: Bytes,
    content_type: &'static str,
    /// A strong validator from the content (SHA-256, 64 bits of it).
    etag: String,
}

#[derive(Debug)]
enum Entry {
    File(File),
    /// Over [`MAX_FILE`]: refused with 413.
    TooLarge,
    /// A directory; whether it holds an `index.html`.
    Dir {
        index: bool,
    },
}

/// What one load found: entries by path relative to DIR (`""` is DIR,
/// `sub/a.js` a file), `/`-separated.
#[derive(Debug, Default)]
pub struct Site {
    entries: FxHashMap<String, Entry>,
    bytes: u64,
}

impl Site {
    /// Files loaded (not counting the ones too large).
    pub fn files(&self) -> usize {
        self.entries
            .values()
            .filter(|e| matches!(e, Entry::File(_)))
            .count()
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Read every file under `root` (already canonical).
    fn load(root: &Path) -> Result<Self, String> {
        let mut site = Site::default();
        site.walk(root, root, "", 0)?;
        Ok(site)
    }

    fn walk(&mut self, root: &Path, dir: &Path, rel: &str, depth: usize) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err(format!(
                "{}: nested deeper than {MAX_DEPTH} directories",
                dir.display()
            ));
        }
        let mut index = false;
        let listing = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for item in listing {
            let item = item.map_err(|e| format!("{}: {e}", dir.display()))?;
            let Ok(name) = item.file_name().into_string() else {
                continue;
            };
            if name.starts_with('.') {
                continue;
            }
            let path = item.path();
            let kind = item
                .file_type()
                .map_err(|e| format!("{}: {e}", path.display()))?;
            let key = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            let file = if kind.is_symlink() {
                // Followed only to a file inside DIR; a dangling link, one
                // leading out, or one to a directory is skipped.
                match std::fs::canonicalize(&path) {
                    Ok(target) if target.starts_with(root) && target.is_file() => target,
                    _ => continue,
                }
            } else if kind.is_dir() {
                self.count()?;
                self.walk(root, &path, &key, depth + 1)?;
                continue;
            } else if kind.is_file() {
                path
            } else {
                continue; // sockets, fifos, devices
            };
            self.count()?;
            index |= name == "index.html";
            let entry = self.read(&file, content_type(Path::new(&name)))?;
            self.entries.insert(key, entry);
        }
        self.entries.insert(rel.to_string(), Entry::Dir { index });
        Ok(())
    }

    fn count(&self) -> Result<(), String> {
        if self.entries.len() >= MAX_FILES {
            return Err(format!("more than {MAX_FILES} files and directories"));
        }
        Ok(())
    }

    fn read(&mut self, path: &Path, content_type: &'static str) -> Result<Entry, String> {
        let shown = || path.display();
        let f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", shown()))?;
        // `take`: a file larger than the bound (or growing while read) is
        // read no further than one byte past it.
        let mut body = Vec::new();
        f.take(MAX_FILE + 1)
            .read_to_end(&mut body)
            .map_err(|e| format!("{}: {e}", shown()))?;
        if body.len() as u64 > MAX_FILE {
            return Ok(Entry::TooLarge);
        }
        self.bytes += body.len() as u64;
        if self.bytes > MAX_TOTAL {
            return Err(format!("more than {} MiB of files", MAX_TOTAL >> 20));
        }
        let digest = Sha256::digest(&body);
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        let etag = format!("\"{:016x}\"", u64::from_be_bytes(first));
        Ok(Entry::File(File {
            body: Bytes::from(body),
            content_type,
            etag,
        }))
    }
}

/// The `Content-Type` of a file, by its extension (case-insensitive; a
/// symlink's by its own name, not its target's).
pub fn content_type(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "txt" => "text/plain; charset=utf-8",
        "woff2" => "font/woff2",
        _ => "application/octet-stream",
    }
}

/// Why a request path names no file: 400 (malformed, or trying to climb
/// out) or 404.
#[derive(Debug, PartialEq, Eq)]
pub enum BadPath {
    Malformed(&'static str),
    NotFound,
}

/// A request path as the key of an entry, and whether it ended in `/`.
/// Percent-escapes are decoded first, so `%2e%2e` is `..` and refused as
/// such; `.` and `..` segments, empty ones (`//etc/passwd`), NUL and `\`
/// are refused (400), whatever a file is called.
pub fn resolve(path: &str) -> Result<(String, bool), BadPath> {
    let Some(rest) = path.strip_prefix('/') else {
        return Err(BadPath::Malformed("the path must start with /"));
    };
    let decoded = percent_decode(rest).ok_or(BadPath::Malformed("bad percent-escape"))?;
    if decoded.contains(&0) {
        return Err(BadPath::Malformed("NUL in the path"));
    }
    let Ok(decoded) = String::from_utf8(decoded) else {
        return Err(BadPath::NotFound);
    };
    if decoded.contains('\\') {
        return Err(BadPath::Malformed("backslash in the path"));
    }
    let slash = decoded.is_empty() || decoded.ends_with('/');
    let trimmed = decoded.strip_suffix('/').unwrap_or(&decoded);
    if !trimmed.is_empty()
        && trimmed
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return Err(BadPath::Malformed("empty, . or .. segment in the path"));
    }
    Ok((trimmed.to_string(), slash))
}

fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

/// Does an `If-None-Match` value name `etag` (or `*`)? Weak comparison, as
/// RFC 9110 §13.1.2 asks for it.
fn matches_etag(header: &str, etag: &str) -> bool {
    header.split(',').map(str::trim).any(|t| {
        let t = t.strip_prefix("W/").unwrap_or(t);
        t == "*" || t == etag
    })
}

/// The directory every shard serves, reloaded on SIGHUP.
pub struct StaticFiles {
    root: PathBuf,
    current: RwLock<Arc<Site>>,
}

impl StaticFiles {
    /// Load `dir`; an error names the file and what is wrong.
    pub fn load(dir: &Path) -> Result<Self, String> {
        let root = std::fs::canonicalize(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        if !root.is_dir() {
            return Err(format!("{}: not a directory", dir.display()));
        }
        let site = Site::load(&root)?;
        Ok(Self {
            root,
            current: RwLock::new(Arc::new(site)),
        })
    }

    /// Read the directory again; on failure the files in use stay.
    pub fn reload(&self) -> Result<Arc<Site>, String> {
        let site = Arc::new(Site::load(&self.root)?);
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = site.clone();
        Ok(site)
    }

    pub fn site(&self) -> Arc<Site> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The answer to `request` (any path not otherwise routed). Kept alive
    /// when the client asks: a page loads its scripts and styles over one
    /// connection.
    pub fn answer(&self, request: &Request) -> HttpReply {
        let keep = request.keep_alive;
        let head = match &*request.method {
            "GET" => false,
            "HEAD" => true,
            _ => {
                let r = http::error(405, &[("Allow", "GET, HEAD")], "only GET and HEAD");
                return HttpReply::Close(r);
            }
        };
        let reply = |r: Bytes| {
            let r = if head { head_of(r) } else { r };
            if keep {
                HttpReply::KeepAlive(r)
            } else {
                HttpReply::Close(r)
            }
        };
        let (key, slash) = match resolve(&request.path) {
            Ok(k) => k,
            Err(BadPath::Malformed(why)) => return HttpReply::Close(http::error(400, &[], why)),
            Err(BadPath::NotFound) => return reply(not_found(keep)),
        };
        let site = self.site();
        let file = match (site.entries.get(&key), slash) {
            (Some(Entry::Dir { index: true }), true) => {
                let index = if key.is_empty() {
                    "index.html".to_string()
                } else {
                    format!("{key}/index.html")
                };
                site.entries.get(&index)
            }
            (Some(Entry::Dir { index: true }), false) => {
                let to = format!("{}/", request.path);
                let r = http::response(
                    301,
                    &[("Location", &to)],
                    "text/plain; charset=utf-8",
                    b"moved\n",
                    !keep,
                );
                return reply(r);
            }
            (Some(e @ (Entry::File(_) | Entry::TooLarge)), false) => Some(e),
            _ => None,
        };
        match file {
            Some(Entry::File(f)) => {
                let fresh = request
                    .if_none_match
                    .as_deref()
                    .is_some_and(|h| matches_etag(h, &f.etag));
                if fresh {
                    return reply(not_modified(&f.etag, keep));
                }
                reply(http::response(
                    200,
                    &[
                        ("ETag", &f.etag),
                        ("Cache-Control", "no-cache"),
                        ("X-Content-Type-Options", "nosniff"),
                    ],
                    f.content_type,
                    &f.body,
                    !keep,
                ))
            }
            Some(Entry::TooLarge) => HttpReply::Close(http::error(
                413,
                &[],
                &format!("file larger than {} MiB is not served", MAX_FILE >> 20),
            )),
            _ => reply(not_found(keep)),
        }
    }
}

fn not_found(keep: bool) -> Bytes {
    http::response(404, &[], "text/plain; charset=utf-8", b"not found\n", !keep)
}

/// `304`: no body and no `Content-Length` (which would have to be the
/// full file's, RFC 9110 §8.6).
fn not_modified(etag: &str, keep: bool) -> Bytes {
    let mut b = BytesMut::with_capacity(128);
    b.put_slice(b"HTTP/1.1 304 Not Modified\r\nETag: ");
    b.put_slice(etag.as_bytes());
    b.put_slice(b"\r\nCache-Control: no-cache\r\n");
    if !keep {
        b.put_slice(b"Connection: close\r\n");
    }
    b.put_slice(b"\r\n");
    b.freeze()
}

/// A response's head only (what `HEAD` gets: `GET`'s head, its
/// `Content-Length` included).
fn head_of(r: Bytes) -> Bytes {
    match r.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(i) => r.slice(..i + 4),
        None => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_or_are_refused() {
        assert_eq!(resolve("/"), Ok((String::new(), true)));
        assert_eq!(resolve("/a/b.js"), Ok(("a/b.js".into(), false)));
        assert_eq!(resolve("/a/"), Ok(("a".into(), true)));
        assert_eq!(resolve("/a%20b"), Ok(("a b".into(), false)));
        for bad in [
            "/../Cargo.toml",
            "/%2e%2e/Cargo.toml",
            "/%2E%2E%2fCargo.toml",
            "/a/./b",
            "//etc/passwd",
            "/a//b",
            "/a%00.html",
            "/a%zz",
            "/a%2",
            "/a\\b",
            "/a%5c..%5cb",
            "etc/passwd",
        ] {
            assert!(
                matches!(resolve(bad), Err(BadPath::Malformed(_))),
                "{bad} must be refused"
            );
        }
        assert_eq!(resolve("/%ff"), Err(BadPath::NotFound));
    }

    #[test]
    fn types_by_extension() {
        for (name, ty) in [
            ("a.html", "text/html; charset=utf-8"),
            ("a.MJS", "text/javascript; charset=utf-8"),
            ("a.js.map", "application/json"),
            ("a.woff2", "font/woff2"),
            ("a", "application/octet-stream"),
            ("a.exe", "application/octet-stream"),
        ] {
            assert_eq!(content_type(Path::new(name)), ty, "{name}");
        }
    }

    #[test]
    fn etags_match_weakly_and_in_lists() {
        assert!(matches_etag("\"ab\"", "\"ab\""));
        assert!(matches_etag("\"x\", W/\"ab\"", "\"ab\""));
        assert!(matches_etag("*", "\"ab\""));
        assert!(!matches_etag("\"abc\"", "\"ab\""));
    }
}
