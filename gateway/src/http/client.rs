//! Who the client is and whether it is still there: its address ([`address`]), and whether an
//! HTTP/1 client is still connected while its request waits in a model's queue.
//!
//! actix-web keeps running a handler after its client has gone (actix/actix-web#3462), so the
//! queue cannot rely on a dropped future to skip abandoned requests. Instead each plain-TCP
//! connection keeps a duplicate of its socket, and a request's probe peeks at it just before
//! compute: a closed or reset connection reads as end-of-file or an error, a live one would block.
//! HTTPS connections carry no probe (their bytes belong to TLS); their requests always run.

use std::any::Any;
use std::mem::MaybeUninit;
use std::sync::Arc;

use actix_web::dev::Extensions;
use actix_web::HttpRequest;
use maas_serving::batching::ClientProbe;

/// A duplicate of a connection's socket, shared by the requests made on it.
#[derive(Clone)]
struct ClientSocket(Arc<socket2::Socket>);

/// `HttpServer::on_connect` hook: remember the socket of a plain TCP connection.
pub fn on_connect(connection: &dyn Any, extensions: &mut Extensions) {
    if let Some(stream) = connection.downcast_ref::<actix_web::rt::net::TcpStream>() {
        if let Ok(socket) = socket2::SockRef::from(stream).try_clone() {
            extensions.insert(ClientSocket(Arc::new(socket)));
        }
    }
}

/// A probe that answers false once the request's client has closed or reset its connection.
pub fn probe(req: &HttpRequest) -> Option<ClientProbe> {
    let socket = req.conn_data::<ClientSocket>()?.clone();
    Some(Arc::new(move || {
        let mut byte = [MaybeUninit::<u8>::uninit()];
        match socket.0.peek(&mut byte) {
            // End of file: the client closed its side.
            Ok(0) => false,
            // Pipelined bytes of a next request: still there.
            Ok(_) => true,
            Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
        }
    }))
}

/// Parsed once: a lookup by `&str` parses the header name on every request.
const X_FORWARDED_FOR: actix_web::http::header::HeaderName =
    actix_web::http::header::HeaderName::from_static("x-forwarded-for");

/// The client's address: the TCP peer, or, when the peer is one of `auth.trusted_proxies`, what
/// its `X-Forwarded-For` says (`services::auth::client_address`). Login throttling and the audit
/// trail both count requests under it.
pub fn address(req: &HttpRequest) -> Option<std::net::IpAddr> {
    let peer = req.peer_addr().map(|a| a.ip());
    let Some(state) = req.app_data::<actix_web::web::Data<crate::http::AppState>>() else {
        return peer;
    };
    // A value that is not text ends the walk there, as an unreadable entry does.
    let forwarded_for = req
        .headers()
        .get_all(&X_FORWARDED_FOR)
        .map(|v| v.to_str().unwrap_or("?"));
    state
        .settings
        .auth
        .trusted_proxies
        .client(peer, forwarded_for)
}
