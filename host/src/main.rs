use clap::{Parser, Subcommand};
use ferrule_host::config::{Config, Overrides};
use ferrule_host::server::Server;
use std::path::PathBuf;

/// mimalloc: the message path allocates per message; glibc's allocator took ~45 % of the CPU
/// under load (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Ferrule: connects devices and digital twins to MQTT and AMQP brokers, managed through
/// Eclipse Ditto's connection API.
#[derive(Parser)]
#[command(name = "ferrule", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Commands,
}

#[derive(Subcommand)]
enum Commands {
    /// Run the service: the REST API at /api/2/connections and the connections.
    Serve(ServeArgs),
    /// Tools for WebAssembly mapper modules.
    #[command(subcommand)]
    Mapper(MapperCommand),
    /// Write every connection, thing and mapper module of the store `serve` would use with the
    /// same configuration (the data directory, or the cluster's database with [cluster]) to a
    /// JSON file. Credentials are written decrypted; the file is readable by its owner only.
    Export(TransferArgs),
    /// Write the connections, things and mapper modules of an export into the store `serve`
    /// would use with the same configuration; what has the same id is replaced.
    Import(TransferArgs),
}

#[derive(clap::Args)]
struct TransferArgs {
    /// The export file
    #[arg(long, value_name = "FILE")]
    file: PathBuf,
    /// The data directory of the embedded store [default: ./ferrule-data]
    #[arg(long, env = "FERRULE_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// A TOML configuration file, as for `serve`
    #[arg(long, env = "FERRULE_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum MapperCommand {
    /// Run a mapper module (or a JavaScript, Rhai or built-in mapping definition) locally on
    /// one message and print the outputs, the error, its log lines and the time the call took
    /// (JSON), or run a file of cases and print a line per case. Nothing is published. Exits 1
    /// when the module is refused, the mapping fails or a case fails.
    Test(MapperTestArgs),
    /// Create a mapper project that builds and tests as it is: a Rust crate on the mapper SDK
    /// with a mapper, its native tests, a file of cases for `ferrule mapper test --cases` and a
    /// README with the commands to build, try and upload it.
    New(MapperNewArgs),
    /// Build a mapper project and upload its component to a running Ferrule, then again after
    /// every change of its files (polled), until stopped: running connections that use the
    /// module switch to each new version. Rust (Cargo.toml), JavaScript (package.json's build
    /// script) and Python (build.sh) projects build themselves; --build runs another command.
    Watch(MapperWatchArgs),
}

#[derive(clap::Args)]
struct MapperWatchArgs {
    /// The mapper id to upload as
    #[arg(long)]
    id: String,
    /// The project's directory
    #[arg(long, value_name = "DIR", default_value = ".")]
    dir: PathBuf,
    /// The Ferrule service
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// The devops user
    #[arg(long, default_value = "devops")]
    user: String,
    /// The devops password
    #[arg(long, env = "FERRULE_DEVOPS_PASSWORD", hide_env_values = true)]
    password: String,
    /// A shell command that builds the component, instead of the project's own build
    #[arg(long, value_name = "COMMAND")]
    build: Option<String>,
    /// The component the build writes [default: what cargo reports, else the newest .wasm in DIR]
    #[arg(long, value_name = "FILE")]
    module: Option<PathBuf>,
    /// How often the files are looked at, in milliseconds
    #[arg(long, default_value_t = 500)]
    interval_ms: u64,
    /// Build and upload once, then exit (1 when either failed)
    #[arg(long)]
    once: bool,
}

#[derive(clap::Args)]
struct MapperNewArgs {
    /// The project's name: its cargo package and the mapper id to upload it as
    name: String,
    /// The language: rust, python (componentize-py) or js (componentize-js)
    #[arg(long, default_value = "rust", value_name = "LANG")]
    lang: String,
    /// The directory to create [default: ./NAME]
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// The SDK directory of a Ferrule checkout for the language (mapper-sdk, mapper-sdk-py,
    /// mapper-sdk-js) [default: the one of the checkout this binary was built from]
    #[arg(long, value_name = "DIR")]
    sdk: Option<PathBuf>,
}

#[derive(clap::Args)]
struct MapperTestArgs {
    /// The component (.wasm) to run
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with = "definition",
        required_unless_present = "definition"
    )]
    module: Option<PathBuf>,
    /// A mapping definition to run instead, as JSON: {"mappingEngine":"JavaScript","options":{..}}
    /// (JavaScript, Rhai, the built-ins), with the host's default limits
    #[arg(long, value_name = "FILE")]
    definition: Option<PathBuf>,
    /// The mapping definition's options as a JSON object, e.g. '{"feature":"env"}'
    #[arg(long, value_name = "JSON", default_value = "{}")]
    options: String,
    /// An external message as JSON: {"headers":{..},"textPayload":"..","bytePayload":"<base64>","contentType":".."}
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with_all = ["outbound", "cases"],
        required_unless_present_any = ["outbound", "cases"]
    )]
    inbound: Option<PathBuf>,
    /// A Ditto Protocol message as JSON
    #[arg(long, value_name = "FILE", conflicts_with = "cases")]
    outbound: Option<PathBuf>,
    /// Cases, one JSON object a line: {"name":"..","inbound":{..} or "outbound":{..},
    /// "expect":[outputs] or "expectError":"text", "options":{..} (else --options)};
    /// an expected output matches when it has the members it lists
    #[arg(long, value_name = "FILE")]
    cases: Option<PathBuf>,
    /// A TOML configuration file, as for `serve`: its [mappers] limits apply (a Python mapper
    /// needs larger ones than the defaults)
    #[arg(long, env = "FERRULE_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address of the HTTP API [default: 127.0.0.1:8080]
    #[arg(long, env = "FERRULE_BIND", value_name = "ADDR")]
    bind: Option<String>,
    /// Directory of the embedded database and the generated devops password
    /// [default: ./ferrule-data]
    #[arg(long, env = "FERRULE_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// A TOML configuration file (see examples/ferrule.toml for every key); a key of a section
    /// can also be set with FERRULE_<SECTION>__<KEY>, e.g. FERRULE_RUNTIME__MAX_TRIES=5
    #[arg(long, env = "FERRULE_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FERRULE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = match cli.command {
        Commands::Serve(args) => args,
        Commands::Mapper(MapperCommand::Test(args)) => return mapper_test(args),
        Commands::Mapper(MapperCommand::New(args)) => return mapper_new(args),
        Commands::Mapper(MapperCommand::Watch(args)) => return mapper_watch(args),
        Commands::Export(args) => return transfer(args, true),
        Commands::Import(args) => return transfer(args, false),
    };
    let overrides = Overrides {
        bind: args.bind,
        data_dir: args.data_dir,
        config_file: args.config,
        devops_password: std::env::var("FERRULE_DEVOPS_PASSWORD").ok(),
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ferrule: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let config = Config::resolve(overrides)?;
        let server = Server::start(config).await?;
        println!("ferrule: listening on http://{}", server.local_addr()?);
        server.run().await
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferrule: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// `ferrule export` (`out`) and `ferrule import`.
fn transfer(args: TransferArgs, out: bool) -> std::process::ExitCode {
    use ferrule_host::transfer;
    let overrides = Overrides {
        bind: None,
        data_dir: args.data_dir,
        config_file: args.config,
        devops_password: None,
    };
    let run = async {
        let config = Config::resolve(overrides)?;
        if out {
            let snapshot = transfer::export(&config).await?;
            transfer::write_file(&args.file, &snapshot)?;
            println!(
                "ferrule: exported {} connections, {} things and {} mapper modules to {}",
                snapshot.connections.len(),
                snapshot.things.len(),
                snapshot.modules.len(),
                args.file.display()
            );
        } else {
            let snapshot = transfer::read_file(&args.file)?;
            let done = transfer::import(&config, snapshot).await?;
            println!(
                "ferrule: imported {} connections, {} things and {} mapper modules from {}",
                done.connections,
                done.things,
                done.modules,
                args.file.display()
            );
        }
        anyhow::Ok(())
    };
    let result = tokio::runtime::Runtime::new()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(run));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferrule: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn mapper_watch(args: MapperWatchArgs) -> std::process::ExitCode {
    let watch = ferrule_host::mappers::watch::Watch {
        dir: args.dir,
        id: args.id,
        url: args.url,
        user: args.user,
        password: args.password,
        build: args.build,
        module: args.module,
        interval: std::time::Duration::from_millis(args.interval_ms.max(50)),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ferrule: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    if args.once {
        return match runtime.block_on(watch.once()) {
            Ok(line) => {
                println!("ferrule: {line}");
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("ferrule: {e}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    println!(
        "ferrule: watching {} for {} (Ctrl-C stops)",
        watch.dir.display(),
        watch.id
    );
    runtime.block_on(watch.run());
    std::process::ExitCode::SUCCESS
}

fn mapper_new(args: MapperNewArgs) -> std::process::ExitCode {
    use ferrule_host::mappers::scaffold;
    let dir = args.dir.unwrap_or_else(|| PathBuf::from(&args.name));
    let Some(sdk) = args.sdk.or_else(|| scaffold::default_sdk(&args.lang)) else {
        eprintln!(
            "ferrule: this binary's checkout has no mapper SDK any more: give --sdk with the \
             mapper-sdk directory of a Ferrule checkout"
        );
        return std::process::ExitCode::FAILURE;
    };
    match scaffold::create(&args.name, &args.lang, &dir, &sdk) {
        Ok(files) => {
            println!("ferrule: created {} ({} files)", dir.display(), files.len());
            let next = match args.lang.as_str() {
                "python" => "python3 -m pytest && ./build.sh",
                "js" => "npm test && npm run build",
                _ => "cargo test && cargo build --target wasm32-wasip2 --release",
            };
            println!(
                "next: cd {} && {next} (README.md has the rest)",
                dir.display()
            );
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ferrule: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn mapper_test(args: MapperTestArgs) -> std::process::ExitCode {
    use ferrule_host::mappers::trial;
    let overrides = Overrides {
        bind: None,
        data_dir: None,
        config_file: args.config.clone(),
        devops_password: None,
    };
    let ceilings = match Config::resolve(overrides) {
        Ok(config) => config.mappers.ceilings(),
        Err(e) => {
            eprintln!("ferrule: {e:#}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let subject =
        match trial::Subject::load(args.module.as_deref(), args.definition.as_deref(), ceilings) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("ferrule: {e}");
                return std::process::ExitCode::FAILURE;
            }
        };
    if let Some(cases) = &args.cases {
        let result = std::fs::read_to_string(cases)
            .map_err(|e| format!("cannot read {}: {e}", cases.display()))
            .and_then(|text| trial::run_cases(&subject, &args.options, &text));
        return match result {
            Ok((report, failed)) => {
                print!("{report}");
                if failed == 0 {
                    std::process::ExitCode::SUCCESS
                } else {
                    std::process::ExitCode::FAILURE
                }
            }
            Err(e) => {
                eprintln!("ferrule: {e}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    match trial::run_files(
        &subject,
        &args.options,
        args.inbound.as_deref(),
        args.outbound.as_deref(),
    ) {
        Ok(answer) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&answer).expect("JSON serialises")
            );
            if answer.get("error").is_some() {
                std::process::ExitCode::FAILURE
            } else {
                std::process::ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("ferrule: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
