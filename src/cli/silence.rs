//! `alertd silence add|list|expire`: silences on a running daemon, through its API (DESIGN §12).

use super::{daemon, DEFAULT_CONFIG};
use anyhow::{bail, Context as _};
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use std::path::PathBuf;

/// How to reach the daemon: its config file (for `server.listen` and the token), or a URL.
#[derive(Args, Debug)]
pub struct Target {
    #[arg(short, long, default_value = DEFAULT_CONFIG)]
    config: PathBuf,
    /// Daemon base URL (default: from server.listen of the config).
    #[arg(long)]
    url: Option<String>,
    /// Bearer token (default: server.auth_token of the config, sent only to its own address).
    #[arg(long, env = "ALERTD_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum SilenceCommand {
    /// Mute an alert (or every alert with `*`) for a while. Prints the new silence's id.
    ///
    /// Notifications it matches are not sent but listed by `alertd deliveries --status
    /// suppressed`. When it ends, a trigger that is still firing notifies at the next tick.
    Add {
        /// The alert id, or `*` for every alert.
        alert: String,
        /// Only this event type (repeatable; default: every event type of the alert).
        #[arg(long = "event", value_name = "TYPE")]
        events: Vec<String>,
        /// How long, e.g. 2h, 90m, 1d.
        #[arg(
            long = "for",
            value_name = "DURATION",
            required_unless_present = "until",
            conflicts_with = "until"
        )]
        duration: Option<String>,
        /// Until when, RFC 3339, e.g. 2026-11-20T18:00:00Z.
        #[arg(long, value_name = "TIME")]
        until: Option<String>,
        /// From when, RFC 3339 (default: now).
        #[arg(long, value_name = "TIME")]
        from: Option<String>,
        /// Why: shown in listings.
        #[arg(long, default_value = "")]
        comment: String,
        /// Who (default: $USER).
        #[arg(long)]
        created_by: Option<String>,
        #[command(flatten)]
        target: Target,
    },
    /// List silences: pending, active, and those expired within the last 24 hours.
    List {
        #[command(flatten)]
        target: Target,
    },
    /// End a silence now.
    Expire {
        /// The silence id.
        id: String,
        #[command(flatten)]
        target: Target,
    },
}

/// Runs one `alertd silence` command.
pub async fn run(cmd: SilenceCommand) -> anyhow::Result<()> {
    match cmd {
        SilenceCommand::Add {
            alert,
            events,
            duration,
            until,
            from,
            comment,
            created_by,
            target,
        } => {
            let d = daemon(&target.config, target.url, target.token)?;
            let mut body = json!({
                "alert": alert,
                "event_types": events,
                "comment": comment,
                "created_by": created_by
                    .or_else(|| std::env::var("USER").ok())
                    .unwrap_or_default(),
            });
            for (key, value) in [
                ("duration", duration),
                ("ends_at", until),
                ("starts_at", from),
            ] {
                if let Some(v) = value {
                    body[key] = json!(v);
                }
            }
            let resp = d
                .req(reqwest::Method::POST, "/v1/silences")
                .json(&body)
                .send()
                .await
                .with_context(|| format!("cannot reach alertd at {}", d.base))?;
            let ok = resp.status().is_success();
            let answer: Value = resp.json().await.unwrap_or_default();
            if !ok {
                bail!("{}", answer["error"].as_str().unwrap_or("request failed"));
            }
            let id = answer["id"].as_str().unwrap_or_default();
            eprintln!("silence created; end it early with `alertd silence expire {id}`");
            say!("{id}");
            Ok(())
        }
        SilenceCommand::List { target } => {
            let d = daemon(&target.config, target.url, target.token)?;
            let body = d.call(reqwest::Method::GET, "/v1/silences").await?;
            let rows = body["silences"].as_array().cloned().unwrap_or_default();
            say!(
                "{:<36}  {:<20}  {:<8}  {:<24}  {:<24}  {:<28}  {:<12}  COMMENT",
                "ID",
                "ALERT",
                "STATE",
                "STARTS",
                "ENDS",
                "EVENT TYPES",
                "CREATED BY"
            );
            for r in &rows {
                let s = |k: &str| r[k].as_str().unwrap_or("").to_string();
                let types: Vec<&str> = r["event_types"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|t| t.as_str())
                    .collect();
                say!(
                    "{:<36}  {:<20}  {:<8}  {:<24}  {:<24}  {:<28}  {:<12}  {}",
                    s("id"),
                    s("alert"),
                    s("state"),
                    s("starts_at"),
                    s("ends_at"),
                    if types.is_empty() {
                        "all".to_string()
                    } else {
                        types.join(",")
                    },
                    s("created_by"),
                    s("comment")
                );
            }
            eprintln!(
                "{} silence{}",
                rows.len(),
                if rows.len() == 1 { "" } else { "s" }
            );
            Ok(())
        }
        SilenceCommand::Expire { id, target } => {
            let d = daemon(&target.config, target.url, target.token)?;
            let body = d
                .call(reqwest::Method::DELETE, &format!("/v1/silences/{id}"))
                .await?;
            say!(
                "expired {id} (alert {}, ended {})",
                body["silence"]["alert"].as_str().unwrap_or("?"),
                body["silence"]["ends_at"].as_str().unwrap_or("?")
            );
            Ok(())
        }
    }
}
