//! `marill`: the command line: split-model files (`inspect`, `extract-public`) and the
//! parties of secure inference as processes (`serve`, `helper`, `dealer`, `client`).

use std::path::PathBuf;
use std::process::ExitCode;

use marill_core::format::{ModelFile, SectionKind};
use marill_std::StdError;
use marill_std::model_file::{MappedModel, ModelMeta, Recipe, decode_postcard, extract_public, hex};

const USAGE: &str = "usage:
  marill inspect FILE                      sections, tensors, dtypes, sizes, visibility, digest
  marill extract-public FILE -o CLIENT     write the client file (public sections only)
  marill random-model --variant V --out DIR [--seed N]
                                           write DIR/server.marill and DIR/client.marill: a random
                                           4-layer model (d 64, vocab 256) laid out as variant V,
                                           one of private lf lora lf+lora hm lf+hm friendly baseline
  marill serve  --model SERVER_FILE --listen ADDR --setting dealer|rep3 [--sessions N] [--max-seq N] [--timeout S]
  marill helper --model CLIENT_FILE --listen ADDR --server ADDR [--sessions N] [--max-seq N] [--timeout S]   (3PC)
  marill dealer --model CLIENT_FILE --listen ADDR --server ADDR [--sessions N] [--max-seq N] [--timeout S]   (2PC-Dealer)
  marill client --model CLIENT_FILE --server ADDR --helper ADDR --setting dealer|rep3 (--prompt \"ID ID ...\" | --text TEXT) --gen N [--timeout S]
  marill plain  --model SERVER_FILE (--prompt \"ID ID ...\" | --text TEXT) --gen N
                                           the plaintext model's greedy output, for comparison
  marill --help

Parties talk plaintext TCP: run them on loopback or a protected network (TLS is not built yet).
serve and helper print `listening on ADDR` first; the client prints token ids as they arrive, or
text when the prompt is given with --text (encoded and decoded with the file's tokenizer).";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let r = match args.first().map(String::as_str) {
        Some("inspect") if args.len() == 2 => inspect(PathBuf::from(&args[1])),
        Some("extract-public") if args.len() == 4 && args[2] == "-o" => {
            extract(PathBuf::from(&args[1]), PathBuf::from(&args[3]))
        }
        Some(role @ ("serve" | "helper" | "dealer" | "client")) => party(role, &args[1..]),
        Some("random-model") => random_model(&args[1..]),
        Some("plain") => plain(&args[1..]),
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("marill: {e}");
            ExitCode::FAILURE
        }
    }
}

fn inspect(path: PathBuf) -> Result<(), StdError> {
    use std::fmt::Write as _;
    let mut o = String::new();
    let m = MappedModel::open(&path)?;
    let f = m.file()?;
    let h = f.header();
    let _ = writeln!(o, "file      {}", path.display());
    let _ = writeln!(o, "version   {}.{}", h.version_major.get(), h.version_minor.get());
    let _ = writeln!(o, "size      {} bytes", f.bytes().len());
    let _ =
        writeln!(o, "kind      {}", if f.has_private() { "server (public + private)" } else { "client (public only)" });
    match f.verify_digest() {
        Ok(d) => {
            let _ = writeln!(o, "digest    {} (verified)", hex(&d));
        }
        Err(_) => {
            let _ = writeln!(o, "digest    {} (DOES NOT MATCH the public sections)", hex(&f.stored_digest()));
        }
    }
    let _ = writeln!(o, "\nsections");
    let _ = writeln!(o, "  {:>3}  {:<13} {:<8} {:>12} {:>12}  name", "#", "kind", "access", "offset", "bytes");
    for s in f.sections() {
        let kind = match s.kind {
            SectionKind::Unknown(c) => format!("unknown({c})"),
            k => k.name().to_string(),
        };
        let _ = writeln!(
            o,
            "  {:>3}  {:<13} {:<8} {:>12} {:>12}  {}",
            s.index,
            kind,
            if s.private { "private" } else { "public" },
            s.offset,
            s.bytes.len(),
            s.name
        );
    }
    for s in f.sections() {
        match s.kind {
            SectionKind::Metadata => match decode_postcard::<ModelMeta>(s.bytes) {
                Ok(meta) => {
                    let _ = writeln!(o, "\n{} metadata\n  {meta:?}", if s.private { "private" } else { "public" });
                }
                Err(e) => {
                    let _ = writeln!(o, "\nmetadata section {} does not decode: {e}", s.index);
                }
            },
            SectionKind::Recipe => match decode_postcard::<Recipe>(s.bytes) {
                Ok(r) => {
                    let _ = writeln!(o, "\nrecipe\n  {r:?}");
                }
                Err(e) => {
                    let _ = writeln!(o, "\nrecipe section {} does not decode: {e}", s.index);
                }
            },
            _ => {}
        }
    }
    let tensors: Vec<_> = f.tensors().collect();
    let _ = writeln!(o, "\ntensors ({})", tensors.len());
    let _ = writeln!(o, "  {:<48} {:<5} {:<22} {:>12}  access", "name", "dtype", "shape", "bytes");
    for t in &tensors {
        let _ = writeln!(
            o,
            "  {:<48} {:<5} {:<22} {:>12}  {}",
            t.name,
            t.dtype.name(),
            format!("{:?}", t.dims()),
            t.bytes.len(),
            if t.private { "private" } else { "public" }
        );
    }
    let (pubb, privb): (usize, usize) = tensors
        .iter()
        .fold((0, 0), |(a, b), t| if t.private { (a, b + t.bytes.len()) } else { (a + t.bytes.len(), b) });
    let _ = writeln!(o, "\ntensor bytes: {pubb} public, {privb} private");
    emit(&o)
}

/// Write to stdout; a closed pipe (`marill inspect F | head`) is not an error.
fn emit(text: &str) -> Result<(), StdError> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(StdError::io("write to stdout", e)),
        _ => Ok(()),
    }
}

fn extract(input: PathBuf, output: PathBuf) -> Result<(), StdError> {
    let m = MappedModel::open(&input)?;
    let client = extract_public(m.bytes())?;
    std::fs::write(&output, &client).map_err(|e| StdError::io(format!("write {}", output.display()), e))?;
    let f = ModelFile::parse(&client)?;
    println!(
        "wrote {} ({} bytes, {} sections, digest {})",
        output.display(),
        client.len(),
        f.section_count(),
        hex(&f.stored_digest())
    );
    Ok(())
}

/// `--flag value` pairs.
fn flags(args: &[String]) -> Result<std::collections::HashMap<String, String>, StdError> {
    let mut m = std::collections::HashMap::new();
    let mut it = args.iter();
    while let Some(k) = it.next() {
        let Some(name) = k.strip_prefix("--") else {
            return Err(StdError::Handshake(format!("unexpected argument {k}\n{USAGE}")));
        };
        let v = it.next().ok_or_else(|| StdError::Handshake(format!("--{name} needs a value")))?;
        m.insert(name.to_string(), v.clone());
    }
    Ok(m)
}

fn need<'a>(f: &'a std::collections::HashMap<String, String>, k: &str) -> Result<&'a str, StdError> {
    f.get(k).map(String::as_str).ok_or_else(|| StdError::Handshake(format!("--{k} is required\n{USAGE}")))
}

fn addr(s: &str) -> Result<std::net::SocketAddr, StdError> {
    use std::net::ToSocketAddrs;
    s.to_socket_addrs().ok().and_then(|mut a| a.next()).ok_or_else(|| StdError::Handshake(format!("bad address {s}")))
}

fn num(f: &std::collections::HashMap<String, String>, k: &str, default: usize) -> Result<usize, StdError> {
    match f.get(k) {
        None => Ok(default),
        Some(v) => v.parse().map_err(|_| StdError::Handshake(format!("--{k}: not a number: {v}"))),
    }
}

fn party(role: &str, args: &[String]) -> Result<(), StdError> {
    use marill_std::Setting;
    use marill_std::party::{self, PartyConfig};
    use std::io::Write;
    let f = flags(args)?;
    let model = MappedModel::open(std::path::Path::new(need(&f, "model")?))?;
    let setting = match role {
        "helper" => Setting::Rep3,
        "dealer" => Setting::Dealer,
        _ => Setting::parse(need(&f, "setting")?)
            .ok_or_else(|| StdError::Handshake("--setting is dealer or rep3".into()))?,
    };
    let timeout = std::time::Duration::from_secs(num(&f, "timeout", 60)? as u64);
    let cfg = PartyConfig {
        setting,
        tcp: marill_std::transport::tcp::TcpConfig { connect_timeout: timeout, io_timeout: timeout },
        max_seq: num(&f, "max-seq", 4096)?,
    };
    let sessions = f.get("sessions").map(|_| num(&f, "sessions", 0)).transpose()?;
    let log = |m: &str| eprintln!("marill {role}: {m}");
    match role {
        "serve" | "helper" | "dealer" => {
            let listener =
                std::net::TcpListener::bind(addr(need(&f, "listen")?)?).map_err(|e| StdError::io("bind", e))?;
            let local = listener.local_addr().map_err(|e| StdError::io("local address", e))?;
            println!("listening on {local}");
            std::io::stdout().flush().map_err(|e| StdError::io("stdout", e))?;
            if role == "serve" {
                party::serve(listener, &model, &cfg, sessions, log)
            } else {
                party::helper(listener, addr(need(&f, "server")?)?, &model, &cfg, sessions, log)
            }
        }
        _ => {
            let (tokenizer, prompt) = prompt_of(&f, &model)?;
            let n = num(&f, "gen", 16)?;
            let mut out = std::io::stdout();
            let mut ids = Vec::new();
            let mut shown = 0;
            let mut on_token = |t: u32| {
                match &tokenizer {
                    // Print the text as it grows (a token may end inside a UTF-8 character).
                    Some(tok) => {
                        ids.push(t);
                        let text = tok.decode(&ids, false).unwrap_or_default();
                        if text.len() > shown && text.is_char_boundary(shown) {
                            let _ = write!(out, "{}", &text[shown..]);
                            shown = text.len();
                        }
                    }
                    None => {
                        let _ = write!(out, "{t} ");
                    }
                }
                let _ = out.flush();
            };
            let t0 = std::time::Instant::now();
            let (_, cost) = party::client(
                addr(need(&f, "server")?)?,
                addr(need(&f, "helper")?)?,
                &model,
                &cfg,
                &prompt,
                n,
                &mut on_token,
            )?;
            println!();
            eprintln!(
                "marill client: {n} tokens in {:.3} s; this party sent {} bytes, {} rounds",
                t0.elapsed().as_secs_f64(),
                cost.bytes_sent,
                cost.rounds
            );
            Ok(())
        }
    }
}

/// The prompt (`--prompt` ids or `--text` through the file's tokenizer) and the tokenizer.
fn prompt_of(
    f: &std::collections::HashMap<String, String>,
    model: &MappedModel,
) -> Result<(Option<marill_std::tokenizer::Tokenizer>, Vec<u32>), StdError> {
    if let Some(text) = f.get("text") {
        let file = model.file()?;
        let sec = file
            .find_section(SectionKind::Tokenizer, false)
            .ok_or_else(|| StdError::Model("--text: the model file has no tokenizer".into()))?;
        let json =
            std::str::from_utf8(sec.bytes).map_err(|_| StdError::Model("tokenizer section is not UTF-8".into()))?;
        let tok = marill_std::tokenizer::Tokenizer::from_hf_json(json)?;
        let ids = tok.encode(text)?;
        return Ok((Some(tok), ids));
    }
    let ids = need(f, "prompt")?
        .split_whitespace()
        .map(|t| t.parse().map_err(|_| StdError::Handshake(format!("prompt token {t} is not a number"))))
        .collect::<Result<_, _>>()?;
    Ok((None, ids))
}

/// `marill plain`: greedy generation with the plaintext model of a server file.
fn plain(args: &[String]) -> Result<(), StdError> {
    use marill_std::model::plain::{PlainModel, argmax};
    let f = flags(args)?;
    let model = MappedModel::open(std::path::Path::new(need(&f, "model")?))?;
    let (tokenizer, prompt) = prompt_of(&f, &model)?;
    let n = num(&f, "gen", 16)?;
    let file = model.file()?;
    let arch = marill_std::model::check::arch_of(&file)?;
    if prompt.is_empty() {
        return Err(StdError::Model("empty prompt".into()));
    }
    let mut pm = PlainModel::load(&file, arch.clone(), 0, arch.n_layers, true)?;
    let mut feed = prompt;
    let mut out = Vec::new();
    for _ in 0..n {
        let mut h = pm.embed(&feed)?;
        pm.layers(&mut h, feed.len())?;
        let t = argmax(&pm.logits(&h)?) as u32;
        out.push(t);
        feed = vec![t];
    }
    match tokenizer {
        Some(tok) => println!("{}", tok.decode(&out, false)?),
        None => println!("{}", out.iter().map(u32::to_string).collect::<Vec<_>>().join(" ")),
    }
    Ok(())
}

fn random_model(args: &[String]) -> Result<(), StdError> {
    use marill_std::model::random::{self, Variant};
    let f = flags(args)?;
    let v = |public_layers, lora_rank, head_merge, mpc_friendly, private_embedding| Variant {
        public_layers,
        lora_rank,
        head_merge,
        mpc_friendly,
        private_embedding,
    };
    let variant = match need(&f, "variant")? {
        "baseline" => v(0, 0, 1, false, true),
        "private" => v(0, 0, 1, false, false),
        "lf" => v(2, 0, 1, false, false),
        "lora" => v(0, 8, 1, false, false),
        "lf+lora" => v(2, 8, 1, false, false),
        "hm" => v(0, 0, 2, false, false),
        "lf+hm" => v(2, 0, 2, false, false),
        "friendly" => v(0, 0, 1, true, false),
        other => return Err(StdError::Handshake(format!("unknown variant {other}"))),
    };
    let seed = u8::try_from(num(&f, "seed", 11)?).map_err(|_| StdError::Handshake("--seed is 0..=255".into()))?;
    let dir = PathBuf::from(need(&f, "out")?);
    std::fs::create_dir_all(&dir).map_err(|e| StdError::io(format!("create {}", dir.display()), e))?;
    let server = random::model(variant, 4, 64, 256, seed)?;
    let client = extract_public(&server)?;
    for (name, bytes) in [("server.marill", &server), ("client.marill", &client)] {
        let p = dir.join(name);
        std::fs::write(&p, bytes).map_err(|e| StdError::io(format!("write {}", p.display()), e))?;
        println!("wrote {} ({} bytes)", p.display(), bytes.len());
    }
    Ok(())
}
