//! Logs on stderr via `tracing`: text for people, JSON for log shippers.
//!
//! Colour (ANSI escape codes) is for a person at a terminal only. When stderr is a file, a pipe or
//! journald, escape codes would end up as `\x1b[2m…` garbage in every line, so they are written
//! only when stderr is a terminal, never in the JSON format, and never when `NO_COLOR` is set to a
//! non-empty value (<https://no-color.org>).

use crate::cli::LogFormat;
use std::io::IsTerminal;

/// Whether log lines get colour, given the format, whether stderr is a terminal, and the value
/// of `NO_COLOR`. Pure, so the rule is tested without a terminal.
pub fn use_color(format: LogFormat, stderr_is_terminal: bool, no_color: Option<&str>) -> bool {
    format == LogFormat::Text && stderr_is_terminal && no_color.is_none_or(str::is_empty)
}

/// Sets up logging on stderr; the level comes from `RUST_LOG` (default `info`).
pub fn init(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let no_color = std::env::var("NO_COLOR").ok();
    let color = use_color(format, std::io::stderr().is_terminal(), no_color.as_deref());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(color)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
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
}
