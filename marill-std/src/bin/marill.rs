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
  marill keygen --out FILE                 write an Ed25519 key (FILE, PKCS#8 PEM, mode 0600) and its
                                           public half (FILE.pub, 64 hex digits) for a party's TLS
  marill serve  --model SERVER_FILE --listen ADDR --setting dealer|rep3|ot2pc [--sessions N] [--max-sessions K] [--offline-mb M] [--max-seq N] [--timeout S] [--link L] [--threads T] SECURITY
  marill helper --model CLIENT_FILE --listen ADDR --server ADDR [--sessions N] [--max-sessions K] [--max-seq N] [--timeout S] [--link L] [--threads T] SECURITY   (3PC)
  marill dealer --model CLIENT_FILE --listen ADDR --server ADDR [--sessions N] [--max-sessions K] [--ahead-mb M] [--max-seq N] [--timeout S] [--link L] [--threads T] SECURITY   (2PC-Dealer)
  marill client --model CLIENT_FILE --server ADDR [--helper ADDR] --setting dealer|rep3|ot2pc (--prompt \"ID ID ...\" | --text TEXT) --gen N [--offline-mb M] [--timeout S] [--link L] [--threads T] SECURITY
  marill client --openai ADDR --model CLIENT_FILE --server ADDR [--helper ADDR] --setting S [--gen N] [--requests N] ... SECURITY
                                           a local OpenAI-compatible endpoint (/v1/chat/completions,
                                           streaming or not; /v1/models): each request is one secure
                                           session, its messages in the file's chat template; --gen caps
                                           max_tokens (default 64); bind it to 127.0.0.1
  marill plain  --model SERVER_FILE (--prompt \"ID ID ...\" | --text TEXT) --gen N
                                           the plaintext model's greedy output, for comparison
  marill cost   [--setting dealer|rep3|ot2pc|all] [--prompt-len B] [--shape paper|tiny] [--runs N] [--json]
                [--link lan|wan|RTT_MS,MBPS] [--variant NAME] [--threads T] [--offline]
                                           the paper's tables from this engine: openllama-3b-v2 shapes,
                                           one private layer's own cost (metered at its boundaries in
                                           a 1-layer model) scaled to the layers in MPC; each span the
                                           fastest of N runs (2, or 1 in ot2pc); --link emulates a
                                           network between the parties (lan: 16 Gbps, 0.1 ms round
                                           trip; wan: 400 Mbps, 40 ms); --variant runs one row;
                                           --offline (2PC-Dealer): the dealer deals each step and its
                                           corrections are delivered before the others start, times
                                           split into the offline and the online phase
  marill --help

--sessions N ends a listening party after N sessions (default: never); --max-sessions K runs up to
K sessions at once (default 1), each in its own thread with its own shares and memory.
--ahead-mb M bounds how many MB of corrections the dealer queues ahead of each compute party
(default: unbounded; a bound caps its memory and can cost time).
--offline-mb M (2PC-Dealer server and client): read up to M MB of the dealer's corrections ahead of
need, the offline phase's transfer and its memory bound per session (default 256; 0: none).
--threads T splits each party's matrix products and PRG expansion across T threads (default: the
machine's cores for a party, a third of them for marill cost, whose three parties share one
process; 1: none); results are the same for every T.
--link L emulates a network on every session message (L is lan: 16 Gbps and 0.1 ms round trip,
wan: 400 Mbps and 40 ms, or RTT_MS,MBPS); every party of a session must be given the same L.

SECURITY is either
  --key FILE [--trust-server KEYS] [--trust-client KEYS] [--trust-helper KEYS]
      TLS 1.3 with mutual authentication: this party's key (from keygen, or any PKCS#8 Ed25519
      key) and, for each role it talks to, the public keys it accepts (comma-separated, each 64
      hex digits or a .pub file). The dealer is the helper role.
  --insecure-plaintext
      plaintext TCP: seeds and shares travel in the clear. For loopback tests only.
serve and helper print `listening on ADDR` first; the client prints token ids as they arrive, or
text when the prompt is given with --text (encoded and decoded with the file's tokenizer).

MARILL_RING=portable|avx2|avx512 pins the ring kernels (default: the best this CPU has).";

/// Per-party heap figures for `marill cost` (see `marill_std::alloc_meter`).
#[global_allocator]
static GLOBAL: marill_std::alloc_meter::PartyAlloc = marill_std::alloc_meter::PartyAlloc;

fn main() -> ExitCode {
    if let Err(e) = marill_std::pin_ring_from_env() {
        eprintln!("marill: {e}");
        return ExitCode::from(2);
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let r = match args.first().map(String::as_str) {
        Some("inspect") if args.len() == 2 => inspect(PathBuf::from(&args[1])),
        Some("extract-public") if args.len() == 4 && args[2] == "-o" => {
            extract(PathBuf::from(&args[1]), PathBuf::from(&args[3]))
        }
        Some(role @ ("serve" | "helper" | "dealer" | "client")) => party(role, &args[1..]),
        Some("keygen") => keygen(&args[1..]),
        Some("random-model") => random_model(&args[1..]),
        Some("plain") => plain(&args[1..]),
        Some("cost") => paper_cost(&args[1..]),
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
        Err(e @ StdError::Usage(_)) => {
            eprintln!("marill: {e}");
            ExitCode::from(2)
        }
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
            SectionKind::Metadata => match ModelMeta::decode(s.bytes) {
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

/// `--flag value` pairs, each flag one of `allowed` (or a switch); `command` names the
/// command in errors.
fn flags(
    command: &str,
    args: &[String],
    allowed: &[&str],
) -> Result<std::collections::HashMap<String, String>, StdError> {
    let mut m = std::collections::HashMap::new();
    let mut it = args.iter();
    while let Some(k) = it.next() {
        let Some(name) = k.strip_prefix("--") else {
            return Err(StdError::Usage(format!("{command}: unexpected argument {k} (flags start with --)")));
        };
        let switch = SWITCHES.contains(&name) && allowed.contains(&name);
        if !switch && !allowed.contains(&name) {
            let list: Vec<String> = allowed.iter().map(|a| format!("--{a}")).collect();
            return Err(StdError::Usage(format!("{command}: unknown flag --{name} (its flags: {})", list.join(" "))));
        }
        if switch {
            m.insert(name.to_string(), String::new());
            continue;
        }
        let v = it.next().ok_or_else(|| StdError::Usage(format!("{command}: --{name} needs a value")))?;
        m.insert(name.to_string(), v.clone());
    }
    Ok(m)
}

/// Flags of the security choice, shared by the party commands.
const SECURITY_FLAGS: [&str; 5] = ["key", "trust-server", "trust-client", "trust-helper", "insecure-plaintext"];

/// Flags of each party command (and the security flags).
fn party_flags(role: &str) -> Vec<&'static str> {
    let mut f: Vec<&'static str> = match role {
        "serve" => vec!["model", "listen", "setting", "sessions", "max-sessions", "offline-mb"],
        "helper" => vec!["model", "listen", "server", "sessions", "max-sessions"],
        "dealer" => vec!["model", "listen", "server", "sessions", "max-sessions", "ahead-mb"],
        _ => vec!["model", "server", "helper", "setting", "prompt", "text", "gen", "offline-mb", "openai", "requests"],
    };
    f.extend(["max-seq", "timeout", "link", "threads"]);
    f.extend(SECURITY_FLAGS);
    f
}

/// The roles a key can be trusted as (`--trust-ROLE`); the dealer is the helper role.
const ROLES: [(&str, usize); 3] = [
    ("client", marill_std::model::secure::CLIENT),
    ("server", marill_std::model::secure::SERVER),
    ("helper", marill_std::party::HELPER),
];

/// Flags without a value.
const SWITCHES: [&str; 1] = ["insecure-plaintext"];

/// `--key` with `--trust-*`, or `--insecure-plaintext`.
fn security(f: &std::collections::HashMap<String, String>) -> Result<marill_std::party::Security, StdError> {
    use marill_std::party::Security;
    use marill_std::transport::tls::{Identity, PublicKey, Tls};
    match (f.get("key"), f.contains_key("insecure-plaintext")) {
        (Some(_), true) => Err(StdError::Usage("--key and --insecure-plaintext exclude each other".into())),
        (None, true) => Ok(Security::InsecurePlaintext),
        (None, false) => Err(StdError::Usage(
            "no --key: parties talk TLS with pinned keys (make one with `marill keygen --out FILE`); \
             --insecure-plaintext runs without, for loopback tests"
                .into(),
        )),
        (Some(key), false) => {
            let mut tls = Tls::new(Identity::read(std::path::Path::new(key))?);
            for (name, party) in ROLES {
                let flag = format!("trust-{name}");
                for k in f.get(&flag).map(String::as_str).unwrap_or("").split(',').filter(|k| !k.is_empty()) {
                    tls = tls.trust(party, PublicKey::parse_or_read(k)?);
                }
            }
            Ok(Security::Tls(std::sync::Arc::new(tls)))
        }
    }
}

/// `marill keygen --out FILE`: a new Ed25519 key, and its public half in FILE.pub.
fn keygen(args: &[String]) -> Result<(), StdError> {
    use std::io::Write;
    let f = flags("keygen", args, &["out"])?;
    let out = PathBuf::from(need(&f, "out")?);
    let (id, pem) = marill_std::transport::tls::Identity::generate()?;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut file =
        opts.open(&out).map_err(|e| StdError::io(format!("create {} (never overwritten)", out.display()), e))?;
    file.write_all(pem.as_bytes()).map_err(|e| StdError::io(format!("write {}", out.display()), e))?;
    let mut public = out.clone().into_os_string();
    public.push(".pub");
    std::fs::write(&public, format!("{}\n", id.public()))
        .map_err(|e| StdError::io(format!("write {}", PathBuf::from(&public).display()), e))?;
    println!("{}", id.public());
    Ok(())
}

fn need<'a>(f: &'a std::collections::HashMap<String, String>, k: &str) -> Result<&'a str, StdError> {
    f.get(k)
        .map(String::as_str)
        .ok_or_else(|| StdError::Usage(format!("--{k} is required (marill --help lists every command's flags)")))
}

fn addr(s: &str) -> Result<std::net::SocketAddr, StdError> {
    use std::net::ToSocketAddrs;
    s.to_socket_addrs().ok().and_then(|mut a| a.next()).ok_or_else(|| StdError::Usage(format!("bad address {s}")))
}

fn num(f: &std::collections::HashMap<String, String>, k: &str, default: usize) -> Result<usize, StdError> {
    match f.get(k) {
        None => Ok(default),
        Some(v) => v.parse().map_err(|_| StdError::Usage(format!("--{k}: not a number: {v}"))),
    }
}

fn party(role: &str, args: &[String]) -> Result<(), StdError> {
    use marill_std::Setting;
    use marill_std::party::{self, PartyConfig};
    use std::io::Write;
    let f = flags(role, args, &party_flags(role))?;
    marill_std::threads::set_threads(num(&f, "threads", marill_std::threads::default_threads())?);
    let model = MappedModel::open(std::path::Path::new(need(&f, "model")?))?;
    if role == "serve" && model.file()?.find_section(SectionKind::TensorIndex, true).is_none() {
        return Err(StdError::Usage(format!(
            "marill serve: --model {} is a client file (its public part only): the server needs the server file, \
             with the private weights",
            need(&f, "model")?
        )));
    }
    let setting = match role {
        "helper" => Setting::Rep3,
        "dealer" => Setting::Dealer,
        _ => {
            let v = need(&f, "setting")?;
            Setting::parse(v).ok_or_else(|| StdError::Usage(format!("--setting {v}: one of dealer, rep3, ot2pc")))?
        }
    };
    let timeout = std::time::Duration::from_secs(num(&f, "timeout", 60)? as u64);
    let cfg = PartyConfig {
        setting,
        tcp: marill_std::transport::tcp::TcpConfig { connect_timeout: timeout, io_timeout: timeout },
        max_seq: num(&f, "max-seq", 4096)?,
        security: security(&f)?,
        link: f
            .get("link")
            .map(|l| marill_std::transport::link::LinkModel::parse(l))
            .transpose()
            .map_err(StdError::Usage)?,
        max_sessions: match num(&f, "max-sessions", 1)? {
            0 => return Err(StdError::Usage("--max-sessions: at least 1".into())),
            k => k,
        },
        dealer_ahead: match f.get("ahead-mb").map(|_| num(&f, "ahead-mb", 0)).transpose()? {
            Some(0) => return Err(StdError::Usage("--ahead-mb: at least 1".into())),
            mb => mb.map(|m| m << 20),
        },
        offline_ahead: match f.get("offline-mb") {
            Some(_) if setting != Setting::Dealer => {
                return Err(StdError::Usage(format!(
                    "--offline-mb: for 2PC-Dealer (--setting dealer), not {}",
                    setting.name()
                )));
            }
            Some(_) => num(&f, "offline-mb", 0)? << 20,
            None => marill_std::transport::OFFLINE_AHEAD,
        },
    };
    if let marill_std::party::Security::Tls(tls) = &cfg.security {
        // Fail at start-up, not at the first connection, when a peer's key is missing.
        // Every role but this one's (and no helper in plain 2PC).
        let me = match role {
            "serve" => "server",
            "client" => "client",
            _ => "helper",
        };
        let peers = ROLES.iter().filter(|(name, _)| *name != me && !(setting == Setting::Ot2pc && *name == "helper"));
        for (name, p) in peers {
            if !tls.trusts_any(*p) {
                return Err(StdError::Usage(format!(
                    "--trust-{name} is required: the {name}'s public key (its .pub file from marill keygen, or 64 hex digits)"
                )));
            }
        }
    }
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
        _ if f.contains_key("openai") => {
            let (server, helper) = peers(&f, setting)?;
            let tokenizer = tokenizer_of(&model, "--openai")?;
            let model_id = std::path::Path::new(need(&f, "model")?)
                .file_stem()
                .map_or_else(|| "marill".into(), |s| s.to_string_lossy().into_owned());
            let listener =
                std::net::TcpListener::bind(addr(need(&f, "openai")?)?).map_err(|e| StdError::io("bind", e))?;
            let local = listener.local_addr().map_err(|e| StdError::io("local address", e))?;
            println!("listening on {local}");
            std::io::stdout().flush().map_err(|e| StdError::io("stdout", e))?;
            eprintln!("marill client: OpenAI-compatible endpoint at http://{local}/v1 (model {model_id:?})");
            let mut generate = |prompt: &[u32], n: usize, on_token: &mut dyn FnMut(u32)| {
                party::client(server, helper, &model, &cfg, prompt, n, on_token).map(|r| r.0)
            };
            let mut ep = marill_std::openai::Endpoint {
                model_id,
                tokenizer,
                max_tokens: num(&f, "gen", 64)?,
                read_deadline: marill_std::openai::READ_DEADLINE,
                generate: &mut generate,
            };
            let requests = f.get("requests").map(|_| num(&f, "requests", 0)).transpose()?;
            marill_std::openai::serve(&listener, &mut ep, requests, |m| eprintln!("marill client: {m}"))
        }
        _ => {
            let (tokenizer, prompt) = prompt_of(&f, &model)?;
            let n = num(&f, "gen", 16)?;
            let mut out = std::io::stdout();
            let mut ids = Vec::new();
            let mut shown = 0;
            let t0 = std::time::Instant::now();
            let mut first: Option<f64> = None;
            let mut on_token = |t: u32| {
                first.get_or_insert_with(|| t0.elapsed().as_secs_f64());
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
            let (server, helper) = peers(&f, setting)?;
            let (_, cost) = party::client(server, helper, &model, &cfg, &prompt, n, &mut on_token)?;
            println!();
            eprintln!(
                "marill client: {n} tokens in {:.3} s (the first after {:.3} s); this party sent {} bytes, {} rounds",
                t0.elapsed().as_secs_f64(),
                first.unwrap_or_default(),
                cost.bytes_sent,
                cost.rounds
            );
            Ok(())
        }
    }
}

/// The model file's tokenizer; `flag` names what needed it when the file has none.
fn tokenizer_of(model: &MappedModel, flag: &str) -> Result<marill_std::tokenizer::Tokenizer, StdError> {
    let file = model.file()?;
    let sec = file
        .find_section(SectionKind::Tokenizer, false)
        .ok_or_else(|| StdError::Usage(format!("{flag}: the model file has no tokenizer")))?;
    let json = std::str::from_utf8(sec.bytes).map_err(|_| StdError::Model("tokenizer section is not UTF-8".into()))?;
    marill_std::tokenizer::Tokenizer::from_hf_json(json)
}

/// The client's peers: the server, and the helper or dealer (none in plain 2PC).
fn peers(
    f: &std::collections::HashMap<String, String>,
    setting: marill_std::Setting,
) -> Result<(std::net::SocketAddr, Option<std::net::SocketAddr>), StdError> {
    let helper = match (setting, f.get("helper")) {
        (marill_std::Setting::Ot2pc, None) => None,
        _ => Some(addr(need(f, "helper")?)?),
    };
    Ok((addr(need(f, "server")?)?, helper))
}

/// The prompt (`--prompt` ids or `--text` through the file's tokenizer) and the tokenizer.
fn prompt_of(
    f: &std::collections::HashMap<String, String>,
    model: &MappedModel,
) -> Result<(Option<marill_std::tokenizer::Tokenizer>, Vec<u32>), StdError> {
    if let Some(text) = f.get("text") {
        let tok = tokenizer_of(model, "--text")?;
        let ids = tok.encode(text)?;
        return Ok((Some(tok), ids));
    }
    let ids = need(f, "prompt")?
        .split_whitespace()
        .map(|t| t.parse().map_err(|_| StdError::Usage(format!("--prompt: token {t} is not a number"))))
        .collect::<Result<_, _>>()?;
    Ok((None, ids))
}

/// `marill plain`: greedy generation with the plaintext model of a server file.
fn plain(args: &[String]) -> Result<(), StdError> {
    use marill_std::model::plain::{PlainModel, argmax};
    let f = flags("plain", args, &["model", "prompt", "text", "gen"])?;
    let model = MappedModel::open(std::path::Path::new(need(&f, "model")?))?;
    let (tokenizer, prompt) = prompt_of(&f, &model)?;
    let n = num(&f, "gen", 16)?;
    let file = model.file()?;
    let arch = marill_std::model::Arch::of_file(&file)?;
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

/// One measured quantity of a step: (seconds, bytes of the party that sends most, rounds).
/// Seconds (online, with an offline phase), bytes of the party that sends most, rounds,
/// bytes per party, and the offline phase's seconds (zero without one).
type Metric = (f64, f64, f64, [f64; 3], f64);

/// Prefill and mean decode metrics of a model of `layers` (0 or 1) private layers: the whole
/// step, and the private layer's own span in it (from the runtime's layer marks; zeros
/// without a layer).
fn measure_case(
    server: Vec<u8>,
    setting: marill_std::Setting,
    prompt_len: usize,
    runs: usize,
    layers: usize,
    link: Option<marill_std::transport::link::LinkModel>,
    offline: bool,
) -> Result<Measured, StdError> {
    use marill_std::model::measure::{ModelCase, Span, Steps};
    let bad = |e: String| StdError::Model(format!("cost: {e}"));
    // The prefill, then four decode steps (averaged: one step is short and noisy).
    let case = ModelCase::new(server, prompt_len, 5).map_err(bad)?.over(link);
    let case = if offline { case.offline() } else { case };
    // `runs` runs; the fastest time of each span (bytes and rounds do not vary).
    let mut all = Vec::with_capacity(runs);
    for _ in 0..runs.max(1) {
        let m = case.measure(setting).map_err(bad)?;
        if m.mismatches > 0 {
            return Err(StdError::Model(format!("cost: {} tokens differ from the plaintext model", m.mismatches)));
        }
        if layers > 1 || m.layers.iter().any(|l| l.len() != layers) {
            return Err(bad(format!("expected {layers} private layer(s), 0 or 1")));
        }
        all.push(m);
    }
    // Per step: the span of the first run with the fastest time of any run.
    let fastest = |pick: fn(&Steps, usize) -> Span| -> Vec<Span> {
        (0..all[0].wall.len())
            .map(|i| Span { wall: all.iter().map(|r| pick(r, i).wall).min().unwrap_or_default(), ..pick(&all[0], i) })
            .collect()
    };
    let metric = |s: &Span| -> Metric {
        let per = s.bytes.map(|b| b as f64);
        (
            s.wall.as_secs_f64(),
            s.bytes.iter().copied().max().unwrap_or(0) as f64,
            s.rounds as f64,
            per,
            s.offline.as_secs_f64(),
        )
    };
    let prefill_and_decode = |spans: Vec<Span>| -> [Metric; 2] {
        let decode = &spans[1..];
        let n = decode.len().max(1) as f64;
        let mean = decode.iter().map(metric).fold((0.0, 0.0, 0.0, [0.0; 3], 0.0), |a, s| {
            (a.0 + s.0 / n, a.1 + s.1 / n, a.2 + s.2 / n, std::array::from_fn(|i| a.3[i] + s.3[i] / n), a.4 + s.4 / n)
        });
        [metric(&spans[0]), mean]
    };
    let whole = fastest(Steps::step);
    let layer = fastest(|r, i| r.layers[i].first().copied().unwrap_or_default());
    // Each part as a span, the same way.
    let names: Vec<&'static str> = all[0].parts[0].iter().map(|x| x.0).collect();
    let mut parts = Vec::new();
    for (k, name) in names.iter().enumerate() {
        let spans = (0..all[0].wall.len())
            .map(|i| {
                let own = |r: &Steps| r.parts[i].get(k).filter(|x| x.0 == *name).map(|x| x.1);
                let first = own(&all[0]).ok_or_else(|| bad("the steps marked different parts".into()))?;
                let wall = all.iter().filter_map(own).map(|s| s.wall).min().unwrap_or_default();
                Ok(Span { wall, ..first })
            })
            .collect::<Result<Vec<_>, StdError>>()?;
        parts.push((*name, prefill_and_decode(spans)));
    }
    // Each party's peak heap: the largest over the runs.
    let peak = all.iter().filter_map(|r| r.peak_heap).reduce(|a, b| std::array::from_fn(|i| a[i].max(b[i])));
    // Bytes per party of each step, split to scale with rotating roles.
    let rot = (0..all[0].wall.len()).map(|i| all[0].rotating(i)).collect();
    Ok((prefill_and_decode(whole), prefill_and_decode(layer), parts, peak, rot))
}

/// `marill cost`: MARILL's cost tables for openllama-3b-v2's shapes (d 3200, 32 heads, ffn
/// 8640, vocab 32000, 26 layers) from this engine. Each variant is measured on a random model
/// of one private layer, with the runtime's layer marks: the span between them is the cost
/// of a layer, the rest of the step the fixed cost (sharing the hidden state, final norm, lm
/// head, argmax), and a model of k private layers costs fixed + k·layer. The baseline's
/// fixed cost (the embedding in MPC besides) comes from a model without layers, and its
/// layers cost what the all-private variant's do. Public layers run at the client in
/// plaintext and are not counted.
/// Per part of a step (`marill_std::model::secure::PARTS`): prefill and decode.
type Parts = Vec<(&'static str, [Metric; 2])>;

/// A measured case: the whole step and the marked layer (prefill, decode), the parts, and
/// each party's peak heap.
type Measured = ([Metric; 2], [Metric; 2], Parts, Option<[u64; 3]>, Vec<Rotating>);

/// One measured layer kind: the fixed cost of a step, a layer's, a layer's parts, the
/// head's parts, and each party's peak heap while the measured model ran.
type Fit = ([Metric; 2], [Metric; 2], Parts, Parts, Option<[u64; 3]>, Vec<Rotating>);
use marill_std::model::measure::Rotating;

/// A model of `k` private layers from a measured fit (prefill, mean decode step): time,
/// rounds and the offline phase as `fixed + k·layer`; bytes per party from the steps' splits
/// ([`Rotating`]), the party that sends most from those.
fn scaled(fixed: &[Metric; 2], per: &[Metric; 2], rot: &[Rotating], k: f64) -> [Metric; 2] {
    let layers = k.round() as usize;
    let decode = &rot[1.min(rot.len())..];
    let n = decode.len().max(1) as f64;
    let pp = [
        rot.first().map_or([0.0; 3], |r| r.with_layers(layers)),
        decode.iter().map(|r| r.with_layers(layers)).fold([0.0; 3], |a, v| std::array::from_fn(|q| a[q] + v[q] / n)),
    ];
    std::array::from_fn(|i| {
        let most = pp[i].iter().copied().fold(0.0, f64::max);
        (fixed[i].0 + k * per[i].0, most, fixed[i].2 + k * per[i].2, pp[i], fixed[i].4 + k * per[i].4)
    })
}

/// Bytes each party sent, as a JSON array (parties 0, 1, 2; in 2PC-Dealer the dealer is 2
/// and the others' bytes are the online phase's).
fn per_party_json(b: [f64; 3]) -> serde_json::Value {
    serde_json::json!(b.map(whole))
}

/// A byte or round count (scaled figures are whole numbers up to rounding).
fn whole(x: f64) -> u64 {
    x.round() as u64
}

/// Seconds to 0.1 ms, as the table prints them.
fn secs(x: f64) -> f64 {
    (x * 1e4).round() / 1e4
}

/// The offline phase's seconds as JSON: `null` when the run had none.
fn offline_json(offline: bool, s: f64) -> serde_json::Value {
    if offline { serde_json::json!(secs(s)) } else { serde_json::Value::Null }
}

/// Bytes of the party that sends most in the online phase: in 2PC-Dealer the compute
/// parties' (the dealer's corrections are input-independent: the offline phase's, whether
/// or not they were sent ahead), in the other settings every party's.
fn online_bytes(setting: marill_std::Setting, m: &Metric) -> f64 {
    let online = if setting == marill_std::Setting::Dealer { &m.3[..2] } else { &m.3[..] };
    online.iter().copied().fold(0.0, f64::max)
}

/// Peak heap per party as JSON (`null` where the allocator is not metered).
fn peak_json(p: Option<[u64; 3]>) -> serde_json::Value {
    serde_json::json!(p)
}

/// A step's parts as JSON: each with `scope` `layer` (one private layer's part) or `step`
/// (the head's, once per step), and its prefill and decode time, bytes and rounds.
fn parts_json(layer: &Parts, head: &Parts) -> serde_json::Value {
    let one = |scope: &str, (name, m): &(&str, [Metric; 2])| {
        serde_json::json!({
            "part": name, "scope": scope,
            "prefill_s": secs(m[0].0), "prefill_bytes": whole(m[0].1), "prefill_rounds": whole(m[0].2),
            "decode_s": secs(m[1].0), "decode_bytes": whole(m[1].1), "decode_rounds": whole(m[1].2),
            "prefill_bytes_per_party": per_party_json(m[0].3), "decode_bytes_per_party": per_party_json(m[1].3),
        })
    };
    layer.iter().map(|p| one("layer", p)).chain(head.iter().map(|p| one("step", p))).collect()
}

fn paper_cost(args: &[String]) -> Result<(), StdError> {
    use marill_std::Setting;
    use marill_std::model::random::{Shape, Variant, model_shaped};
    let json = args.iter().any(|a| a == "--json");
    let offline = args.iter().any(|a| a == "--offline");
    let rest: Vec<String> = args.iter().filter(|a| *a != "--json" && *a != "--offline").cloned().collect();
    let f = flags("cost", &rest, &["setting", "prompt-len", "shape", "runs", "link", "variant", "threads"])?;
    marill_std::threads::set_threads(num(&f, "threads", marill_std::threads::shared_default_threads())?);
    let threads = marill_std::threads::threads();
    let settings = match f.get("setting").map(String::as_str) {
        None | Some("all") if offline => vec![Setting::Dealer],
        None | Some("all") => vec![Setting::Dealer, Setting::Rep3, Setting::Ot2pc],
        Some(s) if offline && s != "dealer" => {
            return Err(StdError::Usage(format!(
                "--offline --setting {s}: an offline phase is 2PC-Dealer's (the dealer's corrections do not depend on the inputs); use --setting dealer"
            )));
        }
        Some(s) => vec![
            Setting::parse(s)
                .ok_or_else(|| StdError::Usage(format!("--setting {s}: one of dealer, rep3, ot2pc, all")))?,
        ],
    };
    let b = num(&f, "prompt-len", 64)?;
    let link =
        f.get("link").map(|l| marill_std::transport::link::LinkModel::parse(l)).transpose().map_err(StdError::Model)?;
    let link_name = link.map_or_else(|| "none".to_string(), |l| l.label());
    let ring = marill_core::ring::backend().name();
    let only = f.get("variant").cloned();
    // Plain 2PC's steps take minutes at the paper's shapes: one run unless asked.
    let runs = |s: Setting| match num(&f, "runs", if s == Setting::Ot2pc { 1 } else { 2 })? {
        0 => Err(StdError::Usage("--runs must be at least 1".into())),
        n => Ok(n),
    };
    // `tiny` (d 64, 4 heads of 16, ffn 172, vocab 256) runs the same method in seconds, for tests.
    let base_shape = match f.get("shape").map(String::as_str) {
        None | Some("paper") => Shape { layers: 1, d: 3200, heads: 32, kv_heads: 32, ffn: 8640, vocab: 32000 },
        Some("tiny") => Shape { layers: 1, d: 64, heads: 4, kv_heads: 4, ffn: 172, vocab: 256 },
        Some(other) => return Err(StdError::Usage(format!("--shape {other}: paper or tiny"))),
    };
    const N: f64 = 26.0;
    let v = |lora_rank, head_merge, private_embedding| Variant {
        public_layers: 0,
        lora_rank,
        head_merge,
        mpc_friendly: false,
        private_embedding,
    };
    // (name, variant, layers in MPC of the 26)
    let cases: [(&str, Variant, f64); 6] = [
        ("baseline", v(0, 1, true), N),
        ("lf0.5", v(0, 1, false), N / 2.0),
        ("hm4", v(0, 4, false), N),
        ("lora64", v(64, 1, false), N),
        ("lf0.5+hm4", v(0, 4, false), N / 2.0),
        ("lf0.5+lora64", v(64, 1, false), N / 2.0),
    ];
    let table2 = [13.0, 9.0, 6.0, 5.0, 4.0];
    let wanted = |name: &str| only.as_deref().is_none_or(|o| o == name);
    if let Some(o) = &only {
        let known = cases.iter().any(|c| c.0 == o) || table2.iter().any(|t| format!("f={t}/26") == *o);
        if !known {
            return Err(StdError::Usage(format!(
                "--variant {o}: one of baseline lf0.5 hm4 lora64 lf0.5+hm4 lf0.5+lora64 f=13/26 f=9/26 f=6/26 f=5/26 f=4/26"
            )));
        }
    }
    if !json {
        println!(
            "{} shapes, prompt {b} tokens, link {link_name}, ring kernels {ring}, {threads} thread(s) per party; one private layer's cost measured in a 1-layer random \
         model and scaled to the layers in MPC out of 26 (public layers run in plaintext at the client and are not counted)",
            if base_shape.d == 3200 { "openllama-3b-v2" } else { "tiny" }
        );
    }
    for setting in settings {
        let runs = runs(setting)?;
        // (variant key, fixed, per layer, a layer's parts, the head's parts)
        let mut fits: Vec<(&str, Fit)> = Vec::new();
        let mut fit = |name: &'static str, var: Variant| -> Result<Fit, StdError> {
            if let Some((_, f)) = fits.iter().find(|x| x.0 == name) {
                return Ok(f.clone());
            }
            // A private layer costs the same whether the embedding is in MPC or not, so the
            // baseline takes the all-private variant's layer and is measured without one:
            // its embedding and lm head are the largest weights (3PC at b = 256 does not fit
            // 24 GB with a layer besides).
            let borrowed = if var.private_embedding {
                fits.iter().find(|x| x.0 == "private").map(|x| (x.1.1, x.1.2.clone(), x.1.5.clone()))
            } else {
                None
            };
            let layers = usize::from(borrowed.is_none());
            eprintln!("marill cost: {} {name}, {layers} private layer(s), {runs} run(s)", setting.name());
            let t = std::time::Instant::now();
            let (whole, own, parts, peak, mut rot) = measure_case(
                model_shaped(var, Shape { layers, ..base_shape }, 5)?,
                setting,
                b,
                runs,
                layers,
                link,
                offline,
            )?;
            let heap = peak.map_or_else(String::new, |p| {
                let mb = |i: usize| p[i] as f64 / 1e6;
                format!(", peak heap per party {:.1} / {:.1} / {:.1} MB", mb(0), mb(1), mb(2))
            });
            eprintln!("marill cost:   done in {:.1} s{heap}", t.elapsed().as_secs_f64());
            // The layer's span is part of the step, so the rest is never negative in bytes
            // or rounds; a time can be by a hair of clock skew between parties, so it clamps.
            let sub = |a: Metric, c: Metric| {
                (
                    (a.0 - c.0).max(0.0),
                    a.1 - c.1,
                    a.2 - c.2,
                    std::array::from_fn(|i| a.3[i] - c.3[i]),
                    (a.4 - c.4).max(0.0),
                )
            };
            let fixed = [sub(whole[0], own[0]), sub(whole[1], own[1])];
            let (layer_parts, head_parts): (Parts, Parts) =
                parts.into_iter().partition(|p| marill_std::model::secure::is_layer_part(p.0));
            let (per, layer_parts) = match borrowed {
                Some((per, parts, layer_rot)) => {
                    // This model's fixed parts, the borrowed layer's vector and turns.
                    for (r, l) in rot.iter_mut().zip(&layer_rot) {
                        (r.layer, r.layer_turns) = (l.layer, l.layer_turns);
                    }
                    (per, parts)
                }
                None => (own, layer_parts),
            };
            fits.push((name, (fixed, per, layer_parts.clone(), head_parts.clone(), peak, rot.clone())));
            Ok((fixed, per, layer_parts, head_parts, peak, rot))
        };
        // The baseline borrows the all-private variant's layer.
        if wanted("baseline") {
            fit("private", v(0, 1, false))?;
        }
        let mut rows = Vec::new();
        for (name, var, k) in cases.iter().copied().filter(|c| wanted(c.0)) {
            let key = match (var.private_embedding, var.head_merge, var.lora_rank) {
                (true, ..) => "baseline",
                (_, 4, _) => "hm",
                (_, _, 64) => "lora",
                _ => "private",
            };
            let (fixed, per, lp, hp, peak, rot) = fit(key, var)?;
            rows.push((name.to_string(), scaled(&fixed, &per, &rot, k), key, parts_json(&lp, &hp), peak));
        }
        // Table 2: layer freezing alone, trained fraction f of 26 layers.
        for t in table2.into_iter().filter(|t| wanted(&format!("f={t}/26"))) {
            let (fixed, per, lp, hp, peak, rot) = fit("private", v(0, 1, false))?;
            rows.push((format!("f={t}/26"), scaled(&fixed, &per, &rot, t), "private", parts_json(&lp, &hp), peak));
        }
        // Ratios against the baseline (none when --variant leaves it out).
        let base = rows.iter().find(|r| r.0 == "baseline").map(|r| r.1);
        if !json {
            println!("\n{} (× = baseline / variant)", setting.name());
            println!(
                "{:<13} {:>10} {:>10} {:>7} {:>6} {:>6} {:>6} | {:>9} {:>9} {:>7} {:>6} {:>6} {:>6}",
                "variant",
                "prefill s",
                "MB",
                "rounds",
                "×time",
                "×comm",
                "×rnd",
                "decode s",
                "MB",
                "rounds",
                "×time",
                "×comm",
                "×rnd"
            );
        }
        for (name, r, _, parts, peak) in &rows {
            // "-" without a baseline in the run (--variant).
            let x = |i: usize, j: usize| -> String {
                let Some(base) = base else { return "-".into() };
                let (a, c) = (base[i], r[i]);
                let (a, c) = match j {
                    0 => (a.0, c.0),
                    1 => (a.1, c.1),
                    _ => (a.2, c.2),
                };
                format!("{:.2}", if c > 0.0 { a / c } else { 0.0 })
            };
            if json {
                let line = serde_json::json!({
                    "setting": setting.name(), "variant": name, "prompt_len": b, "runs": runs,
                    "prefill_s": secs(r[0].0), "prefill_bytes": whole(r[0].1), "prefill_rounds": whole(r[0].2),
                    "decode_s": secs(r[1].0), "decode_bytes": whole(r[1].1), "decode_rounds": whole(r[1].2),
                    "link": link_name, "ring": ring, "threads": threads,
                    "peak_heap_per_party": peak_json(*peak), "parts": parts,
                    "prefill_bytes_per_party": per_party_json(r[0].3),
                    "decode_bytes_per_party": per_party_json(r[1].3),
                    "offline": offline,
                    "prefill_offline_s": offline_json(offline, r[0].4),
                    "decode_offline_s": offline_json(offline, r[1].4),
                    "prefill_online_bytes": whole(online_bytes(setting, &r[0])),
                    "decode_online_bytes": whole(online_bytes(setting, &r[1])),
                });
                println!("{line}");
            } else {
                println!(
                    "{:<13} {:>10.2} {:>10.1} {:>7.0} {:>6} {:>6} {:>6} | {:>9.3} {:>9.2} {:>7.0} {:>6} {:>6} {:>6}",
                    name,
                    r[0].0,
                    r[0].1 / 1e6,
                    r[0].2,
                    x(0, 0),
                    x(0, 1),
                    x(0, 2),
                    r[1].0,
                    r[1].1 / 1e6,
                    r[1].2,
                    x(1, 0),
                    x(1, 1),
                    x(1, 2)
                );
                if offline {
                    println!(
                        "{:<13} offline phase (the dealer, ahead): prefill {:.2} s, {:.1} MB; decode {:.3} s, {:.2} MB | online MB (compute party that sends most): prefill {:.1}, decode {:.2}",
                        "",
                        r[0].4,
                        r[0].3[2] / 1e6,
                        r[1].4,
                        r[1].3[2] / 1e6,
                        online_bytes(setting, &r[0]) / 1e6,
                        online_bytes(setting, &r[1]) / 1e6
                    );
                }
            }
        }
        if !json {
            let mut keys: Vec<&str> = Vec::new();
            for (_, _, key, _, _) in &rows {
                let key = if *key == "baseline" { "private" } else { key };
                if !keys.contains(&key) {
                    keys.push(key);
                }
            }
            for key in keys {
                if let Some((_, (_, _, lp, hp, peak, _))) = fits.iter().find(|x| x.0 == key) {
                    let what = match key {
                        "hm" => "a head-merged (HM 4) layer",
                        "lora" => "a LoRA 64 layer",
                        _ => "a private layer",
                    };
                    let heap = peak.map_or_else(String::new, |p| {
                        let mb = |i: usize| p[i] as f64 / 1e6;
                        format!(
                            "; peak heap per party over the 1-layer model's session: {:.1} / {:.1} / {:.1} MB",
                            mb(0),
                            mb(1),
                            mb(2)
                        )
                    });
                    print_parts(
                        &format!("{} per part: {what}, then the head (once per step){heap}", setting.name()),
                        lp,
                        hp,
                    );
                }
            }
        }
    }
    Ok(())
}

/// The per-part table of `marill cost` (bytes of the party that sends most, and each
/// party's in the prefill).
fn print_parts(title: &str, layer: &Parts, head: &Parts) {
    println!("\n{title}");
    println!(
        "{:<11} {:>10} {:>9} {:>7} | {:>9} {:>9} {:>7} | {:>26}",
        "part", "prefill s", "MB", "rounds", "decode s", "MB", "rounds", "prefill MB by party 0/1/2"
    );
    let row = |name: &str, m: &[Metric; 2]| {
        let by = m[0].3.map(|b| format!("{:.2}", b / 1e6)).join(" / ");
        println!(
            "{:<11} {:>10.4} {:>9.2} {:>7.0} | {:>9.4} {:>9.3} {:>7.0} | {:>26}",
            name,
            m[0].0,
            m[0].1 / 1e6,
            m[0].2,
            m[1].0,
            m[1].1 / 1e6,
            m[1].2,
            by
        )
    };
    let mut sum = [(0.0, 0.0, 0.0, [0.0; 3], 0.0); 2];
    for (name, m) in layer {
        row(name, m);
        for i in 0..2 {
            let pp = std::array::from_fn(|q| sum[i].3[q] + m[i].3[q]);
            sum[i] = (sum[i].0 + m[i].0, sum[i].1 + m[i].1, sum[i].2 + m[i].2, pp, sum[i].4 + m[i].4);
        }
    }
    // A layer's bytes: the party that sends most over the whole layer (in 3PC the helper's
    // role rotates from op to op, so the sum of the parts' largest overstates it).
    for m in &mut sum {
        m.1 = m.3.iter().copied().fold(0.0, f64::max);
    }
    row("layer", &sum);
    for (name, m) in head {
        row(name, m);
    }
}

fn random_model(args: &[String]) -> Result<(), StdError> {
    use marill_std::model::random::{self, Variant};
    let f = flags("random-model", args, &["variant", "seed", "out"])?;
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
        other => {
            return Err(StdError::Usage(format!(
                "--variant {other}: one of baseline private lf lora lf+lora hm lf+hm friendly"
            )));
        }
    };
    let seed = u8::try_from(num(&f, "seed", 11)?).map_err(|_| StdError::Usage("--seed is 0..=255".into()))?;
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
