//! HTTP/1.1 messages (RFC 9112): requests with a Host header, responses with a Content-Length,
//! bodies of HTML or JSON text. Only the bytes; when they are sent is [`super::apps`]' business.

use rand::{Rng, RngExt};

/// A request. `body` (with its type) makes it carry Content-Type and Content-Length.
pub(super) fn request(
    method: &str,
    path: &str,
    host: &str,
    body: Option<(&str, &[u8])>,
) -> Vec<u8> {
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: vmdep-workload/1.0\r\nAccept: */*\r\n"
    );
    if let Some((content_type, body)) = body {
        head.push_str(&format!(
            "Content-Type: {content_type}\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    if let Some((_, body)) = body {
        bytes.extend_from_slice(body);
    }
    bytes
}

/// A response with a body of `content_type`.
pub(super) fn response(status: u16, content_type: &str, body: &[u8]) -> Vec<u8> {
    let reason = match status {
        200 => "OK",
        201 => "Created",
        404 => "Not Found",
        _ => "Internal Server Error",
    };
    let mut bytes = format!(
        "HTTP/1.1 {status} {reason}\r\nServer: vmdep-workload/1.0\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nCache-Control: no-store\r\n\r\n",
        body.len()
    )
    .into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

const WORDS: [&str; 16] = [
    "order", "item", "price", "cart", "stock", "user", "review", "delivery", "total", "invoice",
    "catalog", "shipping", "discount", "account", "payment", "status",
];

/// An HTML page of `len` bytes (or of the bare page's 43 if `len` is shorter).
pub(super) fn html_page<R: Rng>(rng: &mut R, len: usize) -> Vec<u8> {
    const HEAD: &str = "<!DOCTYPE html><html><body>\n";
    const TAIL: &str = "</body></html>\n";
    let target = len.max(HEAD.len() + TAIL.len());
    let mut page = String::from(HEAD);
    loop {
        let word = WORDS[rng.random_range(0..WORDS.len())];
        let line = format!("<p>{word} {}</p>\n", rng.random_range(0..10_000));
        if page.len() + line.len() + TAIL.len() > target {
            break;
        }
        page.push_str(&line);
    }
    while page.len() + TAIL.len() < target {
        page.push(' ');
    }
    page.push_str(TAIL);
    page.into_bytes()
}

/// A JSON array of `records` small objects.
pub(super) fn json_records<R: Rng>(rng: &mut R, records: usize) -> Vec<u8> {
    let items: Vec<String> = (0..records)
        .map(|_| {
            format!(
                "{{\"id\":{},\"{}\":\"{}\",\"qty\":{}}}",
                rng.random_range(1..1_000_000),
                WORDS[rng.random_range(0..WORDS.len())],
                WORDS[rng.random_range(0..WORDS.len())],
                rng.random_range(1..100)
            )
        })
        .collect();
    format!("[{}]", items.join(",")).into_bytes()
}
