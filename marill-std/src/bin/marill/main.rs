//! `marill`: the command line: split-model files (`inspect`, `extract-public`,
//! `random-model`), keys (`keygen`), the parties of secure inference as processes (`serve`,
//! `helper`, `dealer`, `client`), the plaintext model (`plain`) and the paper's cost tables
//! (`cost`, in `cost.rs`). Arguments are parsed by clap; `marill help COMMAND` or
//! `marill COMMAND --help` lists a command's flags.

/// `println!` that reports a closed standard output (`marill … | head -1`) as an error, where
/// `println!` would panic with a backtrace.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)
            .map_err(|e| marill_std::StdError::io("writing to standard output", e))?
    }};
}

mod cost;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use marill_core::format::{ModelFile, SectionKind};
use marill_std::model_file::{MappedModel, ModelMeta, Recipe, decode_postcard, extract_public, hex};
use marill_std::transport::link::LinkModel;
use marill_std::{Setting, StdError};

const AFTER_HELP: &str = "\
Parties talk TLS 1.3 with pinned Ed25519 keys: `marill keygen --out FILE` makes one; each party
gets its own --key and, per role it talks to, --trust-ROLE with the peers' .pub files (the dealer
is the helper role). --insecure-plaintext runs without TLS, for loopback tests only.

serve, helper and dealer print `listening on ADDR` first; the client prints token ids as they
arrive, or text when the prompt is given with --text (through the file's tokenizer).

A flag given twice takes its last value (scripts can append overrides to a set of defaults).

MARILL_RING=portable|avx2|avx512 pins the ring kernels (default: the best this CPU has).";

/// The command line of marill: secure inference of MARILL-fine-tuned models.
#[derive(Parser)]
#[command(name = "marill", version, after_help = AFTER_HELP, arg_required_else_help = true, args_override_self = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Sections, tensors, dtypes, sizes, visibility and digest of a split-model file
    Inspect {
        /// The split-model file
        file: PathBuf,
    },
    /// Write the client file: the public sections only
    ExtractPublic {
        /// The server's split-model file
        file: PathBuf,
        /// The client file to write
        #[arg(short = 'o', long = "out", value_name = "CLIENT")]
        out: PathBuf,
    },
    /// Write a random model's server and client files
    ///
    /// Write DIR/server.marill and DIR/client.marill: a random 4-layer model (d 64, vocab 256)
    /// laid out as a MARILL variant
    RandomModel {
        /// The layout
        #[arg(long, value_enum)]
        variant: RandomVariant,
        /// The directory to write
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// The weights' seed
        #[arg(long, default_value_t = 11)]
        seed: u8,
    },
    /// Write a party's TLS key and its public half
    ///
    /// Write an Ed25519 key (FILE, PKCS#8 PEM, mode 0600) and its public half (FILE.pub, 64 hex
    /// digits) for a party's TLS; never overwrites
    Keygen {
        /// The key file to create
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// The server: holds the private weights, serves secure sessions
    Serve(ServeArgs),
    /// The third party of 3PC (replicated shares)
    Helper(HelperArgs),
    /// The dealer of 2PC-Dealer: deals correlated randomness to the server and the client
    Dealer(DealerArgs),
    /// The client: secure generation, or a local OpenAI-compatible endpoint
    ///
    /// The client: its prompt stays secret; prints the generated tokens (or runs a local
    /// OpenAI-compatible endpoint with --openai)
    Client(ClientArgs),
    /// The plaintext model's greedy output of a server file, for comparison
    Plain(PlainArgs),
    /// The paper's cost tables from this engine
    ///
    /// The paper's cost tables from this engine at openllama-3b-v2's shapes: one private
    /// layer's own cost (metered at its boundaries in a 1-layer model) scaled to the layers in
    /// MPC
    Cost(cost::CostArgs),
}

/// `marill random-model --variant`.
#[derive(Clone, Copy, ValueEnum)]
enum RandomVariant {
    /// The embedding and every layer private
    Baseline,
    /// Every layer private, the embedding public
    Private,
    /// Layer freezing: the bottom two layers public
    Lf,
    /// Unmerged LoRA of rank 8 on frozen public weights
    Lora,
    /// Layer freezing and LoRA
    #[value(name = "lf+lora")]
    LfLora,
    /// Head merging by 2
    Hm,
    /// Layer freezing and head merging
    #[value(name = "lf+hm")]
    LfHm,
    /// ReLU and 2ReLU instead of SiLU and softmax
    Friendly,
}

/// `--setting` of the server and the client.
#[derive(Clone, Copy, ValueEnum)]
enum SettingArg {
    /// 2PC with a trusted dealer
    Dealer,
    /// 3PC, honest majority
    Rep3,
    /// Plain 2PC: the client and the server alone (OT and HE)
    Ot2pc,
}

impl From<SettingArg> for Setting {
    fn from(s: SettingArg) -> Self {
        match s {
            SettingArg::Dealer => Setting::Dealer,
            SettingArg::Rep3 => Setting::Rep3,
            SettingArg::Ot2pc => Setting::Ot2pc,
        }
    }
}

/// Where a listening party listens and how many sessions it runs.
#[derive(Args)]
struct Listening {
    /// The address to listen on (port 0: a free port; the one taken is printed)
    #[arg(long, value_name = "ADDR", value_parser = addr)]
    listen: SocketAddr,
    /// End after N sessions (default: never)
    #[arg(long, value_name = "N")]
    sessions: Option<usize>,
    /// Run up to K sessions at once, each in its own thread with its own shares and memory
    #[arg(long, value_name = "K", default_value_t = 1, value_parser = at_least_one)]
    max_sessions: usize,
}

/// Flags every party takes.
#[derive(Args)]
struct Common {
    /// The longest sequence (prompt and generated tokens) a session may ask for
    #[arg(long, value_name = "N", default_value_t = 4096)]
    max_seq: usize,
    /// Seconds to wait for a connection or a peer's message
    #[arg(long, value_name = "S", default_value_t = 60)]
    timeout: u64,
    /// Emulate a network on every session message: lan (16 Gbps, 0.1 ms round trip), wan
    /// (400 Mbps, 40 ms) or RTT_MS,MBPS; every party of a session must be given the same
    #[arg(long, value_name = "L", value_parser = LinkModel::parse)]
    link: Option<LinkModel>,
    /// Threads for this party's matrix products and PRG expansion (default: the machine's
    /// cores); results are the same for every T
    #[arg(long, value_name = "T", value_parser = at_least_one)]
    threads: Option<usize>,
}

/// TLS 1.3 with pinned keys, or plaintext for loopback tests.
#[derive(Args)]
struct SecurityArgs {
    /// This party's key (from `marill keygen`, or any PKCS#8 Ed25519 key)
    #[arg(long, value_name = "FILE", conflicts_with = "insecure_plaintext")]
    key: Option<PathBuf>,
    /// The server keys this party accepts: comma-separated, each 64 hex digits or a .pub file
    #[arg(long, value_name = "KEYS")]
    trust_server: Option<String>,
    /// The client keys this party accepts
    #[arg(long, value_name = "KEYS")]
    trust_client: Option<String>,
    /// The helper (or dealer) keys this party accepts
    #[arg(long, value_name = "KEYS")]
    trust_helper: Option<String>,
    /// Plaintext TCP: seeds and shares travel in the clear. For loopback tests only
    #[arg(long)]
    insecure_plaintext: bool,
}

#[derive(Args)]
struct ServeArgs {
    /// The server file (public and private sections)
    #[arg(long, value_name = "SERVER_FILE")]
    model: PathBuf,
    #[command(flatten)]
    listening: Listening,
    /// The MPC setting
    #[arg(long, value_enum)]
    setting: SettingArg,
    /// (2PC-Dealer) read up to M MB of the dealer's corrections ahead of need: the offline
    /// phase's transfer and its memory bound per session (default 256; 0: none)
    #[arg(long, value_name = "M")]
    offline_mb: Option<usize>,
    /// (Plain 2PC) the most OTs in flight, 64 to 67108864 (default 4194304): longer ops run
    /// in windows of N, one after another (two rounds each), so N bounds an op's OT state at
    /// about 90 bytes per OT; the session uses the smaller of the server's and the client's
    #[arg(long, value_name = "N", value_parser = ot_batch)]
    ot_batch: Option<usize>,
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    security: SecurityArgs,
}

#[derive(Args)]
struct HelperArgs {
    /// The client file (public sections only)
    #[arg(long, value_name = "CLIENT_FILE")]
    model: PathBuf,
    #[command(flatten)]
    listening: Listening,
    /// The server's address
    #[arg(long, value_name = "ADDR", value_parser = addr)]
    server: SocketAddr,
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    security: SecurityArgs,
}

#[derive(Args)]
struct DealerArgs {
    #[command(flatten)]
    helper: HelperArgs,
    /// Queue at most M MB of corrections ahead of each compute party (default: unbounded; a
    /// bound caps the dealer's memory and can cost time)
    #[arg(long, value_name = "M", value_parser = at_least_one)]
    ahead_mb: Option<usize>,
}

#[derive(Args)]
struct ClientArgs {
    /// The client file (public sections only)
    #[arg(long, value_name = "CLIENT_FILE")]
    model: PathBuf,
    /// The server's address
    #[arg(long, value_name = "ADDR", value_parser = addr)]
    server: SocketAddr,
    /// The helper's or dealer's address (none in plain 2PC)
    #[arg(long, value_name = "ADDR", value_parser = addr)]
    helper: Option<SocketAddr>,
    /// The MPC setting
    #[arg(long, value_enum)]
    setting: SettingArg,
    #[command(flatten)]
    input: PromptArgs,
    /// Tokens to generate (default 16; with --openai, the cap on max_tokens, default 64)
    #[arg(long = "gen", value_name = "N")]
    tokens: Option<usize>,
    /// (2PC-Dealer) read up to M MB of the dealer's corrections ahead of need (default 256;
    /// 0: none)
    #[arg(long, value_name = "M")]
    offline_mb: Option<usize>,
    /// (Plain 2PC) the most OTs in flight, 64 to 67108864 (default 4194304): longer ops run
    /// in windows of N, one after another (two rounds each), so N bounds an op's OT state at
    /// about 90 bytes per OT; the session uses the smaller of the server's and the client's
    #[arg(long, value_name = "N", value_parser = ot_batch)]
    ot_batch: Option<usize>,
    /// Serve a local OpenAI-compatible endpoint at ADDR instead (/v1/chat/completions,
    /// streaming or not; /v1/models): each request is one secure session, its messages in the
    /// file's chat template. Bind it to 127.0.0.1
    #[arg(long, value_name = "ADDR", value_parser = addr, conflicts_with_all = ["prompt", "text"])]
    openai: Option<SocketAddr>,
    /// (--openai) end after N requests (default: never)
    #[arg(long, value_name = "N", requires = "openai")]
    requests: Option<usize>,
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    security: SecurityArgs,
}

/// The prompt: token ids, or text through the file's tokenizer.
#[derive(Args)]
struct PromptArgs {
    /// The prompt as token ids ("ID ID ...")
    #[arg(long, value_name = "IDS", conflicts_with = "text", allow_hyphen_values = true)]
    prompt: Option<String>,
    /// The prompt as text (encoded, and the output decoded, with the file's tokenizer)
    #[arg(long, value_name = "TEXT", allow_hyphen_values = true)]
    text: Option<String>,
}

#[derive(Args)]
struct PlainArgs {
    /// The server file
    #[arg(long, value_name = "SERVER_FILE")]
    model: PathBuf,
    #[command(flatten)]
    input: PromptArgs,
    /// Tokens to generate
    #[arg(long = "gen", value_name = "N", default_value_t = 16)]
    tokens: usize,
}

/// A socket address (a host name is resolved).
fn addr(s: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    s.to_socket_addrs().ok().and_then(|mut a| a.next()).ok_or_else(|| format!("bad address {s}"))
}

/// `--ot-batch N` (serve, client, cost): `64..=`[`marill_std::ot2pc::ot::MAX_BATCH`].
fn ot_batch(s: &str) -> Result<usize, String> {
    let max = marill_std::ot2pc::ot::MAX_BATCH;
    match s.parse::<usize>() {
        Ok(n) if (64..=max).contains(&n) => Ok(n),
        Ok(_) => Err(format!("64 to {max}")),
        Err(_) => Err(format!("not a number: {s}")),
    }
}

/// A count of at least one.
fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("not a number: {s}")),
    }
}

/// Per-party heap figures for `marill cost` (see `marill_std::alloc_meter`).
#[global_allocator]
static GLOBAL: marill_std::alloc_meter::PartyAlloc = marill_std::alloc_meter::PartyAlloc;

fn main() -> ExitCode {
    if let Err(e) = marill_std::pin_ring_from_env() {
        eprintln!("marill: {e}");
        return ExitCode::from(2);
    }
    // Usage errors print clap's message and exit with 2; --help and --version exit with 0.
    let cli = Cli::parse();
    let r = match cli.command {
        Command::Inspect { file } => inspect(file),
        Command::ExtractPublic { file, out } => extract(file, out),
        Command::RandomModel { variant, out, seed } => random_model(variant, out, seed),
        Command::Keygen { out } => keygen(out),
        Command::Serve(a) => serve(a),
        Command::Helper(a) => third_party(Setting::Rep3, a, None),
        Command::Dealer(a) => third_party(Setting::Dealer, a.helper, a.ahead_mb),
        Command::Client(a) => client(a),
        Command::Plain(a) => plain(a),
        Command::Cost(a) => cost::paper_cost(a),
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
    outln!(
        "wrote {} ({} bytes, {} sections, digest {})",
        output.display(),
        client.len(),
        f.section_count(),
        hex(&f.stored_digest())
    );
    Ok(())
}

/// The roles a key can be trusted as (`--trust-ROLE`); the dealer is the helper role.
const ROLES: [(&str, usize); 3] = [
    ("client", marill_std::model::secure::CLIENT),
    ("server", marill_std::model::secure::SERVER),
    ("helper", marill_std::party::HELPER),
];

/// `--key` with `--trust-*`, or `--insecure-plaintext`; `me` is this party's role and a key
/// must be trusted for every role it talks to (checked now, not at the first connection).
fn security(s: &SecurityArgs, me: &str, setting: Setting) -> Result<marill_std::party::Security, StdError> {
    use marill_std::party::Security;
    use marill_std::transport::tls::{Identity, PublicKey, Tls};
    if s.insecure_plaintext {
        return Ok(Security::InsecurePlaintext);
    }
    let Some(key) = &s.key else {
        return Err(StdError::Usage(
            "no --key: parties talk TLS with pinned keys (make one with `marill keygen --out FILE`); \
             --insecure-plaintext runs without, for loopback tests"
                .into(),
        ));
    };
    let mut tls = Tls::new(Identity::read(key)?);
    for (name, party) in ROLES {
        let keys = match name {
            "client" => &s.trust_client,
            "server" => &s.trust_server,
            _ => &s.trust_helper,
        };
        for k in keys.as_deref().unwrap_or("").split(',').filter(|k| !k.is_empty()) {
            tls = tls.trust(party, PublicKey::parse_or_read(k)?);
        }
    }
    // Every role but this one's (and no helper in plain 2PC).
    let peers = ROLES.iter().filter(|(name, _)| *name != me && !(setting == Setting::Ot2pc && *name == "helper"));
    for (name, p) in peers {
        if !tls.trusts_any(*p) {
            return Err(StdError::Usage(format!(
                "--trust-{name} is required: the {name}'s public key (its .pub file from marill keygen, or 64 hex digits)"
            )));
        }
    }
    Ok(Security::Tls(std::sync::Arc::new(tls)))
}

/// A party's configuration from its flags; `offline_mb` and `ahead_mb` as given.
fn config(
    me: &str,
    setting: Setting,
    common: &Common,
    security_args: &SecurityArgs,
    offline_mb: Option<usize>,
    ahead_mb: Option<usize>,
    ot_batch: Option<usize>,
) -> Result<marill_std::party::PartyConfig, StdError> {
    marill_std::threads::set_threads(common.threads.unwrap_or_else(marill_std::threads::default_threads));
    let timeout = std::time::Duration::from_secs(common.timeout);
    let offline_ahead = match offline_mb {
        Some(_) if setting != Setting::Dealer => {
            return Err(StdError::Usage(format!(
                "--offline-mb: for 2PC-Dealer (--setting dealer), not {}",
                setting.name()
            )));
        }
        Some(mb) => mb << 20,
        None => marill_std::transport::OFFLINE_AHEAD,
    };
    let ot_batch = match ot_batch {
        Some(_) if setting != Setting::Ot2pc => {
            return Err(StdError::Usage(format!(
                "--ot-batch: for plain 2PC (--setting ot2pc), not {}",
                setting.name()
            )));
        }
        Some(b) => b,
        None => marill_std::party::DEFAULT_OT_BATCH,
    };
    Ok(marill_std::party::PartyConfig {
        setting,
        tcp: marill_std::transport::tcp::TcpConfig { connect_timeout: timeout, io_timeout: timeout },
        max_seq: common.max_seq,
        security: security(security_args, me, setting)?,
        link: common.link,
        max_sessions: 1,
        dealer_ahead: ahead_mb.map(|m| m << 20),
        offline_ahead,
        ot_batch,
    })
}

/// Bind, and print `listening on ADDR` (the port taken when 0 was asked for).
fn listen(addr: SocketAddr) -> Result<std::net::TcpListener, StdError> {
    use std::io::Write;
    let listener = std::net::TcpListener::bind(addr).map_err(|e| StdError::io(format!("bind {addr}"), e))?;
    let local = listener.local_addr().map_err(|e| StdError::io("local address", e))?;
    outln!("listening on {local}");
    std::io::stdout().flush().map_err(|e| StdError::io("stdout", e))?;
    Ok(listener)
}

/// `marill serve`.
fn serve(a: ServeArgs) -> Result<(), StdError> {
    let model = MappedModel::open(&a.model)?;
    if model.file()?.find_section(SectionKind::TensorIndex, true).is_none() {
        return Err(StdError::Usage(format!(
            "marill serve: --model {} is a client file (its public part only): the server needs the server file, \
             with the private weights",
            a.model.display()
        )));
    }
    let mut cfg = config("server", a.setting.into(), &a.common, &a.security, a.offline_mb, None, a.ot_batch)?;
    cfg.max_sessions = a.listening.max_sessions;
    let listener = listen(a.listening.listen)?;
    marill_std::party::serve(listener, &model, &cfg, a.listening.sessions, |m| eprintln!("marill serve: {m}"))
}

/// `marill helper` (3PC) and `marill dealer` (2PC-Dealer).
fn third_party(setting: Setting, a: HelperArgs, ahead_mb: Option<usize>) -> Result<(), StdError> {
    let role = if setting == Setting::Dealer { "dealer" } else { "helper" };
    let model = MappedModel::open(&a.model)?;
    let mut cfg = config("helper", setting, &a.common, &a.security, None, ahead_mb, None)?;
    cfg.max_sessions = a.listening.max_sessions;
    let listener = listen(a.listening.listen)?;
    marill_std::party::helper(listener, a.server, &model, &cfg, a.listening.sessions, |m| {
        eprintln!("marill {role}: {m}")
    })
}

/// `marill client`: one secure session printing the tokens, or the OpenAI endpoint.
fn client(a: ClientArgs) -> Result<(), StdError> {
    use marill_std::party;
    use std::io::Write;
    let setting: Setting = a.setting.into();
    let model = MappedModel::open(&a.model)?;
    let cfg = config("client", setting, &a.common, &a.security, a.offline_mb, None, a.ot_batch)?;
    let helper = match (setting, a.helper) {
        // Plain 2PC has no helper: one given is refused by the session (`no helper`).
        (Setting::Ot2pc, h) => h,
        (_, Some(h)) => Some(h),
        (s, None) => {
            return Err(StdError::Usage(format!(
                "--helper is required in {}: the {}'s address",
                s.name(),
                if s == Setting::Dealer { "dealer" } else { "helper" }
            )));
        }
    };
    let server = a.server;
    if let Some(at) = a.openai {
        let tokenizer = tokenizer_of(&model, "--openai")?;
        let model_id = a.model.file_stem().map_or_else(|| "marill".into(), |s| s.to_string_lossy().into_owned());
        let listener = listen(at)?;
        let local = listener.local_addr().map_err(|e| StdError::io("local address", e))?;
        eprintln!("marill client: OpenAI-compatible endpoint at http://{local}/v1 (model {model_id:?})");
        let mut generate = |prompt: &[u32], n: usize, on_token: &mut dyn FnMut(u32)| {
            party::client(server, helper, &model, &cfg, prompt, n, on_token).map(|r| r.0)
        };
        let mut ep = marill_std::openai::Endpoint {
            model_id,
            tokenizer,
            max_tokens: a.tokens.unwrap_or(64),
            read_deadline: marill_std::openai::READ_DEADLINE,
            generate: &mut generate,
        };
        return marill_std::openai::serve(&listener, &mut ep, a.requests, |m| eprintln!("marill client: {m}"));
    }
    let (tokenizer, prompt) = prompt_of(&a.input, &model)?;
    let n = a.tokens.unwrap_or(16);
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
    let (_, cost) = party::client(server, helper, &model, &cfg, &prompt, n, &mut on_token)?;
    outln!();
    eprintln!(
        "marill client: {n} tokens in {:.3} s (the first after {:.3} s); this party sent {} bytes, {} rounds",
        t0.elapsed().as_secs_f64(),
        first.unwrap_or_default(),
        cost.bytes_sent,
        cost.rounds
    );
    Ok(())
}

/// The model file's tokenizer; `flag` names what needed it when the file has none.
fn tokenizer_of(model: &MappedModel, flag: &str) -> Result<marill_std::tokenizer::Tokenizer, StdError> {
    let file = model.file()?;
    let sec = file
        .find_section(SectionKind::Tokenizer, false)
        .ok_or_else(|| StdError::Usage(format!("{flag}: the model file has no tokenizer")))?;
    let json = std::str::from_utf8(sec.bytes).map_err(|_| StdError::Tokenizer("the section is not UTF-8".into()))?;
    marill_std::tokenizer::Tokenizer::from_hf_json(json)
}

/// The prompt (`--prompt` ids or `--text` through the file's tokenizer) and the tokenizer.
fn prompt_of(
    p: &PromptArgs,
    model: &MappedModel,
) -> Result<(Option<marill_std::tokenizer::Tokenizer>, Vec<u32>), StdError> {
    if let Some(text) = &p.text {
        let tok = tokenizer_of(model, "--text")?;
        let ids = tok.encode(text)?;
        return Ok((Some(tok), ids));
    }
    let Some(ids) = &p.prompt else {
        return Err(StdError::Usage("a prompt is required: --prompt \"ID ID ...\" or --text TEXT".into()));
    };
    let ids = ids
        .split_whitespace()
        .map(|t| t.parse().map_err(|_| StdError::Usage(format!("--prompt: token {t} is not a number"))))
        .collect::<Result<_, _>>()?;
    Ok((None, ids))
}

/// `marill plain`: greedy generation with the plaintext model of a server file.
fn plain(a: PlainArgs) -> Result<(), StdError> {
    use marill_std::model::plain::{PlainModel, argmax};
    let model = MappedModel::open(&a.model)?;
    let (tokenizer, prompt) = prompt_of(&a.input, &model)?;
    let file = model.file()?;
    let arch = marill_std::model::Arch::of_file(&file)?;
    if prompt.is_empty() {
        return Err(StdError::Usage("the prompt is empty".into()));
    }
    let mut pm = PlainModel::load(&file, arch.clone(), 0, arch.n_layers, true)?;
    let mut feed = prompt;
    let mut out = Vec::new();
    for _ in 0..a.tokens {
        let mut h = pm.embed(&feed)?;
        pm.layers(&mut h, feed.len())?;
        let t = argmax(&pm.logits(&h)?) as u32;
        out.push(t);
        feed = vec![t];
    }
    match tokenizer {
        Some(tok) => outln!("{}", tok.decode(&out, false)?),
        None => outln!("{}", out.iter().map(u32::to_string).collect::<Vec<_>>().join(" ")),
    }
    Ok(())
}

/// `marill keygen --out FILE`: a new Ed25519 key, and its public half in FILE.pub.
fn keygen(out: PathBuf) -> Result<(), StdError> {
    use std::io::Write;
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
    outln!("{}", id.public());
    Ok(())
}

/// `marill random-model`.
fn random_model(variant: RandomVariant, dir: PathBuf, seed: u8) -> Result<(), StdError> {
    use marill_std::model::random::{self, Variant};
    let v = |public_layers, lora_rank, head_merge, mpc_friendly, private_embedding| Variant {
        public_layers,
        lora_rank,
        head_merge,
        mpc_friendly,
        private_embedding,
    };
    let variant = match variant {
        RandomVariant::Baseline => v(0, 0, 1, false, true),
        RandomVariant::Private => v(0, 0, 1, false, false),
        RandomVariant::Lf => v(2, 0, 1, false, false),
        RandomVariant::Lora => v(0, 8, 1, false, false),
        RandomVariant::LfLora => v(2, 8, 1, false, false),
        RandomVariant::Hm => v(0, 0, 2, false, false),
        RandomVariant::LfHm => v(2, 0, 2, false, false),
        RandomVariant::Friendly => v(0, 0, 1, true, false),
    };
    std::fs::create_dir_all(&dir).map_err(|e| StdError::io(format!("create {}", dir.display()), e))?;
    let server = random::model(variant, 4, 64, 256, seed)?;
    let client = extract_public(&server)?;
    for (name, bytes) in [("server.marill", &server), ("client.marill", &client)] {
        let p = dir.join(name);
        std::fs::write(&p, bytes).map_err(|e| StdError::io(format!("write {}", p.display()), e))?;
        outln!("wrote {} ({} bytes)", p.display(), bytes.len());
    }
    Ok(())
}
