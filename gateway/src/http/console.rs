//! The operator console: a small static web app at `/console`, embedded in the binary.
//!
//! The server only hands out a few files (the page, a style sheet, the scripts); everything the
//! console shows comes from the JSON API, which the scripts call with the operator's bearer token. So these routes need no
//! authentication, hold no state, and load nothing from outside (the content security policy
//! says so to the browser too).

use std::sync::LazyLock;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use sha2::{Digest, Sha256};

use crate::http::error::{ErrorKind, ServiceError};

/// One embedded file and the headers it is served with.
struct Asset {
    body: &'static str,
    content_type: &'static str,
    /// A strong validator, so `Cache-Control: no-cache` costs a 304 rather than the whole file.
    etag: LazyLock<String>,
}

macro_rules! asset {
    ($file:literal, $content_type:literal) => {
        Asset {
            body: include_str!($file),
            content_type: $content_type,
            etag: LazyLock::new(|| {
                let digest = Sha256::digest(include_str!($file).as_bytes());
                format!("\"{}\"", hex::encode(&digest[..12]))
            }),
        }
    };
}

static INDEX_HTML: Asset = asset!("console/index.html", "text/html; charset=utf-8");
static APP_CSS: Asset = asset!("console/app.css", "text/css; charset=utf-8");

/// The scripts, in the order index.html loads them: `app.js` (what every page shares, and the
/// start) first, then one per section. Classic scripts, so they share top-level names.
static SCRIPTS: [(&str, Asset); 6] = [
    (
        "app.js",
        asset!("console/app.js", "text/javascript; charset=utf-8"),
    ),
    (
        "charts.js",
        asset!("console/charts.js", "text/javascript; charset=utf-8"),
    ),
    (
        "models.js",
        asset!("console/models.js", "text/javascript; charset=utf-8"),
    ),
    (
        "drift.js",
        asset!("console/drift.js", "text/javascript; charset=utf-8"),
    ),
    (
        "audit.js",
        asset!("console/audit.js", "text/javascript; charset=utf-8"),
    ),
    (
        "jobs.js",
        asset!("console/jobs.js", "text/javascript; charset=utf-8"),
    ),
];

/// The page may talk to this server only: no CDN, no font service, no inline script.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

/// Register `/console`, `/console/`, `/console/app.css` and `/console/{script}.js`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    let mut routes: Vec<(String, &'static Asset)> = vec![
        ("/console".to_owned(), &INDEX_HTML),
        ("/console/".to_owned(), &INDEX_HTML),
        ("/console/app.css".to_owned(), &APP_CSS),
    ];
    routes.extend(
        SCRIPTS
            .iter()
            .map(|(name, asset)| (format!("/console/{name}"), asset)),
    );
    for (path, asset) in routes {
        let handler = move |req: HttpRequest| async move { serve(asset, &req) };
        cfg.service(
            web::resource(path)
                .route(web::get().to(handler))
                .route(web::head().to(handler))
                .default_service(web::to(method_not_allowed)),
        );
    }
}

fn serve(asset: &Asset, req: &HttpRequest) -> HttpResponse {
    let etag = asset.etag.as_str();
    let fresh = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut response = if fresh {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    response
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::ETAG, etag))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
        .insert_header((header::REFERRER_POLICY, "no-referrer"));
    if fresh {
        return response.finish();
    }
    response
        .insert_header((header::CONTENT_TYPE, asset.content_type))
        .body(asset.body)
}

async fn method_not_allowed(req: HttpRequest) -> ServiceError {
    ServiceError::new(
        ErrorKind::MethodNotAllowed,
        format!("{} is not allowed on {}", req.method(), req.path()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The scripts name the SVG namespace (an identifier, never fetched); the page and the
    /// style sheet name no address at all.
    #[test]
    fn the_page_names_no_outside_address() {
        for asset in [&INDEX_HTML, &APP_CSS] {
            assert!(!asset.body.contains("http://") && !asset.body.contains("https://"));
        }
        for (name, script) in &SCRIPTS {
            let js = script.body.replace("http://www.w3.org/2000/svg", "");
            assert!(
                !js.contains("http://") && !js.contains("https://"),
                "{name} names an outside address"
            );
        }
    }

    /// index.html loads every script, app.js first; each stays small enough to read.
    #[test]
    fn the_page_loads_every_script_in_order() {
        let mut at = 0;
        for (name, script) in &SCRIPTS {
            let tag = format!("<script src=\"/console/{name}\" defer></script>");
            let found = INDEX_HTML.body[at..]
                .find(&tag)
                .unwrap_or_else(|| panic!("index.html does not load {name} after the previous"));
            at += found + tag.len();
            assert!(script.body.len() < 40_000, "{name} is over 40 kB");
        }
    }

    #[test]
    fn etags_differ_per_file() {
        assert_ne!(*INDEX_HTML.etag, *SCRIPTS[0].1.etag);
        assert_ne!(*SCRIPTS[0].1.etag, *SCRIPTS[1].1.etag);
        assert!(APP_CSS.etag.starts_with('"') && APP_CSS.etag.ends_with('"'));
    }
}
