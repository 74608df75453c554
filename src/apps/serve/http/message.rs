// SPDX-License-Identifier: Apache-2.0
//! HTTP messages: a request head parsed, a response written out.

/// What a complete (or early-failed) request head asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A GET of this path (query string removed), with its `Accept` and `Authorization`
    /// headers.
    Get {
        path: String,
        accept: Option<String>,
        authorization: Option<String>,
    },
    /// An error status to answer with.
    Error(u16),
    /// Not complete yet.
    Partial,
}

/// Parses what arrived of a request head. A bad request line is answered as soon as it
/// is complete; headers once the head is. Lines end with CRLF or a bare LF (RFC 9112
/// 2.2 lets a server take a bare LF as a line end, and clients typed by hand send them).
pub fn parse(buf: &[u8], max_head: usize) -> Parsed {
    let too_long = || {
        if buf.len() > max_head {
            Parsed::Error(431)
        } else {
            Parsed::Partial
        }
    };
    let Some(line_end) = buf.iter().position(|&b| b == b'\n') else {
        return too_long();
    };
    let Ok(line) = std::str::from_utf8(&buf[..line_end]) else {
        return Parsed::Error(400);
    };
    let line = line.strip_suffix('\r').unwrap_or(line);
    let parts: Vec<&str> = line.split(' ').collect();
    let [method, target, version] = parts[..] else {
        return Parsed::Error(400);
    };
    let token = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphabetic());
    if !token(method)
        || !target.starts_with('/')
        || target.bytes().any(|b| b.is_ascii_control())
        || !(version == "HTTP/1.1" || version == "HTTP/1.0")
    {
        return Parsed::Error(400);
    }
    // The head ends at the first empty line after the request line.
    let mut headers = Vec::new();
    let mut at = line_end + 1;
    let head_end = loop {
        let Some(n) = buf[at..].iter().position(|&b| b == b'\n') else {
            return too_long();
        };
        let h = &buf[at..at + n];
        let h = h.strip_suffix(b"\r").unwrap_or(h);
        at += n + 1;
        if h.is_empty() {
            break at;
        }
        headers.push(h);
    };
    if head_end > max_head {
        return Parsed::Error(431);
    }
    let mut accept = None;
    let mut authorization = None;
    for h in headers {
        let Ok(h) = std::str::from_utf8(h) else {
            return Parsed::Error(400);
        };
        let Some((name, value)) = h.split_once(':') else {
            return Parsed::Error(400);
        };
        if name.is_empty() || name.bytes().any(|b| b <= b' ' || b >= 0x7f) {
            return Parsed::Error(400);
        }
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            match value.parse::<u64>() {
                Ok(0) => {}
                Ok(_) => return Parsed::Error(413),
                Err(_) => return Parsed::Error(400),
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Parsed::Error(413);
        } else if name.eq_ignore_ascii_case("accept") {
            accept = Some(value.to_string());
        } else if name.eq_ignore_ascii_case("authorization") {
            authorization = Some(value.to_string());
        }
    }
    if method != "GET" {
        return Parsed::Error(405);
    }
    let path = target.split('?').next().unwrap_or("/").to_string();
    Parsed::Get {
        path,
        accept,
        authorization,
    }
}

pub(super) fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// A whole response.
pub fn response(status: u16, content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut bytes = response_head(status, content_type, body.len());
    bytes.extend_from_slice(body);
    bytes
}

/// The status line and headers of a response whose body is `len` bytes.
pub(super) fn response_head(status: u16, content_type: &str, len: usize) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n",
        reason(status),
        len
    );
    if status == 405 {
        out.push_str("Allow: GET\r\n");
    }
    if status == 401 {
        out.push_str("WWW-Authenticate: Basic realm=\"btrace\", charset=\"UTF-8\"\r\n");
    }
    out.push_str("\r\n");
    out.into_bytes()
}

pub(super) fn error_response(status: u16) -> Vec<u8> {
    let body = format!("{status} {}\n", reason(status));
    response(status, "text/plain; charset=utf-8", body.as_bytes())
}

pub(super) const INDEX: &str = "<html><head><title>btrace</title></head><body><h1>btrace serve</h1><p><a href=\"/metrics\">Metrics</a></p></body></html>\n";

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Parsed {
        parse(s.as_bytes(), 8192)
    }

    #[test]
    fn requests() {
        assert_eq!(
            p("GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\nAccept: text/plain\r\n\r\n"),
            Parsed::Get {
                path: "/metrics".into(),
                accept: Some("text/plain".into()),
                authorization: None
            }
        );
        assert_eq!(p("GET /metrics HTTP/1.1\r\nHost: a"), Parsed::Partial);
        assert_eq!(p("\x16\x03\x01garbage\r\n"), Parsed::Error(400));
        assert_eq!(p("hello\r\n\r\n"), Parsed::Error(400));
        assert_eq!(p("GET metrics HTTP/1.1\r\n\r\n"), Parsed::Error(400));
        assert_eq!(p("GET / HTTP/1.1\r\nno colon\r\n\r\n"), Parsed::Error(400));
        assert_eq!(p("POST /metrics HTTP/1.1\r\n\r\n"), Parsed::Error(405));
        assert_eq!(
            p("GET / HTTP/1.0\r\n\r\n"),
            Parsed::Get {
                path: "/".into(),
                accept: None,
                authorization: None
            }
        );
        // Bare LF line ends are taken as CRLF.
        assert_eq!(
            p("GET /metrics HTTP/1.1\nHost: a\nAuthorization: Basic eDp5\n\n"),
            Parsed::Get {
                path: "/metrics".into(),
                accept: None,
                authorization: Some("Basic eDp5".into())
            }
        );
        assert_eq!(p("GET /metrics HTTP/1.1\nHost: a\n"), Parsed::Partial);
        assert_eq!(
            p("GET /metrics HTTP/1.1\r\nContent-Length: 5\r\n\r\n"),
            Parsed::Error(413)
        );
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(9000));
        assert_eq!(p(&big), Parsed::Error(431));
        assert_eq!(parse(&[b'a'; 9000], 8192), Parsed::Error(431));
    }
}
