//! The demo page (`/`) and the agent page (`/agent/`), embedded in the binary.

use axum::http::{Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Redirect, Response};
use rust_embed::RustEmbed;

use super::http_error;
use crate::protocol::ErrorCode;

#[derive(RustEmbed)]
#[folder = "web/"]
struct Web;

pub async fn serve(method: Method, uri: Uri) -> Response {
    let path = uri.path();
    if method != Method::GET && method != Method::HEAD {
        return http_error(
            StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::InvalidField,
            "only GET is served here",
        );
    }
    if path == "/agent" {
        return Redirect::permanent("/agent/").into_response();
    }
    let mut file = path.trim_start_matches('/').to_owned();
    if file.is_empty() || file.ends_with('/') {
        file.push_str("index.html");
    }
    match Web::get(&file) {
        Some(content) => (
            [
                (header::CONTENT_TYPE, content.metadata.mimetype().to_owned()),
                (header::CACHE_CONTROL, "no-cache".to_owned()),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
            ],
            content.data.into_owned(),
        )
            .into_response(),
        None => http_error(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            &format!("nothing at {}", path.chars().take(200).collect::<String>()),
        ),
    }
}
