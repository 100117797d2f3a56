//! Reading the small files this module loads (secrets, keys, JWKS,
//! denylists), with a size cap: a path mistyped as `/dev/zero` or a log
//! file must fail the load, not eat memory.

use std::io::Read;
use std::path::Path;

/// Read at most `cap` bytes of `path`; more is an error. Errors name the
/// file, since they end up in a reload log line.
pub(crate) fn read_capped(path: &Path, cap: usize) -> Result<Vec<u8>, String> {
    let f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut buf = Vec::new();
    f.take(cap as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if buf.len() > cap {
        return Err(format!("{}: larger than {cap} bytes", path.display()));
    }
    Ok(buf)
}
