//! `marill`: the command line. Today: `inspect` and `extract-public` for split-model files.
//! (`serve`, `client`, `helper`, `dealer` and `demo` arrive with the secure runtime.)

use std::path::PathBuf;
use std::process::ExitCode;

use marill_core::format::{ModelFile, SectionKind};
use marill_std::StdError;
use marill_std::model_file::{MappedModel, ModelMeta, Recipe, decode_postcard, extract_public, hex};

const USAGE: &str = "usage:
  marill inspect FILE                      sections, tensors, dtypes, sizes, visibility, digest
  marill extract-public FILE -o CLIENT     write the client file (public sections only)
  marill --help";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let r = match args.first().map(String::as_str) {
        Some("inspect") if args.len() == 2 => inspect(PathBuf::from(&args[1])),
        Some("extract-public") if args.len() == 4 && args[2] == "-o" => {
            extract(PathBuf::from(&args[1]), PathBuf::from(&args[3]))
        }
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
