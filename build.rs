//! Compiles the P4Runtime protocol definitions under proto/ with a pure-Rust pipeline
//! (protox parses them, tonic-prost-build generates the code): no system protoc needed.
//!
//! It also builds the controller's web page (web/): `npm ci` installs the locked packages when
//! web/node_modules is missing or older than the lockfile, and esbuild bundles the page into
//! OUT_DIR/web, which the binary embeds (src/controller/api.rs), so that it serves the page with
//! no network access. This needs Node.js and npm at build time only.

use std::path::{Path, PathBuf};

fn collect_protos(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_protos(&path, out);
        } else if path.extension().is_some_and(|e| e == "proto") {
            out.push(path);
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    build_web_page()?;
    println!("cargo:rerun-if-changed=proto");
    let mut protos = Vec::new();
    collect_protos(Path::new("proto"), &mut protos);
    protos.sort();
    if protos.is_empty() {
        return Ok(());
    }
    let fds = protox::compile(&protos, ["proto"])?;
    // The descriptor set is embedded too, so prost-reflect can print and parse text format.
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("p4runtime_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)?;
    Ok(())
}

/// Runs `program args` in `dir`; a missing program is named with the Debian packages to install.
fn run(dir: &Path, program: &str, args: &[&str]) -> Result<(), String> {
    let status = std::process::Command::new(program)
        .args(args)
        .current_dir(dir)
        .status()
        .map_err(|err| {
            format!(
                "building the web page needs Node.js and npm, and `{program}` cannot be run \
                 ({err}): install them (Debian: apt-get install nodejs npm)"
            )
        })?;
    if !status.success() {
        return Err(format!(
            "building the web page: `{program} {}` in {} failed ({status})",
            args.join(" "),
            dir.display()
        ));
    }
    Ok(())
}

fn modified(path: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Installs web/'s locked packages if needed and bundles the page into OUT_DIR/web.
fn build_web_page() -> Result<(), Box<dyn std::error::Error>> {
    let web = Path::new("web");
    // node_modules/.package-lock.json: a removed or changed install is installed again.
    for input in [
        "src",
        "build.mjs",
        "package.json",
        "package-lock.json",
        "node_modules/.package-lock.json",
    ] {
        println!("cargo:rerun-if-changed={}", web.join(input).display());
    }
    // npm ci writes node_modules/.package-lock.json: older than the lockfile means stale.
    let installed = modified(&web.join("node_modules/.package-lock.json"));
    let locked = modified(&web.join("package-lock.json"));
    if installed.is_none() || installed < locked {
        run(
            web,
            "npm",
            &["ci", "--no-audit", "--no-fund", "--prefer-offline"],
        )?;
    }
    let out = PathBuf::from(std::env::var("OUT_DIR")?).join("web");
    let out = out.to_str().ok_or("OUT_DIR is not UTF-8")?;
    run(web, "node", &["build.mjs", out])?;
    Ok(())
}
