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
}

#[derive(Subcommand)]
enum MapperCommand {
    /// Run a mapper module locally on one message and print the outputs, the error, its log
    /// lines and the time the call took (JSON). Nothing is published. Exits 1 when the module
    /// is refused or the mapping fails.
    Test(MapperTestArgs),
}

#[derive(clap::Args)]
struct MapperTestArgs {
    /// The component (.wasm) to run
    #[arg(long, value_name = "FILE")]
    module: PathBuf,
    /// The mapping definition's options as a JSON object, e.g. '{"feature":"env"}'
    #[arg(long, value_name = "JSON", default_value = "{}")]
    options: String,
    /// An external message as JSON: {"headers":{..},"textPayload":"..","bytePayload":"<base64>","contentType":".."}
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with = "outbound",
        required_unless_present = "outbound"
    )]
    inbound: Option<PathBuf>,
    /// A Ditto Protocol message as JSON
    #[arg(long, value_name = "FILE")]
    outbound: Option<PathBuf>,
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

fn mapper_test(args: MapperTestArgs) -> std::process::ExitCode {
    match ferrule_host::mappers::trial::run_files(
        &args.module,
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
