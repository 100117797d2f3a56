//! The report as JSON, for scripts that compare runs or gate CI on them.

use super::RunReport;
use std::io::Write as _;
use std::path::Path;

/// Writes the report as pretty-printed JSON.
///
/// Non-finite floats are written as `null` by `serde_json` (and then do not
/// read back as numbers), so producers should keep them out of the report.
pub fn write_json(r: &RunReport, path: &Path) -> std::io::Result<()> {
    let file = std::fs::File::create(path)?;
    let mut w = std::io::BufWriter::new(file);
    serde_json::to_writer_pretty(&mut w, r).map_err(std::io::Error::other)?;
    w.write_all(b"\n")?;
    w.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::{sample_report, temp_path};

    #[test]
    fn json_round_trips() {
        let mut r = sample_report();
        r.check();
        let path = temp_path("report.json");
        write_json(&r, &path).expect("write json");
        let text = std::fs::read_to_string(&path).expect("read json");
        let _ = std::fs::remove_file(&path);
        let back: RunReport = serde_json::from_str(&text).expect("parse json");
        assert_eq!(back.scenario, r.scenario);
        assert_eq!(back.counts.lost, 12);
        assert_eq!(back.counts.closes, r.counts.closes);
        assert_eq!(back.latency.percentiles, r.latency.percentiles);
        assert_eq!(back.timeline.len(), 10);
        assert_eq!(back.problems, r.problems);
        assert_eq!(back.params, r.params);
        assert!(write_json(&r, Path::new("/nonexistent-dir/x/report.json")).is_err());
    }
}
