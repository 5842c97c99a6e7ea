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
  marill serve  --model SERVER_FILE --listen ADDR --setting dealer|rep3 [--sessions N] [--max-seq N] [--timeout S]
  marill helper --model CLIENT_FILE --listen ADDR --server ADDR [--sessions N] [--max-seq N] [--timeout S]   (3PC)
  marill dealer --model CLIENT_FILE --listen ADDR --server ADDR [--sessions N] [--max-seq N] [--timeout S]   (2PC-Dealer)
  marill client --model CLIENT_FILE --server ADDR --helper ADDR --setting dealer|rep3 --prompt \"ID ID ...\" --gen N [--timeout S]
  marill --help

Parties talk plaintext TCP: run them on loopback or a protected network (TLS is not built yet).
serve and helper print `listening on ADDR` first; the client prints token ids as they arrive.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let r = match args.first().map(String::as_str) {
        Some("inspect") if args.len() == 2 => inspect(PathBuf::from(&args[1])),
        Some("extract-public") if args.len() == 4 && args[2] == "-o" => {
            extract(PathBuf::from(&args[1]), PathBuf::from(&args[3]))
        }
        Some(role @ ("serve" | "helper" | "dealer" | "client")) => party(role, &args[1..]),
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
    let m = MappedModel::open(&path)?;
    let f = m.file()?;
    let h = f.header();
    println!("file      {}", path.display());
    println!("version   {}.{}", h.version_major.get(), h.version_minor.get());
    println!("size      {} bytes", f.bytes().len());
    println!("kind      {}", if f.has_private() { "server (public + private)" } else { "client (public only)" });
    match f.verify_digest() {
        Ok(d) => println!("digest    {} (verified)", hex(&d)),
        Err(_) => println!("digest    {} (DOES NOT MATCH the public sections)", hex(&f.stored_digest())),
    }
    println!("\nsections");
    println!("  {:>3}  {:<13} {:<8} {:>12} {:>12}  name", "#", "kind", "access", "offset", "bytes");
    for s in f.sections() {
        let kind = match s.kind {
            SectionKind::Unknown(c) => format!("unknown({c})"),
            k => k.name().to_string(),
        };
        println!(
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
                Ok(meta) => println!("\n{} metadata\n  {meta:?}", if s.private { "private" } else { "public" }),
                Err(e) => println!("\nmetadata section {} does not decode: {e}", s.index),
            },
            SectionKind::Recipe => match decode_postcard::<Recipe>(s.bytes) {
                Ok(r) => println!("\nrecipe\n  {r:?}"),
                Err(e) => println!("\nrecipe section {} does not decode: {e}", s.index),
            },
            _ => {}
        }
    }
    let tensors: Vec<_> = f.tensors().collect();
    println!("\ntensors ({})", tensors.len());
    println!("  {:<48} {:<5} {:<22} {:>12}  access", "name", "dtype", "shape", "bytes");
    for t in &tensors {
        println!(
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
    println!("\ntensor bytes: {pubb} public, {privb} private");
    Ok(())
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
            let prompt: Vec<u32> = need(&f, "prompt")?
                .split_whitespace()
                .map(|t| t.parse().map_err(|_| StdError::Handshake(format!("prompt token {t} is not a number"))))
                .collect::<Result<_, _>>()?;
            let n = num(&f, "gen", 16)?;
            let mut out = std::io::stdout();
            let mut on_token = |t: u32| {
                let _ = write!(out, "{t} ");
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
