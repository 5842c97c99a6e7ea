//! A local OpenAI-compatible HTTP endpoint in front of the secure client
//! (`marill client --openai ADDR`): `GET /v1/models` and `POST /v1/chat/completions`
//! (streaming as server-sent events, or one JSON body). Each request becomes one secure
//! session with the configured server (and helper or dealer); the prompt is the request's
//! messages in the model file's chat template, so it never leaves this host in the clear.
//!
//! The endpoint is meant for `127.0.0.1`: it has no authentication of its own (whoever can
//! reach it can spend the server's work). Every byte a caller sends is untrusted: the request
//! head is at most [`MAX_HEAD`] bytes, the body at most [`MAX_BODY`], the whole request must
//! arrive within [`READ_DEADLINE`] (408 otherwise), a malformed request is a 4xx answer and
//! never ends the endpoint, and `max_tokens` is capped by the client's `--gen`. Requests are
//! served one after another.
//!
//! A secure session generates the number of tokens it was asked for (the count is public to
//! every party); the reply is cut at the template's end-of-turn token (`finish_reason`
//! `"stop"`), otherwise it ends at the cap (`"length"`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::json;

use crate::StdError;
use crate::tokenizer::Tokenizer;

/// Largest request line and headers.
pub const MAX_HEAD: usize = 16 << 10;
/// Largest request body.
pub const MAX_BODY: usize = 1 << 20;
/// How long a caller may take to send its whole request, by default.
pub const READ_DEADLINE: Duration = Duration::from_secs(30);

/// A socket read against one deadline for the whole request: each read waits at most the
/// time left, so a caller that trickles bytes cannot hold the endpoint past it.
struct Deadline<'a> {
    sock: &'a mut TcpStream,
    until: Instant,
}

impl Read for Deadline<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        self.sock.set_read_timeout(Some(left))?;
        self.sock.read(buf)
    }
}

/// 408 for a caller that ran out of time, 400 for anything else unreadable.
fn unreadable(e: &std::io::Error) -> Reject {
    match e.kind() {
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => {
            Reject(408, "request not received in time".into())
        }
        _ => Reject(400, "unreadable request".into()),
    }
}

/// One chat message.
#[derive(Debug, Clone, Deserialize)]
pub struct Message {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
}

#[derive(Deserialize)]
struct ChatRequest {
    messages: Vec<Message>,
    #[serde(default)]
    max_tokens: Option<usize>,
    #[serde(default)]
    max_completion_tokens: Option<usize>,
    #[serde(default)]
    stream: bool,
}

/// The prompt text for `messages`: ChatML (`<|im_start|>role\n…<|im_end|>\n`, then the
/// assistant's turn opened) when the vocabulary has its markers, as SmolLM2's does;
/// otherwise the contents one per line.
pub fn chat_prompt(tok: &Tokenizer, messages: &[Message]) -> String {
    let mut s = String::new();
    if tok.token_id("<|im_start|>").is_some() && tok.token_id("<|im_end|>").is_some() {
        for m in messages {
            s.push_str(&format!("<|im_start|>{}\n{}<|im_end|>\n", m.role, m.content));
        }
        s.push_str("<|im_start|>assistant\n");
    } else {
        for m in messages {
            s.push_str(&m.content);
            s.push('\n');
        }
    }
    s
}

/// What the endpoint serves with.
pub struct Endpoint<'a> {
    /// The model's name in `/v1/models` and in replies.
    pub model_id: String,
    /// The model file's tokenizer.
    pub tokenizer: Tokenizer,
    /// The most tokens one request may generate (`--gen`).
    pub max_tokens: usize,
    /// How long a caller may take to send a whole request ([`READ_DEADLINE`]).
    pub read_deadline: Duration,
    /// Runs one secure session per request.
    pub generate: &'a mut Generate<'a>,
}

/// One secure generation: prompt ids, tokens to generate, a callback per token; returns the
/// generated ids.
pub type Generate<'a> = dyn FnMut(&[u32], usize, &mut dyn FnMut(u32)) -> Result<Vec<u32>, StdError> + 'a;

/// An HTTP answer to a bad request.
struct Reject(u16, String);

impl From<StdError> for Reject {
    fn from(e: StdError) -> Self {
        Reject(502, format!("secure generation failed: {e}"))
    }
}

/// Serve requests on `listener` (`requests`: stop after that many, `None`: never).
/// `log` hears one line per request.
pub fn serve(
    listener: &TcpListener,
    ep: &mut Endpoint<'_>,
    requests: Option<usize>,
    mut log: impl FnMut(&str),
) -> Result<(), StdError> {
    let mut served = 0;
    while requests.is_none_or(|n| served < n) {
        let (mut sock, peer) = listener.accept().map_err(|e| StdError::io("accept", e))?;
        served += 1;
        let _ = sock.set_write_timeout(Some(ep.read_deadline));
        match handle(&mut sock, ep) {
            Ok(what) => log(&format!("{peer}: {what}")),
            Err(Reject(code, msg)) => {
                log(&format!("{peer}: {code} {msg}"));
                let body = json!({ "error": { "message": msg, "type": "invalid_request_error" } }).to_string();
                let _ = respond(&mut sock, code, "application/json", body.as_bytes());
            }
        }
    }
    Ok(())
}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Payload Too Large",
        _ => "Bad Gateway",
    }
}

fn respond(sock: &mut TcpStream, code: u16, ctype: &str, body: &[u8]) -> std::io::Result<()> {
    write!(
        sock,
        "HTTP/1.1 {code} {}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        reason(code),
        body.len()
    )?;
    sock.write_all(body)?;
    sock.flush()
}

/// Read one request: method, path and body, within the limits.
fn read_request(sock: &mut TcpStream, within: Duration) -> Result<(String, String, Vec<u8>), Reject> {
    let bad = |m: &str| Reject(400, m.to_string());
    let deadline = Deadline { sock, until: Instant::now() + within };
    let mut r = BufReader::new(deadline.take((MAX_HEAD + MAX_BODY) as u64));
    let mut head = 0;
    let mut line = String::new();
    let mut next_line = |r: &mut BufReader<_>, line: &mut String| -> Result<(), Reject> {
        line.clear();
        let n = r.by_ref().take((MAX_HEAD - head) as u64).read_line(line).map_err(|e| unreadable(&e))?;
        head += n;
        if n == 0 || !line.ends_with('\n') {
            return Err(Reject(413, format!("request head over {MAX_HEAD} bytes or cut short")));
        }
        Ok(())
    };
    next_line(&mut r, &mut line)?;
    let mut parts = line.split_whitespace();
    let (method, path) = match (parts.next(), parts.next()) {
        (Some(m), Some(p)) => (m.to_string(), p.to_string()),
        _ => return Err(bad("malformed request line")),
    };
    let mut len = 0usize;
    loop {
        next_line(&mut r, &mut line)?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            if k.trim().eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().map_err(|_| bad("bad Content-Length"))?;
            } else if k.trim().eq_ignore_ascii_case("transfer-encoding") {
                return Err(bad("chunked bodies are not accepted: send Content-Length"));
            }
        }
    }
    if len > MAX_BODY {
        return Err(Reject(413, format!("body over {MAX_BODY} bytes")));
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => bad("body shorter than its Content-Length"),
        _ => unreadable(&e),
    })?;
    Ok((method, path, body))
}

fn handle(sock: &mut TcpStream, ep: &mut Endpoint<'_>) -> Result<String, Reject> {
    let (method, path, body) = read_request(sock, ep.read_deadline)?;
    let path = path.split('?').next().unwrap_or_default();
    match (method.as_str(), path) {
        ("GET", "/v1/models") => {
            let body = json!({ "object": "list", "data": [
                { "id": ep.model_id, "object": "model", "created": 0, "owned_by": "marill" }
            ] });
            respond(sock, 200, "application/json", body.to_string().as_bytes()).map_err(io)?;
            Ok("GET /v1/models".into())
        }
        ("POST", "/v1/chat/completions") => chat(sock, ep, &body),
        (_, "/v1/models" | "/v1/chat/completions") => Err(Reject(405, format!("{method} {path}"))),
        _ => Err(Reject(404, format!("no route {path}: /v1/models and /v1/chat/completions"))),
    }
}

fn io(e: std::io::Error) -> Reject {
    Reject(400, format!("caller went away: {e}"))
}

fn chat(sock: &mut TcpStream, ep: &mut Endpoint<'_>, body: &[u8]) -> Result<String, Reject> {
    let req: ChatRequest =
        serde_json::from_slice(body).map_err(|e| Reject(400, format!("not a chat completion request: {e}")))?;
    if req.messages.is_empty() {
        return Err(Reject(400, "messages: at least one".into()));
    }
    let n = req.max_completion_tokens.or(req.max_tokens).unwrap_or(ep.max_tokens);
    if n == 0 || n > ep.max_tokens {
        return Err(Reject(400, format!("max_tokens {n}: 1 to {} (the client's --gen)", ep.max_tokens)));
    }
    let prompt = ep
        .tokenizer
        .encode(&chat_prompt(&ep.tokenizer, &req.messages))
        .map_err(|e| Reject(400, format!("the prompt does not tokenize: {e}")))?;
    let stop: Vec<u32> = ["<|im_end|>", "<|endoftext|>"].iter().filter_map(|t| ep.tokenizer.token_id(t)).collect();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let (id, created) = (format!("chatcmpl-{:x}", now.as_nanos()), now.as_secs());
    let model = ep.model_id.clone();
    let tok = &ep.tokenizer;
    if req.stream {
        write!(
            sock,
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n"
        )
        .map_err(io)?;
        let chunk = |delta: serde_json::Value, finish: Option<&str>| {
            json!({ "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }] })
        };
        let mut sse = |v: serde_json::Value| -> std::io::Result<()> {
            write!(sock, "data: {v}\n\n")?;
            sock.flush()
        };
        sse(chunk(json!({ "role": "assistant", "content": "" }), None)).map_err(io)?;
        // Text is sent as it grows, up to the end of turn (a token may end inside a
        // character); the session runs to its public length either way.
        let (mut ids, mut shown, mut stopped, mut gone) = (Vec::new(), 0, false, false);
        let mut on_token = |t: u32| {
            if stopped || gone {
                return;
            }
            if stop.contains(&t) {
                stopped = true;
                return;
            }
            ids.push(t);
            let text = tok.decode(&ids, false).unwrap_or_default();
            if text.len() > shown && text.is_char_boundary(shown) {
                gone = sse(chunk(json!({ "content": &text[shown..] }), None)).is_err();
                shown = text.len();
            }
        };
        let all = (ep.generate)(&prompt, n, &mut on_token)?;
        let finish = if stopped { "stop" } else { "length" };
        let mut tail = chunk(json!({}), Some(finish));
        tail["marill"] = json!({ "token_ids": all, "prompt_tokens": prompt.len() });
        let _ = write!(sock, "data: {tail}\n\ndata: [DONE]\n\n").and_then(|()| sock.flush());
        return Ok(format!("POST /v1/chat/completions (stream): {} prompt tokens, {n} generated", prompt.len()));
    }
    let all = (ep.generate)(&prompt, n, &mut |_| {})?;
    let end = all.iter().position(|t| stop.contains(t));
    let text = tok.decode(&all[..end.unwrap_or(all.len())], false).map_err(Reject::from)?;
    let body = json!({
        "id": id, "object": "chat.completion", "created": created, "model": model,
        "choices": [{ "index": 0, "message": { "role": "assistant", "content": text },
            "finish_reason": if end.is_some() { "stop" } else { "length" } }],
        "usage": { "prompt_tokens": prompt.len(), "completion_tokens": all.len(),
            "total_tokens": prompt.len() + all.len() },
        "marill": { "token_ids": all },
    });
    respond(sock, 200, "application/json", body.to_string().as_bytes()).map_err(io)?;
    Ok(format!("POST /v1/chat/completions: {} prompt tokens, {n} generated", prompt.len()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn get(addr: std::net::SocketAddr, request: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(request).unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    /// A caller that trickles its request gets 408 once the whole request's deadline
    /// passes (not a per-read timeout it could renew byte by byte), and the endpoint serves
    /// the next caller; a failed secure session is a 502.
    #[test]
    fn a_trickling_caller_is_answered_408_and_the_next_is_served() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let tokenizer =
            Tokenizer::from_parts(vec!["a".into(), "b".into(), "\n".into()], &[], &[], false, false).unwrap();
        let server = std::thread::spawn(move || {
            let mut generate = |_: &[u32], _: usize, _: &mut dyn FnMut(u32)| -> Result<Vec<u32>, StdError> {
                Err(StdError::Usage("no sessions in this test".into()))
            };
            let mut ep = Endpoint {
                model_id: "m".into(),
                tokenizer,
                max_tokens: 4,
                read_deadline: Duration::from_millis(300),
                generate: &mut generate,
            };
            serve(&listener, &mut ep, Some(3), |_| {}).unwrap();
        });
        // One byte every 50 ms: each read gets a byte well within 300 ms, the whole request
        // (2.5 s at this pace) does not.
        let t0 = Instant::now();
        let mut s = TcpStream::connect(addr).unwrap();
        let mut w = s.try_clone().unwrap();
        let trickle = std::thread::spawn(move || {
            for b in b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Slow: yes\r\n\r\n" {
                std::thread::sleep(Duration::from_millis(50));
                if w.write_all(&[*b]).is_err() {
                    break;
                }
            }
        });
        let mut slow = String::new();
        let _ = s.read_to_string(&mut slow);
        assert!(slow.starts_with("HTTP/1.1 408"), "{slow}");
        assert!(t0.elapsed() < Duration::from_secs(2), "answered after {:?}", t0.elapsed());
        trickle.join().unwrap();
        let ok = get(addr, b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(ok.starts_with("HTTP/1.1 200") && ok.contains("\"id\":\"m\""), "{ok}");
        let body = r#"{"messages":[{"role":"user","content":"ab"}]}"#;
        let post = format!("POST /v1/chat/completions HTTP/1.1\r\nContent-Length: {}\r\n\r\n{body}", body.len());
        let failed = get(addr, post.as_bytes());
        assert!(failed.starts_with("HTTP/1.1 502"), "a failed session is a 502: {failed}");
        server.join().unwrap();
    }
}
