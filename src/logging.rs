//! Logs on stderr via `tracing`: text for people, JSON for log shippers.
//!
//! Colour (ANSI escape codes) is for a person at a terminal only. When stderr is a file, a pipe or
//! journald, escape codes would end up as `\x1b[2m…` garbage in every line, so they are written
//! only when stderr is a terminal, never in the JSON format, and never when `NO_COLOR` is set to a
//! non-empty value (<https://no-color.org>).
//!
//! Level and format come from the config's `[log]` section and follow reloads, with the usual
//! overrides winning: `RUST_LOG` (set and not empty) over `level`, `--log-format` over `format`.
//! Lines written before the config is read (start-up errors) use `RUST_LOG` or `info`, and the
//! command-line format or text.

use std::io::IsTerminal;
use std::sync::{Mutex, OnceLock};
use tracing_subscriber::layer::{Layered, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Layer, Registry};

/// The log line format.
#[derive(
    Copy, Clone, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Whether log lines get colour, given the format, whether stderr is a terminal, and the value
/// of `NO_COLOR`. Pure, so the rule is tested without a terminal.
pub fn use_color(format: LogFormat, stderr_is_terminal: bool, no_color: Option<&str>) -> bool {
    format == LogFormat::Text && stderr_is_terminal && no_color.is_none_or(str::is_empty)
}

/// `Ok` when `level` is a valid `tracing` filter; otherwise why not, for the config error.
pub fn check_level(level: &str) -> Result<(), String> {
    EnvFilter::builder().parse(level).map(|_| ()).map_err(|e| {
        format!("is not a valid log filter ({e}), e.g. \"info\" or \"warn,alertd=debug\"")
    })
}

type Filtered = Layered<reload::Layer<EnvFilter, Registry>, Registry>;
type FmtLayer = Box<dyn Layer<Filtered> + Send + Sync>;

/// What can change after start-up, and what the command line and environment fixed.
struct Live {
    filter: reload::Handle<EnvFilter, Registry>,
    fmt: reload::Handle<FmtLayer, Filtered>,
    /// `--log-format`, when given.
    cli_format: Option<LogFormat>,
    /// `RUST_LOG`, when set and not empty.
    env_level: Option<String>,
    /// The level and format in force.
    current: Mutex<(String, LogFormat)>,
}

static LIVE: OnceLock<Live> = OnceLock::new();

fn fmt_layer(format: LogFormat) -> FmtLayer {
    let no_color = std::env::var("NO_COLOR").ok();
    let color = use_color(format, std::io::stderr().is_terminal(), no_color.as_deref());
    match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_ansi(color)
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_ansi(false)
            .with_writer(std::io::stderr)
            .boxed(),
    }
}

/// Sets up logging on stderr with the start-up defaults; [`apply`] brings in the config.
pub fn init(cli_format: Option<LogFormat>) {
    let env_level = std::env::var("RUST_LOG").ok().filter(|v| !v.is_empty());
    let level = env_level.clone().unwrap_or_else(|| "info".into());
    let format = cli_format.unwrap_or(LogFormat::Text);
    let filter = EnvFilter::builder()
        .parse(&level)
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, filter_handle) = reload::Layer::new(filter);
    let (fmt, fmt_handle) = reload::Layer::new(fmt_layer(format));
    if tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .try_init()
        .is_ok()
    {
        let _ = LIVE.set(Live {
            filter: filter_handle,
            fmt: fmt_handle,
            cli_format,
            env_level,
            current: Mutex::new((level, format)),
        });
    }
}

/// Applies the config's `[log]` level and format (at start and after each reload), unless
/// `RUST_LOG` or `--log-format` overrides them. A change is logged once, in the new format.
pub fn apply(cfg: &crate::config::LogConfig) {
    let Some(live) = LIVE.get() else {
        return;
    };
    let level = live.env_level.clone().unwrap_or_else(|| cfg.level.clone());
    let format = live.cli_format.unwrap_or(cfg.format);
    let mut current = live
        .current
        .lock()
        .expect("the log settings lock is never poisoned");
    if *current == (level.clone(), format) {
        return;
    }
    // The level was validated with the config; a failure here leaves the old filter in place.
    if current.0 != level {
        if let Ok(filter) = EnvFilter::builder().parse(&level) {
            let _ = live.filter.reload(filter);
        }
    }
    if current.1 != format {
        let _ = live.fmt.reload(fmt_layer(format));
    }
    *current = (level, format);
    tracing::info!(level = %current.0, format = ?current.1, "log settings applied");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_for_text_on_a_terminal_without_no_color() {
        assert!(use_color(LogFormat::Text, true, None));
        assert!(
            use_color(LogFormat::Text, true, Some("")),
            "empty NO_COLOR does not count"
        );
        assert!(!use_color(LogFormat::Text, true, Some("1")));
        assert!(!use_color(LogFormat::Text, false, None));
        assert!(!use_color(LogFormat::Json, true, None));
    }

    #[test]
    fn a_level_must_be_a_filter() {
        assert!(check_level("info").is_ok());
        assert!(check_level("warn,alertd::delivery=debug").is_ok());
        assert!(check_level("alertd=loud").is_err());
    }
}
