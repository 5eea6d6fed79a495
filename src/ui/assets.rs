//! The console's static files, compiled into the binary: one stylesheet, one small script (the
//! polite auto-refresh; every page works without it) and the icon. No build step, no CDN.

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

const CSS: &str = include_str!("assets/console.css");
const JS: &str = include_str!("assets/console.js");
const ICON: &str = include_str!("assets/favicon.svg");

/// Where pages link the stylesheet; the version in the query makes a new release's file new
/// to caches.
pub const CSS_HREF: &str = concat!("/ui/assets/console.css?v=", env!("CARGO_PKG_VERSION"));
/// Where pages load the refresh script from.
pub const JS_HREF: &str = concat!("/ui/assets/console.js?v=", env!("CARGO_PKG_VERSION"));
/// The icon.
pub const ICON_HREF: &str = concat!("/ui/assets/favicon.svg?v=", env!("CARGO_PKG_VERSION"));

/// The file called `name` with its content type, if there is one.
pub fn lookup(name: &str) -> Option<(&'static str, &'static str)> {
    match name {
        "console.css" => Some(("text/css; charset=utf-8", CSS)),
        "console.js" => Some(("text/javascript; charset=utf-8", JS)),
        "favicon.svg" => Some(("image/svg+xml", ICON)),
        _ => None,
    }
}

/// `GET /ui/assets/{name}`: public (the login page needs them), cached for an hour.
pub async fn serve(Path(name): Path<String>) -> Response {
    match lookup(&name) {
        Some((content_type, body)) => (
            [
                (header::CONTENT_TYPE, content_type),
                (header::CACHE_CONTROL, "public, max-age=3600"),
            ],
            body,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_linked_asset_is_embedded() {
        for href in [CSS_HREF, JS_HREF, ICON_HREF] {
            let name = href
                .strip_prefix("/ui/assets/")
                .and_then(|n| n.split('?').next())
                .unwrap();
            let (_, body) = lookup(name).unwrap_or_else(|| panic!("{name} is not embedded"));
            assert!(!body.is_empty());
        }
        assert_eq!(lookup("../Cargo.toml"), None);
    }
}
