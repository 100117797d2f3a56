//! Settings in layers under the flags: every flag of [`Args`] also has a
//! key in the `--config` TOML file and a `RINGFAN_…` environment variable;
//! a flag wins over the environment, which wins over the file, which wins
//! over the built-in default (docs/operations.md, "Configuration").
//!
//! Nothing here lists the flags. They are read from clap's own description
//! of `Args` (`Args::command()`), so a flag added to args.rs gets its key
//! (`--max-queued-bytes`: `max_queued_bytes`) and its variable
//! (`RINGFAN_MAX_QUEUED_BYTES`) with no change here.
//!
//! How: each value from the file or the environment is checked on its own
//! with the flag's own value parser (so its error can name the key, file
//! and line, or the variable), turned into the flag it stands for
//! (`max_message = 1024`: `--max-message=1024`) and put in front of the
//! real command line, unless the command line sets that flag itself. clap
//! then parses it all once, with all its checks. The alternative, making
//! file and environment values clap defaults and using clap's `env`
//! support, skips checks: clap's `requires` ignores defaults (a file with
//! `listen_tls` and no `tls_cert` would pass), and its env errors name the
//! flag, not the variable that held the bad value.

use crate::args::Args;
use clap::error::{ContextKind, ContextValue};
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Command, CommandFactory, FromArgMatches};
use std::any::TypeId;
use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use toml::de::{DeTable, DeValue};

/// Every setting's variable is this followed by its key in upper case.
const ENV_PREFIX: &str = "RINGFAN_";
/// `--config` from the environment.
const CONFIG_ENV: &str = "RINGFAN_CONFIG";
/// `RINGFAN_…` names that are not settings, so not worth a warning.
const OTHER_ENV: &[&str] = &[
    CONFIG_ENV,
    "RINGFAN_TEST_BIN",
    "RINGFAN_GIT_COMMIT",
    // The test suites' path to the binary (tests/python, tests/autobahn).
    "RINGFAN_BIN",
    // tests/python's path to the load generator (test_demo.py's feed).
    "RINGFAN_LOADGEN",
];
const CONFIG_ID: &str = "config";
const PRINT_ID: &str = "print_config";

/// `ringfan --version`: `ringfan 0.1.0 (commit 0123456789ab)`; the commit
/// comes from build.rs (`unknown` for a build without git).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("RINGFAN_GIT_COMMIT"),
    ")"
);

/// What a flag does with what it is given.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Kind {
    /// Takes no value; present sets `on` (`true` for SetTrue, `false` for
    /// SetFalse).
    Switch { on: bool },
    /// Counts its occurrences (`-vvv`).
    Count,
    /// One value; the last one given wins.
    One,
    /// Repeatable: each occurrence adds a value.
    Many,
}

/// The TOML type a value takes, from the type the flag's parser makes.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Ty {
    Int { min: i128, max: i128 },
    Float,
    Str,
}

/// One flag seen as a setting.
struct Setting {
    id: String,
    long: String,
    key: String,
    env: String,
    kind: Kind,
    ty: Ty,
    arg: Arg,
}

/// Where a setting's effective value came from.
#[derive(Clone, Debug, PartialEq)]
enum Source {
    Default,
    File(PathBuf),
    Env(String),
    Flag(String),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File(p) => write!(f, "file {}", p.display()),
            Source::Env(v) => write!(f, "env {v}"),
            Source::Flag(l) => write!(f, "flag --{l}"),
        }
    }
}

/// A value from the file or the environment, checked.
#[derive(Clone, Debug)]
enum Value {
    Switch(bool),
    Count(u8),
    Strs(Vec<String>),
}

/// The command: `Args` with `--config` and `--print-config`, the version
/// with its commit, and a note on layering under `--help`.
fn command() -> Command {
    Args::command()
        .version(VERSION)
        .arg(
            Arg::new(CONFIG_ID)
                .long("config")
                .value_name("FILE")
                .value_parser(clap::value_parser!(PathBuf))
                .help(
                    "TOML file of settings: each flag's long name in snake_case \
                     (max_queued_bytes = 1048576). Also RINGFAN_CONFIG.",
                ),
        )
        .arg(
            Arg::new(PRINT_ID)
                .long("print-config")
                .action(ArgAction::SetTrue)
                .help(
                    "Print the effective settings as TOML that --config reads back, \
                     each with where it came from, and exit.",
                ),
        )
        .after_help(
            "Every flag can also be set in the --config file (key: the long name in \
             snake_case) or in the environment (RINGFAN_ and the key in upper case; \
             repeatable flags comma-separated). A flag wins over the environment, which \
             wins over the file. See docs/operations.md, \"Configuration\".",
        )
}

/// The type a value parser produces, as a TOML type.
fn ty_of(arg: &Arg) -> Ty {
    let id = arg.get_value_parser().type_id();
    macro_rules! ints {
        ($($t:ty),*) => {$(
            if id == TypeId::of::<$t>() {
                return Ty::Int { min: <$t>::MIN as i128, max: <$t>::MAX as i128 };
            }
        )*};
    }
    ints!(u8, u16, u32, u64, usize, i8, i16, i32, i64, isize);
    if id == TypeId::of::<f64>() || id == TypeId::of::<f32>() {
        return Ty::Float;
    }
    Ty::Str
}

/// Every flag that is a setting: those with a long name, except help,
/// version, `--config` and `--print-config`.
fn settings(cmd: &Command) -> Vec<Setting> {
    cmd.get_arguments()
        .filter_map(|arg| {
            let long = arg.get_long()?;
            let id = arg.get_id().as_str();
            if id == CONFIG_ID || id == PRINT_ID {
                return None;
            }
            let kind = match arg.get_action() {
                ArgAction::SetTrue => Kind::Switch { on: true },
                ArgAction::SetFalse => Kind::Switch { on: false },
                ArgAction::Count => Kind::Count,
                ArgAction::Set => Kind::One,
                ArgAction::Append => Kind::Many,
                // Help, version, and actions clap may add later.
                _ => return None,
            };
            let key = long.replace('-', "_");
            Some(Setting {
                id: id.to_string(),
                long: long.to_string(),
                env: format!("{ENV_PREFIX}{}", key.to_ascii_uppercase()),
                key,
                kind,
                ty: ty_of(arg),
                arg: arg.clone(),
            })
        })
        .collect()
}

/// What a setting takes, for error messages.
fn expected(s: &Setting) -> String {
    let one = match s.kind {
        Kind::Switch { .. } => return "true or false".into(),
        Kind::Count => return "a count from 0 to 255".into(),
        Kind::One | Kind::Many => match s.ty {
            Ty::Int { min, max } => format!("an integer from {min} to {max}"),
            Ty::Float => "a number".into(),
            Ty::Str => {
                let names: Vec<String> = s
                    .arg
                    .get_possible_values()
                    .iter()
                    .map(|p| p.get_name().to_string())
                    .collect();
                if names.is_empty() {
                    match s.arg.get_value_names().and_then(|n| n.first()) {
                        Some(n) => format!("a string ({n})"),
                        None => "a string".into(),
                    }
                } else {
                    format!("one of \"{}\"", names.join("\", \""))
                }
            }
        },
    };
    match s.kind {
        Kind::Many => format!("an array, each {one}"),
        _ => one,
    }
}

/// `text` through the flag's own value parser: why it is refused, if it is.
fn check(s: &Setting, text: &str) -> Result<(), String> {
    let probe = Command::new("ringfan").no_binary_name(true).arg(
        Arg::new("v")
            .long("v")
            .action(ArgAction::Set)
            .value_parser(s.arg.get_value_parser().clone()),
    );
    let e = match probe.try_get_matches_from([format!("--v={text}")]) {
        Ok(_) => return Ok(()),
        Err(e) => e,
    };
    let why = match (
        std::error::Error::source(&e),
        e.get(ContextKind::InvalidValue),
    ) {
        (Some(cause), _) => cause.to_string(),
        (None, Some(ContextValue::String(v))) => format!("{v:?} is not accepted"),
        _ => e.kind().to_string(),
    };
    Err(format!("{why}; expected {}", expected(s)))
}

fn toml_type(v: &DeValue) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a datetime",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table (keys are flat: no sections)",
    }
}

/// One TOML scalar as the text its flag would be given, checked.
fn toml_scalar(s: &Setting, v: &DeValue) -> Result<String, String> {
    let wrong = || format!("expected {}, not {}", expected(s), toml_type(v));
    let text = match (s.ty, v) {
        (Ty::Int { .. } | Ty::Float, DeValue::Integer(i)) => {
            i128::from_str_radix(i.as_str(), i.radix())
                .map_err(|_| format!("expected {}", expected(s)))?
                .to_string()
        }
        (Ty::Float, DeValue::Float(f)) => f.as_str().to_string(),
        (Ty::Str, DeValue::String(t)) => t.to_string(),
        _ => return Err(wrong()),
    };
    check(s, &text)?;
    Ok(text)
}

/// A value from the file, checked against its setting.
fn from_toml(s: &Setting, v: &DeValue) -> Result<Value, String> {
    let wrong = || format!("expected {}, not {}", expected(s), toml_type(v));
    match (s.kind, v) {
        (Kind::Switch { .. }, DeValue::Boolean(b)) => Ok(Value::Switch(*b)),
        (Kind::Count, DeValue::Integer(i)) => i64::from_str_radix(i.as_str(), i.radix())
            .ok()
            .and_then(|n| u8::try_from(n).ok())
            .map(Value::Count)
            .ok_or_else(|| format!("expected {}", expected(s))),
        (Kind::One, _) => Ok(Value::Strs(vec![toml_scalar(s, v)?])),
        (Kind::Many, DeValue::Array(items)) => items
            .iter()
            .map(|item| toml_scalar(s, item.get_ref()))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Strs),
        _ => Err(wrong()),
    }
}

/// The known key nearest to an unknown one, if any is near.
fn nearest<'a>(settings: &'a [Setting], key: &str) -> Option<&'a str> {
    let dashless = key.replace('-', "_").to_ascii_lowercase();
    settings
        .iter()
        .map(|s| (strsim::jaro_winkler(&dashless, &s.key), s.key.as_str()))
        .filter(|(score, _)| *score > 0.85)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k)
}

/// 1-based line of byte `at` in `text`.
fn line_of(text: &str, at: usize) -> usize {
    text.as_bytes()[..at.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// Largest config file read: every key with a long comment is ~15 KiB
/// (`--print-config`); a megabyte is a mistake (`--config /dev/zero`), not
/// a configuration, and must not be read until memory runs out.
const MAX_FILE: u64 = 1 << 20;

fn read_bounded(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(MAX_FILE + 1)
        .read_to_string(&mut text)?;
    if text.len() as u64 > MAX_FILE {
        return Err(std::io::Error::other(format!(
            "larger than {MAX_FILE} bytes: not a configuration file"
        )));
    }
    Ok(text)
}

/// The `--config` file: each key's checked value, by setting id.
fn read_file(path: &Path, settings: &[Setting]) -> Result<HashMap<String, Value>, String> {
    let shown = path.display();
    let text = read_bounded(path).map_err(|e| format!("--config {shown}: {e}"))?;
    let table = DeTable::parse(&text).map_err(|mut e| {
        e.set_input(Some(&text));
        format!("--config {shown}: {e}")
    })?;
    let mut out = HashMap::new();
    for (key, value) in table.get_ref() {
        let at = format!("{shown}:{}", line_of(&text, key.span().start));
        let key = key.get_ref().as_ref();
        let Some(s) = settings.iter().find(|s| s.key == key) else {
            let hint = match nearest(settings, key) {
                Some(k) => format!(" (did you mean {k}?)"),
                None => " (ringfan --print-config lists every key)".into(),
            };
            return Err(format!("{at}: unknown key {key:?}{hint}"));
        };
        let raw = text.get(value.span()).unwrap_or("?").trim();
        let v =
            from_toml(s, value.get_ref()).map_err(|why| format!("{at}: {key} = {raw}: {why}"))?;
        out.insert(s.id.clone(), v);
    }
    Ok(out)
}

/// A setting's value from its variable's text.
fn from_env(s: &Setting, raw: &str) -> Result<Value, String> {
    let checked = |t: &str| check(s, t).map(|()| t.to_string());
    match s.kind {
        Kind::Switch { .. } => match raw.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(Value::Switch(true)),
            "false" | "0" | "no" | "off" => Ok(Value::Switch(false)),
            _ => Err("expected true or false (or 1/0, yes/no, on/off)".into()),
        },
        Kind::Count => raw
            .trim()
            .parse()
            .map(Value::Count)
            .map_err(|_| format!("expected {}", expected(s))),
        Kind::One => Ok(Value::Strs(vec![checked(raw)?])),
        Kind::Many => raw
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(checked)
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Strs),
    }
}

/// Each setting's variable that is set (and not empty), checked.
fn read_env(settings: &[Setting]) -> Result<HashMap<String, Value>, String> {
    let mut out = HashMap::new();
    for s in settings {
        let Some(raw) = std::env::var_os(&s.env).filter(|v| !v.is_empty()) else {
            continue;
        };
        let raw = raw
            .into_string()
            .map_err(|_| format!("environment variable {}: not valid UTF-8", s.env))?;
        let v = from_env(s, &raw)
            .map_err(|why| format!("environment variable {}={raw:?}: {why}", s.env))?;
        out.insert(s.id.clone(), v);
    }
    Ok(out)
}

/// Notes about the configuration, said once logging is set up (`notes`):
/// printed here, before `--log-format json` is known, they would be the
/// one line of stderr that is not JSON.
static NOTES: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// The notes `parse` left (each once).
pub fn notes() -> Vec<String> {
    std::mem::take(&mut *NOTES.lock().unwrap_or_else(|p| p.into_inner()))
}

/// A `RINGFAN_…` variable that is no setting is most likely a typo; say so
/// rather than ignore it silently (a note, not an error: other tools may
/// share the prefix).
fn warn_unknown_env(settings: &[Setting]) {
    for (name, _) in std::env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        let Some(key) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        if OTHER_ENV.contains(&name) || settings.iter().any(|s| s.env == name) {
            continue;
        }
        let hint = nearest(settings, key)
            .map(|k| format!(" (did you mean {ENV_PREFIX}{}?)", k.to_ascii_uppercase()))
            .unwrap_or_default();
        let note = format!("environment variable {name} is not a setting, ignored{hint}");
        NOTES.lock().unwrap_or_else(|p| p.into_inner()).push(note);
    }
}

/// The flags that stand for `v`, pushed onto `argv`.
fn push_flags(s: &Setting, v: &Value, argv: &mut Vec<OsString>) -> Result<(), String> {
    match (s.kind, v) {
        (Kind::Switch { on }, Value::Switch(b)) => {
            if *b == on {
                argv.push(format!("--{}", s.long).into());
            } else if s
                .arg
                .get_default_values()
                .iter()
                .any(|d| d.to_str() == Some(if on { "true" } else { "false" }))
            {
                return Err(format!(
                    "{} = {b}: its default is {on} and only the command line's --{} can change it",
                    s.key, s.long
                ));
            }
        }
        (Kind::Count, Value::Count(n)) => {
            argv.extend((0..*n).map(|_| OsString::from(format!("--{}", s.long))));
        }
        (_, Value::Strs(vals)) => {
            argv.extend(
                vals.iter()
                    .map(|t| OsString::from(format!("--{}={t}", s.long))),
            );
        }
        _ => return Err(format!("{}: value of the wrong kind", s.key)),
    }
    Ok(())
}

/// A raw value as TOML: numbers bare, everything else a quoted string.
fn toml_text(s: &Setting, raw: &str) -> String {
    let bare = match s.ty {
        Ty::Int { .. } => raw.parse::<i128>().is_ok(),
        Ty::Float => raw.parse::<f64>().is_ok_and(f64::is_finite),
        Ty::Str => false,
    };
    if bare {
        raw.to_string()
    } else {
        toml::Value::String(raw.to_string()).to_string()
    }
}

/// `text` as `# ` comment lines of at most ~78 columns.
fn comment(text: &str, out: &mut String) {
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + word.len() > 76 {
            out.push_str(&format!("# {line}\n"));
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        out.push_str(&format!("# {line}\n"));
    }
}

/// The effective settings as TOML that `--config` reads back: every key,
/// with its help above it and its source after it.
fn render(
    settings: &[Setting],
    m: &ArgMatches,
    sources: &HashMap<String, Source>,
    config: Option<&Path>,
) -> String {
    let mut out = format!("# ringfan {VERSION}: effective configuration");
    match config {
        Some(p) => out.push_str(&format!(" (--config {})\n", p.display())),
        None => out.push('\n'),
    }
    out.push_str(
        "# Read back with: ringfan --config FILE. Each key is a flag's long name in\n\
         # snake_case; RINGFAN_<KEY> in the environment wins over the file, and the\n\
         # flag over both. The comment after each value says where it came from.\n",
    );
    for s in settings {
        let source = sources
            .get(&s.id)
            .cloned()
            .unwrap_or_else(|| match m.value_source(&s.id) {
                Some(ValueSource::CommandLine) => Source::Flag(s.long.clone()),
                Some(ValueSource::EnvVariable) => Source::Env(s.env.clone()),
                _ => Source::Default,
            });
        // Hidden flags are deprecated ones: shown only when set.
        if s.arg.is_hide_set() && source == Source::Default {
            continue;
        }
        out.push('\n');
        if let Some(help) = s.arg.get_help().or(s.arg.get_long_help()) {
            comment(&help.to_string(), &mut out);
        }
        let raw: Vec<String> = m
            .try_get_raw(&s.id)
            .ok()
            .flatten()
            .map(|vals| vals.map(|v| v.to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        let value = match s.kind {
            Kind::Switch { on } => Some(
                m.try_get_one::<bool>(&s.id)
                    .ok()
                    .flatten()
                    .copied()
                    .unwrap_or(!on)
                    .to_string(),
            ),
            Kind::Count => Some(
                m.try_get_one::<u8>(&s.id)
                    .ok()
                    .flatten()
                    .copied()
                    .unwrap_or(0)
                    .to_string(),
            ),
            Kind::One => raw.first().map(|r| toml_text(s, r)),
            Kind::Many => Some(format!(
                "[{}]",
                raw.iter()
                    .map(|r| toml_text(s, r))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        };
        match value {
            Some(v) => out.push_str(&format!("{} = {v}  # {source}\n", s.key)),
            None => out.push_str(&format!("# {} = (not set)  # {source}\n", s.key)),
        }
    }
    out
}

/// Says what was wrong and exits 2, as clap does for other usage errors.
fn fail(msg: String) -> ! {
    eprintln!("ringfan: {msg}");
    std::process::exit(2)
}

/// The flags, with the environment and the `--config` file under them.
/// `--print-config` prints the result and exits 0; any error exits 2 with
/// a message naming the key and file, or the variable.
pub fn parse() -> Args {
    let cmd = command();
    let settings = settings(&cmd);
    let argv: Vec<OsString> = std::env::args_os().collect();
    // First pass, errors ignored: which flags the command line sets, and
    // where the file is. Help and version print and exit here.
    let first = cmd
        .clone()
        .ignore_errors(true)
        .try_get_matches_from(&argv)
        .unwrap_or_else(|e| e.exit());
    let on_cmdline: HashSet<&str> = settings
        .iter()
        .filter(|s| first.value_source(&s.id) == Some(ValueSource::CommandLine))
        .map(|s| s.id.as_str())
        .collect();
    let config: Option<PathBuf> = first
        .try_get_one::<PathBuf>(CONFIG_ID)
        .ok()
        .flatten()
        .cloned()
        .or_else(|| {
            std::env::var_os(CONFIG_ENV)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        });
    // Every value in the file and the environment is checked, also those
    // a flag overrides: a broken file is reported the day it is written.
    let file = match &config {
        Some(p) => read_file(p, &settings).unwrap_or_else(|m| fail(m)),
        None => HashMap::new(),
    };
    let env = read_env(&settings).unwrap_or_else(|m| fail(m));
    warn_unknown_env(&settings);

    let mut layered: Vec<OsString> =
        vec![argv.first().cloned().unwrap_or_else(|| "ringfan".into())];
    let mut sources = HashMap::new();
    for s in &settings {
        if on_cmdline.contains(s.id.as_str()) {
            continue;
        }
        let (v, source) = match (env.get(&s.id), file.get(&s.id), &config) {
            (Some(v), _, _) => (v, Source::Env(s.env.clone())),
            (None, Some(v), Some(p)) => (v, Source::File(p.clone())),
            _ => continue,
        };
        let at = match &source {
            Source::Env(name) => format!("environment variable {name}"),
            other => other.to_string(),
        };
        push_flags(s, v, &mut layered).unwrap_or_else(|m| fail(format!("{at}: {m}")));
        sources.insert(s.id.clone(), source);
    }
    layered.extend(argv.iter().skip(1).cloned());
    let m = cmd
        .try_get_matches_from(&layered)
        .unwrap_or_else(|e| e.exit());
    let args = Args::from_arg_matches(&m).unwrap_or_else(|e| e.exit());
    if m.get_flag(PRINT_ID) {
        for n in notes() {
            eprintln!("ringfan: note: {n}");
        }
        print!("{}", render(&settings, &m, &sources, config.as_deref()));
        std::process::exit(0);
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_variables_come_from_the_long_names() {
        let cmd = command();
        let all = settings(&cmd);
        let s = all
            .iter()
            .find(|s| s.long == "max-queued-bytes")
            .expect("--max-queued-bytes is a setting");
        assert_eq!(s.key, "max_queued_bytes");
        assert_eq!(s.env, "RINGFAN_MAX_QUEUED_BYTES");
        assert_eq!(s.kind, Kind::One);
        assert!(matches!(s.ty, Ty::Int { min: 0, .. }));
        let origin = all
            .iter()
            .find(|s| s.key == "allow_origin")
            .expect("allow_origin");
        assert_eq!(origin.kind, Kind::Many);
        let no_pin = all.iter().find(|s| s.key == "no_pin").expect("no_pin");
        assert_eq!(no_pin.kind, Kind::Switch { on: true });
        for not in ["help", "version", "config", "print_config"] {
            assert!(all.iter().all(|s| s.key != not), "{not} must not be a key");
        }
        let keys: HashSet<&str> = all.iter().map(|s| s.key.as_str()).collect();
        assert_eq!(keys.len(), all.len(), "two flags share a key");
    }

    /// Secrets never travel as flag values, which `ps` and shell history
    /// show: a flag named like a secret takes a file, or the name of an
    /// environment variable (`--jwt-secret-env`). This holds for flags
    /// added later too, since it reads them all.
    #[test]
    fn no_flag_takes_a_secret_value() {
        let cmd = command();
        for s in settings(&cmd) {
            let secretish = ["secret", "password", "passwd", "token", "key", "credential"]
                .iter()
                .any(|w| s.key.contains(w));
            if !secretish || s.key.ends_with("_env") {
                continue;
            }
            assert!(
                s.arg.get_value_parser().type_id() == TypeId::of::<PathBuf>(),
                "--{} looks like it takes a secret: make it a file (PathBuf) or an env variable's name (-env)",
                s.long
            );
        }
    }

    #[test]
    fn unknown_keys_get_the_nearest_known_one() {
        let cmd = command();
        let all = settings(&cmd);
        assert_eq!(nearest(&all, "max_mesage"), Some("max_message"));
        assert_eq!(nearest(&all, "max-queued-bytes"), Some("max_queued_bytes"));
        assert_eq!(nearest(&all, "zzzz"), None);
    }
}
