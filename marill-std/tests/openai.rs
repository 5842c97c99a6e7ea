//! `marill client --openai ADDR` against real processes (server and helper in 3PC): the
//! OpenAI-compatible endpoint lists the model (to curl), answers a chat completion with the plaintext
//! model's tokens for the chat-templated prompt, streams the same as server-sent events,
//! refuses bad requests with 4xx answers and goes on serving. (`scripts/openai-check.py`
//! drives it with the `openai` Python package; `scripts/test.sh` runs that too.)

#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::TcpStream;

mod common;
use common::{check_tokens, serve, start};
use marill_std::model::random::{self, Family, Shape, Variant};
use marill_std::model_file::extract_public;
use marill_std::openai::{Message, chat_prompt};
use marill_std::tokenizer::Tokenizer;

/// A 64-token character vocabulary with ChatML's markers.
pub fn chat_tokenizer() -> Tokenizer {
    let mut tokens: Vec<String> = vec!["<|im_start|>".into(), "<|im_end|>".into(), "\n".into(), " ".into()];
    tokens.extend(('a'..='z').map(String::from));
    tokens.extend(('A'..='Z').map(String::from));
    tokens.extend(('0'..='7').map(String::from));
    Tokenizer::from_parts(tokens, &[], &[0, 1], false, false).unwrap()
}

fn http(addr: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let code = out.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = out.split_once("\r\n\r\n").unwrap().1.to_string();
    (code, body)
}

#[test]
fn an_openai_client_gets_the_plaintext_models_tokens() {
    let dir = std::env::temp_dir().join(format!("marill-openai-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let tok = chat_tokenizer();
    let json = tok.to_hf_json();
    let v = Variant { public_layers: 2, lora_rank: 4, head_merge: 1, mpc_friendly: false, private_embedding: false };
    let shape = Shape { layers: 4, d: 32, heads: 4, kv_heads: 2, ffn: 64, vocab: 64 };
    let server = random::model_with(v, shape, Family::Llama, 31, Some(&json)).unwrap();
    let client = extract_public(&server).unwrap();
    let (sp, cp) = (dir.join("chat-server.marill"), dir.join("chat.marill"));
    std::fs::write(&sp, &server).unwrap();
    std::fs::write(&cp, &client).unwrap();
    let (sp, cp) = (sp.to_str().unwrap(), cp.to_str().unwrap());
    let plain = ["--insecure-plaintext".to_string()];
    // The `openai` package's check runs where scripts/test.sh installed it (3 requests, 2
    // sessions more).
    let python = std::env::var("MARILL_OPENAI_PYTHONPATH").ok();
    if python.is_none() {
        eprintln!("MARILL_OPENAI_PYTHONPATH unset: the openai-package check is skipped (scripts/test.sh runs it)");
    }
    let (requests, sessions) = if python.is_some() { ("10", "4") } else { ("7", "2") };
    let (mut srv, saddr) = serve(sp, "rep3", sessions, &plain);
    #[rustfmt::skip]
    let (mut hlp, haddr) = start(
        &["helper", "--model", cp, "--listen", "127.0.0.1:0", "--server", &saddr, "--sessions", sessions,
          "--timeout", "20"],
        &plain,
    );
    #[rustfmt::skip]
    let (mut ep, addr) = start(
        &["client", "--openai", "127.0.0.1:0", "--model", cp, "--server", &saddr, "--helper", &haddr,
          "--setting", "rep3", "--gen", "8", "--requests", requests, "--timeout", "20"],
        &plain,
    );

    // curl, as a user would (`curl -s http://ADDR/v1/models`).
    let out = std::process::Command::new("curl").args(["-sf", &format!("http://{addr}/v1/models")]).output().unwrap();
    assert!(out.status.success(), "curl: {}", String::from_utf8_lossy(&out.stderr));
    let models: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(models["data"][0]["id"], "chat");

    let messages = vec![Message { role: "user".into(), content: "hello there".into() }];
    let prompt = tok.encode(&chat_prompt(&tok, &messages)).unwrap();
    let req = r#"{"model":"chat","messages":[{"role":"user","content":"hello there"}],"max_tokens":6}"#;
    let (code, body) = http(&addr, "POST", "/v1/chat/completions", req);
    assert_eq!(code, 200, "{body}");
    let r: serde_json::Value = serde_json::from_str(&body).unwrap();
    let ids: Vec<u32> =
        r["marill"]["token_ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
    assert_eq!(ids.len(), 6);
    check_tokens(&server, &prompt, &ids);
    let end = ids.iter().position(|t| *t == 1).unwrap_or(ids.len());
    assert_eq!(r["choices"][0]["message"]["content"], tok.decode(&ids[..end], false).unwrap());
    assert_eq!(r["choices"][0]["finish_reason"], if end < ids.len() { "stop" } else { "length" });
    assert_eq!(r["usage"]["prompt_tokens"], prompt.len());

    // Streaming: the same tokens (the same prompt, deterministic greedy decoding), as deltas.
    let stream = req.replace(r#""max_tokens":6"#, r#""max_tokens":6,"stream":true"#);
    let (code, body) = http(&addr, "POST", "/v1/chat/completions", &stream);
    assert_eq!(code, 200, "{body}");
    let events: Vec<&str> = body.split("\n\n").filter_map(|e| e.strip_prefix("data: ")).collect();
    assert_eq!(events.last(), Some(&"[DONE]"));
    let chunks: Vec<serde_json::Value> =
        events[..events.len() - 1].iter().map(|e| serde_json::from_str(e).unwrap()).collect();
    let text: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    let last = chunks.last().unwrap();
    let streamed: Vec<u32> =
        last["marill"]["token_ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
    assert_eq!(streamed, ids);
    assert_eq!(text, r["choices"][0]["message"]["content"].as_str().unwrap());
    assert_eq!(last["choices"][0]["finish_reason"], r["choices"][0]["finish_reason"]);

    // Bad requests are answered and refused; no session starts for them.
    assert_eq!(http(&addr, "GET", "/v2/nothing", "").0, 404);
    assert_eq!(http(&addr, "POST", "/v1/chat/completions", "{not json").0, 400);
    assert_eq!(http(&addr, "POST", "/v1/chat/completions", &req.replace("6", "9")).0, 400, "over --gen");
    assert_eq!(http(&addr, "POST", "/v1/chat/completions", r#"{"messages":[]}"#).0, 400);
    if let Some(path) = python {
        let out = std::process::Command::new("python3")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/openai-check.py"))
            .args([&format!("http://{addr}/v1"), "chat", "hello there", "6"])
            .env("PYTHONPATH", path)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let got =
            |k: &str| -> Vec<u32> { r[k].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect() };
        assert_eq!(got("token_ids"), ids, "the openai package's reply");
        assert_eq!(got("stream_token_ids"), ids, "the openai package's stream");
        assert_eq!(r["content"], text.as_str());
        assert_eq!(r["stream_content"], text.as_str());
        assert_eq!(r["stream_finish_reason"], r["finish_reason"]);
    }
    assert!(srv.0.wait().unwrap().success());
    assert!(hlp.0.wait().unwrap().success());
    assert!(ep.0.wait().unwrap().success());
    std::fs::remove_dir_all(&dir).unwrap();
}
