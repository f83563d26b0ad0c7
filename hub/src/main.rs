//! `hark`: parse the command line, set up logging, run the command.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use hark_hub::cli;

#[derive(Debug, Parser)]
#[command(name = "hark", version, about = "A privacy-first voice-assistant hub")]
struct Cli {
    /// Config file (default: $HARK_CONFIG, else /etc/hark/hark.toml if present, else built-in defaults)
    #[arg(long, short, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Log format on stderr; the level comes from RUST_LOG (default: info)
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the hub (with no mqtt.url, also its embedded broker on 127.0.0.1:1883)
    Run,
    /// Write a commented default config file, using a broker that already
    /// answers on --listen instead of starting a second one
    Init {
        /// Where to write it (default: --config, else ./hark.toml)
        path: Option<PathBuf>,
        /// Overwrite an existing file
        #[arg(long)]
        force: bool,
        /// Where to look for a broker, and where the embedded broker listens if none answers
        #[arg(long, default_value = hark_hub::cli::DEFAULT_LISTEN)]
        listen: std::net::SocketAddr,
        /// Print the config instead of writing a file
        #[arg(long, conflicts_with_all = ["path", "force"])]
        stdout: bool,
    },
    /// Publish one intent as satellite <SAT> and print the reply
    Send {
        /// Satellite id (1-64 of A-Z a-z 0-9 _ -)
        sat: String,
        /// Intent, e.g. timer.set
        intent: String,
        /// Arguments as key=value, e.g. duration=5m label=pasta
        args: Vec<String>,
        /// Seconds to wait for the reply
        #[arg(long, default_value_t = 5.0)]
        timeout: f64,
    },
    /// Show the running hub's live state: skills, timers, audit log, metrics
    Status {
        /// Print JSON: {"status", "metrics", "fresh"}
        #[arg(long)]
        json: bool,
        /// Seconds to wait for the hub's answer (then: what the broker kept)
        #[arg(long, default_value_t = 3.0)]
        timeout: f64,
    },
    /// Register the satellites that may talk to the hub, each with its own login
    Satellite {
        #[command(subcommand)]
        command: SatelliteCommand,
    },
    /// Audit log tools
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// The skills the hub would run, with kind, version, signer, permissions,
    /// and why a disabled one is off
    Skills {
        #[command(subcommand)]
        command: SkillsCommand,
    },
    /// Write, build, sign and verify WebAssembly skills
    Skill {
        #[command(subcommand)]
        command: SkillCommand,
    },
    /// Check this machine for what stops the hub from working: config, state dir,
    /// broker, speaker, skills, clock, disk. Exit 1 naming the checks that failed
    Doctor,
    /// Measure this board's interpreter speed (fuel per millisecond)
    Calibrate {
        /// Seconds to measure
        #[arg(long, default_value_t = 1.0)]
        seconds: f64,
    },
}

#[derive(Debug, Subcommand)]
enum SkillCommand {
    /// Scaffold a skill crate on the SDK, ready to build
    New {
        /// Skill name = the intent it serves, e.g. hello or kitchen.weather
        name: String,
        /// Folder to create it in
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// Use this hark-skill-sdk checkout instead of a vendored copy
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
    /// Build for wasm32, write the module and its sha256, check it as the hub will
    Build {
        /// The skill's folder
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
    /// Make an ed25519 key pair for signing skills
    Keygen {
        /// Secret key file (written 0600); the public key goes to <file>.pub
        #[arg(long, default_value = "hark-skill.key")]
        out: PathBuf,
    },
    /// Sign a skill folder: writes manifest.sig
    Sign {
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Secret key from `hark skill keygen`
        #[arg(long)]
        key: PathBuf,
    },
    /// Check a skill folder's signature and module
    Verify {
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Public key (ed25519:... or a .pub file); default: trust.keys of the config
        #[arg(long)]
        key: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum SatelliteCommand {
    /// Register a satellite; prints its password (once) and its MQTT settings
    Add {
        /// Satellite id = its MQTT username (1-64 of A-Z a-z 0-9 _ -)
        id: String,
        /// The room it is in
        #[arg(long)]
        area: Option<String>,
        /// A Rhasspy (Hermes) login: may also use hermes/# topics (list its sites in
        /// hermes.sites: no broker can check the siteId inside a payload)
        #[arg(long)]
        hermes: bool,
        /// Print {"id", "password", "username", "broker", "topics"} for scripts
        #[arg(long)]
        json: bool,
    },
    /// List the registered satellites
    List {
        #[arg(long)]
        json: bool,
    },
    /// Forget a satellite; the embedded broker disconnects it at once
    Remove { id: String },
    /// Give a satellite a new password; the old one stops working at once
    Rotate {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Print (or write to --dir as passwd and acl) a mosquitto password file and pattern ACL
    /// that bind each satellite to its own topics
    Acl {
        /// mosquitto's formats (the only ones so far)
        #[arg(long, required = true)]
        mosquitto: bool,
        /// Write <DIR>/passwd and <DIR>/acl instead of printing them
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum SkillsCommand {
    /// List every skill under the configured tier
    List {
        /// Print JSON (as on the status topic)
        #[arg(long)]
        json: bool,
    },
    /// The provenance of every skill: version, kind, sha256, signer, permissions asked
    /// and granted, abi, min_hub_version, hermetic, and the load decision with its rule
    Inventory {
        /// json, or cyclonedx: a CycloneDX 1.5 JSON SBOM of the skills
        #[arg(long, value_enum, default_value_t = InventoryFormat::Json)]
        format: InventoryFormat,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum InventoryFormat {
    Json,
    Cyclonedx,
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Check the hash chain and the signed checkpoints; names the first broken record or
    /// checkpoint. Exit 0 intact, 1 broken, 2 could not read
    Verify {
        /// Log file (default: audit.path of the config)
        file: Option<PathBuf>,
        /// A copy of checkpoints kept elsewhere (a .checkpoints file or one saved note);
        /// the log must be a consistent extension of each. Repeatable
        #[arg(long = "checkpoint", value_name = "FILE")]
        checkpoints: Vec<PathBuf>,
        /// The hub's public key, ed25519:<base64> or a file holding it (default: the public
        /// half of <state_dir>/hub.key when readable)
        #[arg(long)]
        key: Option<String>,
        /// Check an inclusion proof from `hark audit prove` instead of a log
        #[arg(long, value_name = "FILE", conflicts_with_all = ["file", "checkpoints"])]
        proof: Option<PathBuf>,
    },
    /// Print an inclusion proof of one record against the newest checkpoint
    Prove {
        /// The record's seq
        seq: u64,
        /// Log file (default: audit.path of the config)
        file: Option<PathBuf>,
    },
    /// Print the public half of the hub's signing key (ed25519:<base64>)
    Key,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("hark: {e:#}");
            if permission_denied(&e) {
                eprintln!("{PERMISSION_HINT}");
            }
            ExitCode::from(2)
        }
    }
}

/// The hub's files belong to the `hark` user and group (the config 640
/// root:hark, the state dir 750): reading them takes membership.
const PERMISSION_HINT: &str = "hint: the hub's config and state are readable by the group \
     `hark`; add yourself with `sudo usermod -aG hark $USER`, then log in again (or use sudo)";

fn permission_denied(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::PermissionDenied)
    }) || e.to_string().contains("Permission denied")
}

fn init_tracing(format: LogFormat) {
    use hark_hub::logging::filter_spec;
    let rust_log = std::env::var("RUST_LOG").ok();
    let (filter, ignored) =
        match tracing_subscriber::EnvFilter::try_new(filter_spec(rust_log.as_deref())) {
            Ok(filter) => (filter, None),
            Err(e) => (
                tracing_subscriber::EnvFilter::new(filter_spec(None)),
                Some(e),
            ),
        };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.fmt_fields(hark_hub::logging::text_fields()).init(),
        LogFormat::Json => builder.json().init(),
    }
    if let (Some(e), Some(rust_log)) = (ignored, rust_log) {
        tracing::warn!("RUST_LOG={rust_log:?} is not a log filter ({e}); logging at info");
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    // One thread is plenty for a hub that mostly waits; sandboxed skills get
    // their own worker threads.
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Init {
            path,
            force,
            listen,
            stdout,
        } => {
            if stdout {
                let (text, found) = cli::init_text(listen);
                eprintln!("{found}");
                print!("{text}");
                return Ok(ExitCode::SUCCESS);
            }
            let path = path
                .or(cli.config)
                .unwrap_or_else(|| PathBuf::from("hark.toml"));
            let found = cli::init(&path, force, listen)?;
            println!("{found}");
            println!(
                "wrote {}; start the hub with: hark run --config {}",
                path.display(),
                path.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Run => {
            let (config, source) = cli::load_config(cli.config.as_deref())?;
            match &source {
                Some(path) => tracing::info!("config {}", path.display()),
                None => tracing::info!("no config file; using the defaults"),
            }
            runtime()?.block_on(hark_hub::run(config, shutdown_signal()))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { json, timeout } => {
            let (config, _) = cli::load_config(cli.config.as_deref())?;
            if !(timeout.is_finite() && timeout > 0.0) {
                anyhow::bail!("--timeout must be a positive number of seconds");
            }
            let mqtt = hark_hub::satellites::admin::cli_mqtt(&config);
            let timeout = Duration::from_secs_f64(timeout);
            let answer = runtime()?.block_on(cli::status::fetch(&mqtt, timeout))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&answer)?);
            } else {
                print!("{}", cli::status::format(&answer));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Send {
            sat,
            intent,
            args,
            timeout,
        } => {
            let (config, _) = cli::load_config(cli.config.as_deref())?;
            let args = cli::send::parse_args(&args)?;
            if !(timeout.is_finite() && timeout > 0.0) {
                anyhow::bail!("--timeout must be a positive number of seconds");
            }
            let timeout = Duration::from_secs_f64(timeout);
            let mqtt = hark_hub::satellites::admin::cli_mqtt(&config);
            let reply =
                runtime()?.block_on(cli::send::send(&mqtt, &sat, &intent, args, timeout))?;
            println!("{}", serde_json::to_string_pretty(&reply)?);
            Ok(if reply.status == hark_skill_sdk::Status::Ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Skills {
            command: SkillsCommand::List { json },
        } => {
            let (config, _) = cli::load_config(cli.config.as_deref())?;
            let skills = cli::skills_list(&config).map_err(anyhow::Error::msg)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&skills)?);
            } else {
                print!("{}", cli::format_skills(&skills, config.tier));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Skills {
            command: SkillsCommand::Inventory { format },
        } => {
            use hark_hub::cli::inventory;
            let (config, _) = cli::load_config(cli.config.as_deref())?;
            let found = inventory::inventory(&config).map_err(anyhow::Error::msg)?;
            let document = match format {
                InventoryFormat::Json => serde_json::to_string_pretty(&found)?,
                InventoryFormat::Cyclonedx => serde_json::to_string_pretty(
                    &inventory::cyclonedx_now(&found).map_err(anyhow::Error::msg)?,
                )?,
            };
            println!("{document}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Skill { command } => skill_command(command, cli.config.as_deref()),
        Command::Satellite { command } => {
            use hark_hub::cli::satellite;
            let (config, _) = cli::load_config(cli.config.as_deref())?;
            let text = match command {
                SatelliteCommand::Add {
                    id,
                    area,
                    hermes,
                    json,
                } => satellite::add(&config, &id, area.as_deref(), hermes, json)?,
                SatelliteCommand::List { json } => satellite::list(&config, json)?,
                SatelliteCommand::Remove { id } => satellite::remove(&config, &id)?,
                SatelliteCommand::Rotate { id, json } => satellite::rotate(&config, &id, json)?,
                SatelliteCommand::Acl { mosquitto: _, dir } => {
                    satellite::acl(&config, dir.as_deref())?
                }
            };
            print!("{text}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Doctor => {
            let (config, file) = cli::load_config(cli.config.as_deref())?;
            let checks = cli::doctor::run(&config, file.as_deref());
            for check in &checks {
                println!("{check}");
            }
            let failed: Vec<&str> = checks
                .iter()
                .filter(|c| c.verdict == cli::doctor::Verdict::Fail)
                .map(|c| c.name)
                .collect();
            if failed.is_empty() {
                return Ok(ExitCode::SUCCESS);
            }
            eprintln!("hark doctor: failed: {}", failed.join(", "));
            Ok(ExitCode::from(1))
        }
        Command::Calibrate { seconds } => {
            if !(seconds.is_finite() && (0.05..=60.0).contains(&seconds)) {
                anyhow::bail!("--seconds must be between 0.05 and 60");
            }
            println!("{}", cli::calibrate(seconds));
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit {
            command: AuditCommand::Key,
        } => {
            let (config, _) = cli::load_config(cli.config.as_deref())?;
            println!("{}", cli::audit_key(&config).map_err(anyhow::Error::msg)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit {
            command:
                AuditCommand::Verify {
                    file,
                    checkpoints,
                    key,
                    proof,
                },
        } => {
            // A file named on the command line needs no config; the key may still come from it.
            let config = if file.is_none() && proof.is_none() {
                Some(cli::load_config(cli.config.as_deref())?.0)
            } else if key.is_none() {
                cli::load_config(cli.config.as_deref()).ok().map(|c| c.0)
            } else {
                None
            };
            // The config's hub key is this hub's: it checks this hub's log, not any file.
            let own_log = match (&file, &config) {
                (None, Some(_)) => true,
                (Some(file), Some(c)) => same_file(file, &c.audit_path),
                _ => false,
            };
            let key = cli::audit_public_key(key.as_deref(), config.as_ref().filter(|_| own_log));
            let (line, verdict) = match (proof, file) {
                (Some(proof), _) => cli::audit_verify_proof(&proof, key.as_deref()),
                (None, file) => {
                    let path = file
                        .or(config.map(|c| c.audit_path))
                        .expect("a config when no file is named");
                    cli::audit_verify(&path, &checkpoints, key.as_deref())
                }
            };
            if verdict == cli::Verdict::Unreadable {
                eprintln!("{line}");
                if line.contains("Permission denied") {
                    eprintln!("{PERMISSION_HINT}");
                }
            } else {
                println!("{line}");
            }
            Ok(ExitCode::from(verdict.exit_code()))
        }
        Command::Audit {
            command: AuditCommand::Prove { seq, file },
        } => {
            let (config, _) = cli::load_config(cli.config.as_deref())?;
            let key = cli::audit_key(&config).map_err(anyhow::Error::msg)?;
            let path = file.unwrap_or(config.audit_path);
            println!(
                "{}",
                cli::audit_prove(&path, seq, &key).map_err(anyhow::Error::msg)?
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn skill_command(
    command: SkillCommand,
    config: Option<&std::path::Path>,
) -> anyhow::Result<ExitCode> {
    use hark_hub::cli::skill;
    match command {
        SkillCommand::New { name, dir, sdk } => {
            let made = skill::new(&name, &dir, sdk.as_deref())?;
            println!(
                "created {shown}
next: edit {shown}/src/lib.rs and manifest.json, then\n  hark skill build {shown}",
                shown = made.display()
            );
        }
        SkillCommand::Build { dir } => {
            let (config, _) = cli::load_config(config)?;
            let built = skill::build(&dir, &config)?;
            println!(
                "built {} ({} bytes, sha256 {})
the hub would load it; sign it with: hark skill sign {} --key <file>",
                built.module.display(),
                built.bytes,
                built.sha256,
                dir.display()
            );
            if built.stale_signature_removed {
                println!("removed manifest.sig: it signed the previous manifest; sign again");
            }
        }
        SkillCommand::Keygen { out } => {
            let public = skill::keygen(&out)?;
            println!(
                "secret key: {} (keep it private)
public key: {public}

to trust skills signed with it, add to hark.toml:
[trust]
keys = [\"{public}\"]",
                out.display()
            );
        }
        SkillCommand::Sign { dir, key } => {
            let signer = skill::sign(&dir, &key)?;
            println!("signed {} as {signer}", dir.join("manifest.sig").display());
        }
        SkillCommand::Verify { dir, key } => {
            let keys = match key {
                Some(key) => vec![skill::public_key_arg(&key)?],
                None => cli::load_config(config)?.0.trust_keys,
            };
            match skill::verify(&dir, &keys) {
                Ok(line) => println!("{line}"),
                Err(e) => {
                    println!("refused: {e}");
                    return Ok(ExitCode::from(1));
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot listen for signals; stop the hub with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
}
