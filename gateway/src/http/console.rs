//! The operator console: a small static web app at `/console`, embedded in the binary.
//!
//! The server only hands out three files; everything the console shows comes from the JSON API,
//! which the page's script calls with the operator's bearer token. So these routes need no
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
static APP_JS: Asset = asset!("console/app.js", "text/javascript; charset=utf-8");
static APP_CSS: Asset = asset!("console/app.css", "text/css; charset=utf-8");

/// The page may talk to this server only: no CDN, no font service, no inline script.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

/// Register `/console`, `/console/`, `/console/app.js` and `/console/app.css`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    let routes: [(&str, &'static Asset); 4] = [
        ("/console", &INDEX_HTML),
        ("/console/", &INDEX_HTML),
        ("/console/app.js", &APP_JS),
        ("/console/app.css", &APP_CSS),
    ];
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

    /// The script names the SVG namespace (an identifier, never fetched); the page and the
    /// style sheet name no address at all.
    #[test]
    fn the_page_names_no_outside_address() {
        for asset in [&INDEX_HTML, &APP_CSS] {
            assert!(!asset.body.contains("http://") && !asset.body.contains("https://"));
        }
        let js = APP_JS.body.replace("http://www.w3.org/2000/svg", "");
        assert!(!js.contains("http://") && !js.contains("https://"));
    }

    #[test]
    fn etags_differ_per_file() {
        assert_ne!(*INDEX_HTML.etag, *APP_JS.etag);
        assert!(APP_CSS.etag.starts_with('"') && APP_CSS.etag.ends_with('"'));
    }
}
