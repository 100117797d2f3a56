//! The few plain HTTP/1.1 responses the server writes: handshake errors,
//! health and metrics. Always with a length, so clients never guess.

use bytes::{BufMut, Bytes, BytesMut};

pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        301 => "Moved Permanently",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        411 => "Length Required",
        413 => "Payload Too Large",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// A complete response. `close` adds `Connection: close`: the server will
/// close the transport after sending it.
pub fn response(
    status: u16,
    headers: &[(&str, &str)],
    content_type: &str,
    body: &[u8],
    close: bool,
) -> Bytes {
    let mut b = BytesMut::with_capacity(128 + body.len());
    b.put_slice(b"HTTP/1.1 ");
    b.put_slice(status.to_string().as_bytes());
    b.put_u8(b' ');
    b.put_slice(reason_phrase(status).as_bytes());
    b.put_slice(b"\r\n");
    for (k, v) in headers {
        b.put_slice(k.as_bytes());
        b.put_slice(b": ");
        b.put_slice(v.as_bytes());
        b.put_slice(b"\r\n");
    }
    b.put_slice(b"Content-Type: ");
    b.put_slice(content_type.as_bytes());
    b.put_slice(b"\r\nContent-Length: ");
    b.put_slice(body.len().to_string().as_bytes());
    b.put_slice(b"\r\n");
    if close {
        b.put_slice(b"Connection: close\r\n");
    }
    b.put_slice(b"\r\n");
    b.put_slice(body);
    b.freeze()
}

/// The status code of a response this module wrote (`HTTP/1.1 NNN ...`).
pub fn status_of(response: &[u8]) -> Option<u16> {
    let code = response.strip_prefix(b"HTTP/1.1 ")?.get(..3)?;
    std::str::from_utf8(code).ok()?.parse().ok()
}

/// A short text/plain error answer that closes the connection.
pub fn error(status: u16, headers: &[(&str, &str)], message: &str) -> Bytes {
    let mut body = String::with_capacity(message.len() + 1);
    body.push_str(message);
    body.push('\n');
    response(
        status,
        headers,
        "text/plain; charset=utf-8",
        body.as_bytes(),
        true,
    )
}

/// An error answer whose body is JSON, `{"error":code,"message":…}`, for
/// JSON APIs (`POST /publish`): the shape of the WebSocket `err`.
pub fn json_error(status: u16, headers: &[(&str, &str)], code: &str, message: &str) -> Bytes {
    let mut body = serde_json::json!({ "error": code, "message": message }).to_string();
    body.push('\n');
    response(status, headers, "application/json", body.as_bytes(), true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_response_is_well_formed() {
        let r = error(426, &[("Sec-WebSocket-Version", "13")], "version 13 only");
        let mut headers = [httparse::EMPTY_HEADER; 8];
        let mut resp = httparse::Response::new(&mut headers);
        let n = match resp.parse(&r).unwrap() {
            httparse::Status::Complete(n) => n,
            httparse::Status::Partial => panic!("partial"),
        };
        assert_eq!(resp.code, Some(426));
        assert_eq!(status_of(&r), Some(426));
        assert_eq!(status_of(b"HTTP/1.1 2"), None);
        assert_eq!(resp.reason, Some("Upgrade Required"));
        let get = |name: &str| {
            resp.headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .map(|h| std::str::from_utf8(h.value).unwrap().to_string())
        };
        assert_eq!(get("Connection").as_deref(), Some("close"));
        assert_eq!(get("Sec-WebSocket-Version").as_deref(), Some("13"));
        let len: usize = get("Content-Length").unwrap().parse().unwrap();
        assert_eq!(&r[n..], b"version 13 only\n");
        assert_eq!(len, r.len() - n);
    }
}
