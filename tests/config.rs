//! Configuration, against the real binary: the `--config` TOML file and
//! `RINGFAN_…` variables under the flags, their errors, `--print-config`,
//! and `--version` with its commit (docs/operations.md, "Configuration").

mod common;

use common::wsraw::{self, masked, RawWs, OP_CLOSE, OP_TEXT};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn bin() -> std::ffi::OsString {
    std::env::var_os("RINGFAN_TEST_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_ringfan").into())
}

/// `ringfan` with none of the RINGFAN_ variables this process has, and
/// `env` set.
fn command(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(bin());
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("RINGFAN_") {
            cmd.env_remove(name);
        }
    }
    cmd.args(args).envs(env.iter().copied());
    cmd
}

/// Runs `ringfan` to its end (it must not start: every call here exits).
fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut child = command(args, env)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ringfan");
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("ringfan {args:?} did not exit: it should only print");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().expect("output")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A file in a fresh directory of its own, removed with it when dropped.
struct Temp(PathBuf);

impl std::ops::Deref for Temp {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Temp {
    fn drop(&mut self) {
        if let Some(dir) = self.0.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn file(name: &str, text: &str) -> Temp {
    let dir = std::env::temp_dir().join(format!(
        "ringfan-config-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write config");
    Temp(path)
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

/// `--print-config` with `args` and `env`: its output, after checking it
/// exited 0.
fn print_config(args: &[&str], env: &[(&str, &str)]) -> String {
    let mut all = vec!["--print-config"];
    all.extend_from_slice(args);
    let o = run(&all, env);
    assert!(o.status.success(), "{all:?}: {}", stderr(&o));
    stdout(&o)
}

/// The line for `key` in `--print-config` output.
fn line<'a>(printed: &'a str, key: &str) -> &'a str {
    let prefix = format!("{key} = ");
    printed
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no {key} in:\n{printed}"))
}

/// Fails with exit code 2 and says everything in `needles` on stderr.
fn refused(args: &[&str], env: &[(&str, &str)], needles: &[&str]) {
    let o = run(args, env);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{args:?} {env:?}: {err}");
    for n in needles {
        assert!(err.contains(n), "{args:?} {env:?}: no {n:?} in: {err}");
    }
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn each_layer_wins_over_the_ones_below() {
    let conf = file("ringfan.toml", "max_message = 1111\n");
    let c = s(&conf);
    let dflt = print_config(&[], &[]);
    assert!(line(&dflt, "max_message").ends_with("# default"), "{dflt}");
    assert!(!line(&dflt, "max_message").contains("1111"));

    let f = print_config(&["--config", c], &[]);
    assert_eq!(
        line(&f, "max_message"),
        format!("max_message = 1111  # file {c}")
    );
    let env = [("RINGFAN_MAX_MESSAGE", "2222")];
    let e = print_config(&["--config", c], &env);
    assert_eq!(
        line(&e, "max_message"),
        "max_message = 2222  # env RINGFAN_MAX_MESSAGE"
    );
    let fl = print_config(&["--config", c, "--max-message", "3333"], &env);
    assert_eq!(
        line(&fl, "max_message"),
        "max_message = 3333  # flag --max-message"
    );
    // The file's path can come from the environment too.
    let via_env = print_config(&[], &[("RINGFAN_CONFIG", c)]);
    assert_eq!(line(&via_env, "max_message"), line(&f, "max_message"));
}

#[test]
fn repeatable_keys_take_arrays_and_comma_separated_variables() {
    let conf = file(
        "r.toml",
        "allow_origin = [\"https://a.example\", \"https://b.example\"]\n",
    );
    let c = s(&conf);
    let f = print_config(&["--config", c], &[]);
    assert_eq!(
        line(&f, "allow_origin"),
        format!("allow_origin = [\"https://a.example\", \"https://b.example\"]  # file {c}")
    );
    // A layer replaces the whole list; it does not add to the one below.
    let env = [(
        "RINGFAN_ALLOW_ORIGIN",
        "https://c.example, https://d.example",
    )];
    let e = print_config(&["--config", c], &env);
    assert_eq!(
        line(&e, "allow_origin"),
        "allow_origin = [\"https://c.example\", \"https://d.example\"]  # env RINGFAN_ALLOW_ORIGIN"
    );
    let fl = print_config(
        &["--config", c, "--allow-origin", "https://e.example"],
        &env,
    );
    assert_eq!(
        line(&fl, "allow_origin"),
        "allow_origin = [\"https://e.example\"]  # flag --allow-origin"
    );
    let one = file("one.toml", "allow_origin = \"https://a.example\"\n");
    refused(
        &["--config", s(&one)],
        &[],
        &["allow_origin", s(&one), "an array", "not a string"],
    );
}

#[test]
fn booleans_are_toml_booleans() {
    let conf = file("b.toml", "no_pin = true\necho = false\n");
    let c = s(&conf);
    let f = print_config(&["--config", c], &[]);
    assert_eq!(line(&f, "no_pin"), format!("no_pin = true  # file {c}"));
    assert_eq!(line(&f, "echo"), format!("echo = false  # file {c}"));
    let e = print_config(&["--config", c], &[("RINGFAN_ECHO", "1")]);
    assert_eq!(line(&e, "echo"), "echo = true  # env RINGFAN_ECHO");
    let bad = file("bad.toml", "no_pin = \"yes\"\n");
    refused(
        &["--config", s(&bad)],
        &[],
        &["no_pin", s(&bad), "\"yes\"", "true or false"],
    );
    refused(
        &[],
        &[("RINGFAN_NO_PIN", "maybe")],
        &["RINGFAN_NO_PIN", "maybe"],
    );
}

#[test]
fn an_unknown_key_is_named_with_its_file_and_nearest_key() {
    let conf = file("u.toml", "shards = 1\nmax_mesage = 5\n");
    refused(
        &["--config", s(&conf)],
        &[],
        &["max_mesage", &format!("{}:2", s(&conf)), "max_message"],
    );
    // The dashed spelling is not a key; the error says which one is.
    let dashed = file("d.toml", "max-queued-bytes = 5\n");
    refused(
        &["--config", s(&dashed)],
        &[],
        &["max-queued-bytes", "max_queued_bytes"],
    );
    // Neither are --config and --print-config themselves.
    let meta = file("m.toml", "print_config = true\n");
    refused(&["--config", s(&meta)], &[], &["print_config"]);
}

#[test]
fn a_bad_value_is_named_with_its_key_file_and_what_was_expected() {
    let cases: &[(&str, &[&str])] = &[
        // Wrong TOML type.
        (
            "max_message = \"big\"",
            &["max_message", "\"big\"", "integer"],
        ),
        // A value the flag's own parser refuses.
        ("max_message = -1", &["max_message", "-1", "integer from 0"]),
        ("recv_buffers = 70000", &["recv_buffers", "70000", "65535"]),
        (
            "slow_consumer = \"maybe\"",
            &[
                "slow_consumer",
                "\"maybe\"",
                "disconnect",
                "drop",
                "conflate",
            ],
        ),
        (
            "listen = \"nowhere\"",
            &["listen", "\"nowhere\"", "address"],
        ),
        // Not TOML at all.
        ("max_message = ", &["line 1"]),
    ];
    for (text, needles) in cases {
        let conf = file("v.toml", &format!("{text}\n"));
        let mut all = needles.to_vec();
        all.push(s(&conf));
        refused(&["--config", s(&conf)], &[], &all);
    }
    // Checked even where a flag overrides it: a broken file is found now.
    let bad = file("o.toml", "max_message = \"big\"\n");
    refused(
        &["--config", s(&bad), "--max-message", "5"],
        &[],
        &["max_message", s(&bad)],
    );
    // Checks between flags hold for file values too.
    let tls = file("tls.toml", "listen_tls = \"127.0.0.1:0\"\n");
    refused(&["--config", s(&tls)], &[], &["--tls-cert"]);
    // Not read without end.
    refused(
        &["--config", "/dev/zero"],
        &[],
        &["/dev/zero", "larger than"],
    );
    let missing = std::env::temp_dir().join("ringfan-no-such-dir/none.toml");
    refused(&["--config", s(&missing)], &[], &[s(&missing)]);
}

#[test]
fn a_bad_variable_is_named() {
    refused(
        &[],
        &[("RINGFAN_MAX_MESSAGE", "big")],
        &["RINGFAN_MAX_MESSAGE", "big", "integer"],
    );
    refused(
        &[],
        &[("RINGFAN_SLOW_CONSUMER", "later")],
        &["RINGFAN_SLOW_CONSUMER", "later", "conflate"],
    );
    // A variable that is no setting is a note, not an error.
    let o = run(&["--print-config"], &[("RINGFAN_MAX_MESAGE", "5")]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("RINGFAN_MAX_MESAGE") && stderr(&o).contains("RINGFAN_MAX_MESSAGE"),
        "{}",
        stderr(&o)
    );
}

/// Without the source comments: the settings themselves.
fn values(printed: &str) -> Vec<String> {
    printed
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split("  # ").next().unwrap_or(l).to_string())
        .collect()
}

#[test]
fn print_config_reads_back_as_the_same_configuration() {
    let conf = file(
        "in.toml",
        "shards = 3\nno_pin = true\nslow_consumer = \"drop\"\n\
         jwt_audience = [\"a\", \"b \\\"quoted\\\"\"]\nlisten = \"127.0.0.1:9999\"\n",
    );
    let first = print_config(
        &["--config", s(&conf), "--max-queued-bytes", "12345"],
        &[("RINGFAN_ALLOW_ORIGIN", "https://x.example")],
    );
    let out = file("out.toml", &first);
    let second = print_config(&["--config", s(&out)], &[]);
    assert_eq!(values(&first), values(&second));
    // Each layer's values made it in, and now all come from the file.
    let back = values(&second).join("\n");
    for want in [
        "shards = 3",
        "no_pin = true",
        "slow_consumer = \"drop\"",
        "max_queued_bytes = 12345",
        "allow_origin = [\"https://x.example\"]",
    ] {
        assert!(back.contains(want), "no {want} in:\n{second}");
    }
    // A string with quotes in it survives (toml may write it '…').
    let table: toml::Table = second.parse().expect("--print-config is TOML");
    assert_eq!(
        table["jwt_audience"],
        toml::Value::Array(vec!["a".into(), "b \"quoted\"".into()])
    );
    let from_file = format!("# file {}", s(&out));
    assert!(line(&second, "max_queued_bytes").ends_with(&from_file));
    assert!(line(&second, "auth").ends_with(&from_file));
    // And it starts nothing: the run above exited by itself.
}

/// A broker started with `--config` only, its address from the file.
struct Started(Child, SocketAddr);

impl Drop for Started {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(conf: &Path) -> Started {
    let mut child = command(&["--config", s(conf)], &[])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn ringfan");
    let out = child.stdout.take().expect("stdout");
    let mut reader = BufReader::new(out);
    let mut line = String::new();
    while !line.contains("listening on") {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            let _ = child.kill();
            panic!("ringfan exited before listening");
        }
    }
    let addr = line
        .split_whitespace()
        .find_map(|w| w.parse::<SocketAddr>().ok())
        .expect("address in the listening line");
    std::thread::spawn(move || {
        let mut sink = String::new();
        while reader.read_line(&mut sink).map(|n| n > 0).unwrap_or(false) {
            sink.clear();
        }
    });
    Started(child, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_started_from_a_file_uses_its_settings() {
    // The default largest message is far above 2000 bytes: a 1009 for
    // 2000 shows the file's value in force.
    let conf = file(
        "run.toml",
        "listen = \"127.0.0.1:0\"\nno_pin = true\nshards = 1\nmax_message = 1000\n",
    );
    let broker = start(&conf);
    let addr = broker.1;
    wsraw::bounded(30, "config run", async move {
        // Within the limit: an answer (not JSON, so an error), no close.
        let mut ws = RawWs::connect(addr, "/ws").await;
        ws.send(&masked(OP_TEXT, &[b'x'; 900])).await;
        let f = ws.frame().await;
        assert_eq!(f.opcode, OP_TEXT, "{f:?}");
        // Over it: closed with 1009.
        ws.send(&masked(OP_TEXT, &[b'x'; 2000])).await;
        let f = ws.frame().await;
        assert_eq!(f.opcode, OP_CLOSE, "{f:?}");
        assert_eq!(f.close_code(), Some(1009));
    })
    .await;
}

#[test]
fn version_names_the_commit() {
    let o = run(&["--version"], &[]);
    assert!(o.status.success());
    let here = env!("CARGO_MANIFEST_DIR");
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(here)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let top = git(&["rev-parse", "--show-toplevel"]).and_then(|t| std::fs::canonicalize(t).ok());
    // Debug builds are not stamped (build.rs); tests/python/test_version.py
    // checks the release binary's commit.
    let commit = match top == std::fs::canonicalize(here).ok() {
        _ if cfg!(debug_assertions) => "dev".into(),
        true => git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into()),
        false => "unknown".into(),
    };
    assert_eq!(
        stdout(&o).trim(),
        format!("ringfan {} (commit {commit})", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn help_says_how_to_configure() {
    let o = run(&["--help"], &[]);
    assert!(o.status.success());
    let out = stdout(&o);
    for want in ["--config <FILE>", "--print-config", "RINGFAN_"] {
        assert!(out.contains(want), "no {want} in --help:\n{out}");
    }
}

/// `key = value`, not help text that happens to hold " = ".
fn is_setting(l: &str) -> bool {
    l.split_once(" = ").is_some_and(|(k, _)| {
        !k.is_empty()
            && k.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    })
}

/// packaging/ringfan.toml lists every key, commented out at its default:
/// as shipped it sets nothing, and with every line uncommented it sets
/// the defaults.
#[test]
fn the_packaged_example_lists_every_key_at_its_default() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/ringfan.toml");
    let shipped = std::fs::read_to_string(&path).expect("packaging/ringfan.toml");
    let defaults = print_config(&[], &[]);
    for l in values(&defaults) {
        assert!(
            shipped.lines().any(|s| s == format!("# {l}")),
            "packaging/ringfan.toml lacks `# {l}`: regenerate it with bash packaging/gen-config.sh"
        );
    }
    let as_shipped = print_config(&["--config", s(&path)], &[]);
    assert!(!as_shipped.contains("  # file "), "{as_shipped}");
    let uncommented: String = shipped
        .lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(v) if is_setting(v) && !v.contains("(not set)") => v,
            _ => l,
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let all = file("all.toml", &uncommented);
    let set = print_config(&["--config", s(&all)], &[]);
    assert_eq!(values(&set), values(&defaults));
    assert!(line(&set, "max_message").ends_with(&format!("# file {}", s(&all))));
}
